"""SavedModel export of a trained model, with explicit signatures (docs/method.md#data-flow,
#subsampling).

- :func:`check_output` checks an export destination before any work (no TensorFlow needed):
  nothing the exporter did not create is ever replaced (see "Output rules" below).
- :func:`export_saved_model` writes a SavedModel through `tf.saved_model.save` on a `tf.Module`
  built by :class:`StylizerModule` (Keras 3 rejects `model.save(dir)`), into a temporary sibling
  folder that is renamed into place at the end.
- :class:`SavedModelAdapter` wraps a *loaded* SavedModel so that it looks like the model to
  `lvst_tf.inference.VideoStylizer` (streaming with the exported pieces).

Signatures (all inputs dynamic in T, H, W, K; docs/serving.md has the table):

- `serving_default` (float32) and `serving_uint8` (uint8 frames/masks/styles): `frames [T, H, W, 3]`,
  `masks [T, H, W, K-1]`, `styles [K, h, w, 3]`, `r` int32 scalar -> `{"frames": [T, H, W, 3]
  float32 in [0, 1]}`. Keyframes from `ops.keyframe_schedule` (0, r, 2r, ... and the last frame)
  get a grid (the ST-AdaIN state carried from keyframe to keyframe in a `tf.while_loop`), the frames
  in between linearly interpolated grids, every frame is rendered at full resolution and clipped to
  [0, 1]: the same frames as `VideoStylizer(model, r, interpolation="linear").stylize`.
- `encode_styles`: `styles [K, h, w, 3]` -> `mean_0..mean_5`, `std_0..std_5`, each `[1, K, C_i]`.
- `predict_grids`: `frames [B, H, W, 3]`, `masks [B, H, W, K-1]`, the twelve style statistics and the
  ST-AdaIN state `state_0..state_5` (tensors with zero elements on the first frame of a clip) ->
  `grids [B, GH, GW, GD, 12]`, `enhanced_masks`, `region_grids` and the new `state_0..state_5`.
- `render`: `grids [B, GH, GW, GD, 12]`, `frames [B, H, W, 3]` -> `{"frames": [B, H, W, 3]}` not
  clipped (the streaming caller clips, as VideoStylizer does).

The same functions are attributes of the loaded object (`loaded.stylize`, `loaded.encode_styles`,
`loaded.predict_grids`, `loaded.render`) with concrete functions for uint8, float32 and float64 inputs
(uint8 is divided by 255, float64 cast to float32).

Every exported function validates its inputs inside the graph (`tf.debugging` asserts whose messages
start with the argument's name) before any model work: float images and masks must be finite and in
[0, 1], uint8 masks must be 0/255 (not 0/1), shapes must agree, `r >= 1`. A caller that cannot see
Python (TF Serving) gets an `INVALID_ARGUMENT` status with that message.

Render implementation: the full-resolution render is the model's own, by default with XLA
(`render_impl="xla"`: `model.render_inference`, the fused pass `VideoStylizer` uses), which compiles
once per frame size in the process that serves the model (several times faster than "tf" at
3000x4000); `render_impl="tf"` is `model.render(..., impl="tf")`, without XLA. TF Serving runs XLA
only with `--xla_cpu_compilation_enabled=true` (docs/serving.md).

Variables: the module tracks the model's underlying `tf.Variable`s, not the Keras 3 variable
wrappers, so loaders that restore through the SavedModel's saver (TF Serving, `saved_model_cli run`,
the C++ API) find every variable (with the Keras wrappers they fail with "Could not find variable").

Output rules (`check_output`, `export_saved_model`; the rules themselves are `lvst_tf.fileio`'s,
shared by every tool): an existing destination is replaced only with
`overwrite=True` and only if it is a previous export (it holds the marker file `MARKER_FILE` and
nothing the export did not write); a destination equal to, inside, or containing one of the inputs
is refused; an existing empty folder is used as is. The export is written to a hidden temporary
sibling (`.<name>.export-tmp-<pid>-*`) with the user's umask, then renamed into place (an atomic
exchange on Linux when replacing); stale temporaries of killed runs are removed the next time the
same destination is used.
"""

from __future__ import annotations

import os
import pathlib
import re
import shutil
import time
from typing import Any

from lvst_tf import fileio

NUM_STATS = 6
STAT_KEYS = tuple(f"mean_{i}" for i in range(NUM_STATS)) + tuple(
    f"std_{i}" for i in range(NUM_STATS)
)
STATE_KEYS = tuple(f"state_{i}" for i in range(NUM_STATS))
SIGNATURE_NAMES = ("serving_default", "serving_uint8", "encode_styles", "predict_grids", "render")
RENDER_IMPLS = ("xla", "tf", "auto")  # `ops.SLICE_IMPLS`, XLA first (the default)
MARKER_FILE = "lvst_export.json"
MARKER_FORMAT = "lvst_tf SavedModel export"
# What an export folder holds (tf.saved_model.save writes the first four); anything else in an
# existing destination means it is not (only) ours, and it is never replaced.
EXPORT_ENTRIES = frozenset({"saved_model.pb", "fingerprint.pb", "variables", "assets", MARKER_FILE})
_TMP_TAG = "export-tmp"
# Extra free space asked for besides the variables (the graph file is a few MB).
FREE_SPACE_MARGIN_BYTES = 32 << 20


# ----------------------------------------------------------------------------------------------------
# Loading a training workdir.
# ----------------------------------------------------------------------------------------------------


def load_model_from_workdir(workdir: str | os.PathLike, checkpoint: str | int | None = None) -> Any:
    """Rebuilds and restores the model of a training workdir (see `lvst_tf.loading`)."""
    from lvst_tf import loading  # noqa: PLC0415

    return loading.load_from_workdir(workdir, checkpoint)


# ----------------------------------------------------------------------------------------------------
# Output rules (no TensorFlow): `lvst_tf.fileio` owns them; these are the export's settings.
# ----------------------------------------------------------------------------------------------------

EXPORT_FOLDER = fileio.MarkedFolder(
    marker=MARKER_FILE,
    tool=MARKER_FORMAT,
    key="format",
    description="an export",
    writer="tools/export.py",
    entries=EXPORT_ENTRIES.__contains__,
    temp_tag=_TMP_TAG,
)


def read_marker(path: str | os.PathLike) -> dict | None:
    """The marker of a previous export at `path` (a dict), or None if `path` holds none."""
    return EXPORT_FOLDER.read_marker(path)


def check_output(output: str | os.PathLike, overwrite: bool = False, inputs=()) -> pathlib.Path:
    """Checks an export destination before any work; returns it as an absolute path.

    Args:
      output: the destination folder (created with its parents at export time).
      overwrite: allow replacing an existing previous export.
      inputs: paths the export reads (a workdir, a checkpoint prefix's folder, a shipped model's
        folder); the destination may not be, be inside, or contain any of them.

    Raises:
      ValueError: naming `output` and what is wrong (`fileio.MarkedFolder.check_output`): it
        overlaps an input; it exists and is not a folder (or is a symlink); it is not empty and not
        a previous export (no marker file, or files an export does not write); it is a previous
        export and `overwrite` is False; a parent is a file; its folder is not writable.
    """
    if output is None or str(output) == "":
        raise ValueError("output: required (the SavedModel folder to write).")
    return EXPORT_FOLDER.check_output(output, overwrite, inputs)


def clean_stale_temporaries(output: str | os.PathLike) -> list[pathlib.Path]:
    """Removes temporaries of earlier exports to `output` whose process no longer runs.

    Only folders named `.<name>.export-tmp-<pid>-*` (or `.<name>.old-<pid>-*`, a replaced export
    moved aside) beside `output`, whose process `<pid>` is gone and which hold nothing an export
    does not write, are removed.

    Returns:
      The removed folders.
    """
    return EXPORT_FOLDER.clean_stale(output)


def _first_line(text: str) -> str:
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    return lines[0] if lines else ""


def _op_error_text(message: str) -> str:
    """The readable part of a TensorFlow op error: no `{{function_node ...}}` / `[Op:...]` noise."""
    text = re.sub(r"\{\{[^}]*\}\}\s*", "", _first_line(message))
    text = re.sub(r"\s*\[Op:[^\]]*\]\s*$", "", text)
    if "; " in text:  # "<file>; <reason>" -> "<reason> (<file>)"
        where, _, reason = text.partition("; ")
        text = f"{reason} ({where})"
    return text


# ----------------------------------------------------------------------------------------------------
# In-graph input validation.
# ----------------------------------------------------------------------------------------------------


def _assert_unit_range(x, message):
    """An op failing with `message` unless every value of float32 `x` is finite and in [0, 1].

    One comparison pass decides (NaN compares false); the minimum, maximum and the count of
    non-finite values are only computed to describe a failure.
    """
    import tensorflow as tf  # noqa: PLC0415

    ok = tf.reduce_all(tf.logical_and(x >= 0.0, x <= 1.0))

    def describe():
        bad = tf.reduce_sum(tf.cast(tf.logical_not(tf.math.is_finite(x)), tf.int32))
        check = tf.debugging.Assert(
            ok,
            [
                message,
                "min:",
                tf.reduce_min(x),
                "max:",
                tf.reduce_max(x),
                "non-finite values:",
                bad,
            ],
        )
        with tf.control_dependencies([check]):
            return tf.identity(ok)

    return tf.cond(ok, lambda: ok, describe)


def _image_input(x, name, what):
    """(float32 image, checks): uint8 / 255 (always in range); float cast and range-checked."""
    import tensorflow as tf  # noqa: PLC0415

    if x.dtype == tf.uint8:
        return tf.cast(x, tf.float32) * (1.0 / 255.0), []
    x = tf.cast(x, tf.float32)
    message = (
        f"{name}: float {what} must be finite and in [0, 1] (or pass uint8 0..255); got values "
        "outside [0, 1], NaN or inf"
    )
    return x, [_assert_unit_range(x, message)]


def _mask_input(m, name):
    """(float32 masks, checks): uint8 must be 0/255 (a 0/1 mask would read as ~0); float in [0, 1]."""
    import tensorflow as tf  # noqa: PLC0415

    if m.dtype == tf.uint8:
        check = tf.debugging.Assert(
            tf.logical_or(tf.equal(tf.size(m), 0), tf.not_equal(tf.reduce_max(m), 1)),
            [
                f"{name}: uint8 masks must use 0/255 (255 = inside the object); got a 0/1 mask "
                "(maximum 1): multiply it by 255"
            ],
        )
        return tf.cast(m, tf.float32) * (1.0 / 255.0), [check]
    m = tf.cast(m, tf.float32)
    message = (
        f"{name}: float masks must be finite and in [0, 1] (1 = inside the object; uint8 masks use "
        "0/255); got values outside [0, 1], NaN or inf"
    )
    return m, [_assert_unit_range(m, message)]


def _check(condition, message, *data):
    """`tf.debugging.Assert` whose message starts with the argument's name; shapes in full."""
    import tensorflow as tf  # noqa: PLC0415

    return tf.debugging.Assert(condition, [message, *data], summarize=8)


def _ensure_shape(x, shape):
    """`x`, with its declared shape (`None` = any size) checked when the graph runs.

    A signature call does not check the shapes it declares, and the graph optimizer trusts them: a
    rank assert is folded away (a rank-3 tensor then gives an unrelated error deep in the graph, or
    a wrong result). `tf.ensure_shape` is kept and fails with "Shape of tensor <input name> [...] is
    not compatible with expected shape [...]", which names the argument.
    """
    import tensorflow as tf  # noqa: PLC0415

    return tf.ensure_shape(x, shape)


def _gated(checks, *tensors):
    """`tensors` that can only be computed after every check passed (so no work starts before)."""
    import tensorflow as tf  # noqa: PLC0415

    with tf.control_dependencies(checks):
        out = tuple(tf.identity(t) for t in tensors)
    return out if len(out) > 1 else out[0]


# ----------------------------------------------------------------------------------------------------
# The exported module.
# ----------------------------------------------------------------------------------------------------


def _plain_variables(model: Any) -> list:
    """The model's `tf.Variable`s under their Keras 3 wrappers (what the traced functions capture)."""
    import tensorflow as tf  # noqa: PLC0415

    out = []
    for weight in model.weights:
        variable = weight if isinstance(weight, tf.Variable) else getattr(weight, "value", None)
        if not isinstance(variable, tf.Variable):
            raise ValueError(
                f"model: weight {getattr(weight, 'path', weight)!r} is not backed by a tf.Variable; "
                "the export supports the TensorFlow backend only."
            )
        out.append(variable)
    return out


class StylizerModule:
    """Builds the `tf.Module` that is saved: the inference functions of a `LocalizedStyleModel`.

    Each public function (`stylize`, `encode_styles`, `predict_grids`, `render`) is a thin
    tf.function that validates and casts its inputs to float32 (per dtype) and calls one float32 core
    function with a fixed input signature, so the model is traced once per core whatever the number
    of dtype variants (tracing the model is what makes export and loading slow).

    Args:
      model: a built `LocalizedStyleModel` (weights loaded).
      render_impl: the slice implementation of the full-resolution render, one of `RENDER_IMPLS`
        ("xla": compiled once per frame size where the model is served; "tf": no XLA).

    Attributes:
      root: the `tf.Module` to save. It tracks the model's plain `tf.Variable`s (`model_variables`),
        never the Keras model itself (see the module docstring), plus `soft_mask_mode`, `low_res`,
        `grid_shape` and `render_impl` as variables, and the four functions.
    """

    def __init__(self, model: Any, render_impl: str = "xla"):
        import tensorflow as tf  # noqa: PLC0415

        if render_impl not in RENDER_IMPLS:
            raise ValueError(f"render_impl: must be one of {RENDER_IMPLS}; got {render_impl!r}.")
        self.model = model
        self.render_impl = render_impl
        # The soft grid mask mode (docs/method.md#soft-mask): the model's configured one, baked in.
        self._soft_mask_mode = str(getattr(model, "soft_mask_mode", "normalized"))
        size = int(model.low_res)
        root = tf.Module(name="lvst_stylizer")
        root.model_variables = _plain_variables(model)
        # Variables (not constants) so these are plain, inspectable values of the SavedModel.
        root.soft_mask_mode = tf.Variable(
            self._soft_mask_mode, trainable=False, name="soft_mask_mode"
        )
        root.render_impl = tf.Variable(render_impl, trainable=False, name="render_impl")
        root.low_res = tf.Variable(size, dtype=tf.int32, trainable=False, name="low_res")
        root.grid_shape = tf.Variable(
            [int(d) for d in model.grid_shape], dtype=tf.int32, trainable=False, name="grid_shape"
        )
        # Probe once for the style-statistics channels and the state shapes.
        probe = tf.zeros([1, size, size, 3], tf.float32)
        stats = model.encode_styles(tf.zeros([2, size, size, 3], tf.float32))
        missing = set(STAT_KEYS) - set(stats)
        if missing:
            raise ValueError(
                f"model.encode_styles must return {STAT_KEYS}; missing {sorted(missing)}."
            )
        out = model.predict_grids(probe, tf.zeros([1, size, size, 1]), stats)
        missing = set(STATE_KEYS) - set(out)
        if missing:
            raise ValueError(
                f"model.predict_grids must return {STATE_KEYS}; missing {sorted(missing)}."
            )
        self._stat_channels = {k: int(stats[k].shape[-1]) for k in STAT_KEYS}
        self._state_shapes = {k: [int(d) for d in out[k].shape] for k in STATE_KEYS}
        self._grid_shape = [int(d) for d in model.grid_shape]

        image = tf.TensorSpec([None, None, None, 3], tf.float32)
        grid = tf.TensorSpec([None, *self._grid_shape, 12], tf.float32)
        masks = tf.TensorSpec([None, None, None, None], tf.float32)
        stats_spec = {
            k: tf.TensorSpec([None, None, c], tf.float32) for k, c in self._stat_channels.items()
        }
        state_spec = {k: tf.TensorSpec([None] * 5, tf.float32) for k in STATE_KEYS}

        def fn(python_function, input_signature=None):
            # Autograph off: the cores use explicit tf.while_loop / tf.cond, and autograph's
            # conversion of Keras internals is slow and fragile.
            return tf.function(python_function, input_signature=input_signature, autograph=False)

        self._encode_f32 = fn(self._stats, [image])
        self._predict_f32 = fn(self._predict_core, [image, masks, stats_spec, state_spec])
        self._render_f32 = fn(self._render_core, [grid, image])
        self._stylize_f32 = fn(
            self._stylize_core, [image, masks, image, tf.TensorSpec([], tf.int32)]
        )
        # No input_signature: one concrete function per dtype is registered by `signatures()`, and
        # the loaded object dispatches on the caller's dtype.
        root.stylize = fn(self._stylize)
        root.encode_styles = fn(self._encode_styles)
        root.predict_grids = fn(self._predict_grids)
        root.render = fn(self._render)
        self.root = root

    def empty_state(self) -> dict:
        """The "first frame" state: zero-element tensors `[0, 1, 1, 1, S_i]` (S_i: state channels)."""
        import tensorflow as tf  # noqa: PLC0415

        return {k: tf.zeros([0, 1, 1, 1, s[-1]], tf.float32) for k, s in self._state_shapes.items()}

    def variable_bytes(self) -> int:
        """Bytes of every saved model variable (what `variables/` will roughly hold)."""
        return sum(int(v.shape.num_elements()) * v.dtype.size for v in self.root.model_variables)

    # -- float32 cores (traced once; inputs already validated) --------------------------------------

    def _stats(self, styles):
        import tensorflow as tf  # noqa: PLC0415

        stats = self.model.encode_styles(styles)
        return {k: tf.convert_to_tensor(stats[k], tf.float32) for k in STAT_KEYS}

    def _predict_core(self, frames, masks, stats, state):
        import tensorflow as tf  # noqa: PLC0415

        # The model reads a state with zero elements as "first frame of a clip" (DESIGN.md); give
        # it one whose non-batch dims are valid for its reshape, whatever empty shape came in.
        state = {
            k: tf.cond(
                tf.equal(tf.size(v), 0),
                lambda k=k: tf.zeros([0, 1, 1, 1, self._state_shapes[k][-1]], tf.float32),
                lambda v=v: v,
            )
            for k, v in state.items()
        }
        out = self.model.predict_grids(
            frames, masks, stats, state=state, soft_mask_mode=self._soft_mask_mode
        )
        result = {k: tf.convert_to_tensor(out[k], tf.float32) for k in ("grids",) + STATE_KEYS}
        for k in ("region_grids", "enhanced_masks"):
            if k in out:
                result[k] = tf.convert_to_tensor(out[k], tf.float32)
        return result

    def _render_core(self, grids, frames, clip=False):
        """The model's own full-resolution render: `render_inference` (guide, slice/apply and clip
        in one XLA pass, what `VideoStylizer` uses) for the XLA implementation, `render(impl=...)`
        otherwise (and for models without `render_inference`)."""
        import tensorflow as tf  # noqa: PLC0415

        if self.render_impl != "tf" and callable(getattr(self.model, "render_inference", None)):
            return self.model.render_inference(grids, frames, clip=clip)
        out = self.model.render(grids, frames, impl=self.render_impl)
        return tf.clip_by_value(out, 0.0, 1.0) if clip else out

    def _stylize_core(self, frames, masks, styles, r):
        """A whole clip: the keyframes, state and interpolation of VideoStylizer ("linear")."""
        import tensorflow as tf  # noqa: PLC0415

        from lvst_tf import ops  # noqa: PLC0415

        num_frames = tf.shape(frames)[0]
        stats = self._stats(styles)
        # The one keyframe rule (docs/method.md#subsampling): keys 0, r, 2r, ... and the last frame,
        # and per frame its two keyframes and blend weight.
        schedule = ops.keyframe_schedule(num_frames, r)
        keys = schedule.keys
        num_keys = tf.shape(keys)[0]
        key_grids = tf.TensorArray(tf.float32, size=num_keys, element_shape=[*self._grid_shape, 12])

        def key_body(i, grids_ta, *state):
            # The ST-AdaIN state goes from keyframe to keyframe; empty on the first one.
            t = keys[i]
            out = self._predict_core(
                frames[t : t + 1], masks[t : t + 1], stats, dict(zip(STATE_KEYS, state))
            )
            return (i + 1, grids_ta.write(i, out["grids"][0])) + tuple(out[k] for k in STATE_KEYS)

        empty = self.empty_state()
        loop = tf.while_loop(
            lambda i, *_: i < num_keys,
            key_body,
            (tf.constant(0), key_grids, *[empty[k] for k in STATE_KEYS]),
            shape_invariants=(
                tf.TensorShape([]),
                tf.TensorShape(None),
                *[tf.TensorShape([None] * 5) for _ in STATE_KEYS],
            ),
            parallel_iterations=1,
        )
        key_grids = loop[1].stack()  # [N_key, GH, GW, GD, 12]

        def render_body(t, out_ta):
            lower, upper = schedule.lower[t], schedule.upper[t]
            grid = key_grids[lower] + schedule.weight[t] * (key_grids[upper] - key_grids[lower])
            image = self._render_core(grid[None], frames[t : t + 1], clip=True)[0]
            return t + 1, out_ta.write(t, image)

        out_ta = tf.TensorArray(tf.float32, size=num_frames, element_shape=[None, None, 3])
        # One frame at a time: the intermediates stay those of one full-res frame.
        _, out_ta = tf.while_loop(
            lambda t, _: t < num_frames, render_body, (tf.constant(0), out_ta),
            parallel_iterations=1,
        )  # fmt: skip
        return {"frames": out_ta.stack()}

    # -- dtype front ends (uint8 / float32 / float64): validation, then the float32 core ------------
    # Declared shapes are enforced first (`_ensure_shape`: every later op reads the checked tensors),
    # then values and shape agreements are asserted, and the core's inputs depend on all of those
    # asserts, so no model work starts on invalid inputs.

    def _encode_styles(self, styles):
        """`styles [K, h, w, 3]` -> `{mean_i, std_i: [1, K, C_i]}`."""
        import tensorflow as tf  # noqa: PLC0415

        styles = _ensure_shape(styles, [None, None, None, 3])
        styles_f, checks = _image_input(styles, "styles", "styles")
        shape = tf.shape(styles)
        checks.append(
            _check(
                tf.reduce_all(shape[:3] > 0),
                "styles: expected [K, h, w, 3] with K, h, w >= 1; got shape",
                shape,
            )
        )
        return self._encode_f32(_gated(checks, styles_f))

    def _predict_grids(self, frames, masks, mean_0, mean_1, mean_2, mean_3, mean_4, mean_5,
                       std_0, std_1, std_2, std_3, std_4, std_5,
                       state_0, state_1, state_2, state_3, state_4, state_5):  # fmt: skip
        """One keyframe with explicit ST-AdaIN state (zero-element state = first frame)."""
        import tensorflow as tf  # noqa: PLC0415

        stats = dict(zip(STAT_KEYS, (mean_0, mean_1, mean_2, mean_3, mean_4, mean_5,
                                     std_0, std_1, std_2, std_3, std_4, std_5)))  # fmt: skip
        state = dict(zip(STATE_KEYS, (state_0, state_1, state_2, state_3, state_4, state_5)))
        frames = _ensure_shape(frames, [None, None, None, 3])
        masks = _ensure_shape(masks, [None] * 4)
        stats = {
            k: _ensure_shape(v, [None, None, self._stat_channels[k]]) for k, v in stats.items()
        }
        state = {k: _ensure_shape(v, [None] * 5) for k, v in state.items()}
        mean_0 = stats["mean_0"]
        frames_f, checks = _image_input(frames, "frames", "frames")
        masks_f, mask_checks = _mask_input(masks, "masks")
        fs, ms, ks = tf.shape(frames), tf.shape(masks), tf.shape(mean_0)
        checks += mask_checks + [
            _check(tf.reduce_all(fs[:3] > 0),
                   "frames: expected [B, H, W, 3] with B, H, W >= 1; got shape", fs),
            _check(tf.logical_and(tf.reduce_all(tf.equal(ms[:3], fs[:3])), ms[3] >= 1),
                   "masks: expected [B, H, W, K-1] with the B, H, W of frames and K-1 >= 1; got "
                   "masks", ms, "frames", fs),
            _check(tf.equal(ks[1], ms[3] + 1),
                   "mean_0..std_5: the style statistics need K = (K-1 of masks) + 1 regions in "
                   "axis 1 (encode_styles of K styles); got mean_0", ks, "masks", ms),
        ]  # fmt: skip
        # Every piece of model work needs the frames and masks, so gating them holds it all back.
        frames_f, masks_f = _gated(checks, frames_f, masks_f)
        return self._predict_f32(frames_f, masks_f, stats, state)

    def _render(self, grids, frames):
        """`grids [B, GH, GW, GD, 12]`, `frames [B, H, W, 3]` -> `{"frames": [B, H, W, 3]}`."""
        import tensorflow as tf  # noqa: PLC0415

        grids = _ensure_shape(grids, [None, *self._grid_shape, 12])
        frames = _ensure_shape(frames, [None, None, None, 3])
        frames_f, checks = _image_input(frames, "frames", "frames")
        fs, gs = tf.shape(frames), tf.shape(grids)
        checks += [
            _check(tf.reduce_all(tf.math.is_finite(grids)),
                   "grids: must be finite; got NaN or inf (from predict_grids on invalid "
                   "inputs?)"),
            _check(tf.logical_and(tf.reduce_all(fs[:3] > 0), tf.equal(fs[0], gs[0])),
                   "frames: expected [B, H, W, 3] with H, W >= 1 and the B of grids; got frames",
                   fs, "grids", gs),
        ]  # fmt: skip
        grids, frames_f = _gated(checks, grids, frames_f)
        return {"frames": self._render_f32(grids, frames_f)}

    def _stylize(self, frames, masks, styles, r):
        """A clip: `frames [T, H, W, 3]`, `masks [T, H, W, K-1]`, `styles [K, h, w, 3]`, `r`."""
        import tensorflow as tf  # noqa: PLC0415

        frames = _ensure_shape(frames, [None, None, None, 3])
        masks = _ensure_shape(masks, [None] * 4)
        styles = _ensure_shape(styles, [None, None, None, 3])
        r = _ensure_shape(r, [])
        frames_f, checks = _image_input(frames, "frames", "frames")
        masks_f, mask_checks = _mask_input(masks, "masks")
        styles_f, style_checks = _image_input(styles, "styles", "styles")
        fs, ms, ss = tf.shape(frames), tf.shape(masks), tf.shape(styles)
        checks += mask_checks + style_checks + [
            _check(tf.reduce_all(fs[:3] > 0),
                   "frames: expected [T, H, W, 3] with T, H, W >= 1; got shape", fs),
            _check(tf.logical_and(tf.reduce_all(tf.equal(ms[:3], fs[:3])), ms[3] >= 1),
                   "masks: expected [T, H, W, K-1] with the T, H, W of frames and K-1 >= 1 "
                   "object masks; got masks", ms, "frames", fs),
            _check(tf.logical_and(tf.equal(ss[0], ms[3] + 1), tf.reduce_all(ss[1:3] > 0)),
                   "styles: expected [K, h, w, 3] with K = (K-1 of masks) + 1 images, one per "
                   "object mask and the last for the background; got styles", ss, "masks", ms),
            _check(r >= 1, "r: expected an int32 >= 1 (a keyframe every r frames); got", r),
        ]  # fmt: skip
        frames_f, masks_f, styles_f, r = _gated(checks, frames_f, masks_f, styles_f, r)
        return self._stylize_f32(frames_f, masks_f, styles_f, r)

    # -- concrete functions -------------------------------------------------------------------------

    def concrete(self, name: str, dtype=None, mask_dtype=None):
        """The concrete function `name` for image inputs of `dtype` (masks of `mask_dtype`)."""
        import tensorflow as tf  # noqa: PLC0415

        dtype = tf.float32 if dtype is None else dtype
        mask_dtype = dtype if mask_dtype is None else mask_dtype
        image = tf.TensorSpec([None, None, None, 3], dtype, "frames")
        masks = tf.TensorSpec([None, None, None, None], mask_dtype, "masks")
        if name == "stylize":
            return self.root.stylize.get_concrete_function(
                frames=image,
                masks=masks,
                styles=tf.TensorSpec([None, None, None, 3], dtype, "styles"),
                r=tf.TensorSpec([], tf.int32, "r"),
            )
        if name == "encode_styles":
            return self.root.encode_styles.get_concrete_function(
                styles=tf.TensorSpec([None, None, None, 3], dtype, "styles")
            )
        if name == "predict_grids":
            return self.root.predict_grids.get_concrete_function(
                frames=image,
                masks=masks,
                **{
                    k: tf.TensorSpec([None, None, c], tf.float32, k)
                    for k, c in self._stat_channels.items()
                },
                **{k: tf.TensorSpec([None] * 5, tf.float32, k) for k in STATE_KEYS},
            )
        if name == "render":
            grid = tf.TensorSpec([None, *self._grid_shape, 12], tf.float32, "grids")
            return self.root.render.get_concrete_function(grids=grid, frames=image)
        raise ValueError(
            f"name must be one of stylize, encode_styles, predict_grids, render; got {name!r}."
        )

    def signatures(self) -> dict[str, Any]:
        """Traces every dtype variant and returns the serving signatures (float32 unless named)."""
        import tensorflow as tf  # noqa: PLC0415

        for dtype in (tf.uint8, tf.float32, tf.float64):
            for name in ("stylize", "encode_styles", "predict_grids", "render"):
                self.concrete(name, dtype)
        # Common mix: uint8 decoded frames with float masks from a segmenter.
        self.concrete("stylize", tf.uint8, tf.float32)
        self.concrete("predict_grids", tf.uint8, tf.float32)
        return {
            "serving_default": self.concrete("stylize", tf.float32),
            "serving_uint8": self.concrete("stylize", tf.uint8),
            "encode_styles": self.concrete("encode_styles", tf.float32),
            "predict_grids": self.concrete("predict_grids", tf.float32),
            "render": self.concrete("render", tf.float32),
        }


def export_saved_model(
    model: Any,
    output_dir: str | os.PathLike,
    overwrite: bool = False,
    render_impl: str = "xla",
    inputs=(),
    source: str | None = None,
) -> pathlib.Path:
    """Writes `model` as a SavedModel with the signatures of the module docstring.

    Args:
      model: a built `LocalizedStyleModel` (e.g. from `lvst_tf.loading.load_model`).
      output_dir: destination folder (created with its parents). For TF Serving pass a version
        folder such as `saved_models/run/1`. See :func:`check_output` for what may be there.
      overwrite: replace a previous export at `output_dir` (never anything else).
      render_impl: the render's slice implementation, one of `RENDER_IMPLS` ("xla" default).
      inputs: paths the model was read from; `output_dir` may not overlap them.
      source: a description of the model's origin, recorded in the marker file.

    Returns:
      The absolute path of the SavedModel.

    Raises:
      ValueError: a refused destination (`check_output`), too little free space for the
        variables, or an invalid `render_impl`; nothing is written then.
      OSError: writing failed (disk full, permissions...); the message names the folder. Nothing
        is left at `output_dir` (a previous export stays as it was) and the temporary is removed.
    """
    import tensorflow as tf  # noqa: PLC0415

    if render_impl not in RENDER_IMPLS:
        raise ValueError(f"render_impl: must be one of {RENDER_IMPLS}; got {render_impl!r}.")
    out = check_output(output_dir, overwrite, inputs)
    module = StylizerModule(model, render_impl=render_impl)
    marker = {
        "version": 1,
        "created_unix": time.time(),
        "source": source,
        "render_impl": render_impl,
        "soft_mask_mode": module._soft_mask_mode,  # noqa: SLF001 (own class)
        "low_res": int(model.low_res),
        "signatures": list(SIGNATURE_NAMES),
    }
    try:
        # The checks, temporary sibling, marker, umask and rename are `fileio`'s (see the module doc).
        with EXPORT_FOLDER.building(out, overwrite, inputs, **marker) as tmp:
            need = module.variable_bytes() + FREE_SPACE_MARGIN_BYTES
            free = shutil.disk_usage(tmp).free
            if free < need:
                raise ValueError(
                    f"output: only {free / 2**20:.1f} MB free under {str(out.parent)!r}; the "
                    f"export needs about {need / 2**20:.0f} MB."
                )
            signatures = module.signatures()
            try:
                tf.saved_model.save(module.root, str(tmp), signatures=signatures)
            except tf.errors.OpError as e:
                raise OSError(
                    f"output: writing the SavedModel under {str(out.parent)!r} failed: "
                    f"{_op_error_text(e.message)}"
                ) from e
    except OSError as e:
        if str(e).startswith("output: "):
            raise
        raise OSError(
            f"output: writing the SavedModel under {str(out.parent)!r} failed: {e.strerror or e}"
        ) from e
    return out


# ----------------------------------------------------------------------------------------------------
# Using a loaded SavedModel like the model.
# ----------------------------------------------------------------------------------------------------


def load_saved_model(path: str | os.PathLike) -> Any:
    """`tf.saved_model.load` with a clear error when `path` is not one of our SavedModels."""
    import tensorflow as tf  # noqa: PLC0415

    path = pathlib.Path(path)
    if not (path / "saved_model.pb").is_file():
        raise ValueError(
            f"saved_model: {str(path)!r} holds no saved_model.pb; expected a folder written by "
            "tools/export.py."
        )
    loaded = tf.saved_model.load(str(path))
    missing = [n for n in SIGNATURE_NAMES if n not in loaded.signatures]
    if missing:
        raise ValueError(f"saved_model: {str(path)!r} lacks the signatures {missing}.")
    return loaded


class SavedModelAdapter:
    """Makes a loaded SavedModel look like a `LocalizedStyleModel` to `VideoStylizer`.

    It calls the exported `encode_styles`, `predict_grids` and `render` signatures and keeps nothing
    itself: the ST-AdaIN state goes in and out of `predict_grids` explicitly (zero-element tensors
    for the first frame), which is what a streaming server does.

    Attributes:
      soft_mask_mode: the mode baked into the export ("normalized" or "paper").
      render_impl: the export's render implementation ("xla" / "tf"; None for older exports).
    """

    def __init__(self, loaded: Any):
        self.loaded = loaded
        self._encode = loaded.signatures["encode_styles"]
        self._predict = loaded.signatures["predict_grids"]
        self._render = loaded.signatures["render"]
        self.low_res = int(loaded.low_res.numpy())
        self.grid_shape = tuple(int(d) for d in loaded.grid_shape.numpy())
        self.soft_mask_mode = loaded.soft_mask_mode.numpy().decode()
        impl = getattr(loaded, "render_impl", None)
        self.render_impl = impl.numpy().decode() if impl is not None else None

    @classmethod
    def from_path(cls, path: str | os.PathLike) -> SavedModelAdapter:
        return cls(load_saved_model(path))

    def encode_styles(self, styles):
        """`[K, h, w, 3]` float32 -> `{mean_i, std_i: [1, K, C]}`."""
        import tensorflow as tf  # noqa: PLC0415

        return self._encode(styles=tf.convert_to_tensor(styles, tf.float32))

    def predict_grids(self, frames, masks, style_stats, state=None, soft_mask_mode=None):
        """One keyframe through the `predict_grids` signature.

        Args:
          soft_mask_mode: None (the export's own mode, as for the model) or that same mode; another
            mode cannot be honoured (it is baked in at export) and raises ValueError.
        """
        import tensorflow as tf  # noqa: PLC0415

        if soft_mask_mode not in (None, self.soft_mask_mode):
            raise ValueError(
                f"soft_mask_mode: the SavedModel was exported with {self.soft_mask_mode!r}; "
                f"got {soft_mask_mode!r} (pass None or {self.soft_mask_mode!r})."
            )
        if state is None:
            state = {k: tf.zeros([0, 0, 0, 0, 0], tf.float32) for k in STATE_KEYS}
        inputs = {k: tf.convert_to_tensor(style_stats[k], tf.float32) for k in STAT_KEYS}
        inputs.update({k: tf.convert_to_tensor(state[k], tf.float32) for k in STATE_KEYS})
        return self._predict(
            frames=tf.convert_to_tensor(frames, tf.float32),
            masks=tf.convert_to_tensor(masks, tf.float32),
            **inputs,
        )

    def render(self, grids, frames, impl=None):
        """`grids [B, GH, GW, GD, 12]`, `frames [B, H, W, 3]` -> `[B, H, W, 3]` not clipped.

        `impl` is accepted for the model's signature and ignored: the export's own implementation
        (`render_impl`) is used.
        """
        import tensorflow as tf  # noqa: PLC0415

        del impl
        return self._render(grids=grids, frames=tf.convert_to_tensor(frames, tf.float32))["frames"]
