"""Mask corruption for training (docs/method.md#training): the network sees noisy masks, the losses
use clean ones.

Per frame and per mask channel, independently: erosion or dilation with a random elliptical kernel
(the paper's noise), then, each with its own probability, Gaussian blur (soft segmenter edges), holes
and spurious blobs, a small translation (a mask that lags the object), and rarely an empty or a full
mask (a segmenter that failed). All randomness comes from the NumPy generator passed in.

The extra corruptions (blur, holes/blobs, shift, empty/full) go beyond the paper and are ON by
default (`MaskNoise()`'s probabilities below; every shipped config and the demo model trained with
them). For the paper's noise alone, bind `MaskNoise.blur_prob`, `hole_prob`, `shift_prob`,
`empty_prob` and `full_prob` to 0.
"""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np

import gin


def _odd_kernel_sizes(kernel_range):
    low, high = kernel_range
    return [k for k in range(int(low), int(high) + 1) if k % 2 == 1]


@gin.configurable
@dataclasses.dataclass(frozen=True)
class MaskNoise:
    """Parameters of the mask corruption; `noise(masks, rng)` applies it.

    The defaults turn on the paper's erosion/dilation AND this project's extra corruptions (blur,
    holes/blobs, shift, empty/full masks); set their probabilities to 0 for the paper's noise alone.

    Attributes (probabilities are per frame and channel):
      kernel_range: (min, max) odd kernel sizes in pixels (at the crop size) for erosion/dilation.
      identity_prob: probability of skipping the erosion/dilation.
      blur_prob, blur_sigma_range: Gaussian blur of the mask (soft edges), sigma in pixels.
      hole_prob, max_holes, hole_size_range: random ellipses cut out of or added to the mask; size as
        a fraction of the crop side.
      shift_prob, max_shift: translation by up to `max_shift` of the crop side.
      empty_prob, full_prob: replace the mask by all zeros / all ones.
    """

    kernel_range: tuple[int, int] = (3, 15)
    identity_prob: float = 0.1
    blur_prob: float = 0.2
    blur_sigma_range: tuple[float, float] = (1.0, 3.0)
    hole_prob: float = 0.1
    max_holes: int = 2
    hole_size_range: tuple[float, float] = (0.03, 0.1)
    shift_prob: float = 0.1
    max_shift: float = 0.03
    empty_prob: float = 0.01
    full_prob: float = 0.005

    def __post_init__(self):
        if not _odd_kernel_sizes(self.kernel_range) or self.kernel_range[0] < 1:
            raise ValueError(
                f"kernel_range must be (min, max) with 1 <= min <= max holding an odd size, got "
                f"{self.kernel_range}."
            )
        for name in (
            "identity_prob",
            "blur_prob",
            "hole_prob",
            "shift_prob",
            "empty_prob",
            "full_prob",
        ):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be a probability in [0, 1], got {value}.")
        if self.empty_prob + self.full_prob > 1.0:
            raise ValueError("empty_prob + full_prob must be at most 1.")
        low, high = self.blur_sigma_range
        if not 0 < low <= high:
            raise ValueError(
                f"blur_sigma_range must be 0 < low <= high, got {self.blur_sigma_range}."
            )
        low, high = self.hole_size_range
        if not 0 < low <= high <= 1:
            raise ValueError(
                f"hole_size_range must be 0 < low <= high <= 1, got {self.hole_size_range}."
            )
        if not 0 <= self.max_shift < 1 or self.max_holes < 0:
            raise ValueError("max_shift must be in [0, 1) and max_holes >= 0.")

    def corrupt(self, mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Corrupts one mask `[H, W]` float32 in [0, 1]; returns `[H, W]` float32 in [0, 1]."""
        height, width = mask.shape
        side = min(height, width)
        draw = rng.random()
        if draw < self.empty_prob:
            return np.zeros_like(mask)
        if draw < self.empty_prob + self.full_prob:
            return np.ones_like(mask)
        out = mask.astype(np.float32)
        if rng.random() >= self.identity_prob:
            size = int(rng.choice(_odd_kernel_sizes(self.kernel_range)))
            kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
            op = cv2.erode if rng.random() < 0.5 else cv2.dilate
            out = op(out, kernel, borderType=cv2.BORDER_REPLICATE)
        if rng.random() < self.hole_prob:
            for _ in range(int(rng.integers(1, self.max_holes + 1))):
                # Holes go where the object is, blobs anywhere: both are typical segmenter errors.
                fill = float(rng.random() < 0.5)
                inside = np.argwhere(out > 0.5) if fill == 0.0 else None
                if inside is not None and len(inside):
                    cy, cx = inside[rng.integers(len(inside))]
                else:
                    cy, cx = rng.integers(height), rng.integers(width)
                axes = (rng.uniform(*self.hole_size_range, size=2) * side / 2).astype(int) + 1
                angle = float(rng.uniform(0, 180))
                cv2.ellipse(
                    out, (int(cx), int(cy)), tuple(int(a) for a in axes), angle, 0, 360, fill, -1
                )
        if rng.random() < self.shift_prob:
            dx, dy = rng.uniform(-self.max_shift, self.max_shift, size=2) * side
            matrix = np.float32([[1, 0, dx], [0, 1, dy]])
            out = cv2.warpAffine(
                out,
                matrix,
                (width, height),
                flags=cv2.INTER_LINEAR,
                borderMode=cv2.BORDER_REPLICATE,
            )
        if rng.random() < self.blur_prob:
            sigma = float(rng.uniform(*self.blur_sigma_range))
            out = cv2.GaussianBlur(out, (0, 0), sigma, borderType=cv2.BORDER_REPLICATE)
        return np.clip(out, 0.0, 1.0)

    def __call__(self, masks: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Corrupts `masks [T, H, W, C]` float32 in [0, 1] frame by frame and channel by channel."""
        masks = np.asarray(masks, np.float32)
        if masks.ndim != 4:
            raise ValueError(f"masks must be [T, H, W, C], got shape {masks.shape}.")
        out = np.empty_like(masks)
        for t in range(masks.shape[0]):
            for c in range(masks.shape[3]):
                out[t, :, :, c] = self.corrupt(np.ascontiguousarray(masks[t, :, :, c]), rng)
        return out
