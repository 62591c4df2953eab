"""The evaluation library behind `tools/eval.py` (METHOD §9): the timing table and the quality table.

- Timing (:func:`run_timing`): the supplement's Table 2 layout, seconds per frame for each grid
  sub-sampling factor r (rows) and resolution (columns), split into the low-res stream
  (`predict_grids`, once per keyframe, so divided by r) and the full-res render (every frame).
- Quality (:func:`run_quality`): per video and mean over videos, for our model (one row per r) and the
  training-free baselines (the input itself, per-frame per-region Reinhard colour transfer): warping
  error and its floor, per-region style distance (Lab; VGG when weights are given), leakage and
  gradient SSIM (definitions in `lvst_tf.metrics` and docs/evaluation.md). Writes CSV, markdown and
  a contact sheet PNG, each atomically.

The model is either an in-process `LocalizedStyleModel` (from a training workdir,
`lvst_tf.export.load_model_from_workdir`) or a loaded SavedModel wrapped by
`lvst_tf.export.SavedModelAdapter`; both expose `encode_styles`, `predict_grids` and `render`.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
import os
import pathlib
import platform
import re
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import cv2
import numpy as np
from absl import logging

from lvst_tf import metrics
from lvst_tf.fileio import write_atomic

DEFAULT_RESOLUTIONS = ((512, 512), (1024, 1024), (2000, 2000), (3000, 4000))
DEFAULT_RS = (1, 8)
# Preferred sample styles for the quality table (foreground, background): orange vs blue, so that
# leakage between the regions is visible. Falls back to the first two sample styles.
DEFAULT_STYLE_NAMES = ("FallenLeaf", "DarkestHour")

# Supplement Table 2 (seconds per frame, one NVIDIA V100), METHOD §9. None = out of memory.
PAPER_RESOLUTIONS = ((512, 512), (1024, 1024), (2000, 2000), (3000, 4000))
PAPER_TIMING = (
    ("Ours (paper), r = 1", (0.0378, 0.0380, 0.0414, 0.0464)),
    ("Ours (paper), r = 8", (0.0048, 0.0049, 0.0052, 0.0058)),
    ("JBL (Xia et al. 2020)", (0.0058, 0.0068, 0.0117, None)),
    ("Lai et al. 2018", (0.0024, 0.0031, 0.0073, None)),
    ("LST", (0.2753, 0.8365, None, None)),
    ("PhotoWCT", (0.6366, 1.5185, None, None)),
    ("WCT2", (3.8599, 6.1375, None, None)),
)

QUALITY_COLUMNS = (
    "warp_error",
    "warp_error_input",
    "style_lab_fg",
    "style_lab_bg",
    "leak_fg_into_bg",
    "leak_bg_into_fg",
    "leak_mean",
    "grad_ssim",
)
VGG_COLUMNS = ("style_vgg_fg", "style_vgg_bg")


# ---------------------------------------------------------------------------------------------------
# Flag parsing helpers (shared with tools/eval.py).


def parse_resolutions(text: str, name: str = "resolutions") -> list[tuple[int, int]]:
    """`"512x512,3000x4000"` -> `[(512, 512), (3000, 4000)]` (height x width)."""
    out = []
    for item in str(text).split(","):
        item = item.strip()
        match = re.fullmatch(r"(\d+)[xX](\d+)", item)
        if not match or int(match.group(1)) < 1 or int(match.group(2)) < 1:
            raise ValueError(
                f"{name} must be a comma list of HxW sizes such as '512x512,3000x4000', got "
                f"{text!r} (bad item {item!r})."
            )
        out.append((int(match.group(1)), int(match.group(2))))
    return out


def parse_int_list(text: str, name: str = "r", minimum: int = 1) -> list[int]:
    """`"1,8"` -> `[1, 8]`; every value an int >= minimum."""
    out = []
    for item in str(text).split(","):
        item = item.strip()
        if not re.fullmatch(r"\d+", item) or int(item) < minimum:
            raise ValueError(
                f"{name} must be a comma list of integers >= {minimum} such as '1,8', got {text!r}."
            )
        out.append(int(item))
    return out


def _check_rs(rs: Sequence[int]) -> None:
    if not rs or any(
        isinstance(r, bool) or not isinstance(r, (int, np.integer)) or r < 1 for r in rs
    ):
        raise ValueError(f"rs must be a non-empty list of ints >= 1 (e.g. [1, 8]), got {rs!r}.")


def _fmt_size(hw: tuple[int, int]) -> str:
    return f"{hw[0]}x{hw[1]}"


# ---------------------------------------------------------------------------------------------------
# Loading the model.


@dataclasses.dataclass
class LoadedModel:
    """The model to evaluate and where it came from.

    Attributes:
      model: an object with `encode_styles`, `predict_grids`, `render`, `low_res`, `grid_shape`.
      kind: "workdir" (in-process Keras model) or "saved_model" (`SavedModelAdapter`).
      source: the path it was loaded from.
      vgg_weights: the VGG-19 weights the model was configured with (None = random), when known.
    """

    model: Any
    kind: str
    source: str
    vgg_weights: str | None = None
    _stylizers: dict = dataclasses.field(default_factory=dict, repr=False)

    def stylizer(self, r: int):
        """A `VideoStylizer(model, r)` kept for reuse (its traced functions take any frame size)."""
        if r not in self._stylizers:
            from lvst_tf.inference import VideoStylizer

            self._stylizers[r] = VideoStylizer(self.model, r=r)
        return self._stylizers[r]

    def describe(self) -> str:
        grid = "x".join(str(d) for d in self.model.grid_shape)
        vgg = "unknown" if self.kind == "saved_model" else (self.vgg_weights or "random (None)")
        return (
            f"{self.kind} {self.source} (low_res {self.model.low_res}, grid {grid}, "
            f"VGG-19 weights: {vgg})"
        )


def _configured_vgg_weights(workdir: pathlib.Path) -> str | None:
    """`build_model.vgg_weights` as written in the workdir's operative config (None if absent)."""
    config = workdir / "operative_config.gin"
    if not config.is_file():
        return None
    match = re.search(r"^build_model\.vgg_weights\s*=\s*(.+)$", config.read_text(), re.MULTILINE)
    if not match:
        return None  # A default that gin did not record is "imagenet"; not knowable offline.
    value = match.group(1).strip().strip("'\"")
    return None if value == "None" else value


def load_model(
    saved_model: str | None = None, workdir: str | None = None, checkpoint: str | None = None
) -> LoadedModel:
    """Loads the model from exactly one of `saved_model` or `workdir` (with optional `checkpoint`)."""
    if bool(saved_model) == bool(workdir):
        raise ValueError(
            "Give exactly one of saved_model (a folder written by tools/export.py) or workdir (a "
            f"training workdir); got saved_model={saved_model!r}, workdir={workdir!r}."
        )
    if checkpoint and not workdir:
        raise ValueError("checkpoint only applies with workdir.")
    from lvst_tf import export

    if saved_model:
        adapter = export.SavedModelAdapter.from_path(saved_model)
        return LoadedModel(adapter, "saved_model", str(saved_model))
    model = export.load_model_from_workdir(workdir, checkpoint)
    return LoadedModel(
        model, "workdir", str(workdir), vgg_weights=_configured_vgg_weights(pathlib.Path(workdir))
    )


# ---------------------------------------------------------------------------------------------------
# Small utilities.


def _markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


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
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"CPU: {cpu} ({cores} cores available)"


def _available_memory_bytes() -> int | None:
    """MemAvailable of /proc/meminfo (Linux), else None."""
    try:
        with open("/proc/meminfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


# ---------------------------------------------------------------------------------------------------
# Timing.

# Peak host memory of one timing measurement, bytes per full-res pixel: measured about 70-90 on CPU
# (input frame, mask, guide, slice/apply intermediates), doubled for safety. Used to skip sizes that
# would make the Linux OOM killer end the whole process instead of raising ResourceExhaustedError.
RENDER_BYTES_PER_PIXEL = 200


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


def _timing_functions(loaded: LoadedModel):
    """`(predict(frames, masks, stats, state), render(grids, frames))` as used at inference."""
    import tensorflow as tf

    model = loaded.model
    if loaded.kind == "saved_model":
        return model.predict_grids, model.render

    # The render VideoStylizer runs: the model's own (its guide picks the fastest exact form).
    def render_fn(grids, frames):
        return model.render(grids, frames)

    def predict_fn(frames, masks, stats, state):
        return model.predict_grids(frames, masks, stats, state=state)

    # Fully relaxed signatures, so every resolution reuses one trace (as VideoStylizer does).
    def relaxed(structure):
        return tf.nest.map_structure(
            lambda v: tf.TensorSpec([None] * v.shape.rank, v.dtype), structure
        )

    traced = {}

    def predict(frames, masks, stats, state):
        if state is None:  # The first keyframe of a clip runs eagerly (it is never timed).
            return model.predict_grids(frames, masks, stats, state=None)
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
                render_fn, input_signature=[grid_spec, relaxed(frames)], autograph=False
            )
        return traced["render"](grids, frames)

    return predict, render


def time_model(
    loaded: LoadedModel,
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
      loaded: from :func:`load_model`.
      resolutions: `(H, W)` full-res frame sizes.
      rs: grid sub-sampling factors for the rows.
      repeats: timed calls per measurement (the median is kept) after one warm-up call.
      check_memory: skip a resolution whose estimated render memory exceeds the available memory
        (reported as OOM) instead of risking the process being killed.
    Returns: a :class:`TimingResult`.
    """
    import tensorflow as tf

    _check_rs(rs)
    if not resolutions or any(
        len(hw) != 2 or int(hw[0]) != hw[0] or int(hw[1]) != hw[1] or min(hw) < 1
        for hw in resolutions
    ):
        raise ValueError(
            f"resolutions must be a non-empty list of (height, width) positive ints, got "
            f"{resolutions!r}."
        )
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}.")
    model = loaded.model
    predict, render = _timing_functions(loaded)
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
        available = _available_memory_bytes() if check_memory else None
        need = RENDER_BYTES_PER_PIXEL * h * w
        if available is not None and need > available:
            logging.warning(
                "timing %s: skipped, needs about %.1f GB, %.1f GB available: reported as OOM.",
                _fmt_size(hw),
                need / 1e9,
                available / 1e9,
            )
            result.predict[hw] = result.render[hw] = None
            result.notes[hw] = "skipped: estimated memory above available"
            continue
        logging.info("timing %s ...", _fmt_size(hw))
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
            logging.warning("timing %s: out of memory (%s).", _fmt_size(hw), type(e).__name__)
            result.predict.setdefault(hw, None)
            result.render[hw] = None
            result.notes[hw] = f"{type(e).__name__}"
        finally:
            frames = masks = first = grids = state = None
        logging.info(
            "timing %s: predict_grids %s s, render %s s",
            _fmt_size(hw),
            result.predict.get(hw),
            result.render.get(hw),
        )
    return result


def _cell(value: float | None) -> str:
    return "OOM" if value is None else f"{value:.4f}"


def timing_markdown(result: TimingResult) -> str:
    """The timing tables in markdown: ours (Table 2 layout), the split, and the paper's numbers."""
    cols = [_fmt_size(hw) for hw in result.resolutions]
    lines = [
        "## Timing: seconds per frame (supplement Table 2 layout)",
        "",
        f"- device: {result.device}",
        f"- TensorFlow {result.tf_version}",
        f"- model: {result.model}",
        f"- median of {result.repeats} timed calls after a warm-up; seconds per frame = "
        "low-res stream per keyframe / r + full-res render",
        "",
        _markdown_table(
            ["r"] + cols,
            [
                [f"r = {r}"] + [_cell(result.seconds_per_frame(r, hw)) for hw in result.resolutions]
                for r in result.rs
            ],
        ),
        "",
        "### Split: low-res stream (`predict_grids`, per keyframe) and full-res render (per frame)",
        "",
        _markdown_table(
            ["part"] + cols,
            [
                ["low-res stream, per keyframe"]
                + [_cell(result.predict.get(hw)) for hw in result.resolutions]
            ]
            + [
                [f"low-res stream / r, r = {r}"]
                + [
                    _cell(None if result.predict.get(hw) is None else result.predict[hw] / r)
                    for hw in result.resolutions
                ]
                for r in result.rs
                if r > 1
            ]
            + [
                ["full-res render, per frame"]
                + [_cell(result.render.get(hw)) for hw in result.resolutions]
            ],
        ),
    ]
    notes = [f"- {_fmt_size(hw)}: {note}" for hw, note in result.notes.items()]
    if notes:
        lines += ["", "OOM notes:", *notes]
    lines += [
        "",
        "### For reference: the paper's numbers (supplement Table 2, one NVIDIA V100; NOT measured here)",
        "",
        _markdown_table(
            ["method"] + [_fmt_size(hw) for hw in PAPER_RESOLUTIONS],
            [[name] + [_cell(v) for v in values] for name, values in PAPER_TIMING],
        ),
    ]
    return "\n".join(lines) + "\n"


def timing_csv(result: TimingResult) -> str:
    """One row per (r, resolution): seconds per frame and the split; OOM rows have empty numbers."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(
        [
            "r",
            "resolution",
            "height",
            "width",
            "seconds_per_frame",
            "lowres_stream_per_keyframe_s",
            "render_per_frame_s",
            "status",
            "device",
            "tf_version",
        ]
    )
    for r in result.rs:
        for hw in result.resolutions:
            spf = result.seconds_per_frame(r, hw)
            p, q = result.predict.get(hw), result.render.get(hw)
            writer.writerow(
                [
                    r,
                    _fmt_size(hw),
                    hw[0],
                    hw[1],
                    "" if spf is None else f"{spf:.6f}",
                    "" if p is None else f"{p:.6f}",
                    "" if q is None else f"{q:.6f}",
                    "ok" if spf is not None else "OOM",
                    result.device,
                    result.tf_version,
                ]
            )
    return buf.getvalue()


def run_timing(
    loaded: LoadedModel,
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
        write_atomic(out / "timing.csv", timing_csv(result))
        write_atomic(out / "timing.md", markdown)
    return result, markdown


# ---------------------------------------------------------------------------------------------------
# Quality.


@dataclasses.dataclass
class Video:
    """A video to evaluate: `frames [T, H, W, 3]` uint8, `masks [T, H, W, 1]` float32 in [0, 1]."""

    name: str
    frames: np.ndarray
    masks: np.ndarray


def load_videos(
    data: str | os.PathLike | None = None,
    split: str = "val",
    max_frames: int | None = None,
    max_videos: int | None = None,
    resolution: str = "480p",
) -> list[Video]:
    """Videos with foreground masks (the union of the instances) from a DAVIS folder or a video folder.

    Args:
      data: a DAVIS-layout folder (holding `JPEGImages/`; `split` names the split file) or a
        `VideoFolder` (videos or frame folders with `<name>_masks/` beside them). None: the shipped
        samples (`lvst_tf.data.samples_root() / "davis"`).
      split: the DAVIS split ("val" by default).
      max_frames: keep the first `max_frames` frames of each video (None: all).
      max_videos: keep the first `max_videos` videos (None: all).
      resolution: DAVIS resolution folder ("480p" or "Full-Resolution").
    """
    from lvst_tf import data as data_lib

    if max_frames is not None and max_frames < 2:
        raise ValueError(
            f"max_frames must be >= 2 (the warping error needs pairs), got {max_frames}."
        )
    if max_videos is not None and max_videos < 1:
        raise ValueError(f"max_videos must be >= 1, got {max_videos}.")
    root = pathlib.Path(data) if data else data_lib.sample_davis_dir()
    if not root.is_dir():
        raise ValueError(f"data: {str(root)!r} is not a folder (a DAVIS folder or a video folder).")
    if (root / "JPEGImages").is_dir():
        source = data_lib.DavisFolder(root, split=split, resolution=resolution)
    else:
        source = data_lib.VideoFolder(root)
    count = len(source) if max_videos is None else min(len(source), max_videos)
    videos = []
    for index in range(count):
        total = source.num_frames(index)
        length = total if max_frames is None else min(total, max_frames)
        if length < 2:
            logging.warning("video %s: fewer than 2 frames, skipped.", source.names[index])
            continue
        frames, instances = source.load_clip(index, 0, length)
        masks = (instances > 0).astype(np.float32)[..., None]
        videos.append(Video(source.names[index], frames, masks))
    if not videos:
        raise ValueError(f"data: no video with at least 2 frames in {str(root)!r}.")
    return videos


def default_style_paths() -> list[pathlib.Path]:
    """The shipped sample styles used by default: (foreground, background)."""
    from lvst_tf import data as data_lib

    paths = data_lib.sample_style_paths()
    by_stem = {p.stem: p for p in paths}
    if all(name in by_stem for name in DEFAULT_STYLE_NAMES):
        return [by_stem[name] for name in DEFAULT_STYLE_NAMES]
    if len(paths) < 2:
        raise ValueError(
            "styles: no --styles given and the shipped samples hold fewer than two style images "
            f"({data_lib.samples_root() / 'styles'}); run tools/make_samples.py or pass --styles."
        )
    return list(paths[:2])


def load_styles(paths: Sequence[str | os.PathLike] | None) -> tuple[list[str], list[np.ndarray]]:
    """Reads style images (uint8 RGB); None -> :func:`default_style_paths`. Returns names, images."""
    from lvst_tf.data import image_io

    paths = default_style_paths() if not paths else [pathlib.Path(p) for p in paths]
    if len(paths) < 2:
        raise ValueError(
            f"styles must name at least two images (foreground(s), then background), got {len(paths)}."
        )
    images = [image_io.read_image(p) for p in paths]
    return [p.stem for p in paths], images


def _evaluate_output(
    video: Video,
    output: np.ndarray,
    styles: list[np.ndarray],
    flow: np.ndarray,
    valid: np.ndarray,
    floor: float,
    encoder: Callable | None,
    vgg_size: int,
) -> dict[str, float]:
    """All metrics of one method's output on one video (means over frames)."""
    frames = video.frames
    lab = metrics.style_distance(output, video.masks, styles)
    leak = metrics.leakage(frames, output, video.masks, styles)["matrix"]
    row = {
        "warp_error": metrics.warping_error(output, flow, valid),
        "warp_error_input": floor,
        "style_lab_fg": float(metrics.nanmean(lab[:, 0])),
        "style_lab_bg": float(metrics.nanmean(lab[:, -1])),
        "leak_fg_into_bg": float(metrics.nanmean(leak[:, -1, 0])),
        "leak_bg_into_fg": float(metrics.nanmean(leak[:, 0, -1])),
        "leak_mean": float(metrics.nanmean(leak[:, ~np.eye(leak.shape[1], dtype=bool)])),
        "grad_ssim": float(np.mean(metrics.gradient_ssim(output, frames))),
    }
    if encoder is not None:
        vgg = metrics.feature_style_distance(output, video.masks, styles, encoder, size=vgg_size)
        row["style_vgg_fg"] = float(metrics.nanmean(vgg[:, 0]))
        row["style_vgg_bg"] = float(metrics.nanmean(vgg[:, -1]))
    return row


def _tile(image: np.ndarray, height: int) -> np.ndarray:
    h, w = image.shape[:2]
    width = max(1, round(w * height / h))
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)


def contact_sheet(
    rows: Sequence[tuple[str, Sequence[np.ndarray]]], labels: Sequence[str], tile_height: int = 160
) -> np.ndarray:
    """A grid PNG image: one row per video, one column per label, with a text header.

    Args:
      rows: `(video name, [images [H, W, 3] uint8 RGB, one per column])`.
      labels: column titles.
    Returns: `[H, W, 3]` uint8 RGB.
    """
    font = cv2.FONT_HERSHEY_SIMPLEX
    pad = 4
    header_h = 24
    built = []
    for name, images in rows:
        tiles = [_tile(img, tile_height) for img in images]
        row = np.concatenate(
            [np.pad(t, ((0, 0), (0, pad), (0, 0)), constant_values=255) for t in tiles], axis=1
        )
        label = np.full((18, row.shape[1], 3), 255, np.uint8)
        cv2.putText(label, name, (2, 13), font, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
        built.append((np.concatenate([label, row], axis=0), [t.shape[1] for t in tiles]))
    width = max(r.shape[1] for r, _ in built)
    header = np.full((header_h, width, 3), 255, np.uint8)
    x = 0
    for label, tile_w in zip(labels, built[0][1]):
        cv2.putText(header, label, (x + 2, 17), font, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
        x += tile_w + pad
    parts = [header] + [
        np.pad(r, ((0, pad), (0, width - r.shape[1]), (0, 0)), constant_values=255)
        for r, _ in built
    ]
    return np.concatenate(parts, axis=0)


def _format_value(value: float, column: str = "") -> str:
    if value is None or math.isnan(value):
        return "n/a"
    if column.startswith("warp_error"):
        return f"{value:.3e}"  # [0, 1]-scale squared errors: small numbers
    if column == "grad_ssim":
        return f"{value:.4f}"
    return f"{0.0 if abs(value) < 0.005 else value:.2f}"  # Lab / feature units; no "-0.00"


def quality_markdown(rows: list[dict], columns: Sequence[str], header_lines: Sequence[str]) -> str:
    """Per-video and mean tables."""
    methods = list(dict.fromkeys(r["method"] for r in rows))
    lines = ["## Quality (METHOD §9; definitions in docs/evaluation.md)", "", *header_lines, ""]
    lines += ["### Mean over videos", ""]
    mean_rows = [r for r in rows if r["video"] == "MEAN"]
    lines.append(
        _markdown_table(
            ["method", *columns],
            [[r["method"]] + [_format_value(r[c], c) for c in columns] for r in mean_rows],
        )
    )
    lines += ["", "### Per video", ""]
    per_video = [r for r in rows if r["video"] != "MEAN"]
    per_video.sort(key=lambda r: (r["video"], methods.index(r["method"])))
    lines.append(
        _markdown_table(
            ["video", "method", *columns],
            [
                [r["video"], r["method"]] + [_format_value(r[c], c) for c in columns]
                for r in per_video
            ],
        )
    )
    return "\n".join(lines) + "\n"


def quality_csv(rows: list[dict], columns: Sequence[str]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["video", "method", "frames", *columns])
    for r in rows:
        writer.writerow(
            [r["video"], r["method"], r["frames"]]
            + ["" if math.isnan(r[c]) else f"{r[c]:.6g}" for c in columns]
        )
    return buf.getvalue()


def _metric_encoder(loaded: LoadedModel | None, vgg_weights: str | None):
    """The VGG-19 used for the feature style distance, or None (see :func:`run_quality`)."""
    if vgg_weights is not None and str(vgg_weights).lower() == "none":
        return None
    if vgg_weights:
        from lvst_tf.models import VGGEncoder

        return VGGEncoder(vgg_weights, name="metric_vgg")
    if loaded is not None and loaded.kind == "workdir" and loaded.vgg_weights is not None:
        return loaded.model.encoder
    return None


def run_quality(
    loaded: LoadedModel | None,
    videos: Sequence[Video],
    styles: Sequence[np.ndarray],
    rs: Sequence[int] = DEFAULT_RS,
    output_dir: str | os.PathLike | None = None,
    style_names: Sequence[str] | None = None,
    vgg_weights: str | None = None,
    vgg_size: int = 256,
    flow_preset: str = "medium",
) -> tuple[list[dict], str]:
    """Evaluates our model (one method per r) and the baselines on the videos.

    Args:
      loaded: the model (None evaluates the baselines only).
      videos: from :func:`load_videos` (one foreground mask each: K = 2 regions).
      styles: two RGB style images (foreground, background).
      rs: grid sub-sampling factors; our model is evaluated once per r.
      output_dir: where `quality.csv`, `quality.md` and `contact_sheet.png` go (None: nothing written).
      style_names: names for the header.
      vgg_weights: the VGG-19 of the feature style distance: "imagenet" or a weights file; "none"
        disables it; None uses the model's own encoder when its workdir config names real weights
        (a random VGG-19 gives no meaningful style distance, so it is never used by default).
      vgg_size: frames and styles are resized to this longer side for the VGG distance.
      flow_preset: DIS preset of the warping-error flow.
    Returns: `(rows, markdown)`; rows are dicts with `video`, `method`, `frames` and the metric
      columns, the mean rows have `video == "MEAN"`.
    """
    _check_rs(rs)
    if len(styles) != 2:
        raise ValueError(
            f"styles must hold two images (foreground, background) for videos with one foreground "
            f"mask, got {len(styles)}."
        )
    styles = [np.asarray(s) for s in styles]
    encoder = _metric_encoder(loaded, vgg_weights)
    columns = QUALITY_COLUMNS + (VGG_COLUMNS if encoder is not None else ())
    stylizers = {r: loaded.stylizer(r) for r in rs} if loaded is not None else {}
    rows: list[dict] = []
    sheet_rows = []
    for index, video in enumerate(videos):
        start = time.perf_counter()
        flow, valid = metrics.warping_flows(video.frames, preset=flow_preset)
        floor = metrics.warping_error(video.frames, flow, valid)
        outputs = {
            "input (identity)": video.frames.astype(np.float32) / 255.0,
            "Reinhard per region": metrics.reinhard_transfer(video.frames, video.masks, styles),
        }
        for r, stylizer in stylizers.items():
            outputs[f"ours r = {r}"] = stylizer.stylize(video.frames, video.masks, styles)
        for method, output in outputs.items():
            row = _evaluate_output(video, output, styles, flow, valid, floor, encoder, vgg_size)
            rows.append({"video": video.name, "method": method, "frames": len(video.frames), **row})
        mid = len(video.frames) // 2
        mask_tile = np.repeat((video.masks[mid] * 255).astype(np.uint8), 3, axis=-1)
        ours_key = next((k for k in outputs if k.startswith("ours")), None)
        tiles = [video.frames[mid], mask_tile]
        if ours_key is not None:
            tiles.append((np.clip(outputs[ours_key][mid], 0, 1) * 255).round().astype(np.uint8))
        tiles.append((outputs["Reinhard per region"][mid] * 255).round().astype(np.uint8))
        sheet_rows.append((f"{video.name} (frame {mid})", tiles))
        logging.info(
            "quality: video %d/%d %s (%d frames, %dx%d) done in %.1f s",
            index + 1,
            len(videos),
            video.name,
            len(video.frames),
            video.frames.shape[2],
            video.frames.shape[1],
            time.perf_counter() - start,
        )
    methods = list(dict.fromkeys(r["method"] for r in rows))
    for method in methods:
        mine = [r for r in rows if r["method"] == method]
        mean = {c: float(metrics.nanmean(np.array([r[c] for r in mine], float))) for c in columns}
        rows.append(
            {"video": "MEAN", "method": method, "frames": sum(r["frames"] for r in mine), **mean}
        )
    names = list(style_names) if style_names else ["style 0", "style 1"]
    header = [
        f"- model: {loaded.describe() if loaded is not None else 'none (baselines only)'}",
        f"- styles: foreground {names[0]}, background {names[-1]}",
        f"- videos: {len(videos)} ({', '.join(v.name for v in videos)}), frames per video: "
        f"{', '.join(str(len(v.frames)) for v in videos)}",
        "- warp_error: squared RGB difference ([0, 1] scale, summed over channels) between O_t and "
        "the flow-warped O_{t+1} over non-occluded pixels (lower = more stable; warp_error_input is "
        "the input's own, the floor)",
        "- style_lab_*: Lab mean/std distance of the region to its style (lower = closer)",
        "- leak_*: loss of the region's Lab margin between its own style and the other region's "
        "style, relative to the input (0 = identity, > 0 = moved towards the other region's style, "
        "< 0 = moved towards its own)",
        "- grad_ssim: SSIM of the luminance gradient magnitudes, output vs input (1 = all edges kept)",
    ]
    if encoder is None:
        header.append("- VGG style distance: not computed (no real VGG-19 weights given)")
    markdown = quality_markdown(rows, columns, header)
    if output_dir is not None:
        out = pathlib.Path(output_dir)
        write_atomic(out / "quality.csv", quality_csv(rows, columns))
        write_atomic(out / "quality.md", markdown)
        ours_label = [f"ours (r = {next(iter(stylizers))})"] if stylizers else []
        labels = ["input", "mask", *ours_label, "Reinhard per region"]
        sheet = contact_sheet(sheet_rows, labels)
        ok, png = cv2.imencode(".png", sheet[..., ::-1])
        if not ok:
            raise RuntimeError("OpenCV failed to encode the contact sheet PNG.")
        write_atomic(out / "contact_sheet.png", png.tobytes())
    return rows, markdown
