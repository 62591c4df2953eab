"""Evaluation metrics and the training-free baseline of docs/method.md#evaluation (NumPy / OpenCV,
no TensorFlow).

Every function takes NumPy arrays (TF eager tensors convert) and returns NumPy values; importing this
module has no side effects and does not import TensorFlow, so the training loop can call it cheaply.

Conventions (see docs/evaluation.md for the full definitions):
- Images are RGB `[..., H, W, 3]` in [0, 1] (uint8 is divided by 255, other dtypes are cast).
- Masks are the user's `K - 1` object masks `[..., H, W, K-1]` (or `[..., H, W]` for one object) in
  [0, 1]; the background is `1 - max_k m_k` (docs/DESIGN.md). `region_weights` turns them into `K`
  region weights, the last one the background's.
- Styles: one image per region `[h, w, 3]` (sizes may differ), the last is the background's.
- Colour statistics are in CIE L*a*b* (D65), L* in [0, 100]; distances are in Lab units.
- Warping error is in squared RGB units ([0, 1] scale), summed over the 3 channels per pixel.
"""

from __future__ import annotations

import collections
import hashlib
import warnings
from collections.abc import Callable, Sequence

import cv2
import numpy as np

from lvst_tf import regions
from lvst_tf.flow import flow_with_validity, sample_bilinear

# sRGB (IEC 61966-2-1) primaries with the D65 white point; rows give X, Y, Z.
_RGB_TO_XYZ = np.array(
    [
        [0.4124564, 0.3575761, 0.1804375],
        [0.2126729, 0.7151522, 0.0721750],
        [0.0193339, 0.1191920, 0.9503041],
    ]
)
_XYZ_TO_RGB = np.linalg.inv(_RGB_TO_XYZ)
# The white of the matrix above (its row sums), so that RGB (1, 1, 1) maps to exactly L*=100, a*=b*=0.
_WHITE = _RGB_TO_XYZ.sum(axis=1)
_DELTA = 6.0 / 29.0

# Smallest total region weight (in pixels) for masked statistics; below it a region counts as absent.
MIN_REGION_PIXELS = 16.0


# ---------------------------------------------------------------------------------------------------
# Argument checking.


def _images(x, name: str, ndim: int | tuple[int, ...] = (3, 4)) -> np.ndarray:
    """Returns `x` as float64 RGB in [0, 1] scale, checking `[..., H, W, 3]`."""
    x = np.asarray(x)
    ndims = (ndim,) if isinstance(ndim, int) else ndim
    if x.ndim not in ndims or x.shape[-1] != 3 or x.size == 0:
        forms = " or ".join({3: "[H, W, 3]", 4: "[T, H, W, 3]"}[n] for n in ndims)
        raise ValueError(f"{name} must be RGB images of shape {forms}, got shape {x.shape}.")
    if x.dtype == np.uint8:
        return x.astype(np.float64) / 255.0
    if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
        raise ValueError(f"{name} must be uint8 or float RGB, got dtype {x.dtype}.")
    return x.astype(np.float64)


def _style_list(styles, name: str = "styles") -> list[np.ndarray]:
    if isinstance(styles, np.ndarray) and styles.ndim == 4:
        styles = list(styles)
    if not isinstance(styles, (list, tuple)) or len(styles) < 1:
        raise ValueError(
            f"{name} must be a list of K >= 1 RGB images [h, w, 3] (or an array [K, h, w, 3]), "
            f"got {type(styles).__name__}."
        )
    return [_images(s, f"{name}[{i}]", ndim=3) for i, s in enumerate(styles)]


def _check_same_hw(a: np.ndarray, b: np.ndarray, name_a: str, name_b: str) -> None:
    if a.shape[:-1] != b.shape[:-1]:
        raise ValueError(
            f"{name_a} and {name_b} must cover the same frames and pixels, got shapes "
            f"{a.shape} and {b.shape}."
        )


# ---------------------------------------------------------------------------------------------------
# Colour space.


def _srgb_to_linear(c: np.ndarray) -> np.ndarray:
    # Odd extension below zero so that out-of-gamut colours (Reinhard without clipping) round-trip.
    a = np.abs(c)
    curve = a > 0.04045
    lin = a / 12.92
    # The power only where it is needed (it dominates the cost).
    np.power((a + 0.055) / 1.055, 2.4, out=lin, where=curve)
    return np.copysign(lin, c)


def _linear_to_srgb(c: np.ndarray) -> np.ndarray:
    a = np.abs(c)
    curve = a > 0.0031308
    enc = a * 12.92
    np.power(a, 1.0 / 2.4, out=enc, where=curve)
    enc[curve] = 1.055 * enc[curve] - 0.055
    return np.copysign(enc, c)


# sRGB decoding of the 256 uint8 levels (most frames arrive as uint8).
_U8_TO_LINEAR = _srgb_to_linear(np.arange(256) / 255.0)


def rgb_to_lab(rgb) -> np.ndarray:
    """sRGB -> CIE L*a*b* (D65, 2 degree observer), our own float64 implementation.

    Args:
      rgb: `[..., 3]` sRGB in [0, 1] (uint8 divided by 255); values outside [0, 1] are extended
        oddly through the sRGB curve so `lab_to_rgb` inverts this exactly.
    Returns: `[..., 3]` float64 Lab, L* in [0, 100], a*, b* roughly in [-128, 127]. Agrees with
      `cv2.cvtColor(float32 RGB, cv2.COLOR_RGB2Lab)` to about 0.01 Lab units (tests).
    """
    rgb = np.asarray(rgb)
    if rgb.ndim < 1 or rgb.shape[-1] != 3:
        raise ValueError(f"rgb must have a last axis of 3 channels, got shape {rgb.shape}.")
    if rgb.dtype == np.uint8:
        linear = _U8_TO_LINEAR[rgb]
    else:
        linear = _srgb_to_linear(rgb.astype(np.float64))
    xyz = linear @ (_RGB_TO_XYZ.T / _WHITE)
    f = xyz / (3.0 * _DELTA**2) + 4.0 / 29.0
    np.cbrt(xyz, out=f, where=xyz > _DELTA**3)
    return np.stack(
        [
            116.0 * f[..., 1] - 16.0,
            500.0 * (f[..., 0] - f[..., 1]),
            200.0 * (f[..., 1] - f[..., 2]),
        ],
        axis=-1,
    )


def lab_to_rgb(lab) -> np.ndarray:
    """CIE L*a*b* (D65) -> sRGB, the exact inverse of :func:`rgb_to_lab` (no clipping).

    Args: `lab [..., 3]`, L* in [0, 100]. Returns: `[..., 3]` float64 sRGB, in [0, 1] for in-gamut
    colours.
    """
    lab = np.asarray(lab, dtype=np.float64)
    if lab.ndim < 1 or lab.shape[-1] != 3:
        raise ValueError(f"lab must have a last axis of 3 channels, got shape {lab.shape}.")
    fy = (lab[..., 0] + 16.0) / 116.0
    f = np.stack([fy + lab[..., 1] / 500.0, fy, fy - lab[..., 2] / 200.0], axis=-1)
    xyz = 3.0 * _DELTA**2 * (f - 4.0 / 29.0)
    np.power(f, 3, out=xyz, where=f > _DELTA)
    xyz *= _WHITE
    return _linear_to_srgb(xyz @ _XYZ_TO_RGB.T)


# ---------------------------------------------------------------------------------------------------
# Regions and masked statistics.


def region_weights(masks, frames_shape: tuple[int, ...] | None = None) -> np.ndarray:
    """Object masks -> per-region weights, background last (`lvst_tf.regions`, docs/DESIGN.md).

    Args:
      masks: `[..., H, W, K-1]` (or `[..., H, W]` for a single object) in [0, 1]; uint8 is divided by
        255 (so 0/255 mask images work).
      frames_shape: optional expected leading shape `(..., H, W)` to check against.
    Returns: `[..., H, W, K]` float64: the K-1 object masks, then the background `1 - max_k m_k`.
      They are not renormalised (overlapping objects both count fully in their own statistics).
    """
    m = np.asarray(masks)
    if m.dtype == np.uint8:
        m = m.astype(np.float64) / 255.0
    else:
        m = m.astype(np.float64)
    if frames_shape is not None and m.shape == tuple(frames_shape):
        m = m[..., None]
    elif frames_shape is not None and m.shape[:-1] != tuple(frames_shape):
        raise ValueError(
            f"masks must be [{', '.join(map(str, frames_shape))}, K-1] or "
            f"[{', '.join(map(str, frames_shape))}] to match the frames, got shape {m.shape}."
        )
    elif frames_shape is None and m.ndim < 3:
        raise ValueError(f"masks must be [..., H, W, K-1], got shape {m.shape}.")
    if m.shape[-1] < 1:
        raise ValueError(f"masks must hold at least one object mask, got shape {m.shape}.")
    if np.any(m < -1e-6) or np.any(m > 1 + 1e-6):
        raise ValueError("masks must be in [0, 1] (or uint8 0..255).")
    return regions.append_background(m)


def masked_mean_std(values, weights, min_weight: float = MIN_REGION_PIXELS):
    """Weighted per-channel mean and (population) standard deviation over the pixels.

    Args:
      values: `[..., H, W, C]`.
      weights: `[..., H, W]` non-negative (a soft mask); pixels with weight 0 are ignored entirely.
      min_weight: regions whose total weight is below this many pixels give NaN (absent region).
    Returns: `(mean, std)`, each `[..., C]` float64.
    """
    values = np.asarray(values, dtype=np.float64)
    weights = np.asarray(weights, dtype=np.float64)
    if values.shape[:-1] != weights.shape:
        raise ValueError(
            f"weights must be values.shape[:-1] = {values.shape[:-1]}, got {weights.shape}."
        )
    if np.any(weights < 0):
        raise ValueError("weights must be non-negative.")
    w = weights[..., None]
    total = w.sum(axis=(-3, -2))
    safe = np.maximum(total, 1e-12)
    mean = (values * w).sum(axis=(-3, -2)) / safe
    var = (np.square(values - mean[..., None, None, :]) * w).sum(axis=(-3, -2)) / safe
    absent = total < min_weight
    mean = np.where(absent, np.nan, mean)
    std = np.where(absent, np.nan, np.sqrt(np.maximum(var, 0.0)))
    return mean, std


def lab_statistics(image, weights=None):
    """Lab mean and std of an image (or images) over a soft region.

    Args: `image [..., H, W, 3]` RGB in [0, 1]; `weights [..., H, W]` or None (whole image).
    Returns: `(mean, std)` `[..., 3]` in Lab units.
    """
    image = _images(image, "image", ndim=(3, 4))
    lab = rgb_to_lab(image)
    if weights is None:
        weights = np.ones(lab.shape[:-1])
    return masked_mean_std(lab, weights)


_STYLE_CACHE: collections.OrderedDict = collections.OrderedDict()
_STYLE_CACHE_SIZE = 16


def style_lab_statistics(style) -> tuple[np.ndarray, np.ndarray]:
    """Lab mean and std `[3]` of a whole style image `[h, w, 3]`, memoised by content.

    Style images are reused for every frame, method and video; the key is a hash of the pixels, so
    a modified array is never served stale statistics.
    """
    style = np.ascontiguousarray(style)
    key = (style.shape, style.dtype.str, hashlib.blake2b(style.tobytes(), digest_size=16).digest())
    if key not in _STYLE_CACHE:
        _STYLE_CACHE[key] = lab_statistics(style)
        while len(_STYLE_CACHE) > _STYLE_CACHE_SIZE:
            _STYLE_CACHE.popitem(last=False)
    _STYLE_CACHE.move_to_end(key)
    mean, std = _STYLE_CACHE[key]
    return mean.copy(), std.copy()


def statistics_distance(mean_a, std_a, mean_b, std_b) -> np.ndarray:
    """`||mean_a - mean_b||_2 + ||std_a - std_b||_2` over the last (channel) axis."""
    return np.linalg.norm(np.asarray(mean_a) - mean_b, axis=-1) + np.linalg.norm(
        np.asarray(std_a) - std_b, axis=-1
    )


def style_distance(frames, masks, styles) -> np.ndarray:
    """Per-region Lab style distance (docs/method.md#evaluation, "a style distance per region").

    For frame t and region k: `D = ||mu_k(O_t) - mu(S_k)||_2 + ||sigma_k(O_t) - sigma(S_k)||_2`, where
    `mu_k, sigma_k` are the region-weighted Lab mean / std of the frame over region k (weights from
    :func:`region_weights`) and `mu(S_k), sigma(S_k)` those of the whole style image k.

    Args:
      frames: `[T, H, W, 3]` (or `[H, W, 3]`) RGB in [0, 1].
      masks: `[T, H, W, K-1]` or `[T, H, W]` object masks in [0, 1].
      styles: K style images `[h, w, 3]`, the last the background's.
    Returns: `[T, K]` (or `[K]`) float64 in Lab units; NaN where a region is absent in a frame.
    """
    frames = _images(frames, "frames")
    weights = region_weights(masks, frames.shape[:-1])
    styles = _style_list(styles)
    if weights.shape[-1] != len(styles):
        raise ValueError(
            f"styles must hold one image per region (K = {weights.shape[-1]} from masks), got "
            f"{len(styles)}."
        )
    return _distance_matrix(frames, weights, styles)[
        ..., np.arange(len(styles)), np.arange(len(styles))
    ]


def _distance_matrix(
    frames: np.ndarray, weights: np.ndarray, styles: list[np.ndarray]
) -> np.ndarray:
    """`[..., K regions, K styles]` Lab distance of region j of the frames to style i."""
    lab = rgb_to_lab(frames)
    region_stats = [masked_mean_std(lab, weights[..., j]) for j in range(weights.shape[-1])]
    style_stats = [style_lab_statistics(s) for s in styles]
    return np.stack(
        [
            np.stack([statistics_distance(*rs, *ss) for ss in style_stats], axis=-1)
            for rs in region_stats
        ],
        axis=-2,
    )


def leakage(inputs, outputs, masks, styles) -> dict[str, np.ndarray]:
    """Style leakage between regions (docs/method.md#evaluation), as the loss of the region's style
    margin.

    With `D(X_j, S)` the Lab style distance of region j of image X to style S (:func:`style_distance`)
    and the margin `m_ij(X) = D(X_j, S_i) - D(X_j, S_j)` (how much closer region j is to its own style
    j than to another region's style i), the leakage of style i into region j is
    `leak_{i->j}(t) = m_ij(I_t) - m_ij(O_t)`, in Lab units: how much the output lost of the input's
    margin. Properties (triangle inequality; D is a metric on the Lab mean/std pair):
    0 for the identity, <= 0 when region j gets exactly style j's statistics (perfect local
    transfer), >= 0 when region j gets exactly style i's (complete leakage). Lower is better.

    Args:
      inputs, outputs: `[T, H, W, 3]` RGB in [0, 1]; masks `[T, H, W, K-1]`; styles: K images.
    Returns: dict with `matrix [T, K, K]` (`[t, j, i]` = leak of style i into region j, NaN on the
      diagonal and for absent regions) and `mean [T]`, the mean over ordered pairs i != j. For K = 2,
      `matrix[:, 1, 0]` is foreground style into the background and `matrix[:, 0, 1]` the reverse.
    """
    inputs = _images(inputs, "inputs", ndim=4)
    outputs = _images(outputs, "outputs", ndim=4)
    _check_same_hw(inputs, outputs, "inputs", "outputs")
    weights = region_weights(masks, inputs.shape[:-1])
    styles = _style_list(styles)
    k = weights.shape[-1]
    if k != len(styles):
        raise ValueError(f"styles must hold K = {k} images (one per region), got {len(styles)}.")
    if k < 2:
        raise ValueError("leakage needs at least two regions.")

    def margin(frames):
        d = _distance_matrix(frames, weights, styles)  # [T, j, i]
        own = d[:, np.arange(k), np.arange(k)]  # [T, j]
        return d - own[:, :, None]

    matrix = margin(inputs) - margin(outputs)
    matrix[:, np.arange(k), np.arange(k)] = np.nan
    mean = nanmean(matrix.reshape(len(matrix), -1), axis=-1)
    return {"matrix": matrix, "mean": mean}


def nanmean(x: np.ndarray, axis=None):
    """`np.nanmean` without the "Mean of empty slice" warning (all-NaN slices stay NaN)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(x, axis=axis)


def feature_style_distance(
    frames,
    masks,
    styles,
    encoder: Callable[[np.ndarray], Sequence],
    size: int | None = 256,
) -> np.ndarray:
    """Per-region style distance on deep features (e.g. VGG-19 relu1_1..relu4_1,
    docs/method.md#evaluation).

    For each layer l with C_l channels: `d_l = (||mu_lk(O_t) - mu_l(S_k)||_2 + ||sigma_lk(O_t) -
    sigma_l(S_k)||_2) / sqrt(C_l)` (per-channel RMS, so wide layers do not dominate), with the region
    weights area-resized to the layer's resolution; `D = mean_l d_l`.

    Args:
      frames: `[T, H, W, 3]` in [0, 1]; masks `[T, H, W, K-1]` or `[T, H, W]`; styles: K images.
      encoder: callable `images [N, h, w, 3] float32 in [0, 1] -> list of [N, h_l, w_l, C_l]` (for
        example `model.encoder`). Its outputs are converted with `np.asarray`.
      size: frames and styles are resized (area) so their longer side is `size` before encoding
        (None keeps the sizes), which bounds the cost on large videos.
    Returns: `[T, K]` float64 (feature units); NaN where a region is absent.
    """
    frames = _images(frames, "frames", ndim=4)
    weights = region_weights(masks, frames.shape[:-1])
    styles = _style_list(styles)
    if weights.shape[-1] != len(styles):
        raise ValueError(f"styles must hold K = {weights.shape[-1]} images, got {len(styles)}.")
    if not callable(encoder):
        raise ValueError("encoder must be a callable images -> list of feature maps.")

    def fit(img):
        if size is None:
            return img
        h, w = img.shape[:2]
        scale = size / max(h, w)
        if scale >= 1:
            return img
        shape = (max(1, round(w * scale)), max(1, round(h * scale)))
        return cv2.resize(img, shape, interpolation=cv2.INTER_AREA)

    def encode(img):
        return [np.asarray(f, np.float64)[0] for f in encoder(fit(img).astype(np.float32)[None])]

    # Per style, per layer: the whole style image's feature mean and std.
    style_stats = []
    for style in styles:
        stats = []
        for feat in encode(style):
            stats.append(masked_mean_std(feat, np.ones(feat.shape[:2]), min_weight=0))
        style_stats.append(stats)
    k_regions = weights.shape[-1]
    out = np.full((len(frames), k_regions), np.nan)
    for t in range(len(frames)):
        feats = encode(frames[t])
        for k in range(k_regions):
            per_layer = []
            for feat, (s_mu, s_sd) in zip(feats, style_stats[k]):
                fh, fw = feat.shape[:2]
                wk = cv2.resize(weights[t, ..., k], (fw, fh), interpolation=cv2.INTER_AREA)
                # The pixel-count threshold is meant at full resolution; rescale it to this layer.
                min_w = MIN_REGION_PIXELS * fh * fw / weights[t, ..., k].size
                mu, sd = masked_mean_std(feat, wk, min_weight=min_w)
                per_layer.append(statistics_distance(mu, sd, s_mu, s_sd) / np.sqrt(feat.shape[-1]))
            out[t, k] = np.mean(per_layer)
    return out


# ---------------------------------------------------------------------------------------------------
# Temporal stability: warping error (Lai et al. 2018).


def warp(image, flow) -> np.ndarray:
    """Backward warp: `out(p) = image(p + flow(p))`, bilinear, border replicate.

    Args: `image [H, W, C]`, `flow [H, W, 2]` `(dx, dy)` pixels. Returns `[H, W, C]` float32.
    """
    image = np.asarray(image, np.float32)
    flow = np.asarray(flow, np.float32)
    if image.ndim != 3 or flow.shape != image.shape[:2] + (2,):
        raise ValueError(
            f"image must be [H, W, C] and flow [H, W, 2] of the same H, W, got {image.shape} and "
            f"{flow.shape}."
        )
    h, w = flow.shape[:2]
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    out = sample_bilinear(image, xs + flow[..., 0], ys + flow[..., 1])
    return out.reshape(image.shape)


def flow_with_occlusion(
    source, target, preset: str = "medium", alpha: float = 0.01, beta: float = 0.5
) -> tuple[np.ndarray, np.ndarray]:
    """DIS optical flow from `source` into `target` with the forward-backward occlusion check.

    Pixel p of `source` sits at `q = p + f(p)` in `target` (so `warp(target, f) ~ source`). It is
    valid when q lies inside `target` and the reverse flow g brings it back:
    `|f(p) + g(q)|^2 < alpha (|f(p)|^2 + |g(q)|^2) + beta` (Sundaram et al. 2010, as in Lai et al.
    2018): `lvst_tf.flow.flow_with_validity` (the training pipeline's DIS flow and check) with
    the frames swapped.

    Args: `source, target [H, W, 3]` RGB uint8 or float in [0, 1]; `preset` a DIS preset name.
    Returns: `flow [H, W, 2]` float32 `(dx, dy)` pixels, `valid [H, W]` float32 in {0, 1}.
    """
    source, target = np.asarray(source), np.asarray(target)
    if source.ndim != 3 or source.shape[-1] != 3 or source.shape != target.shape:
        raise ValueError(
            f"source and target must be RGB images [H, W, 3] of the same size, got {source.shape} "
            f"and {target.shape}."
        )
    # The flow of `source` into `target` is the pipeline's backward flow of frame_b = source.
    return flow_with_validity(target, source, preset=preset, alpha=alpha, beta=beta)


def warping_flows(frames, preset: str = "medium") -> tuple[np.ndarray, np.ndarray]:
    """Flows of the INPUT video for the warping error, with the occlusion mask.

    `flow[t]` (t = 0..T-2) points from frame t into frame t+1: pixel p of frame t sits at
    `p + flow[t](p)` in frame t+1, so `warp(O_{t+1}, flow[t]) ~ O_t` (:func:`flow_with_occlusion`
    with source I_t, target I_{t+1}: OpenCV DIS on the grey uint8 input frames, forward-backward
    check). Note the direction is the reverse of the training pipeline's `flow[i]` (docs/DESIGN.md),
    because Lai et al. warp O_{t+1} back to t.

    Args: `frames [T >= 2, H, W, 3]` uint8 or float in [0, 1]; `preset` the DIS preset.
    Returns: `flow [T-1, H, W, 2]` float32, `valid [T-1, H, W]` float32 in {0, 1}.
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] < 2:
        raise ValueError(f"frames must be [T >= 2, H, W, 3], got shape {frames.shape}.")
    pairs = [flow_with_occlusion(frames[t], frames[t + 1], preset) for t in range(len(frames) - 1)]
    return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])


def warping_error(outputs, flow, valid, per_pair: bool = False):
    """Warping error of Lai et al. (2018), docs/method.md#evaluation.

    `E = 1/(T-1) sum_t [ sum_p V_t(p) ||O_t(p) - warp(O_{t+1}, F_t)(p)||_2^2 / sum_p V_t(p) ]`, with
    `F_t, V_t` from :func:`warping_flows` on the input video, O in RGB [0, 1] and the squared norm
    summed over the 3 channels (so a per-channel MSE is E / 3). A pair without valid pixels is skipped.

    Args:
      outputs: `[T, H, W, 3]` RGB in [0, 1] (uint8 divided by 255).
      flow: `[T-1, H, W, 2]`, valid `[T-1, H, W]` from :func:`warping_flows` (of the input video).
      per_pair: also return the `[T-1]` per-pair errors.
    Returns: float (or `(float, [T-1] array)`); NaN if no pair has a valid pixel.
    """
    outputs = _images(outputs, "outputs", ndim=4)
    flow = np.asarray(flow, np.float32)
    valid = np.asarray(valid, np.float64)
    t = outputs.shape[0]
    if flow.shape != (t - 1,) + outputs.shape[1:3] + (2,) or valid.shape != flow.shape[:-1]:
        raise ValueError(
            f"flow must be [T-1, H, W, 2] and valid [T-1, H, W] for outputs {outputs.shape}, got "
            f"{flow.shape} and {valid.shape}."
        )
    errors = np.full(t - 1, np.nan)
    for i in range(t - 1):
        n = valid[i].sum()
        if n <= 0:
            continue
        warped = warp(outputs[i + 1].astype(np.float32), flow[i]).astype(np.float64)
        sq = np.square(outputs[i] - warped).sum(axis=-1)
        errors[i] = float((sq * valid[i]).sum() / n)
    total = float(nanmean(errors)) if t > 1 else float("nan")
    return (total, errors) if per_pair else total


def video_warping_error(inputs, outputs, preset: str = "medium") -> float:
    """Convenience: :func:`warping_error` of `outputs` with flows of `inputs` `[T, H, W, 3]`."""
    inputs = np.asarray(inputs)
    outputs = np.asarray(outputs)
    if inputs.shape != outputs.shape:
        raise ValueError(
            f"inputs and outputs must have the same shape, got {inputs.shape}, {outputs.shape}."
        )
    flow, valid = warping_flows(inputs, preset)
    return warping_error(outputs, flow, valid)


# ---------------------------------------------------------------------------------------------------
# Structure preservation: SSIM of luminance gradients.


def ssim(x, y, data_range: float = 1.0, sigma: float = 1.5, size: int = 11) -> np.ndarray:
    """Mean SSIM (Wang et al. 2004) of single-channel images with a Gaussian window.

    Same definition as `tf.image.ssim` (Gaussian `size x size` window of std `sigma`, K1 = 0.01,
    K2 = 0.03, biased local variances, only windows fully inside the image, i.e. 'VALID'), checked
    against it in the tests.

    Args:
      x, y: `[..., H, W]` float, same shape, H, W >= size.
      data_range: the dynamic range L of the values (C1 = (0.01 L)^2, C2 = (0.03 L)^2).
    Returns: `[...]` float64 mean SSIM per image (1 for identical images).
    """
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    if x.shape != y.shape or x.ndim < 2:
        raise ValueError(f"x and y must have the same shape [..., H, W], got {x.shape}, {y.shape}.")
    h, w = x.shape[-2:]
    if h < size or w < size:
        raise ValueError(f"x and y must be at least {size}x{size} pixels for SSIM, got {h}x{w}.")
    if data_range <= 0:
        raise ValueError(f"data_range must be > 0, got {data_range}.")
    g = cv2.getGaussianKernel(size, sigma, cv2.CV_64F)
    c1 = (0.01 * data_range) ** 2
    c2 = (0.03 * data_range) ** 2
    half = size // 2

    def blur(img):
        out = cv2.sepFilter2D(img, cv2.CV_64F, g, g, borderType=cv2.BORDER_REFLECT)
        # Keep only the windows fully inside the image (the border mode then never matters).
        return out[half : h - half, half : w - half]

    xs = x.reshape((-1, h, w))
    ys = y.reshape((-1, h, w))
    result = np.empty(len(xs))
    for n, (a, b) in enumerate(zip(xs, ys)):
        mu_a, mu_b = blur(a), blur(b)
        var_a = blur(a * a) - mu_a**2
        var_b = blur(b * b) - mu_b**2
        cov = blur(a * b) - mu_a * mu_b
        luminance = (2 * mu_a * mu_b + c1) / (mu_a**2 + mu_b**2 + c1)
        contrast_structure = (2 * cov + c2) / (var_a + var_b + c2)
        result[n] = float(np.mean(luminance * contrast_structure))
    return result.reshape(x.shape[:-2])


def luminance_gradient(images) -> np.ndarray:
    """Sobel gradient magnitude of the luminance L*/100 (CIE lightness in [0, 1]).

    The 3x3 Sobel responses are divided by 8 so a ramp of slope s per pixel gives magnitude s.
    Args: `[..., H, W, 3]` RGB in [0, 1]. Returns `[..., H, W]` float64 (>= 0, at most ~0.71).
    """
    images = _images(images, "images")
    lum = rgb_to_lab(images)[..., 0] / 100.0
    flat = lum.reshape((-1,) + lum.shape[-2:])
    out = np.empty_like(flat)
    for n, img in enumerate(flat):
        gx = cv2.Sobel(img, cv2.CV_64F, 1, 0, ksize=3, borderType=cv2.BORDER_REFLECT) / 8.0
        gy = cv2.Sobel(img, cv2.CV_64F, 0, 1, ksize=3, borderType=cv2.BORDER_REFLECT) / 8.0
        out[n] = np.hypot(gx, gy)
    return out.reshape(lum.shape)


def gradient_ssim(outputs, inputs) -> np.ndarray:
    """Structure preservation (docs/method.md#evaluation): SSIM between the luminance gradient
    magnitudes.

    `S_t = SSIM(|grad L(O_t)|, |grad L(I_t)|)` with :func:`luminance_gradient` and :func:`ssim`
    (data range 1). 1 means the output keeps every edge of the input with the same strength.
    Args: outputs, inputs `[T, H, W, 3]` (or `[H, W, 3]`) RGB in [0, 1]. Returns `[T]` (or scalar).
    """
    outputs = _images(outputs, "outputs")
    inputs = _images(inputs, "inputs")
    if outputs.shape != inputs.shape:
        raise ValueError(
            f"outputs and inputs must have the same shape, got {outputs.shape}, {inputs.shape}."
        )
    return ssim(luminance_gradient(outputs), luminance_gradient(inputs), data_range=1.0)


# ---------------------------------------------------------------------------------------------------
# Baseline: per-frame per-region Reinhard et al. (2001) colour transfer.


def reinhard_transfer(frames, masks, styles, clip: bool = True, eps: float = 1e-6) -> np.ndarray:
    """Per-frame, per-region colour transfer in Lab (Reinhard et al. 2001; docs/method.md#evaluation
    baseline).

    For every frame and region k: `lab_k = (lab - mu_k) / sigma_k * sigma(S_k) + mu(S_k)` per channel,
    with `mu_k, sigma_k` the region-weighted Lab statistics of the frame and `mu(S_k), sigma(S_k)`
    those of the whole style image k. The K results are composited in Lab with the region weights
    normalised to sum to 1 per pixel (the soft masks blend them), then converted to sRGB. With a hard
    mask and `clip=False` region k of the output has exactly the style's Lab mean and std. Deviation
    from the original paper: CIE Lab instead of Ruderman's l-alpha-beta (docs/method.md#evaluation:
    Lab).

    Args:
      frames: `[T, H, W, 3]` or `[H, W, 3]` RGB in [0, 1] (uint8 divided by 255).
      masks: `[T, H, W, K-1]` or `[T, H, W]` object masks in [0, 1].
      styles: K RGB style images, the last the background's.
      clip: clip the result to [0, 1] (colours outside the sRGB gamut are otherwise kept).
      eps: added to the region's std before dividing (flat regions).
    Returns: same shape as `frames`, float32.
    """
    frames = _images(frames, "frames")
    weights = region_weights(masks, frames.shape[:-1])
    styles = _style_list(styles)
    k = weights.shape[-1]
    if len(styles) != k:
        raise ValueError(
            f"styles must hold one image per region (K = {k} from masks), got {len(styles)}."
        )
    lab = rgb_to_lab(frames)
    norm = weights / weights.sum(axis=-1, keepdims=True)  # The sum is >= 1 by construction.
    out = np.zeros_like(lab)
    for j, style in enumerate(styles):
        s_mu, s_sd = style_lab_statistics(style)
        mu, sd = masked_mean_std(lab, weights[..., j], min_weight=1e-9)
        # An absent region has no statistics; its (zero) weight makes its result irrelevant.
        mu = np.nan_to_num(mu)
        sd = np.nan_to_num(sd, nan=1.0)
        moved = (lab - mu[..., None, None, :]) / (sd[..., None, None, :] + eps) * s_sd + s_mu
        out += norm[..., j : j + 1] * moved
    rgb = lab_to_rgb(out)
    if clip:
        rgb = np.clip(rgb, 0.0, 1.0)
    return rgb.astype(np.float32)
