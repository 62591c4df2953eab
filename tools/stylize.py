r"""Stylizes a real video with localized photorealistic style transfer, streaming.

Usage (one object + background, a trained workdir):
  python tools/stylize.py --input=clip.mp4 --masks=masks/ --styles=fg.jpg,bg.jpg \
      --workdir=runs/quickstart --output=out.mp4 --preview

Flags:
  --input        a video file (mp4/avi/mov/mkv) or a folder of jpg/png frames (sorted by name).
  --masks        one mask source per object, separated by ';' (K-1 sources for K styles):
                 a mask video, a folder of mask images (one per frame, in frame order; grey 0/255 or
                 DAVIS palette PNGs), `auto-person` (the selfie segmentation model, see
                 lvst_tf.segmentation) or `threshold:<spec>` (a colour rule, e.g.
                 `threshold:hsv:v<110|s>70,open=7,close=7,min_area=2000`).
  --styles       comma-separated style images, one per region, the last for the background.
  --style_schedule  optional style changes over time: `FRAME:STYLES;FRAME:STYLES;...`, each STYLES a
                 comma-separated list of K images, e.g. `0:a.jpg,b.jpg;60:c.jpg,b.jpg`. The style
                 statistics blend linearly from one entry to the next (frames 0..60 fade from a to c
                 in the first region); after the last entry its styles hold. Without an entry at
                 frame 0, `--styles` are the styles of frame 0.
  --r            grid sub-sampling (keyframe every r frames; METHOD section 6).
  --interpolation  `linear` (default) or `hold` (causal).
  --saved_model / --workdir  the model: a SavedModel from tools/export.py or a training workdir.
  --output       a video file (.mp4/.mov: mp4v, .avi: MJPG) or a folder (PNG frames).
  --preview      also write `<output>_preview.png` (input | mask | output of one frame) and
                 `<output>_preview.mp4` (the same side by side for every frame).

Memory does not depend on the video length (frames are decoded, stylized and written one by one;
at most r + 1 frames are buffered). The input fps is kept. Output goes to a hidden temporary name
and is renamed at the end, so an interrupted run leaves nothing under the output name.
"""

from __future__ import annotations

import collections
import os
import pathlib
import signal
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from lvst_tf import video_io  # noqa: E402

_INPUT = flags.DEFINE_string("input", None, "Video file or folder of frames.")
_MASKS = flags.DEFINE_string(
    "masks",
    None,
    "Mask sources separated by ';': mask video, mask folder, auto-person, threshold:SPEC.",
)
_STYLES = flags.DEFINE_string("styles", None, "Comma-separated style images (last = background).")
_STYLE_SCHEDULE = flags.DEFINE_string(
    "style_schedule", None, "FRAME:STYLES;FRAME:STYLES... (STYLES comma-separated, K each)."
)
_R = flags.DEFINE_integer("r", 1, "Grid sub-sampling: keyframe every r frames.")
_INTERPOLATION = flags.DEFINE_enum(
    "interpolation", "linear", ["linear", "hold"], "Grid interpolation."
)
_SAVED_MODEL = flags.DEFINE_string("saved_model", None, "SavedModel folder (tools/export.py).")
_WORKDIR = flags.DEFINE_string(
    "workdir", None, "Training workdir (operative_config.gin, checkpoints)."
)
_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "With --workdir: checkpoint step/name.")
_OUTPUT = flags.DEFINE_string("output", None, "Output video file or frame folder.")
_PREVIEW = flags.DEFINE_bool("preview", False, "Also write a side-by-side preview PNG and mp4.")
_PREVIEW_FRAME = flags.DEFINE_integer("preview_frame", -1, "Frame of the preview PNG; -1 = middle.")
_MAX_FRAMES = flags.DEFINE_integer("max_frames", 0, "Stylize only the first N frames (0 = all).")
_FPS = flags.DEFINE_float("fps", 0.0, "Output fps; 0 = the input's (30 for frame folders).")
_OVERWRITE = flags.DEFINE_bool("overwrite", True, "Replace an existing output.")


# ----------------------------------------------------------------------------------------------------
# Parsing and validation (all before any model work).
# ----------------------------------------------------------------------------------------------------


class MaskSource:
    """One object's masks: `frames_and_masks` calls `mask(frame)` per frame (or reads a file)."""

    def __init__(self, spec: str, reader: video_io.FrameReader):
        self.spec = spec
        self.reader = None
        self._fn = None
        if spec == "auto-person":
            from lvst_tf import segmentation

            self._fn = segmentation.SelfieSegmenter()  # ValueError if the model is missing
        elif spec.startswith("threshold:"):
            from lvst_tf import segmentation

            parsed = segmentation.parse_threshold_spec(spec[len("threshold:") :])
            self._fn = lambda frame: segmentation.threshold_mask(frame, parsed)
        else:
            self.reader = video_io.read_masks(spec, argument="masks")
            if len(self.reader) != len(reader):
                raise ValueError(
                    f"masks: {spec!r} has {len(self.reader)} masks but the input has {len(reader)} "
                    "frames; expected one mask per frame."
                )
            if self.reader.size != reader.size:
                raise ValueError(
                    f"masks: {spec!r} masks are {self.reader.width}x{self.reader.height} but the "
                    f"input frames are {reader.width}x{reader.height}."
                )


def parse_masks(spec: str | None, reader: video_io.FrameReader) -> list[MaskSource]:
    if not spec:
        raise ValueError(
            "masks: required; one source per object separated by ';' (a mask video, a folder of "
            "mask images, auto-person, or threshold:SPEC)."
        )
    return [MaskSource(part.strip(), reader) for part in spec.split(";") if part.strip()]


def read_styles(spec: str, argument: str) -> list[np.ndarray]:
    paths = [p.strip() for p in spec.split(",") if p.strip()]
    return [video_io.read_image(p, argument=f"{argument} ({p})") for p in paths]


def parse_style_schedule(spec: str | None) -> list[tuple[int, list[np.ndarray]]] | None:
    """`FRAME:a.jpg,b.jpg;FRAME:c.jpg,b.jpg` -> `[(FRAME, [images...]), ...]` (images read)."""
    if not spec:
        return None
    schedule = []
    for entry in spec.split(";"):
        entry = entry.strip()
        if not entry:
            continue
        index, sep, styles = entry.partition(":")
        if not sep or not index.strip().isdigit():
            raise ValueError(
                f"style_schedule: entry {entry!r} must look like FRAME:STYLE,...,STYLE "
                "(e.g. '0:a.jpg,b.jpg;60:c.jpg,b.jpg')."
            )
        schedule.append((int(index), read_styles(styles, "style_schedule")))
    if not schedule:
        raise ValueError("style_schedule: no entry; expected FRAME:STYLE,...;FRAME:STYLE,...")
    return schedule


def check_style_counts(styles, schedule, num_regions: int) -> None:
    entries = ([("styles", styles)] if styles else []) + [
        (f"style_schedule entry at frame {i}", s) for i, s in (schedule or [])
    ]
    if not entries:
        raise ValueError(
            "styles: required (comma-separated images, one per region, last = background)."
        )
    for name, images in entries:
        if len(images) != num_regions:
            raise ValueError(
                f"{name}: {len(images)} style images for {num_regions - 1} mask source(s); expected "
                f"{num_regions} (one per object, then the background)."
            )


def load_model(saved_model: str | None, workdir: str | None, checkpoint: str | None):
    """The model (or a SavedModel adapter) that VideoStylizer drives."""
    if bool(saved_model) == bool(workdir):
        raise ValueError(
            "model: pass exactly one of --saved_model (an export) or --workdir (a run)."
        )
    # Path checks first: they need no TensorFlow import.
    if saved_model and not (pathlib.Path(saved_model) / "saved_model.pb").is_file():
        raise ValueError(
            f"saved_model: {saved_model!r} is not a SavedModel folder (no saved_model.pb); "
            "write one with tools/export.py."
        )
    if workdir and not (pathlib.Path(workdir) / "operative_config.gin").is_file():
        raise ValueError(
            f"workdir: {workdir!r} is not a training workdir (no operative_config.gin); "
            "train with tools/train.py or pass --saved_model."
        )
    from lvst_tf import export

    if saved_model:
        return export.SavedModelAdapter.from_path(saved_model)
    return export.load_model_from_workdir(workdir, checkpoint)


def check_output(output: str | None, reader: video_io.FrameReader, overwrite: bool) -> pathlib.Path:
    if not output:
        raise ValueError("output: required (a .mp4/.avi/.mov file or a folder for PNG frames).")
    path = pathlib.Path(output)
    if path.suffix and not video_io.is_video_path(path):
        raise ValueError(
            f"output: {output!r} has an unknown extension; expected one of "
            f"{', '.join(video_io.VIDEO_EXTENSIONS)} or a folder name without extension."
        )
    if path.exists() and not overwrite:
        raise ValueError(f"output: {output!r} exists (pass --overwrite to replace it).")
    if path.suffix.lower() in (".mp4", ".mov", ".m4v") and (reader.width % 2 or reader.height % 2):
        raise ValueError(
            f"output: mp4v needs an even frame size, the input is {reader.width}x{reader.height}; "
            "write a frame folder or an .avi instead."
        )
    return path


# ----------------------------------------------------------------------------------------------------
# The streaming run.
# ----------------------------------------------------------------------------------------------------


def _mask_image(mask: np.ndarray) -> np.ndarray:
    """`[H, W, K-1]` masks -> `[H, W, 3]` grey image of their union."""
    return np.repeat(np.max(mask, axis=-1, keepdims=True), 3, axis=-1)


def _side_by_side(frame: np.ndarray, mask: np.ndarray, output: np.ndarray) -> np.ndarray:
    panel = np.concatenate(
        [video_io.to_uint8(frame), video_io.to_uint8(_mask_image(mask)), video_io.to_uint8(output)],
        axis=1,
    )
    # mp4v needs even sizes: replicate the last row/column if needed.
    pad = ((0, panel.shape[0] % 2), (0, panel.shape[1] % 2), (0, 0))
    return np.pad(panel, pad, mode="edge")


def preview_paths(output: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path]:
    base = output.with_suffix("") if output.suffix else output
    return (
        base.parent / f"{base.name}_preview.png",
        base.parent / f"{base.name}_preview.mp4",
    )


def run(
    reader: video_io.FrameReader,
    mask_sources: list[MaskSource],
    stylizer,
    styles,
    schedule,
    output: pathlib.Path,
    fps: float,
    preview: bool = False,
    preview_frame: int = -1,
    max_frames: int = 0,
    progress: bool = True,
) -> dict:
    """Streams `reader` through `stylizer` into `output`; returns a summary dict."""
    import contextlib

    from tqdm import tqdm

    total = len(reader) if max_frames <= 0 else min(max_frames, len(reader))
    if preview_frame < 0:
        preview_frame = total // 2
    preview_frame = min(preview_frame, total - 1)
    # Inputs whose outputs have not come out yet (at most r + 1 with linear interpolation).
    inputs = collections.deque()

    def pairs():
        mask_iters = [iter(s.reader) if s.reader is not None else None for s in mask_sources]
        for t, frame in enumerate(reader):
            if t >= total:
                return
            masks = []
            for source, it in zip(mask_sources, mask_iters):
                masks.append(next(it) if it is not None else source._fn(frame))
            mask = np.stack(masks, axis=-1).astype(np.float32)
            if preview:
                inputs.append((frame, mask))
            yield frame, mask

    png_path, video_path = preview_paths(output)
    with contextlib.ExitStack() as stack:
        writer = stack.enter_context(video_io.FrameWriter(output, fps=fps))
        preview_writer = (
            stack.enter_context(video_io.FrameWriter(video_path, fps=fps)) if preview else None
        )
        bar = stack.enter_context(
            tqdm(total=total, unit="frame", desc="stylize", disable=not progress, file=sys.stderr)
        )
        for t, out in enumerate(stylizer.stream(pairs(), styles, schedule)):
            writer.write(out)
            if preview:
                frame, mask = inputs.popleft()
                panel = _side_by_side(frame, mask, out)
                preview_writer.write(panel)
                if t == preview_frame:
                    preview_panel = panel
            bar.update(1)
        if preview:
            # Written last, so an interrupted run leaves no preview either.
            video_io.write_image(png_path, preview_panel)
    summary = {"output": str(output), "frames": total, "fps": fps}
    if preview:
        summary.update(preview_png=str(png_path), preview_mp4=str(video_path))
    return summary


def _raise_on_sigterm(signum, frame):
    # Turn SIGTERM into an exception so the writers remove their temporary files.
    raise KeyboardInterrupt(f"signal {signum}")


def prepare(
    input=None, masks=None, styles=None, style_schedule=None, r=1, saved_model=None,
    workdir=None, checkpoint=None, output=None, overwrite=True,
):  # fmt: skip
    """Checks every input (cheap checks first, the model last); returns what `run` needs.

    Raises ValueError naming the flag for: unreadable input, masks that do not match the video in
    count or size, unreadable or missing style images, a wrong number of styles, a bad schedule,
    a bad output name, a missing model.
    """
    if not input:
        raise ValueError("input: required (a video file or a folder of frames).")
    if r < 1:
        raise ValueError(f"r: must be an int >= 1; got {r}.")
    reader = video_io.read_frames(input, argument="input")
    output = check_output(output, reader, overwrite)
    mask_sources = parse_masks(masks, reader)
    style_images = read_styles(styles, "styles") if styles else None
    schedule = parse_style_schedule(style_schedule)
    check_style_counts(style_images, schedule, len(mask_sources) + 1)
    model = load_model(saved_model, workdir, checkpoint)
    return reader, output, mask_sources, style_images, schedule, model


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    signal.signal(signal.SIGTERM, _raise_on_sigterm)
    try:
        reader, output, mask_sources, styles, schedule, model = prepare(
            input=_INPUT.value, masks=_MASKS.value, styles=_STYLES.value,
            style_schedule=_STYLE_SCHEDULE.value, r=_R.value, saved_model=_SAVED_MODEL.value,
            workdir=_WORKDIR.value, checkpoint=_CHECKPOINT.value, output=_OUTPUT.value,
            overwrite=_OVERWRITE.value,
        )  # fmt: skip
        from lvst_tf.inference import VideoStylizer

        stylizer = VideoStylizer(
            model,
            r=_R.value,
            interpolation=_INTERPOLATION.value,
            soft_mask_mode=getattr(model, "soft_mask_mode", "normalized"),
        )
        fps = _FPS.value if _FPS.value > 0 else reader.fps
        summary = run(
            reader, mask_sources, stylizer, styles, schedule, output, fps,
            preview=_PREVIEW.value, preview_frame=_PREVIEW_FRAME.value,
            max_frames=_MAX_FRAMES.value,
        )  # fmt: skip
    except ValueError as e:
        sys.exit(f"stylize.py: error: {e}")
    except KeyboardInterrupt:
        sys.exit("stylize.py: interrupted; no output written.")
    print(f"Wrote {summary['frames']} frames at {summary['fps']:g} fps to {summary['output']}")
    if "preview_png" in summary:
        print(f"Preview: {summary['preview_png']} and {summary['preview_mp4']}")


if __name__ == "__main__":
    app.run(main)
