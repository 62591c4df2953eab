"""Stylizing a video file or frame folder end to end: the library behind `tools/stylize.py`.

Three steps, so that every mistake in the arguments is reported before TensorFlow is even imported:

1. `prepare(Request(...)) -> Plan` checks everything with OpenCV and the file system only: the input
   opens and its frames are counted, every mask source fits it (count, size, encoding), every style
   image decodes whole, the style counts and the schedule fit the masks, the model paths exist
   (`lvst_tf.loading.check_model_source`), and the outputs may be written (see "Outputs").
2. `load_model(plan)` loads the model (`lvst_tf.loading.load_model`; no model argument = the model
   shipped with the package), turning a broken SavedModel or checkpoint into a ValueError naming
   the flag.
3. `run(plan, stylizer, stop)` streams decode -> masks -> `VideoStylizer.stream` -> writers, one frame
   at a time (at most r + 1 frames buffered), and checks `stop` between frames.

`main(request)` does all three with one-line errors and the exit codes of `tools/stylize.py`.

Outputs: nothing is replaced without `overwrite`, and never an input (`--input`, a mask source, a
style image, the model folder), nor a folder that is not a frame folder this package wrote. Every
output (the video or frame folder, and with `preview` the `_preview.png` / `_preview.mp4` beside it) is
written to a hidden temporary, verified (a video is reopened and its frames counted), and renamed
into place only when all of them are complete; a failure or a signal leaves nothing under the output
names. See `lvst_tf.video_io` for the writers.

Signals: `StopFlag.install()` makes SIGINT and SIGTERM set a flag that the run checks between frames
(raising from a signal handler inside TensorFlow is not safe); the run then removes its temporaries
and `main` returns 128 + the signal number (130, 143). Before any output exists, or on a second
signal, the process leaves at once.
"""

from __future__ import annotations

import collections
import dataclasses
import os
import pathlib
import signal
import sys
import traceback
from collections.abc import Callable
from typing import Any

import numpy as np

from lvst_tf import fileio, loading, video_io

TRACEBACK_ENV = "LVST_TF_TRACEBACK"
INTERPOLATIONS = ("linear", "hold")


# ----------------------------------------------------------------------------------------------------
# Stopping between frames.
# ----------------------------------------------------------------------------------------------------


class Interrupted(BaseException):
    """The run was stopped by a signal (a BaseException, so generic `except Exception` keeps out)."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name


class StopFlag:
    """Set by SIGINT / SIGTERM; the streaming run checks it between frames.

    Args:
      prog: the program name used in the message printed when the process has to leave at once.
    """

    def __init__(self, prog: str = "stylize"):
        self.prog = prog
        self.signum: int | None = None
        self._temporaries: list[Callable[[], Any]] = []
        self._writing = False

    def install(self, signums=(signal.SIGINT, signal.SIGTERM)) -> StopFlag:
        for signum in signums:
            signal.signal(signum, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        del frame
        if self.signum is None and self._writing:
            self.signum = signum  # the run stops at the next frame boundary
            return
        # Nothing is being written yet (arguments, model loading), or a second signal: leave now.
        for temporary in self._temporaries:
            path = temporary()
            if path is not None:
                fileio.remove_path(path)
        name = signal.Signals(signum).name
        os.write(2, f"{self.prog}: interrupted by {name}; no output was written.\n".encode())
        os._exit(128 + signum)

    def check(self) -> None:
        """Raises `Interrupted` if a signal arrived."""
        if self.signum is not None:
            raise Interrupted(self.signum)

    def writing(self, temporaries: list[Callable[[], Any]]):
        """Context: outputs are being written; their temporaries (callables returning a path) are
        removed if the process has to leave at once."""
        flag = self

        class _Writing:
            def __enter__(self):
                flag._temporaries = list(temporaries)
                flag._writing = True

            def __exit__(self, *exc):
                flag._writing = False
                flag._temporaries = []

        return _Writing()


# ----------------------------------------------------------------------------------------------------
# Masks and styles.
# ----------------------------------------------------------------------------------------------------


class MaskSource:
    """One object's masks, checked against the input when created (no TensorFlow).

    `spec` is a mask video, a folder of mask images (`lvst_tf.video_io.MaskReader`), `auto-person`
    (`lvst_tf.segmentation.SelfieSegmenter`; its model file must exist) or `threshold:SPEC`
    (`lvst_tf.segmentation.threshold_mask`).

    `start()` returns a function `frame [H, W, 3] uint8 -> mask [H, W] float32 in [0, 1]` to be called
    once per frame in order (it builds the segmenter, which imports TensorFlow).
    """

    def __init__(self, spec: str, frames: video_io.FrameReader, argument: str = "masks"):
        self.spec = spec
        self.argument = argument
        self.reader: video_io.MaskReader | None = None
        self.threshold = None
        if spec == "auto-person":
            from lvst_tf import segmentation  # noqa: PLC0415 (OpenCV only)

            self.kind = "auto-person"
            path = segmentation.default_model_path()
            if not path.is_file():
                raise ValueError(
                    f"{argument}: auto-person needs the selfie segmentation model, not found at "
                    f"{str(path)!r}; fetch it once with `python tools/fetch_selfie_model.py`."
                )
        elif spec.startswith("threshold:"):
            from lvst_tf import segmentation  # noqa: PLC0415

            self.kind = "threshold"
            try:
                self.threshold = segmentation.parse_threshold_spec(spec[len("threshold:") :])
            except ValueError as e:
                raise ValueError(f"{argument}: {spec!r}: {e}") from None
        else:
            self.kind = "file"
            self.reader = video_io.read_masks(spec, argument=argument)
            if len(self.reader) != len(frames):
                raise ValueError(
                    f"{argument}: {spec!r} has {len(self.reader)} masks but the input has "
                    f"{len(frames)} frames; expected one mask per frame."
                )
            if self.reader.size != frames.size:
                raise ValueError(
                    f"{argument}: {spec!r} masks are {self.reader.width}x{self.reader.height} but "
                    f"the input frames are {frames.width}x{frames.height}."
                )

    @property
    def paths(self) -> list[pathlib.Path]:
        """The files this source reads (a mask video or folder), for the output checks."""
        return [self.reader.path] if self.reader is not None else []

    def start(self) -> Callable[[np.ndarray], np.ndarray]:
        if self.kind == "file":
            masks = iter(self.reader)

            def next_mask(frame):
                del frame
                return next(masks)

            return next_mask
        from lvst_tf import segmentation  # noqa: PLC0415

        if self.kind == "threshold":
            spec = self.threshold
            return lambda frame: segmentation.threshold_mask(frame, spec)
        return segmentation.SelfieSegmenter()


def parse_mask_sources(spec: str | None, frames: video_io.FrameReader) -> list[MaskSource]:
    """`--masks`: one source per object, separated by ';'."""
    parts = [part.strip() for part in (spec or "").split(";") if part.strip()]
    if not parts:
        raise ValueError(
            "masks: required; one source per object separated by ';' (a mask video, a folder of "
            "mask images, auto-person, or threshold:SPEC)."
        )
    return [MaskSource(part, frames) for part in parts]


def parse_style_paths(spec: str, argument: str = "styles") -> list[pathlib.Path]:
    """Comma-separated image names -> paths (empty items are skipped)."""
    return [pathlib.Path(p.strip()) for p in spec.split(",") if p.strip()]


def read_styles(paths: list[pathlib.Path], argument: str = "styles") -> list[np.ndarray]:
    """Style images `[h, w, 3]` uint8; ValueError naming `argument` and the file (missing, not an
    accepted image type, truncated or damaged, undecodable)."""
    return [video_io.read_image(p, argument=argument) for p in paths]


def read_style_masks(
    spec: str, styles: list[np.ndarray], style_paths: list[pathlib.Path]
) -> tuple[list[np.ndarray | None], list[pathlib.Path]]:
    """`--style_masks`: one mask image per style image, `-` for the whole image.

    Returns the masks (`[h, w]` float32 in [0, 1] at each style image's size, or None) and the mask
    files. Raises ValueError naming the flag and file (count, size, encoding: see
    `video_io.mask_from_image`).
    """
    names = [name.strip() for name in spec.split(",")]
    if len(names) != len(styles):
        raise ValueError(
            f"style_masks: {len(names)} entries for {len(styles)} style images; expected one per "
            "style image ('-' for the whole image), in the order of --styles."
        )
    masks, paths = [], []
    for name, style, style_path in zip(names, styles, style_paths):
        if name in ("", "-"):
            masks.append(None)
            continue
        path = pathlib.Path(name)
        mask = video_io.mask_from_image(
            video_io.read_image_unchanged(path, "style_masks"), str(path), "style_masks"
        )
        if mask.shape != style.shape[:2]:
            raise ValueError(
                f"style_masks: {name!r} is {mask.shape[1]}x{mask.shape[0]} but its style image "
                f"{str(style_path)!r} is {style.shape[1]}x{style.shape[0]}; expected the same size."
            )
        masks.append(mask)
        paths.append(path)
    return masks, paths


def parse_style_schedule(spec: str | None) -> list[tuple[int, list[pathlib.Path]]] | None:
    """`FRAME:a.jpg,b.jpg;FRAME:c.jpg,b.jpg` -> `[(FRAME, [paths...]), ...]`, strictly increasing."""
    if not spec:
        return None
    form = "FRAME:STYLE,...,STYLE;FRAME:STYLE,... (e.g. '0:a.jpg,b.jpg;60:c.jpg,b.jpg')"
    schedule = []
    for entry in spec.split(";"):
        entry = entry.strip()
        if not entry:
            continue
        index, sep, styles = entry.partition(":")
        if not sep or not index.strip().isdigit():
            raise ValueError(f"style_schedule: entry {entry!r} must look like {form}.")
        index = int(index)
        if schedule and index <= schedule[-1][0]:
            raise ValueError(
                f"style_schedule: frame {index} comes after frame {schedule[-1][0]}; the entries "
                "must be in strictly increasing frame order."
            )
        paths = parse_style_paths(styles, "style_schedule")
        if not paths:
            raise ValueError(
                f"style_schedule: entry {entry!r} names no style image; expected {form}."
            )
        schedule.append((index, paths))
    if not schedule:
        raise ValueError(f"style_schedule: no entry; expected {form}.")
    return schedule


# ----------------------------------------------------------------------------------------------------
# The request and its checked plan.
# ----------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Request:
    """What the user asked for: the flags of `tools/stylize.py`, unchecked."""

    input: str | None = None
    masks: str | None = None
    styles: str | None = None
    style_schedule: str | None = None
    style_masks: str | None = None
    r: int = 1
    interpolation: str = "linear"
    saved_model: str | None = None
    workdir: str | None = None
    pretrained: str | None = None
    checkpoint: str | None = None
    output: str | None = None
    overwrite: bool = False
    preview: bool = False
    preview_frame: int = -1
    max_frames: int = 0
    fps: float = 0.0
    render_strip_pixels: int = 0


@dataclasses.dataclass
class Plan:
    """A checked request: everything `run` needs except the model."""

    request: Request
    reader: video_io.FrameReader
    mask_sources: list[MaskSource]
    styles: list[np.ndarray] | None
    schedule: list[tuple[int, list[np.ndarray]]] | None
    style_masks: list[np.ndarray | None] | None
    output: pathlib.Path
    num_frames: int
    fps: float
    model_kind: str
    preview_png: pathlib.Path | None = None
    preview_video: pathlib.Path | None = None
    preview_frame: int = 0
    warnings: list[str] = dataclasses.field(default_factory=list)

    @property
    def outputs(self) -> list[pathlib.Path]:
        return [p for p in (self.output, self.preview_png, self.preview_video) if p is not None]


def preview_paths(output: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path]:
    """`<output without extension>_preview.png` and `..._preview.mp4`, beside the output."""
    base = output.with_suffix("") if output.suffix else output
    return base.parent / f"{base.name}_preview.png", base.parent / f"{base.name}_preview.mp4"


def prepare(request: Request) -> Plan:
    """Checks every argument of `request` without importing TensorFlow; returns the `Plan`.

    Raises:
      ValueError naming the flag (and file) for any bad argument: see the module doc.
    """
    req = request
    if not req.input:
        raise ValueError("input: required (a video file or a folder of frames).")
    if isinstance(req.r, bool) or not isinstance(req.r, int) or req.r < 1:
        raise ValueError(f"r: must be an integer >= 1 (keyframe every r frames); got {req.r!r}.")
    if req.interpolation not in INTERPOLATIONS:
        raise ValueError(
            f"interpolation: must be one of {INTERPOLATIONS}; got {req.interpolation!r}."
        )
    if req.max_frames < 0:
        raise ValueError(f"max_frames: must be >= 0 (0 = every frame); got {req.max_frames}.")
    if (
        isinstance(req.render_strip_pixels, bool)
        or not isinstance(req.render_strip_pixels, int)
        or req.render_strip_pixels < 0
    ):
        raise ValueError(
            "render_strip_pixels: must be an integer >= 0 (pixels per render strip; 0 = the "
            f"model's default, 2,000,000); got {req.render_strip_pixels!r}."
        )
    if not np.isfinite(req.fps) or req.fps < 0:
        raise ValueError(f"fps: must be > 0, or 0 for the input's frame rate; got {req.fps}.")
    if req.preview_frame < -1:
        raise ValueError(
            f"preview_frame: must be a frame index, or -1 for the middle frame; got "
            f"{req.preview_frame}."
        )
    model_kind = loading.check_model_source(
        saved_model=req.saved_model,
        workdir=req.workdir,
        pretrained=req.pretrained,
        checkpoint=req.checkpoint,
    )
    if not req.output:
        raise ValueError(
            "output: required (a video name such as out.mp4 or out.avi, or a folder name for PNG "
            "frames)."
        )
    output = pathlib.Path(req.output)
    # Cheap output checks first (before any frame is decoded); the rules about replacing an existing
    # output come after the inputs are known, so an output that is an input is named as such.
    video_io.writer_kind(output, "output")
    fileio.check_writable(output, "output")

    reader = video_io.read_frames(req.input, argument="input")
    num_frames = len(reader) if req.max_frames == 0 else min(req.max_frames, len(reader))
    video_io.check_frame_size(output, reader.height, reader.width, "output")
    mask_sources = parse_mask_sources(req.masks, reader)
    num_regions = len(mask_sources) + 1

    style_paths = parse_style_paths(req.styles, "styles") if req.styles else None
    schedule_paths = parse_style_schedule(req.style_schedule)
    if not style_paths and not schedule_paths:
        raise ValueError(
            f"styles: required ({num_regions} comma-separated images: one per mask source, then "
            "the background)."
        )
    entries = ([("styles", style_paths)] if style_paths else []) + [
        (f"style_schedule (frame {i})", paths) for i, paths in (schedule_paths or [])
    ]
    for name, paths in entries:
        if len(paths) != num_regions:
            raise ValueError(
                f"{name}: {len(paths)} style image(s) for {len(mask_sources)} mask source(s); "
                f"expected {num_regions} (one per object, then the background)."
            )
    if schedule_paths:
        if style_paths and schedule_paths[0][0] == 0:
            raise ValueError(
                "style_schedule: has an entry at frame 0 and --styles is given too; drop one of "
                "them (--styles are the styles of frame 0)."
            )
        last = schedule_paths[-1][0]
        if last >= num_frames:
            raise ValueError(
                f"style_schedule: frame {last} is past the last frame ({num_frames - 1}) of the "
                f"{num_frames} frames to stylize; it would never apply."
            )
    styles = read_styles(style_paths, "styles") if style_paths else None
    schedule = (
        [(i, read_styles(paths, "style_schedule")) for i, paths in schedule_paths]
        if schedule_paths
        else None
    )
    style_masks, style_mask_paths = None, []
    if req.style_masks:
        if not styles:
            raise ValueError("style_masks: belong to --styles, which is not given.")
        style_masks, style_mask_paths = read_style_masks(req.style_masks, styles, style_paths)
    preview_frame = num_frames // 2 if req.preview_frame < 0 else req.preview_frame
    if req.preview and preview_frame >= num_frames:
        raise ValueError(
            f"preview_frame: {req.preview_frame} is past the last frame ({num_frames - 1})."
        )

    # Outputs never replace or contain an input.
    inputs = [("input", reader.path)]
    inputs += [("masks source", p) for s in mask_sources for p in s.paths]
    inputs += [("style", p) for p in style_paths or []]
    inputs += [("style", p) for _, paths in schedule_paths or [] for p in paths]
    inputs += [("style mask", p) for p in style_mask_paths]
    for flag in ("saved_model", "workdir", "checkpoint"):
        value = getattr(req, flag)
        if value:
            inputs.append((flag, pathlib.Path(value)))
    if model_kind == "pretrained":
        inputs.append(
            ("shipped model", loading.pretrained_dir(req.pretrained or loading.DEFAULT_PRETRAINED))
        )
    # (An output inside an input folder is allowed: it adds a file, it replaces none.)
    fileio.check_not_input(output, inputs, "output", inside=False)
    video_io.check_output_path(output, req.overwrite, "output")
    preview_png = preview_video = None
    if req.preview:
        preview_png, preview_video = preview_paths(output)
        for path in (preview_png, preview_video):
            fileio.check_not_input(
                path,
                [("output", output), *inputs],
                "output (preview)",
                inside=False,
                advice="a preview never replaces the output or an input; choose another output name",
            )
        video_io.check_image_output(preview_png, req.overwrite, "output (preview)")
        video_io.check_output_path(preview_video, req.overwrite, "output (preview)")

    warnings = []
    if reader.has_audio():
        warnings.append(
            f"input {str(reader.path)!r} has an audio track; the output will have none (OpenCV "
            "reads and writes video only)."
        )
    if req.render_strip_pixels and model_kind == "saved_model":
        warnings.append(
            "render_strip_pixels: a SavedModel's render signatures take whole frames; the flag "
            "only applies to in-process models (--pretrained, --workdir)."
        )
    return Plan(
        request=req,
        reader=reader,
        mask_sources=mask_sources,
        styles=styles,
        schedule=schedule,
        style_masks=style_masks,
        output=output,
        num_frames=num_frames,
        fps=req.fps if req.fps > 0 else reader.fps,
        model_kind=model_kind,
        preview_png=preview_png,
        preview_video=preview_video,
        preview_frame=preview_frame,
        warnings=warnings,
    )


# ----------------------------------------------------------------------------------------------------
# The model.
# ----------------------------------------------------------------------------------------------------


def load_model(plan: Plan) -> loading.LoadedModel:
    """`lvst_tf.loading.load_model` for the plan's model flags; a model that fails to load (damaged
    SavedModel, no variables, unreadable checkpoint) is a ValueError naming the flag and path."""
    req = plan.request
    flag = {"saved_model": "saved_model", "workdir": "workdir"}.get(plan.model_kind, "pretrained")
    source = {"saved_model": req.saved_model, "workdir": req.workdir}.get(
        plan.model_kind, req.pretrained or loading.DEFAULT_PRETRAINED
    )
    try:
        return loading.load_model(
            saved_model=req.saved_model,
            workdir=req.workdir,
            pretrained=req.pretrained,
            checkpoint=req.checkpoint,
        )
    except ValueError:
        raise
    except Exception as e:  # noqa: BLE001 - TensorFlow, protobuf and OS errors of a bad model folder
        detail = " ".join(str(e).split())
        if len(detail) > 200:
            detail = detail[:200] + "..."
        raise ValueError(
            f"{flag}: cannot load the model from {str(source)!r} ({type(e).__name__}: {detail})."
        ) from e


def make_stylizer(plan: Plan, loaded: loading.LoadedModel):
    """A `VideoStylizer` for the plan's r and interpolation in the model's soft-mask mode."""
    from lvst_tf.inference import VideoStylizer  # noqa: PLC0415

    return VideoStylizer(
        loaded.model,
        r=plan.request.r,
        interpolation=plan.request.interpolation,
        soft_mask_mode=loaded.soft_mask_mode,
        render_strip_pixels=plan.request.render_strip_pixels or None,
    )


# ----------------------------------------------------------------------------------------------------
# The streaming run.
# ----------------------------------------------------------------------------------------------------


def _side_by_side(frame: np.ndarray, mask: np.ndarray, output: np.ndarray) -> np.ndarray:
    """input | union of the masks (grey) | output, padded to an even size (mp4v needs it)."""
    union = np.repeat(np.max(mask, axis=-1, keepdims=True), 3, axis=-1)
    panel = np.concatenate(
        [video_io.to_uint8(frame), video_io.to_uint8(union), video_io.to_uint8(output)], axis=1
    )
    pad = ((0, panel.shape[0] % 2), (0, panel.shape[1] % 2), (0, 0))
    return np.pad(panel, pad, mode="edge")


def run(plan: Plan, stylizer, stop: StopFlag | None = None, progress: bool = True) -> dict:
    """Streams the plan's input through `stylizer` (`stream(pairs, styles, schedule)`) into its
    outputs; returns `{"output", "frames", "fps"}` (+ `preview_png`, `preview_mp4`).

    Raises:
      Interrupted: `stop` was set (the temporaries are removed, nothing is left at the outputs).
      WriteError / ValueError: a failed write or a bad frame/mask met while streaming (idem).
    """
    from tqdm import tqdm  # noqa: PLC0415

    stop = stop or StopFlag()
    req = plan.request
    total = plan.num_frames
    size = (plan.reader.height, plan.reader.width)
    waiting = collections.deque()  # inputs whose outputs have not come out yet (preview only)

    def pairs():
        next_masks = [source.start() for source in plan.mask_sources]
        for t, frame in enumerate(plan.reader):
            if t >= total:
                return
            stop.check()
            mask = np.stack([next_mask(frame) for next_mask in next_masks], axis=-1)
            mask = mask.astype(np.float32, copy=False)
            if plan.preview_png is not None:
                waiting.append((frame, mask))
            yield frame, mask

    writers = []
    try:
        writers.append(
            video_io.FrameWriter(plan.output, plan.fps, req.overwrite, size, argument="output")
        )
        if plan.preview_png is not None:
            writers.append(
                video_io.FrameWriter(
                    plan.preview_video, plan.fps, req.overwrite, argument="output (preview)"
                )
            )
            writers.append(
                video_io.ImageWriter(plan.preview_png, req.overwrite, argument="output (preview)")
            )
        output_writer = writers[0]
        count = 0
        with (
            stop.writing([lambda w=w: w.temporary_path for w in writers]),
            tqdm(
                total=total, unit="frame", desc="stylize", disable=not progress, file=sys.stderr
            ) as bar,
        ):
            extra = {} if plan.style_masks is None else {"style_masks": plan.style_masks}
            outputs = stylizer.stream(pairs(), plan.styles, plan.schedule, **extra)
            for t, out in enumerate(outputs):
                stop.check()
                output_writer.write(out)
                if plan.preview_png is not None:
                    frame, mask = waiting.popleft()
                    panel = _side_by_side(frame, mask, out)
                    writers[1].write(panel)
                    if t == plan.preview_frame:
                        writers[2].write(panel)
                count += 1
                bar.update(1)
            if count != total:
                raise ValueError(
                    f"input: {str(plan.reader.path)!r} gave {count} frames while reading, "
                    f"{total} were counted when it was opened; nothing was written."
                )
            for writer in writers:
                writer.finish()
            stop.check()
            for writer in writers:
                writer.commit()
    except BaseException:
        for writer in writers:
            writer.abort()
        raise
    summary = {"output": str(plan.output), "frames": total, "fps": plan.fps}
    if plan.preview_png is not None:
        summary.update(preview_png=str(plan.preview_png), preview_mp4=str(plan.preview_video))
    return summary


# ----------------------------------------------------------------------------------------------------
# Everything, with one-line errors.
# ----------------------------------------------------------------------------------------------------


def traceback_wanted(verbose: bool = False) -> bool:
    """`verbose`, or the environment variable `LVST_TF_TRACEBACK` set to anything but '' / '0'."""
    return verbose or os.environ.get(TRACEBACK_ENV, "") not in ("", "0")


def main(request: Request, prog: str = "stylize.py", verbose: bool = False, stop=None) -> int:
    """Runs `prepare`, `load_model` and `run`; prints one-line errors; returns the exit code.

    Exit codes (the tool adds 2 for a bad command line): 0 done; 1 a bad argument or a failed write (one line `PROG: error: ...` on stderr,
    the traceback first only with `verbose` or `LVST_TF_TRACEBACK=1`); 128 + signal number when
    interrupted (130 SIGINT, 143 SIGTERM). Nothing is left at the output names unless it is 0.
    """
    stop = stop or StopFlag(prog).install()
    try:
        plan = prepare(request)
        for warning in plan.warnings:
            print(f"{prog}: warning: {warning}", file=sys.stderr, flush=True)
        loaded = load_model(plan)
        print(f"{prog}: model: {loaded.describe()}", file=sys.stderr, flush=True)
        summary = run(plan, make_stylizer(plan, loaded), stop=stop)
    except Interrupted as e:
        print(f"{prog}: interrupted by {e.name}; no output was written.", file=sys.stderr)
        return e.exit_code
    except (ValueError, OSError) as e:
        if traceback_wanted(verbose):
            traceback.print_exc()
        message = str(e) if isinstance(e, ValueError) else _os_error_line(e)
        print(f"{prog}: error: {message}", file=sys.stderr)
        return 1
    except Exception as e:  # noqa: BLE001 - one readable line instead of a traceback
        if traceback_wanted(verbose):
            traceback.print_exc()
        hint = "" if traceback_wanted(verbose) else f" (set {TRACEBACK_ENV}=1 for the traceback)"
        print(f"{prog}: error: unexpected {type(e).__name__}: {e}{hint}", file=sys.stderr)
        return 1
    print(f"Wrote {summary['frames']} frames at {summary['fps']:g} fps to {summary['output']}")
    if "preview_png" in summary:
        print(f"Preview: {summary['preview_png']} and {summary['preview_mp4']}")
    return 0


def _os_error_line(e: OSError) -> str:
    if isinstance(e, video_io.WriteError):
        return str(e)
    where = f" {e.filename!r}" if getattr(e, "filename", None) else ""
    return f"output:{where}: {e.strerror or e}."
