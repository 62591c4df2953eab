"""Metric functions on synthetic cases with known answers (lvst_tf.metrics,
docs/method.md#evaluation)."""

import cv2
import numpy as np
import pytest

from lvst_tf import metrics


def _texture(height, width, seed=0):
    """A smooth random colour texture in [0, 1] (DIS needs structure to lock on to)."""
    rng = np.random.default_rng(seed)
    img = cv2.GaussianBlur(rng.random((height, width, 3)).astype(np.float32), (0, 0), 3)
    return (img - img.min()) / (img.max() - img.min())


def _translating_clip(num_frames=5, height=72, width=96, step=(2, 1)):
    """Frames cut from one texture with the window moving `step = (dx, dy)` pixels per frame."""
    big = _texture(height + 40, width + 40)
    dx, dy = step
    return np.stack(
        [
            big[5 + t * dy : 5 + t * dy + height, 5 + t * dx : 5 + t * dx + width]
            for t in range(num_frames)
        ]
    )


# --- colour space -------------------------------------------------------------------------------------


def test_lab_known_values_and_cv2():
    # Reference values of the CIE formulae (sRGB, D65) for the primaries and white.
    lab = metrics.rgb_to_lab(
        np.array([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0], [1, 1, 1], [0, 0, 0]])
    )
    np.testing.assert_allclose(
        lab,
        [
            [53.2408, 80.0925, 67.2032],
            [87.7347, -86.1827, 83.1793],
            [32.2970, 79.1875, -107.8602],
            [100, 0, 0],
            [0, 0, 0],
        ],
        atol=2e-3,
    )
    # OpenCV's float path approximates the gamma curve with a table: agreement to a fraction of a unit.
    rgb = np.random.default_rng(1).random((40, 50, 3)).astype(np.float32)
    diff = np.abs(metrics.rgb_to_lab(rgb) - cv2.cvtColor(rgb, cv2.COLOR_RGB2Lab))
    assert diff.mean() < 0.15 and diff.max() < 0.5


def test_lab_round_trip_including_out_of_gamut():
    rgb = np.random.default_rng(2).uniform(-0.2, 1.2, (30, 20, 3))
    np.testing.assert_allclose(metrics.lab_to_rgb(metrics.rgb_to_lab(rgb)), rgb, atol=1e-10)
    u8 = np.arange(256, dtype=np.uint8)[:, None].repeat(3, 1)
    np.testing.assert_allclose(metrics.lab_to_rgb(metrics.rgb_to_lab(u8)), u8 / 255.0, atol=1e-10)


# --- masked statistics ----------------------------------------------------------------------------------


def test_masked_statistics_ignore_pixels_outside_mask():
    rng = np.random.default_rng(3)
    values = rng.random((10, 12, 3))
    mask = np.zeros((10, 12))
    mask[2:7, 3:9] = 1
    mean, std = metrics.masked_mean_std(values, mask)
    inside = values[2:7, 3:9].reshape(-1, 3)
    np.testing.assert_allclose(mean, inside.mean(0), atol=1e-12)
    np.testing.assert_allclose(std, inside.std(0), atol=1e-12)
    # Changing pixels outside the mask changes nothing.
    values2 = values.copy()
    values2[mask == 0] = 1e3
    mean2, std2 = metrics.masked_mean_std(values2, mask)
    np.testing.assert_allclose(mean2, mean)
    np.testing.assert_allclose(std2, std)
    # A soft mask is a weighting: weight 0.5 everywhere gives the unmasked statistics.
    mean3, _ = metrics.masked_mean_std(values, np.full((10, 12), 0.5))
    np.testing.assert_allclose(mean3, values.reshape(-1, 3).mean(0), atol=1e-12)
    # An (almost) empty region is absent: NaN.
    tiny = np.zeros((10, 12))
    tiny[0, 0] = 1
    assert np.all(np.isnan(metrics.masked_mean_std(values, tiny)[0]))


def test_region_weights_background_is_complement_of_union():
    masks = np.zeros((2, 4, 5, 2))
    masks[:, 0, :, 0] = 1
    masks[:, :, 0, 1] = 0.5
    w = metrics.region_weights(masks)
    assert w.shape == (2, 4, 5, 3)
    np.testing.assert_allclose(w[..., 2], 1 - masks.max(-1))
    single = metrics.region_weights(np.full((4, 5), 255, np.uint8), frames_shape=(4, 5))
    assert single.shape == (4, 5, 2) and np.all(single[..., 0] == 1) and np.all(single[..., 1] == 0)


# --- warping error --------------------------------------------------------------------------------------


def test_warping_flow_convention_on_translation():
    frames = _translating_clip(step=(2, 1))
    flow, valid = metrics.warping_flows(frames)
    assert flow.shape == (4, 72, 96, 2) and valid.shape == (4, 72, 96)
    # Content moves by (-2, -1) from frame t to t+1; the border that leaves the frame is invalid.
    inner = valid[0] > 0
    np.testing.assert_allclose(np.median(flow[0][inner], axis=0), [-2, -1], atol=0.05)
    assert 0.8 < valid.mean() < 1.0
    # warp(frame_{t+1}, flow_t) reproduces frame t on valid pixels.
    warped = metrics.warp(frames[1], flow[0])
    assert np.abs(warped - frames[0])[inner].mean() < 5e-3


def test_flow_with_occlusion_recovers_a_known_affine_motion():
    # Independent reference: frame 1 is frame 0 moved by a known affine map M (a small rotation,
    # zoom and shift), so pixel p of frame 0 sits at M p in frame 1 and the true flow is M p - p.
    height, width = 96, 128
    frame0 = _texture(height, width, seed=3)
    angle, scale, shift = np.deg2rad(2.0), 1.03, np.array([2.5, -1.5])
    c, s = scale * np.cos(angle), scale * np.sin(angle)
    centre = np.array([(width - 1) / 2, (height - 1) / 2])
    linear = np.array([[c, -s], [s, c]])
    offset = centre + shift - linear @ centre
    forward = np.hstack([linear, offset[:, None]])
    # frame1(q) = frame0(M^-1 q): cv2.warpAffine with the forward map does exactly that.
    frame1 = cv2.warpAffine(frame0, forward, (width, height), flags=cv2.INTER_CUBIC)
    frame1 = np.clip(frame1, 0, 1)
    flow, valid = metrics.flow_with_occlusion(frame0, frame1)
    xs, ys = np.meshgrid(np.arange(width, dtype=np.float64), np.arange(height, dtype=np.float64))
    true = np.stack([xs, ys], -1) @ linear.T + offset - np.stack([xs, ys], -1)
    target = np.stack([xs, ys], -1) + true
    inside = (
        (target[..., 0] > 4)
        & (target[..., 0] < width - 5)
        & (target[..., 1] > 4)
        & (target[..., 1] < height - 5)
    )
    inner = inside.copy()
    inner[:8], inner[-8:], inner[:, :8], inner[:, -8:] = False, False, False, False
    error = np.linalg.norm(flow - true, axis=-1)[inner]
    assert np.median(error) < 0.25 and np.mean(error) < 0.5, (np.median(error), np.mean(error))
    assert valid[inner].mean() > 0.9
    # Pixels whose true target lies outside frame 1 can never be valid.
    leaves = (
        (target[..., 0] < -1)
        | (target[..., 0] > width)
        | (target[..., 1] < -1)
        | (target[..., 1] > height)
    )
    assert leaves.any() and valid[leaves].max() == 0


def test_warping_error_identity_translation_is_zero_and_flicker_is_higher():
    frames = _translating_clip()
    flow, valid = metrics.warping_flows(frames)
    err, pairs = metrics.warping_error(frames, flow, valid, per_pair=True)
    assert pairs.shape == (4,)
    assert err < 1e-4
    gains = 1 + 0.1 * (-1.0) ** np.arange(len(frames))
    flicker = np.clip(frames * gains[:, None, None, None], 0, 1)
    assert metrics.warping_error(flicker, flow, valid) > 50 * max(err, 1e-6)
    # Against a direct NumPy reference: a global offset c flickering on every other frame gives
    # exactly 3 c^2 on every pair (summed over channels), whatever the flow.
    offset = frames * 0.5 + 0.25 + 0.05 * ((-1.0) ** np.arange(5))[:, None, None, None]
    np.testing.assert_allclose(metrics.warping_error(offset, flow, valid), 3 * 0.1**2, rtol=1e-4)
    assert metrics.video_warping_error(frames, frames) == pytest.approx(err)


def test_warping_error_skips_pairs_without_valid_pixels():
    frames = _translating_clip(num_frames=3)
    flow, valid = metrics.warping_flows(frames)
    valid[1] = 0
    err, pairs = metrics.warping_error(frames, flow, valid, per_pair=True)
    assert np.isnan(pairs[1]) and np.isfinite(err)


# --- SSIM -----------------------------------------------------------------------------------------------


def test_ssim_identical_constant_and_tf_reference():
    rng = np.random.default_rng(4)
    a = rng.random((32, 40))
    assert metrics.ssim(a, a) == pytest.approx(1.0, abs=1e-12)
    # Constant images c1, c2: the structure term is 1, the luminance term is known in closed form.
    c1, c2 = 0.3, 0.6
    expected = (2 * c1 * c2 + 1e-4) / (c1**2 + c2**2 + 1e-4)
    assert metrics.ssim(np.full((20, 20), c1), np.full((20, 20), c2)) == pytest.approx(expected)
    # Against TensorFlow's implementation (same Gaussian window, VALID positions).
    tf = pytest.importorskip("tensorflow")
    b = np.clip(a + 0.1 * rng.standard_normal(a.shape), 0, 1)
    ref = tf.image.ssim(
        tf.constant(a[..., None], tf.float32), tf.constant(b[..., None], tf.float32), 1.0
    ).numpy()
    assert metrics.ssim(a, b) == pytest.approx(float(ref), abs=1e-5)
    batched = metrics.ssim(np.stack([a, b]), np.stack([b, b]))
    assert batched.shape == (2,) and batched[1] == pytest.approx(1.0)


def test_gradient_ssim():
    frames = _translating_clip(num_frames=2)
    np.testing.assert_allclose(metrics.gradient_ssim(frames, frames), 1.0)
    # A lightness offset (in L*) and any change of a*, b* keep every luminance gradient: still 1.
    shifted = metrics.lab_to_rgb(metrics.rgb_to_lab(frames) + np.array([5.0, 10.0, -20.0]))
    np.testing.assert_allclose(metrics.gradient_ssim(shifted, frames), 1.0, atol=1e-9)
    # Blurring destroys structure; a contrast-preserving colour shift does not.
    blurred = np.stack([cv2.GaussianBlur(f, (0, 0), 3) for f in frames])
    assert metrics.gradient_ssim(blurred, frames).max() < 0.8
    # A ramp of slope 0.1 in L*/100 per pixel has gradient magnitude 0.1.
    ramp = metrics.lab_to_rgb(
        np.stack(
            [np.tile(np.linspace(20, 80, 61), (20, 1)), np.zeros((20, 61)), np.zeros((20, 61))], -1
        )
    )
    grad = metrics.luminance_gradient(ramp)
    np.testing.assert_allclose(grad[5:-5, 5:-5], 0.01, rtol=1e-6)


# --- Reinhard baseline, style distance, leakage --------------------------------------------------------


def _region_case():
    frames = _translating_clip(num_frames=3, height=48, width=64)
    mask = np.zeros((3, 48, 64))
    mask[:, 10:35, 15:45] = 1
    rng = np.random.default_rng(5)
    fg_style = 0.3 + 0.4 * _texture(30, 40, seed=6) * np.array([1.0, 0.6, 0.3])
    bg_style = 0.35 + 0.3 * rng.random((20, 25, 3)) * np.array([0.4, 0.7, 1.0])
    return frames, mask, [fg_style, bg_style]


def test_reinhard_matches_style_statistics_in_region():
    frames, mask, styles = _region_case()
    for clip in (False, True):
        out = metrics.reinhard_transfer(frames, mask, styles, clip=clip)
        assert out.shape == frames.shape and out.dtype == np.float32
        for k, region in enumerate([mask, 1 - mask]):
            mean, std = metrics.lab_statistics(out, region)
            s_mean, s_std = metrics.lab_statistics(styles[k])
            np.testing.assert_allclose(mean, np.broadcast_to(s_mean, mean.shape), atol=1e-3)
            np.testing.assert_allclose(std, np.broadcast_to(s_std, std.shape), atol=1e-3)
    # The style distance is then ~0 in both regions, and positive for the input.
    np.testing.assert_allclose(metrics.style_distance(out, mask, styles), 0, atol=3e-3)
    assert np.all(metrics.style_distance(frames, mask, styles) > 1)


def test_reinhard_soft_mask_composites_region_results():
    frames, mask, styles = _region_case()
    soft = mask * 0.25
    out = metrics.reinhard_transfer(frames[:1], soft[:1], styles, clip=False)
    # Reference: each region's transfer computed separately (NumPy), blended in Lab with 0.25 / 0.75.
    lab = metrics.rgb_to_lab(frames[0])
    moved = []
    for k, w in enumerate([soft[0], 1 - soft[0]]):
        mu = (lab * w[..., None]).sum((0, 1)) / w.sum()
        sd = np.sqrt((np.square(lab - mu) * w[..., None]).sum((0, 1)) / w.sum())
        s_mu, s_sd = metrics.lab_statistics(styles[k])
        moved.append((lab - mu) / (sd + 1e-6) * s_sd + s_mu)
    ref = metrics.lab_to_rgb(soft[0][..., None] * moved[0] + (1 - soft[0][..., None]) * moved[1])
    np.testing.assert_allclose(out[0], ref, atol=1e-5)


def test_leakage_signs_identity_local_and_global_transfer():
    frames, mask, styles = _region_case()
    leak = metrics.leakage(frames, frames, mask, styles)
    assert leak["matrix"].shape == (3, 2, 2) and leak["mean"].shape == (3,)
    np.testing.assert_allclose(leak["mean"], 0, atol=1e-9)
    assert np.all(np.isnan(leak["matrix"][:, [0, 1], [0, 1]]))
    # Recolouring the whole frame with the foreground style leaks it into the background (>= 0 by
    # the triangle inequality; here clearly positive).
    everywhere = metrics.reinhard_transfer(frames, np.ones_like(mask), styles, clip=False)
    assert np.all(metrics.leakage(frames, everywhere, mask, styles)["matrix"][:, 1, 0] > 1)
    # Exact per-region transfer: no leakage in either direction (<= 0).
    local = metrics.reinhard_transfer(frames, mask, styles, clip=False)
    matrix = metrics.leakage(frames, local, mask, styles)["matrix"]
    assert np.all(matrix[:, 1, 0] <= 1e-6) and np.all(matrix[:, 0, 1] <= 1e-6)
    # NumPy reference for one entry: margins from the plain style distances.
    d_in = metrics.style_distance(frames, mask, [styles[0], styles[0]])[:, 1]
    d_in_own = metrics.style_distance(frames, mask, styles)[:, 1]
    d_out = metrics.style_distance(everywhere, mask, [styles[0], styles[0]])[:, 1]
    d_out_own = metrics.style_distance(everywhere, mask, styles)[:, 1]
    np.testing.assert_allclose(
        metrics.leakage(frames, everywhere, mask, styles)["matrix"][:, 1, 0],
        (d_in - d_in_own) - (d_out - d_out_own),
        atol=1e-9,
    )


def test_feature_style_distance_with_a_toy_encoder():
    frames, mask, styles = _region_case()

    def encoder(images):  # Two "layers": the image itself and a half-size area-resized copy.
        images = np.asarray(images)
        h, w = images.shape[1:3]
        half = cv2.resize(images[0], (max(1, w // 2), max(1, h // 2)), interpolation=cv2.INTER_AREA)
        return [images, half[None]]

    d = metrics.feature_style_distance(frames, mask, styles, encoder, size=None)
    assert d.shape == (3, 2) and np.all(np.isfinite(d))
    # The style images (or the frame itself for its own statistics) give distance ~0.
    same = metrics.feature_style_distance(
        frames[:1], np.ones((1, 48, 64)), [frames[0], styles[1]], encoder, size=None
    )
    assert same[0, 0] < 1e-9 and np.isnan(same[0, 1])


def test_bad_arguments_raise_value_errors():
    frames, mask, styles = _region_case()
    with pytest.raises(ValueError, match="styles"):
        metrics.reinhard_transfer(frames, mask, styles[:1])
    with pytest.raises(ValueError, match="masks"):
        metrics.style_distance(frames, mask[:, :10], styles)
    with pytest.raises(ValueError, match="frames"):
        metrics.warping_flows(frames[0])
    with pytest.raises(ValueError, match="flow"):
        metrics.warping_error(frames, np.zeros((1, 48, 64, 2)), np.ones((1, 48, 64)))
    with pytest.raises(ValueError, match="at least 11x11"):
        metrics.ssim(np.zeros((8, 8)), np.zeros((8, 8)))
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        metrics.region_weights(mask * 2)
