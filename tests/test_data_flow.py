"""Tests of the optical flow of the temporal loss and the warping error (lvst_tf.flow)."""

import cv2
import numpy as np
import pytest

from lvst_tf import flow as flow_lib

try:
    from lvst_tf.ops import warp as _ops_warp
except ImportError:  # the ops module is optional for these tests
    _ops_warp = None


def _warp(image, flow):
    """Backward warp `image(p + flow(p))` of `[H, W, C]`: lvst_tf.ops.warp, else cv2.remap."""
    if _ops_warp is not None:
        return np.asarray(_ops_warp(image[None], flow[None]))[0]
    height, width = flow.shape[:2]
    xs, ys = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    return cv2.remap(
        image,
        xs + flow[..., 0],
        ys + flow[..., 1],
        cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REPLICATE,
    )


def _scene(size=160, seed=0):
    noise = np.random.default_rng(seed).random((size, size, 3)).astype(np.float32)
    return cv2.GaussianBlur(noise, (0, 0), 2.0) * 4 - 1.5  # smooth, strong texture


def _shifted(scene, dx, dy, size=96):
    """A `size` crop of `scene` whose content moved by (dx, dy) pixels: out(p) = scene(p - d + 32)."""
    matrix = np.float32([[1, 0, dx - 32], [0, 1, dy - 32]])
    out = cv2.warpAffine(scene, matrix, (size, size), flags=cv2.INTER_LINEAR)
    return np.clip(out, 0, 1)


@pytest.mark.parametrize("preset", ["fast", "medium"])
@pytest.mark.parametrize("shift", [(3.0, -2.0), (1.5, 2.5)])
def test_translation_is_recovered_within_half_a_pixel(preset, shift):
    scene = _scene()
    frame_a = _shifted(scene, 0.0, 0.0)
    frame_b = _shifted(scene, *shift)
    flow, valid = flow_lib.flow_with_validity(frame_a, frame_b, preset=preset)
    assert flow.shape == (96, 96, 2) and flow.dtype == np.float32
    assert valid.shape == (96, 96) and valid.dtype == np.float32
    # frame_b(p) = frame_a(p - shift): the backward flow of frame_b is -shift everywhere.
    interior = (slice(8, -8), slice(8, -8))
    error = np.abs(flow[interior] + np.float32(shift))
    assert np.median(error) < 0.5 and np.mean(error) < 0.5, np.mean(error, axis=(0, 1))
    np.testing.assert_allclose(flow, flow_lib.compute_flow(frame_a, frame_b, preset), atol=1e-5)
    # The convention of docs/DESIGN.md: warp(frame_a, flow) ~ frame_b.
    warped = _warp(frame_a, flow)
    assert (
        np.abs(warped - frame_b)[interior].mean()
        < 0.25 * np.abs(frame_a - frame_b)[interior].mean()
    )
    assert valid[interior].mean() > 0.9


def test_validity_marks_pixels_that_come_from_outside():
    scene = _scene(seed=1)
    frame_a = _shifted(scene, 0.0, 0.0)
    frame_b = _shifted(scene, 6.0, 0.0)
    _, valid = flow_lib.flow_with_validity(frame_a, frame_b)
    # The 6 left columns of frame_b show what was left of frame_a's border.
    assert valid[:, :5].mean() < 0.2
    assert valid[10:-10, 10:-10].mean() > 0.9


def test_clip_flow_and_uint8_input():
    scene = _scene(seed=2)
    frames = np.stack([_shifted(scene, 2.0 * t, 0.0) for t in range(3)])
    frames8 = np.round(frames * 255).astype(np.uint8)
    flow, valid = flow_lib.clip_flow(frames8)
    assert flow.shape == (2, 96, 96, 2) and valid.shape == (2, 96, 96)
    assert np.abs(np.median(flow[:, 8:-8, 8:-8, 0]) + 2.0) < 0.5


def test_flow_bad_inputs():
    a = np.zeros((32, 32, 3), np.uint8)
    with pytest.raises(ValueError, match="same size"):
        flow_lib.compute_flow(a, np.zeros((32, 30, 3), np.uint8))
    with pytest.raises(ValueError, match="frame_a"):
        flow_lib.compute_flow(np.zeros((32, 32, 4)), a)
    with pytest.raises(ValueError, match="preset"):
        flow_lib.compute_flow(a, a, preset="slowest")
    with pytest.raises(ValueError, match="frames"):
        flow_lib.clip_flow(a[None])
