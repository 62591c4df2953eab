"""Optical flow between video frames: OpenCV DIS flow with the forward-backward validity check.

One implementation for the training pipeline's temporal loss (docs/method.md#losses,
`lvst_tf.data.pipeline`) and the warping error of the evaluation metrics (`lvst_tf.metrics`); it
lives outside the training-data package so the metrics do not import it.

Convention (docs/DESIGN.md): the flow of a pair `(frame_a, frame_b)` is the **backward** flow of
`frame_b`: a pixel `p` of `frame_b` sits at `p + flow(p)` in `frame_a`, channels `(dx, dy)` in pixels,
so `ops.warp(frame_a, flow) ~ frame_b`. Validity is the forward-backward consistency check of
Sundaram et al. (2010) as used by Lai et al. (2018), and the target `p + flow(p)` inside `frame_a`.
"""

from __future__ import annotations

import cv2
import numpy as np

PRESETS = {
    "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
    "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
    "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
}


def _to_gray(frame: np.ndarray, name: str) -> np.ndarray:
    frame = np.asarray(frame)
    if frame.ndim == 3 and frame.shape[-1] == 1:
        frame = frame[..., 0]
    if frame.ndim not in (2, 3) or (frame.ndim == 3 and frame.shape[-1] != 3) or frame.size == 0:
        raise ValueError(f"{name} must be [H, W, 3] RGB or [H, W] grey, got shape {frame.shape}.")
    if frame.dtype != np.uint8:
        # Float frames are in [0, 1] by the project convention.
        frame = np.clip(np.rint(frame.astype(np.float32) * 255.0), 0, 255).astype(np.uint8)
    if frame.ndim == 3:
        frame = cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY)
    return np.ascontiguousarray(frame)


def _dis(preset: str):
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {sorted(PRESETS)}, got {preset!r}.")
    # A fresh object per call: DIS objects keep state and are not safe to share between threads.
    return cv2.DISOpticalFlow_create(PRESETS[preset])


def _check_pair(frame_a, frame_b):
    gray_a = _to_gray(frame_a, "frame_a")
    gray_b = _to_gray(frame_b, "frame_b")
    if gray_a.shape != gray_b.shape:
        raise ValueError(
            f"frame_a and frame_b must have the same size, got {gray_a.shape} and {gray_b.shape}."
        )
    return gray_a, gray_b


def compute_flow(frame_a: np.ndarray, frame_b: np.ndarray, preset: str = "medium") -> np.ndarray:
    """Backward flow of `frame_b` into `frame_a`: `[H, W, 2]` float32 `(dx, dy)` pixels.

    Args:
      frame_a, frame_b: `[H, W, 3]` RGB (uint8, or float in [0, 1]) or `[H, W]` grey, same size.
      preset: DIS preset, "ultrafast" | "fast" | "medium".
    Returns: `flow` with `frame_b(p) ~ frame_a(p + flow(p))`.
    """
    gray_a, gray_b = _check_pair(frame_a, frame_b)
    return _dis(preset).calc(gray_b, gray_a, None).astype(np.float32)


def sample_bilinear(field: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Samples `field [H, W, C]` at float coordinates `x, y [H, W]` (border clamp)."""
    return cv2.remap(
        field,
        x.astype(np.float32),
        y.astype(np.float32),
        interpolation=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REPLICATE,
    )


def flow_with_validity(
    frame_a: np.ndarray,
    frame_b: np.ndarray,
    preset: str = "medium",
    alpha: float = 0.01,
    beta: float = 0.5,
) -> tuple[np.ndarray, np.ndarray]:
    """Backward flow of `frame_b` and its validity mask.

    A pixel `p` of `frame_b` is valid when `q = p + f(p)` lies inside `frame_a` and the forward flow `g`
    of `frame_a` brings it back: `|f(p) + g(q)|^2 < alpha (|f(p)|^2 + |g(q)|^2) + beta`.

    Returns: `flow [H, W, 2]` float32 (see :func:`compute_flow`), `valid [H, W]` float32 in {0, 1}.
    """
    gray_a, gray_b = _check_pair(frame_a, frame_b)
    dis = _dis(preset)
    backward = dis.calc(gray_b, gray_a, None).astype(np.float32)
    forward = _dis(preset).calc(gray_a, gray_b, None).astype(np.float32)
    height, width = gray_a.shape
    xs, ys = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    qx = xs + backward[..., 0]
    qy = ys + backward[..., 1]
    forward_at_q = sample_bilinear(forward, qx, qy)
    diff = np.sum(np.square(backward + forward_at_q), axis=-1)
    bound = alpha * (np.sum(np.square(backward), -1) + np.sum(np.square(forward_at_q), -1)) + beta
    inside = (qx >= 0) & (qx <= width - 1) & (qy >= 0) & (qy <= height - 1)
    valid = (diff < bound) & inside
    return backward, valid.astype(np.float32)


def clip_flow(frames: np.ndarray, preset: str = "medium") -> tuple[np.ndarray, np.ndarray]:
    """Flow between consecutive frames of a clip.

    Args: `frames [T, H, W, 3]` uint8 or float in [0, 1].
    Returns: `flow [T-1, H, W, 2]`, `flow_valid [T-1, H, W]` float32; `flow[i]` is the backward flow of
      frame i+1 into frame i.
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[0] < 2:
        raise ValueError(f"frames must be [T >= 2, H, W, 3], got shape {frames.shape}.")
    pairs = [flow_with_validity(frames[i], frames[i + 1], preset) for i in range(len(frames) - 1)]
    return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])
