"""Per-frame time of the model's inference pieces, in the layout of the supplement's Table 2.

    python tools/bench_model.py                                  # 512^2, 1024^2, 2000^2, 3000x4000
    python tools/bench_model.py --sizes 64x96 --repeats 1 --low_res 64 --end_to_end_frames 0

For every size (H x W, batch 1) it times, in one process with the pieces interleaved per repeat so the
ratios share the machine's load (median of the repeats, seconds per frame):
  - predict: `predict_grids` on one keyframe (the low-res stream, incl. resizing the full-res frame
    and mask to low_res; steady state, i.e. with the previous keyframe's ST-AdaIN state);
  - render: the full-res render `VideoStylizer` runs (`model.render`: guide + `bilateral_slice_apply`)
    and its two parts, the guide alone and the slice/apply alone, plus the same guide weights run as
    the plain G1, G2 convolution pair (`Guide(impl="convs")`) for comparison;
  - floor: the bandwidth floor of the ops benchmark, a fused (XLA) `image * guide[..., None] + c`.
The Table 2 rows are then r = 1: predict + render, r = 8: predict / 8 + render. With
`--end_to_end_frames N` it also times `VideoStylizer.stream` over N frames at the first size for
r = 1 and r = 8 (real per-frame times of the whole pipeline, outputs clipped and copied to NumPy;
steady state: timed from the first output frame to the last, use N = 8k + 1).
The weights are random (`vgg_weights=None`): the time does not depend on them.
Only ratios measured in one run mean anything on a shared machine.
"""

from __future__ import annotations

import statistics
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
_OUTPUT = flags.DEFINE_string("output", None, "Also write the markdown tables to this file.")


def _parse_size(text):
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError:
        height = width = 0
    if height < 1 or width < 1:
        raise app.UsageError(f"--sizes takes HxW with positive ints, got {text!r}.")
    return height, width


def _time_call(fn):
    """Seconds of one synchronous call of `fn` (which returns a tensor)."""
    start = time.perf_counter()
    fn().numpy()
    return time.perf_counter() - start


def bench_size(stylizer, stats, state, height, width, repeats):
    """Times predict / render pieces / floor at one size; returns {piece: seconds per frame}."""
    import numpy as np
    import tensorflow as tf

    from lvst_tf import ops
    from lvst_tf.models.guide import Guide

    model = stylizer.model
    traced = stylizer._traced  # the very functions the stylizer runs
    rng = np.random.default_rng(0)
    frame = tf.constant(rng.random((1, height, width, 3), dtype=np.float32))
    mask = np.zeros((1, height, width, _NUM_REGIONS.value - 1), np.float32)
    mask[:, height // 4 : 3 * height // 4, width // 4 : 3 * width // 4] = 1.0
    mask = tf.constant(mask)
    grids = traced.predict(frame, mask, stats, state, stylizer.soft_mask_mode)["grids"]
    guide = tf.constant(rng.random((1, height, width), dtype=np.float32))

    # The same weights evaluated as the plain G1, G2 convolution pair, for comparison.
    convs = Guide(hidden_activation=model.guide.hidden_activation, impl="convs")
    convs.set_weights(model.guide.get_weights())
    guide_model = tf.function(lambda x: model.guide(x), autograph=False)
    guide_convs = tf.function(lambda x: convs(x), autograph=False)
    slice_apply = tf.function(ops.bilateral_slice_apply, autograph=False)
    floor = tf.function(lambda i, g: i * g[..., None] + 0.25, jit_compile=True)

    pieces = {
        "predict": lambda: traced.predict(frame, mask, stats, state, stylizer.soft_mask_mode)[
            "grids"
        ],
        "render": lambda: traced.render(grids, frame),
        "guide_model": lambda: guide_model(frame),
        "guide_convs": lambda: guide_convs(frame),
        "slice_apply": lambda: slice_apply(grids, guide, frame),
        "floor": lambda: floor(frame, guide),
    }
    for fn in pieces.values():  # warm-up: tracing, XLA compilation, first allocations
        fn().numpy()
    times = {name: [] for name in pieces}
    for _ in range(repeats):  # interleaved, so every piece sees the same machine load
        for name, fn in pieces.items():
            times[name].append(_time_call(fn))
    return {name: statistics.median(ts) for name, ts in times.items()}


def bench_end_to_end(model, styles, height, width, num_frames):
    """Seconds per frame of `VideoStylizer.stream` for r = 1 and r = 8 (after a warm-up run)."""
    import numpy as np

    from lvst_tf.inference import VideoStylizer

    rng = np.random.default_rng(1)
    frame = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    mask = np.zeros((height, width, _NUM_REGIONS.value - 1), np.uint8)
    mask[height // 4 : 3 * height // 4, width // 4 : 3 * width // 4] = 255
    result = {}
    for r in (1, 8):
        stylizer = VideoStylizer(model, r=r)
        for _ in stylizer.stream(((frame, mask) for _ in range(2)), styles):
            pass  # warm-up
        # Steady state: from the first output (styles encoded, frame 0 done) to the last, so the
        # N - 1 = 8k timed frames hold exactly k keyframes at r = 8 and N - 1 at r = 1.
        outputs = stylizer.stream(((frame, mask) for _ in range(num_frames)), styles)
        next(outputs)
        start = time.perf_counter()
        for _ in outputs:
            pass
        result[r] = (time.perf_counter() - start) / (num_frames - 1)
    return result


def format_tables(sizes, results, end_to_end, e2e_size, low_res):
    cols = [f"{h}x{w}" for h, w in sizes]
    lines = [
        f"Seconds per frame (this CPU, low_res {low_res}, median of the repeats):",
        "",
        "| | " + " | ".join(cols) + " |",
        "|---|" + "---|" * len(cols),
    ]

    def row(name, values, fmt="{:.4f}"):
        lines.append(f"| {name} | " + " | ".join(fmt.format(v) for v in values) + " |")

    r1 = [res["predict"] + res["render"] for res in results]
    r8 = [res["predict"] / 8 + res["render"] for res in results]
    row("r = 1 (predict + render)", r1)
    row("r = 8 (predict / 8 + render)", r8)
    lines += ["", "Pieces and ratios:", "", "| | " + " | ".join(cols) + " |"]
    lines.append("|---|" + "---|" * len(cols))
    for name, label in [
        ("predict", "predict_grids (keyframe)"),
        ("render", "render (guide + slice/apply)"),
        ("guide_model", "guide (model, impl auto)"),
        ("guide_convs", "guide as the plain G1, G2 convs"),
        ("slice_apply", "bilateral_slice_apply"),
        ("floor", "bandwidth floor"),
    ]:
        row(label, [res[name] for res in results])
    row("render / floor", [res["render"] / res["floor"] for res in results], "{:.1f}x")
    row(
        "plain convs / guide",
        [res["guide_convs"] / res["guide_model"] for res in results],
        "{:.2f}x",
    )
    row("r = 1 / r = 8 speed-up", [a / b for a, b in zip(r1, r8)], "{:.2f}x")
    if end_to_end:
        h, w = e2e_size
        lines += [
            "",
            f"End to end, `VideoStylizer.stream` at {h}x{w}: r = 1 {end_to_end[1]:.4f} s/frame, "
            f"r = 8 {end_to_end[8]:.4f} s/frame, speed-up {end_to_end[1] / end_to_end[8]:.2f}x.",
        ]
    return "\n".join(lines) + "\n"


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    sizes = [_parse_size(s) for s in _SIZES.value]
    if _REPEATS.value < 1:
        raise app.UsageError("--repeats must be >= 1.")
    if _NUM_REGIONS.value < 2:
        raise app.UsageError("--num_regions must be >= 2.")
    if _END_TO_END_FRAMES.value < 0 or _END_TO_END_FRAMES.value == 1:
        raise app.UsageError("--end_to_end_frames must be 0 (skip) or >= 2.")

    import numpy as np
    import tensorflow as tf

    from lvst_tf.inference import VideoStylizer
    from lvst_tf.models import build_model

    model = build_model(vgg_weights=None, low_res=_LOW_RES.value)
    rng = np.random.default_rng(2)
    styles = [rng.random((300, 400, 3), dtype=np.float32) for _ in range(_NUM_REGIONS.value)]
    stylizer = VideoStylizer(model, r=1)
    stats = stylizer._encode_schedule(styles, None)[0][1]  # encoded as the stylizer does
    # Steady-state predict: a previous keyframe's ST-AdaIN state.
    first = np.zeros((1, 64, 64, 3), np.float32)
    first_mask = np.zeros((1, 64, 64, _NUM_REGIONS.value - 1), np.float32)
    out = stylizer._traced.predict(
        tf.constant(first), tf.constant(first_mask), stats, None, stylizer.soft_mask_mode
    )
    state = {k: v for k, v in out.items() if k.startswith("state_")}

    results = []
    for height, width in sizes:
        start = time.perf_counter()
        results.append(bench_size(stylizer, stats, state, height, width, _REPEATS.value))
        logging.info("%dx%d done in %.1f s", height, width, time.perf_counter() - start)
    end_to_end = None
    if _END_TO_END_FRAMES.value:
        end_to_end = bench_end_to_end(model, styles, *sizes[0], _END_TO_END_FRAMES.value)
    text = format_tables(sizes, results, end_to_end, sizes[0], _LOW_RES.value)
    print(text)
    if _OUTPUT.value:
        write_atomic(_OUTPUT.value, text)


if __name__ == "__main__":
    app.run(main)
