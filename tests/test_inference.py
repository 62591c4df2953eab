"""Tests of `lvst_tf.inference.VideoStylizer` with the real model (low_res 64, random VGG).

References are independent of the stylizer: a plain loop over `model.encode_styles`,
`model.predict_grids` and `model.render` with NumPy keyframe interpolation.
"""

import contextlib

import numpy as np
import pytest

from lvst_tf import ops
from lvst_tf.inference import VideoStylizer
from lvst_tf.models import build_model

H, W = 48, 64


@pytest.fixture(scope="module")
def model():
    m = build_model(vgg_weights=None, low_res=64)
    # A larger Gamma kernel than the near-identity init, so styles visibly change the output.
    rng = np.random.default_rng(1)
    kernel = m.head.gamma.kernel
    kernel.assign(rng.normal(0.0, 0.05, kernel.shape).astype(np.float32))
    return m


@contextlib.contextmanager
def identity_head(model):
    """Temporarily sets Gamma to the exact identity transform (zero kernel, identity bias)."""
    saved = model.head.gamma.get_weights()
    model.head.set_identity()
    try:
        yield model
    finally:
        model.head.gamma.set_weights(saved)


def _video(t, h=H, w=W, seed=0, objects=1):
    """A moving textured video and moving box masks `[T, h, w]` (objects=1) or `[T, h, w, K-1]`."""
    rng = np.random.default_rng(seed)
    base = rng.random((h + t * 2, w + t * 3, 3)).astype(np.float32)
    frames = np.stack([base[2 * i : 2 * i + h, 3 * i : 3 * i + w] for i in range(t)])
    masks = np.zeros((t, h, w, objects), np.float32)
    for i in range(t):
        for k in range(objects):
            y0 = (h // 4 + i + 5 * k) % (h // 2)
            x0 = (w // 5 + 2 * i + 11 * k) % (w // 2)
            masks[i, y0 : y0 + h // 2, x0 : x0 + w // 3, k] = 1.0
    return frames, (masks[..., 0] if objects == 1 else masks)


def _styles(k, seed=0):
    rng = np.random.default_rng(seed)
    sizes = [(20, 30), (33, 17), (25, 25), (40, 16)]
    out = []
    for i in range(k):
        tint = rng.random(3)
        img = tint * rng.uniform(0.3, 1.0, (*sizes[i % 4], 3))
        out.append(img if i % 2 else (img * 255).astype(np.uint8))
    return out


def _reference(model, frames, masks, stats_at, r, mode, soft_mask_mode=None):
    """Plain loop: keyframes, explicit state, NumPy interpolation, `model.render`, final clip."""
    t_total = len(frames)
    masks = masks if masks.ndim == 4 else masks[..., None]
    keys = list(range(0, t_total, r))
    if mode == "linear" and keys[-1] != t_total - 1:
        keys.append(t_total - 1)
    grids, state = {}, None
    for k in keys:
        out = model.predict_grids(
            frames[k][None], masks[k][None], stats_at(k), state=state, soft_mask_mode=soft_mask_mode
        )
        state = {n: v for n, v in out.items() if n.startswith("state_")}
        grids[k] = out["grids"].numpy()
    result = []
    for t in range(t_total):
        a = max(k for k in keys if k <= t)
        later = [k for k in keys if k > t]
        if t in grids or mode == "hold" or not later:
            g = grids[a]
        else:
            b = later[0]
            w = (t - a) / (b - a)
            g = (1 - w) * grids[a] + w * grids[b]
        result.append(model.render(g, frames[t][None]).numpy()[0])
    return np.clip(np.stack(result), 0.0, 1.0)


def _fixed_stats(model, styles):
    stats = model.encode_styles(
        [np.asarray(s, np.float32) / (255.0 if s.dtype == np.uint8 else 1.0) for s in styles]
    )
    return lambda t: stats


def test_identity_head_returns_input_at_300x500(model):
    frames, masks = _video(10, 300, 500)
    with identity_head(model):
        for r in (1, 3, 8):
            out = VideoStylizer(model, r=r).stylize(frames, masks, _styles(2))
            assert out.shape == frames.shape and out.dtype == np.float32
            np.testing.assert_allclose(out, frames, atol=2e-5, err_msg=f"r={r}")


def test_uint8_input_and_identity(model):
    frames, masks = _video(3, 37, 53)
    frames8 = (frames * 255).round().astype(np.uint8)
    with identity_head(model):
        out = VideoStylizer(model, r=2).stylize(frames8, (masks * 255).astype(np.uint8), _styles(2))
    np.testing.assert_allclose(out, frames8 / 255.0, atol=2e-5)


@pytest.mark.parametrize("mode", ["linear", "hold"])
def test_matches_reference_loop(model, mode):
    frames, masks = _video(6)
    styles = _styles(2)
    out = VideoStylizer(model, r=4, interpolation=mode).stylize(frames, masks, styles)
    ref = _reference(model, frames, masks, _fixed_stats(model, styles), r=4, mode=mode)
    np.testing.assert_allclose(out, ref, atol=1e-4)
    assert np.abs(out - frames).max() > 1e-2  # the model really does something


def test_hold_differs_from_linear_only_between_keyframes(model):
    frames, masks = _video(6)
    styles = _styles(2)
    lin = VideoStylizer(model, r=4, interpolation="linear").stylize(frames, masks, styles)
    hold = VideoStylizer(model, r=4, interpolation="hold").stylize(frames, masks, styles)
    # Keyframes 0 and 4 are shared; 1-3 use interpolated vs held grids; 5 is a keyframe only in
    # linear mode (hold never looks ahead).
    np.testing.assert_allclose(lin[[0, 4]], hold[[0, 4]], atol=1e-6)
    for t in (1, 2, 3, 5):
        assert np.abs(lin[t] - hold[t]).max() > 1e-4, t


def test_three_regions(model):
    frames, masks = _video(5, objects=2)
    styles = _styles(3)
    out = VideoStylizer(model, r=2).stylize(frames, masks, styles)
    ref = _reference(model, frames, masks, _fixed_stats(model, styles), r=2, mode="linear")
    np.testing.assert_allclose(out, ref, atol=1e-4)
    # Each object style matters.
    other = list(styles)
    other[1] = _styles(4, seed=7)[3]
    out2 = VideoStylizer(model, r=2).stylize(frames, masks, other)
    assert np.abs(out2 - out).max() > 1e-3


def test_static_video_r1_equals_r8(model):
    frames, masks = _video(1)
    frames = np.repeat(frames, 10, 0)
    masks = np.repeat(masks, 10, 0)
    styles = _styles(2)
    out1 = VideoStylizer(model, r=1).stylize(frames, masks, styles)
    out8 = VideoStylizer(model, r=8).stylize(frames, masks, styles)
    np.testing.assert_allclose(out1, out8, atol=1e-5)
    assert np.abs(out1 - frames).max() > 1e-2


def test_style_schedule_is_gradual_and_matches_reference(model):
    frames, masks = _video(1)
    frames = np.repeat(frames, 9, 0)
    masks = np.repeat(masks, 9, 0)
    style_a, style_b = _styles(2, seed=3), _styles(2, seed=4)
    stylizer = VideoStylizer(model, r=1)
    out_a = stylizer.stylize(frames, masks, style_a)
    out = stylizer.stylize(frames, masks, None, style_schedule=[(2, style_a), (6, style_b)])
    dist = [float(np.abs(out[t] - out_a[t]).mean()) for t in range(9)]
    assert dist[0] == dist[1] == dist[2] == 0.0, dist  # before and at the first entry: style A
    assert all(b >= a - 1e-7 for a, b in zip(dist[2:], dist[3:])), dist  # monotone
    assert dist[3] < dist[6] and dist[-1] > 1e-3, dist  # gradual, and really reaches B

    stats_a, stats_b = _fixed_stats(model, style_a)(0), _fixed_stats(model, style_b)(0)

    def blended(t):
        w = min(max((t - 2) / 4, 0.0), 1.0)
        return {k: (1 - w) * stats_a[k] + w * stats_b[k] for k in stats_a}

    ref = _reference(model, frames, masks, blended, r=1, mode="linear")
    np.testing.assert_allclose(out, ref, atol=1e-4)


def test_schedule_with_styles_starts_from_styles(model):
    frames, masks = _video(4)
    style_a, style_b = _styles(2, seed=3), _styles(2, seed=4)
    stylizer = VideoStylizer(model, r=2)
    explicit = stylizer.stylize(frames, masks, None, style_schedule=[(0, style_a), (3, style_b)])
    implicit = stylizer.stylize(frames, masks, style_a, style_schedule=[(3, style_b)])
    np.testing.assert_array_equal(explicit, implicit)


@pytest.mark.parametrize("mode", ["linear", "hold"])
def test_stream_equals_stylize(model, mode):
    frames, masks = _video(8, 40, 56, seed=2)
    styles = _styles(2)
    stylizer = VideoStylizer(model, r=3, interpolation=mode)
    batch = stylizer.stylize(frames, masks, styles)
    streamed = np.stack(list(stylizer.stream(zip(frames, masks), styles)))
    np.testing.assert_array_equal(batch, streamed)


@pytest.mark.parametrize("mode,r,t", [("linear", 4, 11), ("linear", 3, 9), ("hold", 4, 11)])
def test_stream_memory_bound(model, mode, r, t):
    frames, masks = _video(t)
    consumed = []

    def source():
        for i in range(t):
            consumed.append(i)
            yield frames[i], masks[i]

    held = []
    outputs = VideoStylizer(model, r=r, interpolation=mode).stream(source(), _styles(2))
    for produced, _ in enumerate(outputs, start=1):
        held.append(len(consumed) - produced + 1)  # input frames read but not yet output
    assert len(held) == t
    if mode == "hold":
        assert max(held) == 1  # causal: each frame is out before the next is read
    else:
        assert max(held) <= r + 1
        assert max(held) == r  # frames a+1..b wait for keyframe b


def test_all_zero_and_all_one_masks_are_valid(model):
    frames, _ = _video(3)
    stylizer = VideoStylizer(model, r=2)
    for value in (0.0, 1.0):
        masks = np.full(frames.shape[:3], value, np.float32)
        out = stylizer.stylize(frames, masks, _styles(2))
        assert np.isfinite(out).all() and out.min() >= 0.0 and out.max() <= 1.0


def test_bool_masks_equal_float_masks(model):
    frames, masks = _video(3)
    stylizer = VideoStylizer(model, r=1)
    a = stylizer.stylize(frames, masks > 0.5, _styles(2))
    b = stylizer.stylize(frames, masks, _styles(2))
    np.testing.assert_array_equal(a, b)


def test_traces_are_bounded(model):
    stylizer = VideoStylizer(model, r=2)
    for t, h, w in [(3, 32, 40), (4, 50, 31), (2, 17, 23)]:
        frames, masks = _video(t, h, w)
        stylizer.stylize(frames, masks, _styles(2))
    frames, masks = _video(3, objects=2)
    stylizer.stylize(frames, masks, _styles(3))
    VideoStylizer(model, r=5).stylize(frames, masks, _styles(3))  # a new stylizer shares traces
    counts = stylizer.tracing_counts()
    # Float frames here; uint8 frames (earlier tests share the model) have their own traces.
    assert {k: counts[k] for k in ("encode", "predict_first", "predict_next", "render")} == {
        "encode": 1,
        "predict_first": 1,
        "predict_next": 1,
        "render": 1,
    }, counts
    frames8 = (frames * 255).astype(np.uint8)
    for t in (2, 5):
        stylizer.stylize(frames8[:t], masks[:t], _styles(3))
    counts = stylizer.tracing_counts()
    assert all(counts[k] == 1 for k in ("predict_first_uint8", "predict_next_uint8")), counts
    assert counts["render_uint8"] == 1 and counts["render"] == 1, counts


# ---------------------------------------------------------------------------------------------
# Bad inputs: a ValueError naming the argument, before any work.


def _bad_cases():
    frames, masks = _video(3)
    styles = _styles(2)
    nan_frames = frames.copy()
    nan_frames[1, 2, 3, 0] = np.nan
    inf_masks = masks.copy()
    inf_masks[0, 0, 0] = np.inf
    return [
        ("mismatched T", (frames, masks[:2], styles), {}, "masks has 2 frames"),
        ("mismatched H, W", (frames, masks[:, :-1], styles), {}, "masks have size"),
        ("K mismatch", (frames, masks, _styles(3)), {}, "K = 2 styles"),
        ("K mismatch 4d", (frames, np.stack([masks] * 2, -1), styles), {}, "K = 3 styles"),
        ("empty video", (frames[:0], masks[:0], styles), {}, "frames is empty"),
        (
            "4 channels",
            (np.concatenate([frames, frames[..., :1]], -1), masks, styles),
            {},
            "frames",
        ),
        ("gray frames", (frames[..., 0], masks, styles), {}, "frames must have shape"),
        ("gray style", (frames, masks, [styles[0], np.zeros((5, 5))]), {}, r"styles\[1\]"),
        ("NaN frames", (nan_frames, masks, styles), {}, "frames contains NaN"),
        ("inf masks", (frames, inf_masks, styles), {}, "masks contains NaN or inf"),
        ("frames > 1", (frames * 2, masks, styles), {}, r"frames has float values"),
        ("style < 0", (frames, masks, [styles[0], -np.ones((4, 4, 3))]), {}, r"styles\[1\]"),
        ("int32 frames", (frames.astype(np.int32), masks, styles), {}, "frames must be uint8"),
        ("0/1 uint8 mask", (frames, masks.astype(np.uint8), styles), {}, "0/255"),
        ("one style", (frames, masks, styles[:1]), {}, "K >= 2"),
        ("styles not list", (frames, masks, "style.jpg"), {}, "styles must be a list"),
        ("no styles", (frames, masks, None), {}, "styles is required"),
        ("5d masks", (frames, masks[..., None, None], styles), {}, "masks must have shape"),
        (
            "schedule unsorted",
            (frames, masks, None),
            {"style_schedule": [(3, styles), (1, styles)]},
            "strictly increasing",
        ),
        (
            "schedule K",
            (frames, masks, None),
            {"style_schedule": [(0, styles), (2, _styles(3))]},
            "same K",
        ),
        (
            "schedule index",
            (frames, masks, None),
            {"style_schedule": [(-1, styles)]},
            "frame_index",
        ),
        (
            "schedule pair",
            (frames, masks, None),
            {"style_schedule": [(1,)]},
            r"style_schedule\[0\] must be a \(frame_index, styles\) pair",
        ),
        (
            "schedule at 0 and styles",
            (frames, masks, styles),
            {"style_schedule": [(0, styles)]},
            "entry at frame 0",
        ),
        (
            "schedule empty",
            (frames, masks, None),
            {"style_schedule": []},
            "style_schedule is empty",
        ),
    ]


@pytest.mark.parametrize("case", _bad_cases(), ids=lambda c: c[0])
def test_bad_inputs_raise(model, case, monkeypatch):
    _, args, kwargs, match = case
    stylizer = VideoStylizer(model)

    def no_work(*a, **k):
        raise AssertionError("model work started before validation")

    monkeypatch.setattr(stylizer, "_run", no_work)
    with pytest.raises(ValueError, match=match):
        stylizer.stylize(*args, **kwargs)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"r": 0}, "r must be an int >= 1"),
        ({"r": 2.5}, "r must be an int"),
        ({"interpolation": "cubic"}, "interpolation must be one of"),
        ({"soft_mask_mode": "hard"}, "soft_mask_mode must be one of"),
        ({"render_strip_pixels": 0}, "render_strip_pixels must be None or an int >= 1"),
        ({"render_strip_pixels": 2.0e6}, "render_strip_pixels must be None or an int >= 1"),
    ],
)
def test_bad_constructor_arguments(model, kwargs, match):
    with pytest.raises(ValueError, match=match):
        VideoStylizer(model, **kwargs)
    with pytest.raises(ValueError, match="model must provide"):
        VideoStylizer(object())


def test_stream_validates_each_frame_on_arrival(model):
    frames, masks = _video(3)
    styles = _styles(2)
    stylizer = VideoStylizer(model, r=1)

    def changing_size():
        yield frames[0], masks[0]
        yield frames[1], masks[1]
        yield frames[2, :-2], masks[2, :-2]

    out = stylizer.stream(changing_size(), styles)
    assert next(out).shape == (H, W, 3)
    assert next(out).shape == (H, W, 3)
    with pytest.raises(ValueError, match="frame 2 has size"):
        next(out)

    bad_mask = iter([(frames[0], masks[0, :, :-1])])
    with pytest.raises(ValueError, match="mask 0 has size"):
        next(stylizer.stream(bad_mask, styles))
    with pytest.raises(ValueError, match="frame 0 contains NaN"):
        next(stylizer.stream(iter([(np.full((4, 4, 3), np.nan), np.zeros((4, 4)))]), styles))
    with pytest.raises(ValueError, match="mask 0 gives K-1 = 2"):
        next(stylizer.stream(iter([(frames[0], np.zeros((H, W, 2)))]), styles))
    with pytest.raises(ValueError, match="item 0 must be a"):
        next(stylizer.stream(iter([frames[0]]), styles))
    with pytest.raises(ValueError, match="frames_and_masks is empty"):
        next(stylizer.stream(iter([]), styles))
    with pytest.raises(ValueError, match="frames_and_masks must be an iterable"):
        stylizer.stream(frames, styles)  # an array is not a stream of pairs
    with pytest.raises(ValueError, match="K >= 2"):
        stylizer.stream(iter([]), styles[:1])  # styles are checked at once, not lazily


@pytest.mark.slow
def test_3000x4000_runs_and_identity_holds(model):
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (2, 3000, 4000, 3), dtype=np.uint8)
    masks = np.zeros((2, 3000, 4000), np.uint8)
    masks[:, 1000:2000, 1500:3000] = 255
    with identity_head(model):
        out = VideoStylizer(model, r=2).stylize(frames, masks, _styles(2))
    assert out.shape == (2, 3000, 4000, 3)
    np.testing.assert_allclose(out[:, ::7, ::7], frames[:, ::7, ::7] / 255.0, atol=2e-5)


# ---------------------------------------------------------------------------------------------
# Soft-mask modes, keyframe rule, style-region masks, public pieces.


def test_paper_mode_end_to_end_matches_reference(model):
    frames, masks = _video(5)
    styles = _styles(2)
    out = VideoStylizer(model, r=2, soft_mask_mode="paper").stylize(frames, masks, styles)
    ref = _reference(
        model, frames, masks, _fixed_stats(model, styles), 2, "linear", soft_mask_mode="paper"
    )
    np.testing.assert_allclose(out, ref, atol=1e-4)
    normalized = VideoStylizer(model, r=2).stylize(frames, masks, styles)
    assert np.abs(out - normalized).max() > 1e-4  # the two modes really differ here


def test_soft_mask_mode_none_is_the_models_own(model, monkeypatch):
    frames, masks = _video(3)
    styles = _styles(2)
    assert VideoStylizer(model).soft_mask_mode is None
    monkeypatch.setattr(model, "soft_mask_mode", "paper")
    own = VideoStylizer(model, r=1).stylize(frames, masks, styles)
    paper = VideoStylizer(model, r=1, soft_mask_mode="paper").stylize(frames, masks, styles)
    normalized = VideoStylizer(model, r=1, soft_mask_mode="normalized").stylize(
        frames, masks, styles
    )
    np.testing.assert_array_equal(own, paper)
    assert np.abs(own - normalized).max() > 1e-4
    assert VideoStylizer(model).effective_soft_mask_mode == "paper"


def _pass_through_mask_net_and_steep_guide(m):
    """MaskNet returns sigmoid(100 m - 50) of the input mask (exactly 0 / 1 for binary masks); the
    guide is sigmoid(8 (mean RGB - 0.5)), so a noise frame spans several depth bins in every cell."""

    def centre(layer, pairs, bias):
        kernel = np.zeros(layer.kernel.shape, np.float32)
        for (i, o), value in pairs.items():
            kernel[1, 1, i, o] = value
        layer.kernel.assign(kernel)
        layer.bias.assign(np.full(layer.bias.shape, 0.0, np.float32) + bias)

    centre(m.mask_net.m1, {(3, 0): 1.0}, 0.0)
    centre(m.mask_net.m2, {(0, 0): 1.0}, 0.0)
    centre(m.mask_net.m3, {(0, 0): 100.0}, -50.0)
    centre(m.guide.g1, {(0, 0): 1 / 3, (1, 0): 1 / 3, (2, 0): 1 / 3}, 0.0)
    centre(m.guide.g2, {(0, 0): 8.0}, -4.0)


def test_paper_mode_leaks_the_background_into_a_fully_masked_object():
    """The flaw of the printed Algorithm 1 reaches the output through the paper's two-region blend:
    in a fully masked object whose guide spans several bins, M < 1 lets the background grid in."""
    m = build_model(vgg_weights=None, low_res=64, seed=3)
    rng = np.random.default_rng(4)
    m.head.gamma.kernel.assign(rng.normal(0.0, 0.2, m.head.gamma.kernel.shape).astype(np.float32))
    _pass_through_mask_net_and_steep_guide(m)
    frames = rng.random((2, 64, 64, 3)).astype(np.float32)
    masks = np.ones((2, 64, 64), np.float32)  # the object covers every pixel
    styles = [np.tile([0.9, 0.2, 0.1], (24, 24, 1)) * rng.uniform(0.6, 1, (24, 24, 1)),
              np.tile([0.1, 0.2, 0.8], (24, 24, 1)) * rng.uniform(0.2, 0.5, (24, 24, 1))]  # fmt: skip
    styles = [s.astype(np.float32) for s in styles]
    stats = m.encode_styles(styles)
    pred = m.predict_grids(frames[:1], masks[:1, ..., None], stats, soft_mask_mode="paper")
    np.testing.assert_array_equal(pred["enhanced_masks"], 1.0)  # really fully masked
    fg_mask = pred["grid_masks"][:, 0].numpy()
    # The occupied bins of a cell share its pixel count, so M < 1 (here M averages 1 / GD).
    assert fg_mask.min() < 0.5 and fg_mask.mean() < 0.5
    g_fg, g_bg = pred["region_grids"][:, 0], pred["region_grids"][:, 1]
    only_fg = np.clip(m.render(g_fg, frames[:1]).numpy()[0], 0, 1)
    only_bg = np.clip(m.render(g_bg, frames[:1]).numpy()[0], 0, 1)
    gap = np.abs(only_fg - only_bg).mean()
    assert gap > 0.02  # the two styles' grids differ

    out = {
        mode: VideoStylizer(m, r=1, soft_mask_mode=mode).stylize(frames, masks, styles)[0]
        for mode in ("normalized", "paper")
    }
    # "normalized": the object's output is exactly the object's own grid.
    np.testing.assert_allclose(out["normalized"], only_fg, atol=1e-5)
    # "paper": the background grid leaks into the object: the output moves toward it.
    assert np.abs(out["paper"] - only_fg).max() > 0.1
    assert np.abs(out["paper"] - only_bg).mean() < 0.5 * gap


def test_keyframes_follow_ops_keyframe_schedule(model, monkeypatch):
    t_total, r = 11, 4
    frames = np.stack([np.full((H, W, 3), 10 * t, np.uint8) for t in range(t_total)])
    masks = np.zeros((t_total, H, W), np.float32)
    masks[:, 10:30, 10:40] = 1.0
    for mode, expected in (
        ("linear", ops.keyframe_indices(t_total, r)),
        ("hold", list(range(0, t_total, r))),
    ):
        stylizer = VideoStylizer(model, r=r, interpolation=mode)
        seen = []
        predict = stylizer._traced.predict

        def spy(frame, *args, predict=predict, seen=seen):
            seen.append(int(frame.numpy()[0, 0, 0, 0]) // 10)
            return predict(frame, *args)

        monkeypatch.setattr(stylizer._traced, "predict", spy)
        stylizer.stylize(frames, masks, _styles(2))
        monkeypatch.undo()
        assert seen == expected, (mode, seen)


def test_stream_end_keyframe_weights_come_from_the_schedule(model):
    # 7 frames at r = 4: keyframes 0, 4 and (end of stream) 6; frame 5 sits halfway between 4 and 6.
    frames, masks = _video(7)
    styles = _styles(2)
    out = VideoStylizer(model, r=4).stylize(frames, masks, styles)
    ref = _reference(model, frames, masks, _fixed_stats(model, styles), 4, "linear")
    np.testing.assert_allclose(out, ref, atol=1e-4)
    np.testing.assert_allclose(ops.keyframe_schedule(7, 4).weight.numpy()[5], 0.5)


def test_style_masks_through_the_stylizer(model):
    frames, masks = _video(4)
    styles = _styles(2)
    region = np.zeros(styles[0].shape[:2], np.uint8)
    region[: styles[0].shape[0] // 2] = 255  # the top half of the object's style image
    style_masks = [region, None]
    out = VideoStylizer(model, r=2).stylize(frames, masks, styles, style_masks=style_masks)
    float_styles = [np.asarray(s, np.float32) / (255.0 if s.dtype == np.uint8 else 1.0) for s in styles]  # fmt: skip
    stats = model.encode_styles(float_styles, style_masks=[region / 255.0, None])
    ref = _reference(model, frames, masks, lambda t: stats, 2, "linear")
    np.testing.assert_allclose(out, ref, atol=1e-4)
    plain = VideoStylizer(model, r=2).stylize(frames, masks, styles)
    assert np.abs(out - plain).max() > 1e-4
    # Schedules take (frame_index, styles, style_masks) triples; streams take style_masks too.
    sched = VideoStylizer(model, r=2).stylize(
        frames, masks, None, style_schedule=[(0, styles, style_masks)]
    )
    np.testing.assert_array_equal(sched, out)
    streamed = np.stack(
        list(VideoStylizer(model, r=2).stream(zip(frames, masks), styles, style_masks=style_masks))
    )
    np.testing.assert_array_equal(streamed, out)


@pytest.mark.parametrize(
    "style_masks,match",
    [
        ([np.ones((20, 30))], "1 masks for 2 styles"),
        ([np.ones((20, 31)), None], r"style_masks\[0\] has size"),
        ([np.ones((20, 30, 2)), None], r"style_masks\[0\] must be one mask"),
        ([np.full((20, 30), 2.0), None], r"style_masks\[0\] has float values"),
        ("mask.png", "style_masks must be a list"),
    ],
)
def test_bad_style_masks_raise_before_work(model, style_masks, match):
    frames, masks = _video(2)
    with pytest.raises(ValueError, match=match):
        VideoStylizer(model).stylize(frames, masks, _styles(2), style_masks=style_masks)


def test_public_pieces_reproduce_the_stream(model):
    frames, masks = _video(3)
    frames8 = (frames * 255).astype(np.uint8)
    styles = _styles(2)
    stylizer = VideoStylizer(model, r=2)
    out = stylizer.stylize(frames8, masks, styles)
    [(index, stats)] = stylizer.encode_schedule(styles)
    assert index == 0 and stats["mean_0"].shape == (1, 2, 8)
    first = stylizer.predict_keyframe(frames8[:1], masks[:1, ..., None], stats)
    second = stylizer.predict_keyframe(frames8[2:3], masks[2:3, ..., None], stats, state=first)
    np.testing.assert_array_equal(stylizer.render_frame(first["grids"], frames8[:1])[0], out[0])
    middle = stylizer.render_frame(first["grids"], frames8[1:2], second["grids"], 0.5)
    np.testing.assert_array_equal(middle[0], out[1])
    np.testing.assert_array_equal(stylizer.render_frame(second["grids"], frames8[2:3])[0], out[2])
    assert isinstance(middle, np.ndarray)  # what `stream` yields, rendered in strips or not
    # A uint8 (0/255) mask is read as 0..1, like everywhere else (not cast to 0..255).
    masks8 = np.where(masks[:1, ..., None] > 0.5, 255, 0).astype(np.uint8)
    as_uint8 = stylizer.predict_keyframe(frames8[:1], masks8, stats)
    as_float = stylizer.predict_keyframe(frames8[:1], masks8 / np.float32(255), stats)
    np.testing.assert_allclose(as_uint8["grids"], as_float["grids"], atol=1e-6)


@pytest.mark.parametrize("interpolation", ["linear", "hold"])
def test_render_in_strips_is_the_untiled_render(model, interpolation):
    # Frames above `render_strip_pixels` are rendered strip by strip (here strips of 1-3 rows of
    # an odd-sized frame, H not a multiple of the strip height) into one output; the result is
    # the untiled render (which every frame of this size gets by default), uint8 and float frames.
    frames, masks = _video(5, h=37, w=53, seed=3)
    styles = _styles(2)
    untiled = VideoStylizer(model, r=2, interpolation=interpolation)
    for video in (frames, (frames * 255).astype(np.uint8)):
        ref = untiled.stylize(video, masks, styles)
        for rows in (1, 2, 3):
            tiled = VideoStylizer(
                model, r=2, interpolation=interpolation, render_strip_pixels=rows * 53 + 7
            )
            np.testing.assert_allclose(
                tiled.stylize(video, masks, styles), ref, rtol=0, atol=1e-6, err_msg=f"{rows}"
            )
            assert tiled.tracing_counts()["render_strips_uint8"] <= 1
    counts = tiled.tracing_counts()
    assert counts["render_strips"] == 1 and counts["render_strips_uint8"] == 1, counts
    frame8 = (frames[:1] * 255).astype(np.uint8)
    grids = untiled.predict_keyframe(
        frame8, masks[:1, ..., None], untiled.encode_schedule(styles)[0][1]
    )
    out = tiled.render_frame(grids["grids"], frame8)
    assert isinstance(out, np.ndarray) and out.shape == (1, 37, 53, 3)
    np.testing.assert_allclose(out, untiled.render_frame(grids["grids"], frame8), atol=1e-6)
