"""Automatic masks for content videos: a person segmenter and colour-threshold masks.

- :class:`SelfieSegmenter` runs MediaPipe's selfie-segmentation model
  (`selfie_segmentation.tflite` from the `mediapipe==0.10.21` wheel, Apache-2.0; fetched by
  `tools/fetch_selfie_model.py`) with `tf.lite.Interpreter`: input `[1, 256, 256, 3]` RGB in [0, 1],
  output `[1, 256, 256, 1]` person probability.
- :func:`threshold_mask` builds a mask from a colour rule written as a short spec string.

Threshold spec syntax::

    SPACE:RULE[,OPTION=VALUE...]

SPACE is `hsv` (channels h in [0, 179], s, v in [0, 255]; OpenCV's 8-bit ranges), `rgb` (r, g, b),
`lab` (l, a, b, OpenCV 8-bit Lab) or `gray` (y). RULE is one or more terms joined by `|` (or), each
term one or more conditions joined by `&` (and, binds tighter); a condition is CHANNEL OP NUMBER with
OP one of `<`, `<=`, `>`, `>=`. OPTIONS (all optional, pixels): `open=N` and `close=N` apply a
morphological opening/closing with an N x N elliptical kernel (opening first), `min_area=N` drops
connected components smaller than N pixels, `keep=N` keeps only the N largest components.
Example (the cup clip of the samples): `hsv:v<110|s>70,open=7,close=7,min_area=2000`.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import re
import threading
import warnings

import cv2
import numpy as np

from lvst_tf import assets

MODEL_FILENAME = assets.SELFIE_MODEL.filename
MEDIAPIPE_REQUIREMENT = assets.SELFIE_MODEL.requirement
_MODEL_INPUT = 256


def cache_dir() -> pathlib.Path:
    """`$LVST_TF_HOME/models`, default `~/.cache/lvst_tf/models`."""
    return assets.cache_dir()


def default_model_path() -> pathlib.Path:
    """Where `tools/fetch_selfie_model.py` puts the selfie model."""
    return cache_dir() / MODEL_FILENAME


def fetch_selfie_model(
    dest_dir: str | os.PathLike | None = None, force: bool = False
) -> pathlib.Path:
    """Puts `selfie_segmentation.tflite` into `dest_dir` (default :func:`cache_dir`); returns its path.

    Idempotent: an existing file with the pinned sha256 is kept unless `force`. Downloads the
    `mediapipe==0.10.21` wheel with `pip download --no-deps` into a temporary folder, checks the
    wheel's and the model's sha256 and extracts the one member (mediapipe is never installed or
    imported); see `lvst_tf.assets`.
    """
    return assets.fetch_wheel_member(assets.SELFIE_MODEL, dest_dir, force=force)


def _as_uint8_rgb(frame, name="frame") -> np.ndarray:
    frame = np.asarray(frame)
    if frame.ndim != 3 or frame.shape[-1] != 3 or frame.shape[0] == 0 or frame.shape[1] == 0:
        raise ValueError(f"{name} must be an [H, W, 3] RGB image, got shape {frame.shape}.")
    if frame.dtype != np.uint8:
        frame = np.clip(np.rint(frame.astype(np.float32) * 255.0), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(frame)


class SelfieSegmenter:
    """Person probability masks from the MediaPipe selfie-segmentation model.

    Args:
      model_path: the `.tflite` file; None looks in :func:`default_model_path`.
      num_threads: TFLite interpreter threads.

    Calling it on a frame `[H, W, 3]` RGB (uint8, or float in [0, 1]) returns a float32 mask `[H, W]` in
    [0, 1] (the model's 256x256 output resized bilinearly). Thread-safe (one interpreter, a lock).
    """

    def __init__(self, model_path: str | os.PathLike | None = None, num_threads: int = 1):
        path = pathlib.Path(model_path) if model_path is not None else default_model_path()
        if not path.is_file():
            raise ValueError(
                f"model_path: selfie segmentation model not found at {str(path)!r}. Fetch it with "
                "`python tools/fetch_selfie_model.py` (downloads mediapipe==0.10.21 from PyPI once) "
                "or pass the path of selfie_segmentation.tflite."
            )
        import tensorflow as tf  # heavy; only needed here

        self.model_path = path
        with warnings.catch_warnings():
            # tf.lite.Interpreter warns that it moves to LiteRT; it is what TF 2.21 ships and works.
            warnings.simplefilter("ignore")
            self._interpreter = tf.lite.Interpreter(model_path=str(path), num_threads=num_threads)
        self._interpreter.allocate_tensors()
        self._input = self._interpreter.get_input_details()[0]
        self._output = self._interpreter.get_output_details()[0]
        if tuple(self._input["shape"]) != (1, _MODEL_INPUT, _MODEL_INPUT, 3):
            raise ValueError(
                f"model_path: expected a model with input [1, 256, 256, 3], got {self._input['shape']}."
            )
        self._lock = threading.Lock()

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        frame = _as_uint8_rgb(frame)
        height, width = frame.shape[:2]
        small = cv2.resize(frame, (_MODEL_INPUT, _MODEL_INPUT), interpolation=cv2.INTER_AREA)
        batch = (small.astype(np.float32) / 255.0)[None]
        with self._lock:
            self._interpreter.set_tensor(self._input["index"], batch)
            self._interpreter.invoke()
            prob = self._interpreter.get_tensor(self._output["index"])[0, ..., 0].copy()
        mask = cv2.resize(prob, (width, height), interpolation=cv2.INTER_LINEAR)
        return np.clip(mask, 0.0, 1.0).astype(np.float32)


# ----------------------------------------------------------------------------------------------------
# Colour thresholds.

_SPACES = {
    "hsv": ("hsv", cv2.COLOR_RGB2HSV),
    "rgb": ("rgb", None),
    "lab": ("lab", cv2.COLOR_RGB2LAB),
    "gray": ("y", cv2.COLOR_RGB2GRAY),
}
_CONDITION = re.compile(r"^\s*([a-z])\s*(<=|>=|<|>)\s*(-?\d+(?:\.\d*)?)\s*$")
_OPTIONS = ("open", "close", "min_area", "keep")


@dataclasses.dataclass(frozen=True)
class ThresholdSpec:
    """A parsed threshold spec (see the module docstring for the syntax)."""

    space: str
    # Disjunction of conjunctions: ((channel_index, op, value), ...) per term.
    terms: tuple[tuple[tuple[int, str, float], ...], ...]
    open: int = 0
    close: int = 0
    min_area: int = 0
    keep: int = 0


def parse_threshold_spec(spec: str) -> ThresholdSpec:
    """Parses `SPACE:RULE[,OPTION=VALUE...]`; ValueError naming the bad part."""
    form = "'SPACE:RULE[,OPTION=N...]', e.g. 'hsv:v<110|s>70,open=7,close=7,min_area=2000'"
    if not isinstance(spec, str) or ":" not in spec:
        raise ValueError(f"spec must be a string of the form {form}, got {spec!r}.")
    space, rest = spec.split(":", 1)
    space = space.strip().lower()
    if space not in _SPACES:
        raise ValueError(f"spec: colour space must be one of {sorted(_SPACES)}, got {space!r}.")
    channels = _SPACES[space][0]
    parts = rest.split(",")
    rule, options = parts[0], parts[1:]
    terms = []
    for term in rule.split("|"):
        conditions = []
        for text in term.split("&"):
            match = _CONDITION.match(text)
            if not match:
                raise ValueError(
                    f"spec: bad condition {text.strip()!r}; expected CHANNEL OP NUMBER with CHANNEL in "
                    f"{list(channels)} and OP one of <, <=, >, >= (spec {form})."
                )
            channel, op, value = match.groups()
            if channel not in channels:
                raise ValueError(
                    f"spec: channel {channel!r} is not in colour space {space!r} (channels {list(channels)})."
                )
            conditions.append((channels.index(channel), op, float(value)))
        terms.append(tuple(conditions))
    values = {}
    for option in options:
        if "=" not in option:
            raise ValueError(
                f"spec: option {option.strip()!r} must be NAME=INTEGER, NAME in {_OPTIONS}."
            )
        key, value = (s.strip() for s in option.split("=", 1))
        if key not in _OPTIONS or not value.isdigit():
            raise ValueError(
                f"spec: option {option.strip()!r} must be NAME=INTEGER >= 0 with NAME in {_OPTIONS}."
            )
        values[key] = int(value)
    return ThresholdSpec(space=space, terms=tuple(terms), **values)


def _apply_op(channel: np.ndarray, op: str, value: float) -> np.ndarray:
    if op == "<":
        return channel < value
    if op == "<=":
        return channel <= value
    if op == ">":
        return channel > value
    return channel >= value


def threshold_labels(frame: np.ndarray, spec: str | ThresholdSpec) -> np.ndarray:
    """Connected components of the thresholded frame: `[H, W]` int32, 0 background, 1..n by area.

    Component 1 is the largest. Morphology, `min_area` and `keep` are applied first.
    """
    if not isinstance(spec, ThresholdSpec):
        spec = parse_threshold_spec(spec)
    frame = _as_uint8_rgb(frame)
    code = _SPACES[spec.space][1]
    converted = frame if code is None else cv2.cvtColor(frame, code)
    if converted.ndim == 2:
        converted = converted[..., None]
    channels = converted.astype(np.float32)
    mask = np.zeros(frame.shape[:2], bool)
    for term in spec.terms:
        term_mask = np.ones(frame.shape[:2], bool)
        for index, op, value in term:
            term_mask &= _apply_op(channels[..., index], op, value)
        mask |= term_mask
    mask = mask.astype(np.uint8)
    if spec.open > 1:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (spec.open, spec.open))
        mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, kernel)
    if spec.close > 1:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (spec.close, spec.close))
        mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, kernel)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    areas = stats[1:, cv2.CC_STAT_AREA]
    order = [i + 1 for i in np.argsort(-areas, kind="stable") if areas[i] >= spec.min_area]
    if spec.keep > 0:
        order = order[: spec.keep]
    lookup = np.zeros(count, np.int32)
    for rank, component in enumerate(order):
        lookup[component] = rank + 1
    return lookup[labels]


def threshold_mask(frame: np.ndarray, spec: str | ThresholdSpec) -> np.ndarray:
    """A colour-threshold mask of `frame [H, W, 3]` RGB: `[H, W]` float32 in {0, 1} (spec: module doc)."""
    return (threshold_labels(frame, spec) > 0).astype(np.float32)


_MASK_FILE = re.compile(r"\d{5}\.png")


def check_mask_folder(input_path, output_dir) -> None:
    """ValueError unless `output_dir` may receive `%05d.png` masks of `input_path`: it is not the
    input and does not contain it, is not a file, and holds nothing but `%05d.png` masks (and the
    temporaries of a killed earlier run, which `write_mask_folder` removes)."""
    from lvst_tf import fileio  # noqa: PLC0415

    output_dir = pathlib.Path(output_dir)
    if fileio.input_overlap(output_dir, [input_path], inside=False):
        raise ValueError(
            f"output: {str(output_dir)!r} is (or contains) the input {str(input_path)!r}; masks "
            "go to a folder of their own."
        )
    if output_dir.exists() and not output_dir.is_dir():
        raise ValueError(f"output: {str(output_dir)!r} exists and is not a folder.")
    if output_dir.is_dir():
        stale = {p.name for p in fileio.stale_temporaries(output_dir)}
        foreign = sorted(
            p.name
            for p in output_dir.iterdir()
            if not _MASK_FILE.fullmatch(p.name) and p.name not in stale
        )
        if foreign:
            raise ValueError(
                f"output: folder {str(output_dir)!r} holds files that are not masks written by "
                f"this tool ({foreign[:3]}); choose an empty or new folder."
            )
    fileio.check_writable(output_dir / "00000.png", "output")


def write_mask_folder(input_path, output_dir, make_mask, overwrite=False, progress=True):
    """Streams a video file or frame folder and writes one 0/255 grey PNG per frame.

    Args:
      input_path: video file or folder of frames (`lvst_tf.video_io.FrameReader`).
      output_dir: mask folder (checked by `check_mask_folder`); masks are `%05d.png` in frame order,
        each written atomically.
      make_mask: `frame [H, W, 3] uint8 -> [H, W]` bool or float in [0, 1] (cut at 0.5).
      overwrite: recompute masks that exist (otherwise they are kept, so a run can be resumed).
      progress: show a progress bar (frames, fps, ETA).
    Returns: (number written, number kept).
    """
    import tqdm  # noqa: PLC0415

    from lvst_tf import fileio, video_io  # noqa: PLC0415

    reader = video_io.read_frames(input_path, argument="input")
    check_mask_folder(input_path, output_dir)
    output_dir = pathlib.Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    for stale in fileio.stale_temporaries(output_dir):  # a killed earlier run's
        fileio.remove_path(stale)
    written = kept = 0
    with tqdm.tqdm(total=len(reader), unit="frame", desc="masks", disable=not progress) as bar:
        for index, frame in enumerate(reader):
            path = output_dir / f"{index:05d}.png"
            if path.exists() and not overwrite:
                kept += 1
            else:
                mask = np.asarray(make_mask(frame), np.float32) > 0.5
                video_io.write_image(path, mask.astype(np.uint8) * 255)
                written += 1
            bar.update(1)
    return written, kept
