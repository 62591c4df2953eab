"""Per-frame time of the model's inference pieces, in the layout of the supplement's Table 2.

    python tools/bench_model.py                                  # 512^2, 1024^2, 2000^2, 3000x4000
    python tools/bench_model.py --sizes 64x96 --repeats 1 --low_res 64 --end_to_end_frames 0

For every size (H x W, batch 1) it times, in one process with the pieces interleaved per repeat so the
ratios share the machine's load (min and median of the repeats, seconds per frame):
  - predict: `predict_grids` on one keyframe through the stylizer's traced function (the low-res
    stream, incl. resizing the full-res frame and mask to low_res; steady state, i.e. with the
    previous keyframe's ST-AdaIN state), and a plain Keras VGG-19 up to block4_conv1 on one
    low_res x low_res image (most of predict's work) for the ratio predict / VGG;
  - render: what `VideoStylizer.stream` runs per frame on a uint8 frame (`render_frame`: the fused
    inference render, cast + guide + slice/apply + clip), the unfused path it replaced (NumPy
    uint8 -> float32 cast, `model.render`, NumPy clip), the guide alone, the same guide weights as
    the plain G1, G2 convolution pair (`Guide(impl="convs")`), the guide as the render computes it
    (the XLA stencil on the uint8 frame, `Guide.fused_parts(..., stencil=True)`), and the
    slice/apply alone;
  - floor: the bandwidth floor of the ops benchmark, a fused (XLA) `image * guide[..., None] + c`.
The Table 2 rows are then r = 1: predict + render, r = 8: predict / 8 + render. With
`--end_to_end_frames N` it also times `VideoStylizer.stream` over N uint8 frames at the first size
for r = 1 and r = 8, alternating the two `--end_to_end_repeats` times (steady state: timed from the
first output frame to the last, use N = 8k + 1). With `--rss_frames N` a fresh subprocess streams N
uint8 frames of `--rss_size` at r = 8 through `stream` (strips of `--rss_strip_pixels`, default the
model's) and reports its peak resident memory (VmHWM).
The weights are random (`vgg_weights=None`): the time does not depend on them. The load average of
the machine is printed with the tables: only ratios measured in one run mean anything on a shared
machine.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time

from absl import app, flags, logging

from lvst_tf.fileio import write_atomic

_SIZES = flags.DEFINE_list(
    "sizes", ["512x512", "1024x1024", "2000x2000", "3000x4000"], "Frame sizes HxW."
)
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed calls per piece and size (after a warm-up).")
_LOW_RES = flags.DEFINE_integer("low_res", 256, "Low-res stream size of the model (paper: 256).")
_NUM_REGIONS = flags.DEFINE_integer("num_regions", 2, "K, regions including the background.")
_END_TO_END_FRAMES = flags.DEFINE_integer(
    "end_to_end_frames",
    17,
    "Frames streamed for the end-to-end r = 1 / r = 8 check (0: skip; 8k + 1 is fairest).",
)
_END_TO_END_REPEATS = flags.DEFINE_integer(
    "end_to_end_repeats", 3, "Alternating r = 1 / r = 8 stream runs of the end-to-end check."
)
_RSS_FRAMES = flags.DEFINE_integer(
    "rss_frames", 0, "Frames streamed at r = 8 for the peak-memory check (0: skip; issue: 9)."
)
_RSS_SIZE = flags.DEFINE_string("rss_size", "3000x4000", "Frame size HxW of the peak-memory check.")
_RSS_STRIP_PIXELS = flags.DEFINE_integer(
    "rss_strip_pixels",
    None,
    "`render_strip_pixels` of the peak-memory check's stylizer (default: the model's, 2 MP).",
)
_RSS_WORKER = flags.DEFINE_bool("rss_worker", False, "Internal: run the peak-memory worker.")
_OUTPUT = flags.DEFINE_string("output", None, "Also write the markdown tables to this file.")


def _parse_size(text, flag="--sizes"):
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError:
        height = width = 0
    if height < 1 or width < 1:
        raise app.UsageError(f"{flag} takes HxW with positive ints, got {text!r}.")
    return height, width


def _load():
    """The 1-minute load average (the machine's load while measuring), or None."""
    from lvst_tf.evaluation import timing  # noqa: PLC0415

    return (timing.load_averages() or (None,))[0]


def _time_call(fn):
    """Seconds of one synchronous call of `fn` (which returns a NumPy array or a tensor)."""
    start = time.perf_counter()
    out = fn()
    if hasattr(out, "numpy"):
        out.numpy()
    return time.perf_counter() - start


def _plain_vgg(low_res):
    """keras.applications.VGG19 up to block4_conv1 (no preprocessing, random weights)."""
    import keras
    import tensorflow as tf

    vgg = keras.applications.VGG19(include_top=False, weights=None, input_shape=(None, None, 3))
    trunk = keras.Model(vgg.input, vgg.get_layer("block4_conv1").output)
    image = tf.random.uniform((1, low_res, low_res, 3), 0.0, 255.0, seed=3)
    fn = tf.function(lambda x: trunk(x, training=False), autograph=False)
    return lambda: fn(image)


def bench_size(stylizer, stats, state, height, width, repeats, vgg):
    """Times predict / render pieces / floor at one size; returns {piece: [seconds, ...]}."""
    import numpy as np
    import tensorflow as tf

    from lvst_tf import ops
    from lvst_tf.models.guide import Guide

    model = stylizer.model
    rng = np.random.default_rng(0)
    frame8_np = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    frame8 = tf.constant(frame8_np[None])
    frame = tf.constant(rng.random((1, height, width, 3), dtype=np.float32))
    mask = np.zeros((1, height, width, _NUM_REGIONS.value - 1), np.float32)
    mask[:, height // 4 : 3 * height // 4, width // 4 : 3 * width // 4] = 1.0
    mask = tf.constant(mask)
    grids = stylizer.predict_keyframe(frame8, mask, stats, state)["grids"]
    guide = tf.constant(rng.random((1, height, width), dtype=np.float32))

    # The same weights evaluated as the plain G1, G2 convolution pair, for comparison.
    convs = Guide(hidden_activation=model.guide.hidden_activation, impl="convs")
    convs.set_weights(model.guide.get_weights())
    guide_model = tf.function(lambda x: model.guide(x), autograph=False)
    guide_convs = tf.function(lambda x: convs(x), autograph=False)
    # The render's form of the fused guide: the XLA stencil on the uint8 frame (as it is).
    guide_stencil = tf.function(
        lambda x: tf.sigmoid(Guide.assemble_logits(model.guide.fused_parts(x, 1 / 255, True))),
        autograph=False,
    )
    slice_apply = tf.function(ops.bilateral_slice_apply, autograph=False)
    render_plain = tf.function(lambda g, f: model.render(g, f), autograph=False)
    floor = tf.function(lambda i, g: i * g[..., None] + 0.25, jit_compile=True)

    def unfused():  # the stream's render before the fused pass: NumPy cast, render, NumPy clip
        as_float = frame8_np.astype(np.float32) * np.float32(1.0 / 255.0)
        out = render_plain(grids, tf.convert_to_tensor(as_float[None])).numpy()[0]
        np.clip(out, 0.0, 1.0, out=out)
        return out

    pieces = {
        "predict": lambda: stylizer.predict_keyframe(frame8, mask, stats, state)["grids"],
        "vgg": vgg,
        "render": lambda: stylizer.render_frame(grids, frame8),
        "render_unfused": unfused,
        "guide_model": lambda: guide_model(frame),
        "guide_convs": lambda: guide_convs(frame),
        "guide_stencil": lambda: guide_stencil(frame8),
        "slice_apply": lambda: slice_apply(grids, guide, frame),
        "floor": lambda: floor(frame, guide),
    }
    for fn in pieces.values():  # warm-up: tracing, XLA compilation, first allocations
        _time_call(fn)
    times = {name: [] for name in pieces}
    for _ in range(repeats):  # interleaved, so every piece sees the same machine load
        for name, fn in pieces.items():
            times[name].append(_time_call(fn))
    return times


def bench_end_to_end(model, styles, height, width, num_frames, repeats):
    """Seconds per frame of `VideoStylizer.stream` for r = 1 and r = 8, alternating the two."""
    import numpy as np

    from lvst_tf.inference import VideoStylizer

    rng = np.random.default_rng(1)
    frame = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    mask = np.zeros((height, width, _NUM_REGIONS.value - 1), np.uint8)
    mask[height // 4 : 3 * height // 4, width // 4 : 3 * width // 4] = 255
    stylizers = {r: VideoStylizer(model, r=r) for r in (1, 8)}
    for stylizer in stylizers.values():
        for _ in stylizer.stream(((frame, mask) for _ in range(2)), styles):
            pass  # warm-up
    result = {1: [], 8: []}
    for _ in range(repeats):
        for r, stylizer in stylizers.items():
            # Steady state: from the first output (styles encoded, frame 0 done) to the last, so
            # the N - 1 = 8k timed frames hold exactly k keyframes at r = 8 and N - 1 at r = 1.
            outputs = stylizer.stream(((frame, mask) for _ in range(num_frames)), styles)
            next(outputs)
            start = time.perf_counter()
            for _ in outputs:
                pass
            result[r].append((time.perf_counter() - start) / (num_frames - 1))
    return result


def rss_worker():
    """Streams `--rss_frames` uint8 frames at r = 8; prints peak RSS (MB) as JSON."""
    import numpy as np

    from lvst_tf.evaluation.timing import process_memory_kb
    from lvst_tf.inference import VideoStylizer
    from lvst_tf.models import build_model

    height, width = _parse_size(_RSS_SIZE.value, "--rss_size")
    model = build_model(vgg_weights=None, low_res=_LOW_RES.value)
    rng = np.random.default_rng(2)
    styles = [rng.random((300, 400, 3), dtype=np.float32) for _ in range(_NUM_REGIONS.value)]
    base = process_memory_kb("VmRSS")

    def frames():  # a reader's frames: a new uint8 array each, as a video decoder hands them out
        for t in range(_RSS_FRAMES.value):
            frame = np.full((height, width, 3), 17 * t % 256, np.uint8)
            frame[::7] = 200
            mask = np.zeros((height, width, _NUM_REGIONS.value - 1), np.uint8)
            mask[height // 4 : 3 * height // 4, width // 4 : 3 * width // 4] = 255
            yield frame, mask

    count = 0
    stylizer = VideoStylizer(model, r=8, render_strip_pixels=_RSS_STRIP_PIXELS.value)
    for out in stylizer.stream(frames(), styles):
        assert out.shape == (height, width, 3)
        count += 1
    print(
        json.dumps(
            {"peak_mb": process_memory_kb("VmHWM") / 1024.0, "base_mb": base / 1024.0, "n": count}
        )
    )


def _run_rss():
    cmd = [sys.executable, __file__, "--rss_worker", f"--rss_frames={_RSS_FRAMES.value}"]
    cmd += [f"--rss_size={_RSS_SIZE.value}", f"--low_res={_LOW_RES.value}"]
    cmd += [f"--num_regions={_NUM_REGIONS.value}"]
    if _RSS_STRIP_PIXELS.value is not None:
        cmd += [f"--rss_strip_pixels={_RSS_STRIP_PIXELS.value}"]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"peak-memory worker failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _stat(values, how):
    return min(values) if how == "min" else statistics.median(values)


def format_tables(sizes, results, end_to_end, e2e_size, low_res, loads, rss, repeats):
    from lvst_tf.evaluation import timing  # noqa: PLC0415

    cols = [f"{h}x{w}" for h, w in sizes]
    load = ", ".join("-" if v is None else f"{v:.1f}" for v in loads)
    lines = [
        f"Machine: {timing.device_description()}; 1-minute load average at the start, after the "
        f"per-size tables and at the end: {load}. Random weights, low_res {low_res}, "
        f"K = {_NUM_REGIONS.value}, {repeats} interleaved repeats.",
        "",
        "Seconds per frame (median of the repeats):",
        "",
        "| | " + " | ".join(cols) + " |",
        "|---|" + "---|" * len(cols),
    ]

    def row(name, values, fmt="{:.4f}"):
        lines.append(f"| {name} | " + " | ".join(fmt.format(v) for v in values) + " |")

    med = [{k: statistics.median(v) for k, v in res.items()} for res in results]
    r1 = [m["predict"] + m["render"] for m in med]
    r8 = [m["predict"] / 8 + m["render"] for m in med]
    row("r = 1 (predict + render)", r1)
    row("r = 8 (predict / 8 + render)", r8)
    lines += ["", "Pieces (median seconds) and ratios (min / median of the per-repeat ratios):"]
    lines += ["", "| | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
    for name, label in [
        ("predict", "predict_grids (keyframe)"),
        ("vgg", "plain Keras VGG-19 to block4_conv1 (low_res)"),
        ("render", "render in `stream` (uint8, fused)"),
        ("render_unfused", "render unfused (NumPy cast, render, NumPy clip)"),
        ("guide_model", "guide (model, impl auto)"),
        ("guide_convs", "guide as the plain G1, G2 convs"),
        ("guide_stencil", "guide as the render's XLA stencil (uint8)"),
        ("slice_apply", "bilateral_slice_apply"),
        ("floor", "bandwidth floor"),
    ]:
        row(label, [m[name] for m in med])

    def ratio_row(label, num, den):
        cells = []
        for res in results:
            ratios = [a / b for a, b in zip(res[num], res[den])]
            cells.append(f"{min(ratios):.2f}x / {statistics.median(ratios):.2f}x")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")

    ratio_row("predict / plain VGG", "predict", "vgg")
    ratio_row("render in `stream` / floor", "render", "floor")
    ratio_row("unfused / fused render", "render_unfused", "render")
    ratio_row("plain convs / guide", "guide_convs", "guide_model")
    ratio_row("guide / stencil guide", "guide_model", "guide_stencil")
    row("r = 1 / r = 8 speed-up (pieces)", [a / b for a, b in zip(r1, r8)], "{:.2f}x")
    if end_to_end:
        h, w = e2e_size
        ratios = [a / b for a, b in zip(end_to_end[1], end_to_end[8])]
        lines += [
            "",
            f"End to end, `VideoStylizer.stream` at {h}x{w} (uint8 frames, "
            f"{len(ratios)} alternating runs): r = 1 "
            f"{_stat(end_to_end[1], 'min'):.4f} / {_stat(end_to_end[1], 'median'):.4f} s/frame "
            f"(min / median), r = 8 {_stat(end_to_end[8], 'min'):.4f} / "
            f"{_stat(end_to_end[8], 'median'):.4f} s/frame; speed-up per run "
            + ", ".join(f"{v:.2f}x" for v in ratios)
            + f" (min {min(ratios):.2f}x, median {statistics.median(ratios):.2f}x).",
        ]
    if rss:
        lines += [
            "",
            f"Peak RSS, `stream` of {rss['n']} uint8 frames of {_RSS_SIZE.value} at r = 8 "
            f"(render_strip_pixels={_RSS_STRIP_PIXELS.value or 'default'}; fresh process, "
            f"VmHWM): {rss['peak_mb']:.0f} MB ({rss['base_mb']:.0f} MB after building "
            "the model).",
        ]
    return "\n".join(lines) + "\n"


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    if _RSS_WORKER.value:
        rss_worker()
        return
    sizes = [_parse_size(s) for s in _SIZES.value]
    _parse_size(_RSS_SIZE.value, "--rss_size")
    if _REPEATS.value < 1:
        raise app.UsageError("--repeats must be >= 1.")
    if _RSS_STRIP_PIXELS.value is not None and _RSS_STRIP_PIXELS.value < 1:
        raise app.UsageError("--rss_strip_pixels must be >= 1.")
    if _NUM_REGIONS.value < 2:
        raise app.UsageError("--num_regions must be >= 2.")
    if _END_TO_END_FRAMES.value < 0 or _END_TO_END_FRAMES.value == 1:
        raise app.UsageError("--end_to_end_frames must be 0 (skip) or >= 2.")
    if _END_TO_END_REPEATS.value < 1:
        raise app.UsageError("--end_to_end_repeats must be >= 1.")
    if _RSS_FRAMES.value < 0:
        raise app.UsageError("--rss_frames must be >= 0.")

    import numpy as np

    from lvst_tf.inference import VideoStylizer
    from lvst_tf.models import build_model

    loads = [_load()]
    model = build_model(vgg_weights=None, low_res=_LOW_RES.value)
    rng = np.random.default_rng(2)
    styles = [rng.random((300, 400, 3), dtype=np.float32) for _ in range(_NUM_REGIONS.value)]
    stylizer = VideoStylizer(model, r=1)
    [(_, stats)] = stylizer.encode_schedule(styles)  # encoded as the stylizer does
    # Steady-state predict: a previous keyframe's ST-AdaIN state.
    first = np.zeros((1, 64, 64, 3), np.uint8)
    first_mask = np.zeros((1, 64, 64, _NUM_REGIONS.value - 1), np.float32)
    state = stylizer.predict_keyframe(first, first_mask, stats)
    vgg = _plain_vgg(_LOW_RES.value)

    results = []
    for height, width in sizes:
        start = time.perf_counter()
        results.append(bench_size(stylizer, stats, state, height, width, _REPEATS.value, vgg))
        logging.info("%dx%d done in %.1f s", height, width, time.perf_counter() - start)
    loads.append(_load())
    end_to_end = None
    if _END_TO_END_FRAMES.value:
        end_to_end = bench_end_to_end(
            model, styles, *sizes[0], _END_TO_END_FRAMES.value, _END_TO_END_REPEATS.value
        )
    rss = _run_rss() if _RSS_FRAMES.value else None
    loads.append(_load())
    text = format_tables(
        sizes, results, end_to_end, sizes[0], _LOW_RES.value, loads, rss, _REPEATS.value
    )
    print(text)
    if _OUTPUT.value:
        write_atomic(_OUTPUT.value, text)


def cli_main():
    """The command line."""
    app.run(main)


if __name__ == "__main__":
    cli_main()
