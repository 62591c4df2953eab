"""Timing of a loaded model: the supplement's Table 2 layout (docs/method.md#evaluation).

Seconds per frame for each grid sub-sampling factor r (rows) and resolution (columns), split into the
low-res stream (`predict_grids`, once per keyframe, so divided by r) and the full-res render (every
frame). Both run in the model's own soft-mask mode (`LoadedModel.soft_mask_mode`), as the quality
evaluation's `VideoStylizer` does.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from absl import logging

from lvst_tf.evaluation import report
from lvst_tf.fileio import write_atomic

# The columns of the supplement's Table 2 (height x width), also our default resolutions.
DEFAULT_RESOLUTIONS = ((512, 512), (1024, 1024), (2000, 2000), (3000, 4000))
DEFAULT_RS = (1, 8)

# Supplement Table 2 (seconds per frame, one NVIDIA V100) at DEFAULT_RESOLUTIONS. None = out of memory.
PAPER_TIMING = (
    ("Ours (paper), r = 1", (0.0378, 0.0380, 0.0414, 0.0464)),
    ("Ours (paper), r = 8", (0.0048, 0.0049, 0.0052, 0.0058)),
    ("JBL (Xia et al. 2020)", (0.0058, 0.0068, 0.0117, None)),
    ("Lai et al. 2018", (0.0024, 0.0031, 0.0073, None)),
    ("LST", (0.2753, 0.8365, None, None)),
    ("PhotoWCT", (0.6366, 1.5185, None, None)),
    ("WCT2", (3.8599, 6.1375, None, None)),
)

# Peak host memory of one timing measurement, bytes per full-res pixel: measured about 70-90 on CPU
# (input frame, mask, guide, slice/apply intermediates), doubled for safety. Used to skip sizes that
# would make the Linux OOM killer end the whole process instead of raising ResourceExhaustedError.
RENDER_BYTES_PER_PIXEL = 200


def check_rs(rs: Sequence[int]) -> None:
    """ValueError unless `rs` is a non-empty list of ints >= 1."""
    if not rs or any(
        isinstance(r, bool) or not isinstance(r, (int, np.integer)) or r < 1 for r in rs
    ):
        raise ValueError(f"rs must be a non-empty list of ints >= 1 (e.g. [1, 8]), got {rs!r}.")


def device_description() -> str:
    """The device TensorFlow runs on: the GPU name(s) if any, else the CPU model and core count."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        names = []
        for gpu in gpus:
            details = tf.config.experimental.get_device_details(gpu)
            names.append(details.get("device_name", gpu.name))
        return "GPU: " + ", ".join(names)
    cpu = platform.processor() or platform.machine()
    flags = None
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                elif line.startswith("flags") and flags is None:
                    flags = line.split(":", 1)[1].split()
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    # Ratios between pieces depend on these: TensorFlow's x86 wheels run convolutions through
    # oneDNN only on CPUs with AVX-512 (and fall back to Eigen's kernels elsewhere).
    extra = ""
    if flags is not None:
        extra += f"; AVX-512: {'yes' if 'avx512f' in flags else 'no'}"
    onednn = _onednn_enabled()
    if onednn is not None:
        extra += f"; oneDNN: {'on' if onednn else 'off'}"
    return f"CPU: {cpu} ({cores} cores available{extra})"


def _onednn_enabled() -> bool | None:
    """Whether TensorFlow runs its CPU kernels through oneDNN here (None if it cannot tell)."""
    try:
        from tensorflow.python.util import _pywrap_util_port  # noqa: PLC0415
    except ImportError:
        return None
    return bool(_pywrap_util_port.IsMklEnabled())


def _proc_kb(path: str, field: str) -> int | None:
    """The `field:` line of a Linux /proc file in kB (e.g. "VmRSS" of /proc/self/status), or None."""
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def available_memory_bytes() -> int | None:
    """MemAvailable of /proc/meminfo (Linux), else None."""
    kb = _proc_kb("/proc/meminfo", "MemAvailable")
    return None if kb is None else kb * 1024


def process_memory_kb(field: str) -> int:
    """This process's memory from /proc/self/status in kB: "VmRSS" now, "VmHWM" the peak.

    Raises:
      KeyError: the field is not there (not Linux).
    """
    kb = _proc_kb("/proc/self/status", field)
    if kb is None:
        raise KeyError(field)
    return kb


def load_averages() -> tuple[float, float, float] | None:
    """The machine's 1, 5 and 15-minute load averages (other jobs inflate absolute times), or
    None where the system does not report them."""
    try:
        return os.getloadavg()
    except OSError:
        return None


@dataclasses.dataclass
class TimingResult:
    """Measured seconds; `predict[res]` per keyframe, `render[res]` per frame; None = OOM."""

    resolutions: list[tuple[int, int]]
    rs: list[int]
    predict: dict[tuple[int, int], float | None]
    render: dict[tuple[int, int], float | None]
    notes: dict[tuple[int, int], str]
    device: str
    tf_version: str
    model: str
    repeats: int

    def seconds_per_frame(self, r: int, hw: tuple[int, int]) -> float | None:
        p, q = self.predict.get(hw), self.render.get(hw)
        if p is None or q is None:
            return None
        return p / r + q


def _sync(x) -> None:
    """Waits for `x` (a tensor or a dict of tensors) to be computed (GPU execution is async)."""
    import tensorflow as tf

    if isinstance(x, dict):
        x = x["grids"] if "grids" in x else next(iter(x.values()))
    tf.reshape(x, [-1])[:1].numpy()


def _timed(fn: Callable[..., Any], args: tuple, repeats: int) -> float:
    """Median wall time of `repeats` calls `fn(*args)` after one untimed warm-up call."""
    _sync(fn(*args))  # Tracing and first allocations are not counted.
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        _sync(fn(*args))
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def timing_functions(loaded):
    """`(predict(frames, masks, stats, state), render(grids, frames))` as used at inference.

    Both call the model in its own soft-mask mode (`loaded.soft_mask_mode`). For a SavedModel they
    are its signatures; for an in-process model, `tf.function`s with fully relaxed signatures so
    every resolution reuses one trace (as `VideoStylizer` does).
    """
    import tensorflow as tf

    model = loaded.model
    mode = loaded.soft_mask_mode

    def predict_fn(frames, masks, stats, state):
        return model.predict_grids(frames, masks, stats, state=state, soft_mask_mode=mode)

    if loaded.kind == "saved_model":
        return predict_fn, model.render

    def relaxed(structure):
        return tf.nest.map_structure(
            lambda v: tf.TensorSpec([None] * v.shape.rank, v.dtype), structure
        )

    traced = {}

    def predict(frames, masks, stats, state):
        if state is None:  # The first keyframe of a clip runs eagerly (it is never timed).
            return predict_fn(frames, masks, stats, None)
        if "predict" not in traced:
            traced["predict"] = tf.function(
                predict_fn,
                input_signature=[relaxed(frames), relaxed(masks), relaxed(stats), relaxed(state)],
                autograph=False,
            )
        return traced["predict"](frames, masks, stats, state)

    def render(grids, frames):
        if "render" not in traced:
            grid_spec = tf.TensorSpec([None, *grids.shape[1:]], tf.float32)
            traced["render"] = tf.function(
                model.render, input_signature=[grid_spec, relaxed(frames)], autograph=False
            )
        return traced["render"](grids, frames)

    return predict, render


def check_resolutions(resolutions) -> None:
    if not resolutions or any(
        len(hw) != 2 or int(hw[0]) != hw[0] or int(hw[1]) != hw[1] or min(hw) < 1
        for hw in resolutions
    ):
        raise ValueError(
            f"resolutions must be a non-empty list of (height, width) positive ints, got "
            f"{resolutions!r}."
        )


def time_model(
    loaded,
    resolutions: Sequence[tuple[int, int]],
    rs: Sequence[int],
    repeats: int = 3,
    check_memory: bool = True,
) -> TimingResult:
    """Measures the low-res stream and the full-res render at each resolution.

    Inputs are resident float32 tensors (a seeded random frame and an elliptic mask; two styles whose
    statistics are computed once, as a stream caches them): decoding, host transfers and the grid
    interpolation between keyframes (a 16x16x8x12 lerp) are not counted. `predict_grids` is timed in
    the steady state (with the ST-AdaIN state of a previous keyframe).

    Args:
      loaded: a `lvst_tf.loading.LoadedModel`.
      resolutions: `(H, W)` full-res frame sizes.
      rs: grid sub-sampling factors for the rows.
      repeats: timed calls per measurement (the median is kept) after one warm-up call.
      check_memory: skip a resolution whose estimated render memory exceeds the available memory
        (reported as OOM) instead of risking the process being killed.
    Returns: a :class:`TimingResult`.
    """
    import tensorflow as tf

    check_rs(rs)
    check_resolutions(resolutions)
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}.")
    model = loaded.model
    predict, render = timing_functions(loaded)
    rng = np.random.default_rng(0)
    low = int(model.low_res)
    styles = tf.constant(rng.random((2, low, low, 3)), tf.float32)
    stats = model.encode_styles(styles)
    stats = {k: tf.convert_to_tensor(v) for k, v in stats.items()}
    result = TimingResult(
        list(resolutions),
        list(rs),
        {},
        {},
        {},
        device_description(),
        tf.__version__,
        loaded.describe(),
        repeats,
    )
    for hw in resolutions:
        h, w = hw
        available = available_memory_bytes() if check_memory else None
        need = RENDER_BYTES_PER_PIXEL * h * w
        if available is not None and need > available:
            logging.warning(
                "timing %s: skipped, needs about %.1f GB, %.1f GB available: reported as OOM.",
                report.fmt_size(hw),
                need / 1e9,
                available / 1e9,
            )
            result.predict[hw] = result.render[hw] = None
            result.notes[hw] = "skipped: estimated memory above available"
            continue
        logging.info("timing %s ...", report.fmt_size(hw))
        frames = masks = first = grids = state = None
        try:
            yy, xx = np.mgrid[0:h, 0:w]
            ellipse = ((yy - h / 2) / (0.35 * h)) ** 2 + ((xx - w / 2) / (0.3 * w)) ** 2 < 1
            frames = tf.constant(rng.random((1, h, w, 3), np.float32))
            masks = tf.constant(ellipse[None, ..., None].astype(np.float32))
            del yy, xx, ellipse
            first = predict(frames, masks, stats, None)
            state = {k: v for k, v in first.items() if k.startswith("state_")}
            grids = first["grids"]
            result.predict[hw] = _timed(predict, (frames, masks, stats, state), repeats)
            result.render[hw] = _timed(render, (grids, frames), repeats)
        except (tf.errors.ResourceExhaustedError, MemoryError) as e:
            logging.warning("timing %s: out of memory (%s).", report.fmt_size(hw), type(e).__name__)
            result.predict.setdefault(hw, None)
            result.render[hw] = None
            result.notes[hw] = f"{type(e).__name__}"
        finally:
            frames = masks = first = grids = state = None
        logging.info(
            "timing %s: predict_grids %s s, render %s s",
            report.fmt_size(hw),
            result.predict.get(hw),
            result.render.get(hw),
        )
    return result


def timing_markdown(result: TimingResult) -> str:
    return report.timing_markdown(result, DEFAULT_RESOLUTIONS, PAPER_TIMING)


def run_timing(
    loaded,
    resolutions: Sequence[tuple[int, int]] = DEFAULT_RESOLUTIONS,
    rs: Sequence[int] = DEFAULT_RS,
    output_dir: str | os.PathLike | None = None,
    repeats: int = 3,
) -> tuple[TimingResult, str]:
    """Times the model, returns `(result, markdown)`; writes `timing.csv` and `timing.md` if asked."""
    result = time_model(loaded, resolutions, rs, repeats)
    markdown = timing_markdown(result)
    if output_dir is not None:
        out = pathlib.Path(output_dir)
        write_atomic(out / "timing.csv", report.timing_csv(result))
        write_atomic(out / "timing.md", markdown)
    return result, markdown
