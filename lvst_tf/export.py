"""SavedModel export of a trained model, with explicit signatures (METHOD sections 2 and 6).

- :func:`load_model_from_workdir` rebuilds the model of a training workdir from its
  `operative_config.gin` (so no hyperparameter is ever retyped) and restores its latest or a named
  checkpoint (`tf.train.Checkpoint(model=model)`, see docs/DESIGN.md).
- :func:`export_saved_model` writes a SavedModel through `tf.saved_model.save` on a `tf.Module`
  wrapper (:class:`StylizerModule`; Keras 3 rejects `model.save(dir)`), atomically (a temporary folder
  beside the destination, renamed at the end).
- :class:`SavedModelAdapter` wraps a *loaded* SavedModel so that it looks like the model to
  `lvst_tf.inference.VideoStylizer` (streaming with the exported pieces).

Signatures (all inputs dynamic in T, H, W, K; docs/serving.md has the table):

- `serving_default` (float32) and `serving_uint8` (uint8 frames/masks/styles): `frames [T, H, W, 3]`,
  `masks [T, H, W, K-1]`, `styles [K, h, w, 3]`, `r` int32 scalar -> `{"frames": [T, H, W, 3]
  float32 in [0, 1]}`. Keyframes 0, r, 2r, ... and the last frame get a grid (the ST-AdaIN state
  carried from keyframe to keyframe in a `tf.while_loop`), the frames in between linearly
  interpolated grids, every frame is rendered at full resolution and clipped to [0, 1]: the same
  frames as `VideoStylizer(model, r, interpolation="linear").stylize`.
- `encode_styles`: `styles [K, h, w, 3]` -> `mean_0..mean_5`, `std_0..std_5`, each `[1, K, C_i]`.
- `predict_grids`: `frames [B, H, W, 3]`, `masks [B, H, W, K-1]`, the twelve style statistics and the
  ST-AdaIN state `state_0..state_5` (tensors with zero elements on the first frame of a clip) ->
  `grids [B, GH, GW, GD, 12]`, `enhanced_masks`, `region_grids` and the new `state_0..state_5`.
- `render`: `grids [B, GH, GW, GD, 12]`, `frames [B, H, W, 3]` -> `{"frames": [B, H, W, 3]}` not
  clipped (the streaming caller clips, as VideoStylizer does).

The same functions are attributes of the loaded object (`loaded.stylize`, `loaded.encode_styles`,
`loaded.predict_grids`, `loaded.render`) with concrete functions for uint8, float32 and float64 inputs
(uint8 is divided by 255, float64 cast to float32). Nothing is XLA-compiled: a SavedModel holding an
XLA function recompiles for every new input shape.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import tempfile
from typing import Any

import tensorflow as tf

NUM_STATS = 6
STAT_KEYS = tuple(f"mean_{i}" for i in range(NUM_STATS)) + tuple(
    f"std_{i}" for i in range(NUM_STATS)
)
STATE_KEYS = tuple(f"state_{i}" for i in range(NUM_STATS))
DTYPES = (tf.uint8, tf.float32, tf.float64)
SIGNATURE_NAMES = ("serving_default", "serving_uint8", "encode_styles", "predict_grids", "render")


# ----------------------------------------------------------------------------------------------------
# Loading a training workdir.
# ----------------------------------------------------------------------------------------------------


def load_model_from_workdir(workdir: str | os.PathLike, checkpoint: str | int | None = None) -> Any:
    """Rebuilds and restores the model of a training workdir (see `lvst_tf.loading`)."""
    from lvst_tf import loading

    return loading.load_from_workdir(workdir, checkpoint)


# ----------------------------------------------------------------------------------------------------
# The exported module.
# ----------------------------------------------------------------------------------------------------


def _to_float(x: tf.Tensor) -> tf.Tensor:
    """uint8 0..255 -> float32 [0, 1]; float32/float64 -> float32 (no clipping)."""
    if x.dtype == tf.uint8:
        return tf.cast(x, tf.float32) * (1.0 / 255.0)
    return tf.cast(x, tf.float32)


class StylizerModule(tf.Module):
    """tf.Module wrapper with the inference functions of a `LocalizedStyleModel` (see module doc).

    Each public function (`stylize`, `encode_styles`, `predict_grids`, `render`) is a thin
    tf.function that casts its image inputs to float32 and calls one float32 core function with a
    fixed input signature, so the model is traced once per core whatever the number of dtype
    variants (tracing the model is what makes export and loading slow).

    Args:
      model: a built `LocalizedStyleModel` (weights loaded).
    """

    def __init__(self, model: Any):
        super().__init__(name="lvst_stylizer")
        self.model = model
        # The soft grid mask mode (METHOD section 5) is the model's configured one, baked in.
        self._soft_mask_mode = str(getattr(model, "soft_mask_mode", "normalized"))
        size = int(model.low_res)
        # Variables (not constants) so these are plain, inspectable values of the SavedModel.
        self.soft_mask_mode = tf.Variable(
            self._soft_mask_mode, trainable=False, name="soft_mask_mode"
        )
        self.low_res = tf.Variable(size, dtype=tf.int32, trainable=False, name="low_res")
        self.grid_shape = tf.Variable(
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
        # render() of the model uses the XLA slice by default; a SavedModel holding an XLA function
        # recompiles for every new frame size, so the export renders with the plain-TF slice. Check
        # that this is the same computation as the model's render.
        reference = model.render(out["grids"], probe)
        mine = self._render_core(out["grids"], probe)
        if float(tf.reduce_max(tf.abs(reference - mine))) > 1e-4:
            raise ValueError(
                "model.render is no longer guide + bilateral_slice_apply; update export."
            )

        image = tf.TensorSpec([None, None, None, 3], tf.float32)
        grid = tf.TensorSpec([None, *self._state_free_grid_shape(), 12], tf.float32)
        masks = tf.TensorSpec([None, None, None, None], tf.float32)
        stats_spec = {
            k: tf.TensorSpec([None, None, c], tf.float32) for k, c in self._stat_channels.items()
        }
        state_spec = {k: tf.TensorSpec([None] * 5, tf.float32) for k in STATE_KEYS}
        self._encode_f32 = tf.function(self._stats, input_signature=[image])
        self._predict_f32 = tf.function(
            self._predict_core, input_signature=[image, masks, stats_spec, state_spec]
        )
        self._render_f32 = tf.function(self._render_core, input_signature=[grid, image])
        self._stylize_f32 = tf.function(
            self._stylize_core, input_signature=[image, masks, image, tf.TensorSpec([], tf.int32)]
        )
        # No input_signature: one concrete function per dtype is registered by `signatures()`, and
        # the loaded object dispatches on the caller's dtype.
        self.stylize = tf.function(self._stylize)
        self.encode_styles = tf.function(self._encode_styles)
        self.predict_grids = tf.function(self._predict_grids)
        self.render = tf.function(self._render)

    def _state_free_grid_shape(self) -> list[int]:
        return [int(d) for d in self.model.grid_shape]

    def empty_state(self) -> dict[str, tf.Tensor]:
        """The "first frame" state: zero-element tensors `[0, 1, 1, 1, C_i]`."""
        return {k: tf.zeros([0, 1, 1, 1, s[-1]], tf.float32) for k, s in self._state_shapes.items()}

    # -- float32 cores (traced once) ----------------------------------------------------------------

    def _stats(self, styles: tf.Tensor) -> dict[str, tf.Tensor]:
        stats = self.model.encode_styles(styles)
        return {k: tf.convert_to_tensor(stats[k], tf.float32) for k in STAT_KEYS}

    def _predict_core(self, frames, masks, stats, state):
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

    def _render_core(self, grids, frames):
        from lvst_tf import ops

        return ops.bilateral_slice_apply(grids, self.model.guide(frames), frames, impl="tf")

    def _stylize_core(self, frames, masks, styles, r):
        """A whole clip: same keyframes, state and interpolation as VideoStylizer ("linear")."""
        tf.debugging.assert_positive(r, message="r must be an int32 scalar >= 1")
        num_frames = tf.shape(frames)[0]
        tf.debugging.assert_positive(num_frames, message="frames must hold at least one frame")
        tf.debugging.assert_equal(
            tf.shape(masks)[:3], tf.shape(frames)[:3],
            message="masks must be [T, H, W, K-1] with the frames' T, H, W",
        )  # fmt: skip
        stats = self._stats(styles)
        # Keyframes 0, r, 2r, ... and always the last frame (METHOD section 6).
        keys = tf.range(0, num_frames, r)
        keys = tf.cond(
            tf.equal(keys[-1], num_frames - 1),
            lambda: keys,
            lambda: tf.concat([keys, [num_frames - 1]], 0),
        )
        num_keys = tf.shape(keys)[0]
        grid_shape = [*self._state_free_grid_shape(), 12]
        key_grids = tf.TensorArray(tf.float32, size=num_keys, element_shape=grid_shape)

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
            # Linear interpolation between the keyframes around t (as ops.interpolate_grids).
            lower = tf.reduce_sum(tf.cast(keys <= t, tf.int32)) - 1
            upper = tf.minimum(lower + 1, num_keys - 1)
            key_lo = tf.cast(keys[lower], tf.float32)
            key_hi = tf.cast(keys[upper], tf.float32)
            w = tf.clip_by_value(
                tf.math.divide_no_nan(tf.cast(t, tf.float32) - key_lo, key_hi - key_lo), 0.0, 1.0
            )
            grid = key_grids[lower] + w * (key_grids[upper] - key_grids[lower])
            image = self._render_core(grid[None], frames[t : t + 1])[0]
            return t + 1, out_ta.write(t, tf.clip_by_value(image, 0.0, 1.0))

        out_ta = tf.TensorArray(tf.float32, size=num_frames, element_shape=[None, None, 3])
        # One frame at a time: the intermediates stay those of one full-res frame.
        _, out_ta = tf.while_loop(
            lambda t, _: t < num_frames, render_body, (tf.constant(0), out_ta),
            parallel_iterations=1,
        )  # fmt: skip
        return {"frames": out_ta.stack()}

    # -- dtype front ends (any of uint8 / float32 / float64) ----------------------------------------

    def _encode_styles(self, styles):
        """`styles [K, h, w, 3]` -> `{mean_i, std_i: [1, K, C_i]}`."""
        return self._encode_f32(_to_float(styles))

    def _predict_grids(self, frames, masks, mean_0, mean_1, mean_2, mean_3, mean_4, mean_5,
                       std_0, std_1, std_2, std_3, std_4, std_5,
                       state_0, state_1, state_2, state_3, state_4, state_5):  # fmt: skip
        """One keyframe with explicit ST-AdaIN state (zero-element state = first frame)."""
        stats = dict(zip(STAT_KEYS, (mean_0, mean_1, mean_2, mean_3, mean_4, mean_5,
                                     std_0, std_1, std_2, std_3, std_4, std_5)))  # fmt: skip
        state = dict(zip(STATE_KEYS, (state_0, state_1, state_2, state_3, state_4, state_5)))
        return self._predict_f32(_to_float(frames), _to_float(masks), stats, state)

    def _render(self, grids, frames):
        """`grids [B, GH, GW, GD, 12]`, `frames [B, H, W, 3]` -> `{"frames": [B, H, W, 3]}`."""
        return {"frames": self._render_f32(grids, _to_float(frames))}

    def _stylize(self, frames, masks, styles, r):
        return self._stylize_f32(_to_float(frames), _to_float(masks), _to_float(styles), r)

    # -- concrete functions -------------------------------------------------------------------------

    def concrete(self, name: str, dtype: tf.DType = tf.float32, mask_dtype: tf.DType | None = None):
        """The concrete function `name` for image inputs of `dtype` (masks of `mask_dtype`)."""
        mask_dtype = dtype if mask_dtype is None else mask_dtype
        image = tf.TensorSpec([None, None, None, 3], dtype, "frames")
        masks = tf.TensorSpec([None, None, None, None], mask_dtype, "masks")
        if name == "stylize":
            return self.stylize.get_concrete_function(
                frames=image,
                masks=masks,
                styles=tf.TensorSpec([None, None, None, 3], dtype, "styles"),
                r=tf.TensorSpec([], tf.int32, "r"),
            )
        if name == "encode_styles":
            return self.encode_styles.get_concrete_function(
                styles=tf.TensorSpec([None, None, None, 3], dtype, "styles")
            )
        if name == "predict_grids":
            return self.predict_grids.get_concrete_function(
                frames=image,
                masks=masks,
                **{
                    k: tf.TensorSpec([None, None, c], tf.float32, k)
                    for k, c in self._stat_channels.items()
                },
                **{k: tf.TensorSpec([None] * 5, tf.float32, k) for k in STATE_KEYS},
            )
        if name == "render":
            grid = tf.TensorSpec([None, *self._state_free_grid_shape(), 12], tf.float32, "grids")
            return self.render.get_concrete_function(grids=grid, frames=image)
        raise ValueError(
            f"name must be one of stylize, encode_styles, predict_grids, render; got {name!r}."
        )

    def signatures(self) -> dict[str, Any]:
        """Traces every dtype variant and returns the serving signatures (float32 unless named)."""
        for dtype in DTYPES:
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
    model: Any, output_dir: str | os.PathLike, overwrite: bool = True
) -> pathlib.Path:
    """Writes `model` as a SavedModel with the signatures of the module docstring.

    Args:
      model: a built `LocalizedStyleModel` (e.g. from :func:`load_model_from_workdir`).
      output_dir: destination folder (created; its parent too). For TF Serving pass a version
        folder such as `saved_models/run/1`.
      overwrite: replace an existing `output_dir` (after the new export succeeded).

    Returns:
      The path of the SavedModel. The export goes to a hidden temporary folder beside
      `output_dir` and is renamed at the end, so an interrupted export leaves nothing at `output_dir`.
    """
    output_dir = pathlib.Path(output_dir)
    if output_dir.exists() and not overwrite:
        raise ValueError(
            f"output_dir: {str(output_dir)!r} exists; pass overwrite=True to replace it."
        )
    if output_dir.exists() and not output_dir.is_dir():
        raise ValueError(f"output_dir: {str(output_dir)!r} exists and is not a folder.")
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    module = StylizerModule(model)
    signatures = module.signatures()
    tmp = pathlib.Path(tempfile.mkdtemp(dir=output_dir.parent, prefix=f".{output_dir.name}.tmp-"))
    try:
        tf.saved_model.save(module, str(tmp), signatures=signatures)
        if output_dir.exists():
            old = pathlib.Path(
                tempfile.mkdtemp(dir=output_dir.parent, prefix=f".{output_dir.name}.old-")
            )
            os.replace(output_dir, old / "x")
            os.replace(tmp, output_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, output_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return output_dir


# ----------------------------------------------------------------------------------------------------
# Using a loaded SavedModel like the model.
# ----------------------------------------------------------------------------------------------------


def load_saved_model(path: str | os.PathLike) -> Any:
    """`tf.saved_model.load` with a clear error when `path` is not one of our SavedModels."""
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
    """

    def __init__(self, loaded: Any):
        self.loaded = loaded
        self._encode = loaded.signatures["encode_styles"]
        self._predict = loaded.signatures["predict_grids"]
        self._render = loaded.signatures["render"]
        self.low_res = int(loaded.low_res.numpy())
        self.grid_shape = tuple(int(d) for d in loaded.grid_shape.numpy())
        self.soft_mask_mode = loaded.soft_mask_mode.numpy().decode()

    @classmethod
    def from_path(cls, path: str | os.PathLike) -> SavedModelAdapter:
        return cls(load_saved_model(path))

    def encode_styles(self, styles):
        """`[K, h, w, 3]` float32 -> `{mean_i, std_i: [1, K, C]}`."""
        return self._encode(styles=tf.convert_to_tensor(styles, tf.float32))

    def predict_grids(self, frames, masks, style_stats, state=None, soft_mask_mode="normalized"):
        if soft_mask_mode not in (None, self.soft_mask_mode):
            raise ValueError(
                f"soft_mask_mode: the SavedModel was exported with {self.soft_mask_mode!r}; "
                f"got {soft_mask_mode!r}."
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

    def render(self, grids, frames):
        return self._render(grids=grids, frames=tf.convert_to_tensor(frames, tf.float32))["frames"]
