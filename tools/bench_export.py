r"""Benchmark: the exported SavedModel against the in-process model, as same-run ratios.

Usage:
  python tools/bench_export.py [--sizes=512x512,1024x1024,3000x4000] [--clip_size=512x512] \
      [--frames=17] [--r=8] [--repeats=3] [--impls=xla,tf] [--low_res=256]

Builds a model (random weights: timings do not depend on them), exports it once per render
implementation (`--impls`), loads each export with `tf.saved_model.load` and prints two tables:

1. Render of one frame: the in-process render `VideoStylizer` uses (`model.render_inference`, not
   clipped; `model.render` for models without it) against the SavedModel's `render` signature, at
   each size. The first call of a SavedModel at a new size
   includes its XLA compilation, shown separately.
2. An r-keyframe clip (`--frames` frames, `--r`): `VideoStylizer(model, r).stream` per frame against
   the SavedModel's `serving_default` (the whole clip in one call) and against `VideoStylizer` driving
   the exported pieces (`SavedModelAdapter`, what a streaming server does).

Times are medians of `--repeats` runs after a warm-up, measured alternately in the same process, so
the ratios hold under load even where absolute times do not. Wall-time and CPU-time ratios are both
printed (CPU time counts the work, not the waiting for a core, so it is steadier on a shared
machine). The machine load is printed. The SavedModel's times include its in-graph input
validation; the in-process render has none (VideoStylizer validates in NumPy before it).
"""

import os
import pathlib
import statistics
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags, logging  # noqa: E402

_SIZES = flags.DEFINE_list("sizes", ["512x512", "1024x1024", "3000x4000"], "Render sizes HxW.")
_CLIP_SIZE = flags.DEFINE_string("clip_size", "512x512", "Frame size HxW of the clip.")
_FRAMES = flags.DEFINE_integer("frames", 17, "Frames in the clip.")
_R = flags.DEFINE_integer("r", 8, "Keyframe every r frames.")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed runs per measurement (median).")
_IMPLS = flags.DEFINE_list("impls", ["xla", "tf"], "Render implementations to export.")
_LOW_RES = flags.DEFINE_integer("low_res", 256, "The model's low resolution (grid low_res/16).")


def _size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise app.UsageError(f"sizes: expected HxW like 512x512, got {text!r}") from None
    if h < 1 or w < 1:
        raise app.UsageError(f"sizes: expected positive HxW, got {text!r}")
    return h, w


def _once(fn, *args, **kwargs) -> tuple[float, float]:
    """(wall, CPU) seconds of one call, its tensors copied out (so the work is really done).

    CPU time (`time.process_time`, all threads) is the steadier measure when other jobs share the
    machine: it counts the work done, not the time spent waiting for a core.
    """
    import tensorflow as tf

    wall, cpu = time.perf_counter(), time.process_time()
    tf.nest.map_structure(lambda t: getattr(t, "numpy", lambda: t)(), fn(*args, **kwargs))
    return time.perf_counter() - wall, time.process_time() - cpu


def _median(samples, index: int) -> float:
    return statistics.median(s[index] for s in samples)


def _load() -> str:
    from lvst_tf.evaluation import timing  # noqa: PLC0415

    loads = timing.load_averages()
    return "load average " + (" ".join(f"{v:.1f}" for v in loads) if loads else "unknown")


def main(argv):
    del argv
    import numpy as np
    import tensorflow as tf

    from lvst_tf import export, loading, models
    from lvst_tf.inference import VideoStylizer

    logging.set_verbosity(logging.WARNING)  # TensorFlow's save-time INFO lines

    sizes = [_size(s) for s in _SIZES.value]
    clip_h, clip_w = _size(_CLIP_SIZE.value)
    repeats = _REPEATS.value
    print(f"{_load()}, {os.cpu_count()} CPUs, TensorFlow {tf.__version__}", flush=True)

    model = models.build_model(vgg_weights=None, low_res=_LOW_RES.value, seed=0)
    loading.build_variables(model)
    rng = np.random.default_rng(0)
    for variable in model.trainable_weights:  # grids that are not the identity
        variable.assign(variable + 0.02 * rng.standard_normal(variable.shape).astype(np.float32))

    loaded = {}
    with tempfile.TemporaryDirectory() as tmp:
        for impl in _IMPLS.value:
            start = time.perf_counter()
            path = export.export_saved_model(model, pathlib.Path(tmp) / impl, render_impl=impl)
            loaded[impl] = tf.saved_model.load(str(path))
            print(f"exported and loaded render_impl={impl} in {time.perf_counter() - start:.0f} s",
                  flush=True)  # fmt: skip

    # -- 1. one-frame render ---------------------------------------------------------------------
    grid_shape = [1, *model.grid_shape, 12]
    # The in-process render that VideoStylizer uses (the fused pass where the model has it).
    fused = callable(getattr(model, "render_inference", None))
    in_process = tf.function(
        lambda grids, frames: (
            model.render_inference(grids, frames, clip=False)
            if fused
            else model.render(grids, frames)
        ),
        input_signature=[
            tf.TensorSpec([None, *model.grid_shape, 12], tf.float32),
            tf.TensorSpec([None, None, None, 3], tf.float32),
        ],
        autograph=False,
    )
    reference = "model.render_inference" if fused else "model.render"
    print(f"\nRender of one frame (median seconds; in-process = {reference}; ratios = SavedModel / "
          "in-process, wall and CPU)")  # fmt: skip
    print(
        "| size | export | in-process (s) | SavedModel (s) | ratio wall | ratio CPU | first call (s) |"
    )
    print("|---|---|---|---|---|---|---|")
    for h, w in sizes:
        frames = tf.constant(rng.random((1, h, w, 3), dtype=np.float32))
        grids = tf.constant(
            np.asarray(_identity_grid(grid_shape)) + 0.05 * rng.standard_normal(grid_shape),
            tf.float32,
        )
        in_process(grids, frames)  # warm-up (XLA compile of this size)
        firsts = {
            impl: _once(sm.signatures["render"], grids=grids, frames=frames)[0]
            for impl, sm in loaded.items()
        }
        ref, times = [], {impl: [] for impl in loaded}
        for _ in range(repeats):  # alternate, so load changes hit both alike
            ref.append(_once(in_process, grids, frames))
            for impl, sm in loaded.items():
                times[impl].append(_once(sm.signatures["render"], grids=grids, frames=frames))
        for impl in loaded:
            wall, cpu = _median(times[impl], 0), _median(times[impl], 1)
            print(f"| {h}x{w} | {impl} | {_median(ref, 0):.3f} | {wall:.3f} | "
                  f"**{wall / _median(ref, 0):.2f}x** | {cpu / _median(ref, 1):.2f}x | "
                  f"{firsts[impl]:.2f} |", flush=True)  # fmt: skip

    # -- 2. a clip with grid sub-sampling -----------------------------------------------------------
    num, r = _FRAMES.value, _R.value
    frames = rng.random((num, clip_h, clip_w, 3), dtype=np.float32)
    yy, xx = np.mgrid[:clip_h, :clip_w]
    masks = np.stack(
        [((xx - 4 * t - clip_w / 2) ** 2 + (yy - clip_h / 2) ** 2 < (clip_h / 3) ** 2)
         for t in range(num)]
    ).astype(np.float32)[..., None]  # fmt: skip
    styles = rng.random((2, 256, 256, 3), dtype=np.float32)

    def stream(stylizer):
        for _ in stylizer.stream(zip(frames, masks), list(styles)):
            pass

    runs = {"in-process VideoStylizer.stream": lambda: stream(VideoStylizer(model, r=r))}
    for impl, sm in loaded.items():
        runs[f"SavedModel {impl}: serving_default (whole clip)"] = (
            lambda sm=sm: sm.signatures["serving_default"](
                frames=tf.constant(frames), masks=tf.constant(masks),
                styles=tf.constant(styles), r=tf.constant(r),
            )
        )  # fmt: skip
        adapter = export.SavedModelAdapter(sm)
        runs[f"SavedModel {impl}: VideoStylizer over the pieces"] = lambda adapter=adapter: stream(
            VideoStylizer(adapter, r=r, soft_mask_mode=adapter.soft_mask_mode)
        )
    for fn in runs.values():
        fn()  # warm-up
    times = {name: [] for name in runs}
    for _ in range(repeats):
        for name, fn in runs.items():
            times[name].append(_once(fn))
    ref = times["in-process VideoStylizer.stream"]
    print(f"\nClip of {num} frames at {clip_h}x{clip_w}, r = {r} (seconds per frame; ratios = / "
          "in-process stream, wall and CPU)")  # fmt: skip
    print("| path | s / frame | ratio wall | ratio CPU |")
    print("|---|---|---|---|")
    for name in runs:
        wall, cpu = _median(times[name], 0), _median(times[name], 1)
        print(f"| {name} | {wall / num:.4f} | **{wall / _median(ref, 0):.2f}x** | "
              f"{cpu / _median(ref, 1):.2f}x |")  # fmt: skip
    print(f"\n{_load()}")


def _identity_grid(shape):
    """An identity affine grid of `shape` `[B, GH, GW, GD, 12]` (numpy)."""
    import numpy as np

    grid = np.zeros(shape, np.float32)
    for row in range(3):
        grid[..., 4 * row + row] = 1.0
    return grid


def cli_main():
    """The command line."""
    app.run(main)


if __name__ == "__main__":
    cli_main()
