"""Losses (docs/method.md#losses) against NumPy references."""

import numpy as np
import pytest
import tensorflow as tf

from lvst_tf import losses


def _rng(seed=0):
    return np.random.default_rng(seed)


def _np_masked_stats(features, mask, eps=1e-5):
    """Loop reference: features [h, w, C], mask [h, w] -> mean, std [C]."""
    h, w, c = features.shape
    mean = np.zeros(c)
    for ch in range(c):
        mean[ch] = sum(mask[y, x] * features[y, x, ch] for y in range(h) for x in range(w))
    area = max(mask.sum(), eps)
    mean /= area
    var = np.zeros(c)
    for ch in range(c):
        var[ch] = sum(
            mask[y, x] * (features[y, x, ch] - mean[ch]) ** 2 for y in range(h) for x in range(w)
        )
    var /= area
    return mean, np.sqrt(var + eps)


def test_region_masks_background_is_complement_of_max():
    m = _rng().uniform(size=(2, 4, 4, 3)).astype(np.float32)
    regions = losses.region_masks_from_objects(m).numpy()
    assert regions.shape == (2, 4, 4, 4)
    np.testing.assert_allclose(regions[..., :3], m)
    np.testing.assert_allclose(regions[..., 3], 1 - m.max(-1), atol=1e-6)


def test_content_loss_matches_numpy_and_is_zero_for_identical():
    a = _rng(1).normal(size=(2, 3, 4, 5)).astype(np.float32)
    b = _rng(2).normal(size=(2, 3, 4, 5)).astype(np.float32)
    np.testing.assert_allclose(losses.content_loss(a, b).numpy(), np.mean((a - b) ** 2), rtol=1e-5)
    assert losses.content_loss(a, a).numpy() == 0.0
    with pytest.raises(ValueError, match="content_features"):
        losses.content_loss(a, b[:, :2])


def test_masked_mean_std_matches_loop_reference():
    feats = _rng(3).normal(size=(1, 4, 5, 3)).astype(np.float32)
    mask = _rng(4).uniform(size=(1, 4, 5, 2)).astype(np.float32)
    mean, std = losses.masked_mean_std(feats, mask)
    for k in range(2):
        ref_mean, ref_std = _np_masked_stats(feats[0].astype(np.float64), mask[0, ..., k])
        np.testing.assert_allclose(mean[0, k].numpy(), ref_mean, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(std[0, k].numpy(), ref_std, rtol=1e-4, atol=1e-5)


def test_masked_statistics_ignore_pixels_outside_the_mask():
    feats = _rng(5).normal(size=(1, 8, 8, 4)).astype(np.float32)
    mask = np.zeros((1, 8, 8, 1), np.float32)
    mask[:, 2:6, 1:5] = 1.0
    mean, std = losses.masked_mean_std(feats, mask)
    changed = feats.copy()
    changed[:, :2] = 1000.0  # garbage outside the mask
    changed[:, 6:, :] = -55.0
    mean2, std2 = losses.masked_mean_std(changed, mask)
    np.testing.assert_allclose(mean.numpy(), mean2.numpy(), rtol=1e-5)
    np.testing.assert_allclose(std.numpy(), std2.numpy(), rtol=1e-4)
    inside = feats[0, 2:6, 1:5].reshape(-1, 4)
    np.testing.assert_allclose(mean[0, 0].numpy(), inside.mean(0), rtol=1e-5)
    np.testing.assert_allclose(std[0, 0].numpy(), np.sqrt(inside.var(0) + 1e-5), rtol=1e-4)


def test_masked_stats_area_resize_to_feature_resolution():
    feats = _rng(6).normal(size=(1, 2, 2, 3)).astype(np.float32)
    mask = np.zeros((1, 8, 8, 1), np.float32)
    mask[:, :4, :4] = 1.0  # exactly the top-left feature cell
    mean, _ = losses.masked_mean_std(feats, mask)
    np.testing.assert_allclose(mean[0, 0].numpy(), feats[0, 0, 0], rtol=1e-5)


def test_localized_style_loss_matches_numpy_and_zero_when_stats_match():
    rng = _rng(7)
    feats = [rng.normal(size=(2, 8, 8, 3)).astype(np.float32),
             rng.normal(size=(2, 4, 4, 5)).astype(np.float32)]  # fmt: skip
    regions = losses.region_masks_from_objects(
        (rng.uniform(size=(2, 16, 16, 1)) > 0.5).astype(np.float32)
    ).numpy()
    s_means = [rng.normal(size=(2, 2, 3)).astype(np.float32), rng.normal(size=(2, 2, 5))]
    s_stds = [rng.uniform(size=(2, 2, 3)).astype(np.float32), rng.uniform(size=(2, 2, 5))]
    got = losses.localized_style_loss(feats, regions, s_means, s_stds).numpy()
    # Reference: explicit loops over samples, regions and layers with the area-resized masks.
    total = 0.0
    for n in range(2):
        for k in range(2):
            for f, sm, ss in zip(feats, s_means, s_stds):
                size = f.shape[1]
                factor = 16 // size
                m = regions[n, ..., k].reshape(size, factor, size, factor).mean(axis=(1, 3))
                mean, std = _np_masked_stats(f[n].astype(np.float64), m)
                total += np.mean((mean - sm[n, k]) ** 2) + np.mean((std - ss[n, k]) ** 2)
    np.testing.assert_allclose(got, total / 4, rtol=1e-4)
    # Style statistics equal to the output's own masked statistics -> 0.
    stats = [losses.masked_mean_std(f, regions) for f in feats]
    zero = losses.localized_style_loss(feats, regions, [s[0] for s in stats], [s[1] for s in stats])
    assert abs(zero.numpy()) < 1e-10
    with pytest.raises(ValueError, match="channel_reduction"):
        losses.localized_style_loss(feats, regions, s_means, s_stds, channel_reduction="max")


def test_style_loss_skips_absent_regions():
    feats = [_rng(8).normal(size=(1, 4, 4, 2)).astype(np.float32)]
    regions = np.zeros((1, 4, 4, 2), np.float32)
    regions[..., 1] = 1.0  # region 0 is empty: its (garbage) style target must not count
    s_mean = np.array([[[1e3, 1e3], [0.0, 0.0]]], np.float32)
    s_std = np.ones((1, 2, 2), np.float32)
    got = losses.localized_style_loss(feats, regions, [s_mean], [s_std]).numpy()
    mean, std = _np_masked_stats(feats[0][0].astype(np.float64), regions[0, ..., 1])
    ref = np.mean(mean**2) + np.mean((std - 1) ** 2)
    np.testing.assert_allclose(got, ref, rtol=1e-4)


def test_laplacian_matches_numpy_and_zero_for_identity():
    from lvst_tf import ops

    grid = _rng(9).normal(size=(2, 3, 4, 5, 6, 12)).astype(np.float32)
    ref_mean = sum(np.mean(np.diff(grid, axis=a) ** 2) for a in (2, 3, 4))
    ref_sum = 0.0
    gh, gw, gd = 4, 5, 6
    for y in range(gh):  # explicit six-connected pairs, each counted once
        for x in range(gw):
            for d in range(gd):
                for dy, dx, dd in ((1, 0, 0), (0, 1, 0), (0, 0, 1)):
                    if y + dy < gh and x + dx < gw and d + dd < gd:
                        diff = grid[:, :, y + dy, x + dx, d + dd] - grid[:, :, y, x, d]
                        ref_sum += np.sum(diff**2)
    np.testing.assert_allclose(losses.bilateral_laplacian_loss(grid).numpy(), ref_mean, rtol=1e-5)
    np.testing.assert_allclose(
        losses.bilateral_laplacian_loss(grid, reduction="sum").numpy(), ref_sum, rtol=1e-4
    )
    identity = ops.identity_grid(2, (4, 4, 8))
    assert losses.bilateral_laplacian_loss(identity).numpy() == 0.0


def _np_warp(image, flow):
    """Integer-flow backward warp with border clamp (reference for these tests)."""
    h, w = image.shape[:2]
    out = np.zeros_like(image)
    for y in range(h):
        for x in range(w):
            sx = int(np.clip(x + flow[y, x, 0], 0, w - 1))
            sy = int(np.clip(y + flow[y, x, 1], 0, h - 1))
            out[y, x] = image[sy, sx]
    return out


def test_temporal_loss_zero_for_static_scene_identity_output():
    frame = _rng(10).uniform(size=(1, 1, 6, 7, 3)).astype(np.float32)
    frames = np.repeat(frame, 4, axis=1)
    flow = np.zeros((1, 3, 6, 7, 2), np.float32)
    assert losses.temporal_loss(frames, frames, flow).numpy() == 0.0
    assert losses.frame_difference_loss(frames, frames).numpy() == 0.0
    # An affine recolouring of a static scene is still temporally perfect.
    assert losses.temporal_loss(0.5 * frames + 0.1, frames, flow).numpy() < 1e-7


def test_temporal_loss_matches_numpy_with_integer_flow():
    rng = _rng(11)
    frames = rng.uniform(size=(2, 3, 5, 6, 3)).astype(np.float32)
    output = rng.uniform(size=(2, 3, 5, 6, 3)).astype(np.float32)
    flow = rng.integers(-2, 3, size=(2, 2, 5, 6, 2)).astype(np.float32)
    valid = (rng.uniform(size=(2, 2, 5, 6)) > 0.3).astype(np.float32)
    got = losses.temporal_loss(output, frames, flow, valid).numpy()
    acc = []
    for b in range(2):
        for i in range(2):
            w_in = _np_warp(frames[b, i], flow[b, i])
            w_out = _np_warp(output[b, i], flow[b, i])
            vis = np.exp(-50 * np.sum((frames[b, i + 1] - w_in) ** 2, -1, keepdims=True))
            acc.append(vis * valid[b, i][..., None] * np.abs(output[b, i + 1] - w_out))
    np.testing.assert_allclose(got, np.mean(acc), rtol=1e-4)
    # The loss reads the previous output through the flow: a moving scene whose output moves the
    # same way scores 0.
    scene = rng.uniform(size=(1, 1, 5, 6, 3)).astype(np.float32)
    shift = np.zeros((1, 1, 5, 6, 2), np.float32)
    shift[..., 0] = -1.0  # frame 1 pixel (y, x) comes from frame 0 (y, x - 1)
    moved = _np_warp(scene[0, 0], shift[0, 0])[None, None]
    video = np.concatenate([scene, moved], axis=1)
    assert losses.temporal_loss(video * 0.7, video, shift).numpy() < 1e-7


def test_frame_difference_loss_matches_numpy():
    rng = _rng(12)
    frames = rng.uniform(size=(1, 4, 3, 3, 3)).astype(np.float32)
    output = rng.uniform(size=(1, 4, 3, 3, 3)).astype(np.float32)
    ref = np.mean(np.abs(np.diff(output, axis=1) - np.diff(frames, axis=1)))
    np.testing.assert_allclose(losses.frame_difference_loss(output, frames).numpy(), ref, rtol=1e-5)
    assert losses.frame_difference_loss(frames + 0.2, frames).numpy() < 1e-7


def test_mask_loss_matches_numpy_bce_and_resizes_targets():
    rng = _rng(13)
    pred = rng.uniform(0.01, 0.99, size=(2, 3, 4, 4, 1)).astype(np.float32)
    clean = (rng.uniform(size=(2, 3, 8, 8, 1)) > 0.5).astype(np.float32)
    target = clean.reshape(2, 3, 4, 2, 4, 2, 1).mean(axis=(3, 5))
    ref = -np.mean(target * np.log(pred) + (1 - target) * np.log(1 - pred))
    np.testing.assert_allclose(losses.mask_loss(pred, clean).numpy(), ref, rtol=1e-4)
    binary = (rng.uniform(size=(1, 1, 4, 4, 1)) > 0.5).astype(np.float32)
    assert losses.mask_loss(binary, binary).numpy() < 1e-5
    with pytest.raises(ValueError, match="K-1"):
        losses.mask_loss(pred, np.concatenate([clean, clean], -1))


class _FakeModel:
    """Stands in for the model: an 'encoder' of fixed random 1x1 convs + pooling (4 taps)."""

    def __init__(self):
        rng = _rng(14)
        self.kernels = [
            tf.constant(rng.normal(size=(3, c)).astype(np.float32)) for c in (4, 5, 6, 7)
        ]

    def encoder(self, images):
        feats, x = [], images
        for i, k in enumerate(self.kernels):
            if i:
                x = tf.nn.avg_pool2d(x, 2, 2, "VALID")
            feats.append(tf.nn.relu(tf.einsum("nhwc,cd->nhwd", x, k)))
        return feats


def _fake_batch(rng, b=1, t=3, s=16, k=2):
    frames = rng.uniform(size=(b, t, s, s, 3)).astype(np.float32)
    clean = np.zeros((b, t, s, s, k - 1), np.float32)
    clean[:, :, 4:12, 4:12] = 1.0
    batch = {
        "frames": frames,
        "clean_masks": clean,
        "noisy_masks": clean,
        "styles": rng.uniform(size=(b, k, s, s, 3)).astype(np.float32),
        "flow": np.zeros((b, t - 1, s, s, 2), np.float32),
        "flow_valid": np.ones((b, t - 1, s, s), np.float32),
    }
    outputs = {
        "output": frames * 0.9,
        "enhanced_masks": np.clip(clean[:, :, ::2, ::2], 0.1, 0.9),
        "region_grids": rng.normal(size=(b, t, k, 2, 2, 2, 12)).astype(np.float32),
    }
    return batch, outputs


def test_compute_losses_weights_and_terms():
    rng = _rng(15)
    batch, outputs = _fake_batch(rng)
    model = _FakeModel()
    total, terms = losses.compute_losses(model, batch, outputs)
    assert set(terms) == set(losses.TERMS) - {"colour"}  # the colour term is off by default
    expected = (
        0.5 * terms["content"]
        + terms["style"]
        + 0.15 * terms["laplacian"]
        + 10 * terms["temporal"]
        + terms["mask"]
    )
    np.testing.assert_allclose(total.numpy(), expected.numpy(), rtol=1e-5)
    feats_out = model.encoder(tf.reshape(outputs["output"], (-1, 16, 16, 3)))
    feats_in = model.encoder(tf.reshape(batch["frames"], (-1, 16, 16, 3)))
    np.testing.assert_allclose(
        terms["content"].numpy(), np.mean((feats_out[-1] - feats_in[-1]).numpy() ** 2), rtol=1e-5
    )
    # Mask pre-training: only the mask term is computed.
    total, terms = losses.compute_losses(
        model,
        batch,
        outputs,
        content_weight=0,
        style_weight=0,
        laplacian_weight=0,
        temporal_weight=0,
    )
    assert set(terms) == {"mask"}
    # Flow-free option needs no flow.
    del batch["flow"], batch["flow_valid"]
    _, terms = losses.compute_losses(model, batch, outputs, temporal_mode="frame_difference")
    assert "temporal" in terms
    with pytest.raises(ValueError, match="with_flow"):
        losses.compute_losses(model, batch, outputs)
    with pytest.raises(ValueError, match="temporal_mode"):
        losses.compute_losses(model, batch, outputs, temporal_mode="optical")


def test_colour_loss_matches_a_pixel_loop_and_joins_the_total():
    rng = _rng(17)
    batch, outputs = _fake_batch(rng, b=2, t=2, s=8)
    total, terms = losses.compute_losses(_FakeModel(), batch, outputs, colour_weight=0.4)
    base, _ = losses.compute_losses(_FakeModel(), batch, outputs)
    np.testing.assert_allclose(
        total.numpy(), base.numpy() + 0.4 * terms["colour"].numpy(), rtol=1e-5
    )
    # Reference: per clip, frame and region, RGB (x255) moments of the output over the region vs
    # the whole style image's, channel mean of the squared differences; mean over regions, frames.
    out = outputs["output"].astype(np.float64) * 255
    styles = batch["styles"].astype(np.float64) * 255
    regions = losses.region_masks_from_objects(batch["clean_masks"].reshape(4, 8, 8, 1)).numpy()
    ref = []
    for b in range(2):
        for t in range(2):
            for k in range(2):
                mean, std = _np_masked_stats(out[b, t], regions[b * 2 + t, ..., k])
                s = styles[b, k].reshape(-1, 3)
                ref.append(
                    np.mean((mean - s.mean(0)) ** 2)
                    + np.mean((std - np.sqrt(s.var(0) + 1e-5)) ** 2)
                )
    np.testing.assert_allclose(terms["colour"].numpy(), np.mean(ref), rtol=1e-4)
    # An output painting each region flat in its style's mean colour matches the means exactly;
    # its std is 0, so what remains is the styles' own variance.
    batch["clean_masks"][:] = 0
    batch["clean_masks"][:, :, 2:6, 2:6] = 1
    colours = batch["styles"].reshape(2, 2, -1, 3).mean(axis=2)  # [B, K, 3]
    inside = batch["clean_masks"][..., :1] > 0  # [B, T, 8, 8, 1]
    flat = np.where(inside, colours[:, None, None, None, 0], colours[:, None, None, None, 1])
    _, terms = losses.compute_losses(
        _FakeModel(), batch, {**outputs, "output": flat}, colour_weight=1
    )
    stds = [
        np.mean(batch["styles"][b, k].reshape(-1, 3).std(0) ** 2)
        for b in range(2)
        for k in range(2)
    ]
    # (The flat region's float32 variance E[x^2] - mean^2 at the 0-255 scale is ~1e-2, not 0.)
    np.testing.assert_allclose(terms["colour"].numpy(), 255**2 * np.mean(stds), rtol=5e-3)
    with pytest.raises(ValueError, match="colour_weight"):
        losses.compute_losses(_FakeModel(), batch, outputs, colour_weight=-1)


def test_gradients_reach_output_and_grids():
    rng = _rng(16)
    batch, outputs = _fake_batch(rng)
    outputs = {k: tf.Variable(v) for k, v in outputs.items()}
    with tf.GradientTape() as tape:
        total, _ = losses.compute_losses(_FakeModel(), batch, outputs)
    grads = tape.gradient(total, list(outputs.values()))
    for g in grads:
        assert g is not None and np.isfinite(g.numpy()).all() and np.abs(g.numpy()).sum() > 0


def test_style_loss_is_a_batch_mean_so_replica_splits_agree():
    rng = _rng(17)
    feats = [rng.normal(size=(4, 4, 4, 3)).astype(np.float32)]
    regions = np.zeros((4, 8, 8, 2), np.float32)
    regions[..., 1] = 1.0
    regions[:2, :4, :, 0] = 1.0  # samples 0-1 have both regions, samples 2-3 only the background
    s_mean = [rng.normal(size=(4, 2, 3)).astype(np.float32)]
    s_std = [rng.uniform(size=(4, 2, 3)).astype(np.float32)]

    def loss(sl):
        return losses.localized_style_loss(
            [f[sl] for f in feats], regions[sl], [m[sl] for m in s_mean], [s[sl] for s in s_std]
        ).numpy()

    whole = loss(slice(0, 4))
    np.testing.assert_allclose(whole, (loss(slice(0, 2)) + loss(slice(2, 4))) / 2, rtol=1e-5)
    np.testing.assert_allclose(whole, np.mean([loss(slice(i, i + 1)) for i in range(4)]), rtol=1e-5)
