"""Streaming localized video stylization with temporal grid sub-sampling (docs/method.md#data-flow,
#subsampling).

`VideoStylizer` drives the three inference pieces of the model (`encode_styles`, `predict_grids`,
`render`, see docs/DESIGN.md):

- style images are encoded once each (optionally over a region of the style image, one mask per
  style); a `style_schedule` blends their statistics linearly over time (docs/method.md#st-adain,
  "style transitions" [decision]);
- bilateral grids are predicted on the keyframes of `ops.keyframe_schedule` (0, r, 2r, ... and the
  last frame); frames in between get grids blended with the schedule's weights
  (docs/method.md#subsampling), or, in the causal `"hold"` mode, the last keyframe's grid;
- the ST-AdaIN state advances from keyframe to keyframe (it is passed explicitly from one
  `predict_grids` call to the next);
- every frame is rendered at its own full resolution, one frame at a time, and clipped to [0, 1] only
  there, at the very end. With a `LocalizedStyleModel`, a uint8 frame goes into one traced function
  as it is: cast, guide, grid blend, slice/apply and clip run without a NumPy float copy
  (`LocalizedStyleModel.render_inference`).

`stream` holds at most r + 1 full-resolution input frames; `stylize` is `stream` over arrays, so the
two give identical frames. See docs/inference.md for the semantics and the reproduction decisions.
"""

from __future__ import annotations

import collections.abc
import numbers
import weakref
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from lvst_tf import ops

__all__ = ["VideoStylizer"]

# The valid options have one owner, `lvst_tf.ops`.
INTERPOLATIONS = ops.INTERPOLATION_MODES
SOFT_MASK_MODES = ops.SOFT_MASK_MODES


# ----------------------------------------------------------------------------------------------------
# Input validation and conversion (everything is checked before any model work).
# ----------------------------------------------------------------------------------------------------


def _check_float_range(x: np.ndarray, name: str) -> None:
    """Raises unless the float array `x` is finite and inside [0, 1]."""
    if x.size == 0:
        return
    lo = float(np.min(x))
    hi = float(np.max(x))
    # min/max propagate NaN, and inf shows up in one of them: two reductions check everything.
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise ValueError(f"{name} contains NaN or inf values; expected finite floats in [0, 1].")
    if lo < 0.0 or hi > 1.0:
        raise ValueError(
            f"{name} has float values in [{lo:.4g}, {hi:.4g}]; expected floats in [0, 1] "
            "(or uint8 in 0..255)."
        )


def _image_dtype_ok(x: np.ndarray) -> bool:
    return x.dtype == np.uint8 or np.issubdtype(x.dtype, np.floating)


def _as_array(x: Any, name: str) -> np.ndarray:
    if isinstance(x, tf.Tensor):
        x = x.numpy()
    try:
        return np.asarray(x)
    except Exception as e:  # noqa: BLE001 - any conversion failure is a bad argument
        raise ValueError(f"{name} must be array-like; got {type(x).__name__}.") from e


def _validate_image(x: Any, name: str, rank: int) -> np.ndarray:
    """Checks an RGB image or stack of them: `rank` dims, last 3, uint8 or float in [0, 1]."""
    x = _as_array(x, name)
    dims = "[H, W, 3]" if rank == 3 else "[T, H, W, 3]"
    if x.ndim != rank or x.shape[-1] != 3:
        raise ValueError(f"{name} must have shape {dims} (RGB); got shape {tuple(x.shape)}.")
    if not _image_dtype_ok(x):
        raise ValueError(f"{name} must be uint8 (0..255) or float in [0, 1]; got dtype {x.dtype}.")
    if any(d == 0 for d in x.shape):
        raise ValueError(f"{name} is empty: shape {tuple(x.shape)}.")
    if x.dtype != np.uint8:
        _check_float_range(x, name)
    return x


def _image_to_float(x: np.ndarray) -> np.ndarray:
    """uint8 0..255 or float [0, 1] -> float32 [0, 1] (no copy for float32 input)."""
    if x.dtype == np.uint8:
        return x.astype(np.float32) * np.float32(1.0 / 255.0)
    return x.astype(np.float32, copy=False)


def _validate_mask(m: Any, name: str, leading: int) -> np.ndarray:
    """Checks a mask (stack) with `leading` leading dims plus [H, W] or [H, W, K-1].

    Returns it with an explicit channel axis, i.e. rank `leading + 3`, dtype unchanged.
    """
    m = _as_array(m, name)
    lead = "[T, " if leading else "["
    if m.ndim == leading + 2:
        m = m[..., None]
    elif m.ndim != leading + 3:
        raise ValueError(
            f"{name} must have shape {lead}H, W] (one object) or {lead}H, W, K-1]; "
            f"got shape {tuple(m.shape)}."
        )
    if any(d == 0 for d in m.shape):
        raise ValueError(f"{name} is empty: shape {tuple(m.shape)}.")
    if m.dtype == np.bool_:
        return m
    if m.dtype == np.uint8:
        # A 0/1 uint8 mask would silently read as 0 and 1/255: refuse it rather than
        # produce a wrong (background-only) result.
        if int(m.max()) == 1:
            raise ValueError(
                f"{name} is uint8 with values 0/1; uint8 masks must use 0/255 "
                "(pass a bool array or multiply by 255)."
            )
        return m
    if np.issubdtype(m.dtype, np.floating):
        _check_float_range(m, name)
        return m
    raise ValueError(f"{name} must be uint8 (0/255), bool or float in [0, 1]; got dtype {m.dtype}.")


def _mask_to_float(m: np.ndarray) -> np.ndarray:
    if m.dtype == np.uint8:
        return m.astype(np.float32) * np.float32(1.0 / 255.0)
    return m.astype(np.float32, copy=False)


def _as_list(value: Any, name: str, rank: int, items: str, array: str) -> list:
    """`value` as a list of K items: an array or tensor of rank `rank` (`array`, e.g.
    "[K, h, w, 3]") is split on its first axis, any other sequence is listed; ValueError naming
    `name` for anything else (a string, a single item). `items` describes the list in messages."""
    if isinstance(value, (np.ndarray, tf.Tensor)):
        arr = _as_array(value, name)
        if arr.ndim != rank:
            raise ValueError(
                f"{name} must be {items} or an array {array}; got an array of shape "
                f"{tuple(arr.shape)}."
            )
        return list(arr)
    if not isinstance(value, collections.abc.Sequence) or isinstance(value, (str, bytes)):
        raise ValueError(f"{name} must be {items}; got {type(value).__name__}.")
    return list(value)


def _validate_styles(styles: Any, name: str) -> list[np.ndarray]:
    """A list of K >= 2 style images `[h, w, 3]` of any size (or an array `[K, h, w, 3]`)."""
    styles = _as_list(
        styles, name, 4, "a list of K style images [h, w, 3] (last = background)", "[K, h, w, 3]"
    )
    if len(styles) < 2:
        raise ValueError(
            f"{name} must hold K >= 2 style images (objects..., background); got {len(styles)}."
        )
    return [_validate_image(s, f"{name}[{k}]", rank=3) for k, s in enumerate(styles)]


def _validate_style_masks(
    masks: Any, styles: list[np.ndarray], name: str
) -> list[np.ndarray | None] | None:
    """None, or K style-region masks `[h_k, w_k]` (or None = whole image) matching the styles."""
    if masks is None:
        return None
    masks = _as_list(
        masks, name, 3, "a list of K masks [h_k, w_k] (None = whole style image)", "[K, h, w]"
    )
    if len(masks) != len(styles):
        raise ValueError(
            f"{name} has {len(masks)} masks for {len(styles)} styles; expected one per style "
            "(None = the whole style image)."
        )
    out: list[np.ndarray | None] = []
    for k, (mask, style) in enumerate(zip(masks, styles)):
        if mask is None:
            out.append(None)
            continue
        checked = _validate_mask(mask, f"{name}[{k}]", leading=0)
        if checked.shape[-1] != 1:
            raise ValueError(f"{name}[{k}] must be one mask [h, w]; got shape {np.shape(mask)}.")
        if checked.shape[:2] != style.shape[:2]:
            raise ValueError(
                f"{name}[{k}] has size {checked.shape[:2]} but its style image has "
                f"{style.shape[:2]}; expected a mask at the style image's size."
            )
        out.append(checked[..., 0])
    return out


def _validate_schedule(
    schedule: Any, num_styles: int | None
) -> list[tuple[int, list[np.ndarray], list[np.ndarray | None] | None]]:
    """`[(frame_index, styles[, style_masks]), ...]`: strictly increasing indices >= 0, equal K."""
    if not isinstance(schedule, collections.abc.Sequence) or isinstance(schedule, (str, bytes)):
        raise ValueError(
            "style_schedule must be a list of (frame_index, styles) pairs; "
            f"got {type(schedule).__name__}."
        )
    if not schedule:
        raise ValueError(
            "style_schedule is empty; pass None or at least one (frame_index, styles)."
        )
    out = []
    prev = -1
    for i, entry in enumerate(schedule):
        if not isinstance(entry, collections.abc.Sequence) or len(entry) not in (2, 3):
            raise ValueError(
                f"style_schedule[{i}] must be a (frame_index, styles) pair "
                "(or a (frame_index, styles, style_masks) triple)."
            )
        index, entry_styles = entry[0], entry[1]
        if isinstance(index, (bool, np.bool_)) or not isinstance(index, numbers.Integral):
            raise ValueError(
                f"style_schedule[{i}][0] (frame_index) must be an int; got {type(index).__name__}."
            )
        index = int(index)
        if index < 0:
            raise ValueError(f"style_schedule[{i}][0] (frame_index) must be >= 0; got {index}.")
        if index <= prev:
            raise ValueError(
                "style_schedule frame indices must be strictly increasing; "
                f"entry {i} has {index} after {prev}."
            )
        prev = index
        entry_styles = _validate_styles(entry_styles, f"style_schedule[{i}][1]")
        if num_styles is None:
            num_styles = len(entry_styles)
        elif len(entry_styles) != num_styles:
            raise ValueError(
                f"style_schedule[{i}][1] has {len(entry_styles)} styles; every entry (and `styles`) "
                f"must have the same K = {num_styles}."
            )
        entry_masks = None
        if len(entry) == 3:
            entry_masks = _validate_style_masks(entry[2], entry_styles, f"style_schedule[{i}][2]")
        out.append((index, entry_styles, entry_masks))
    return out


# ----------------------------------------------------------------------------------------------------
# The stylizer.
# ----------------------------------------------------------------------------------------------------


def _concat_stats(parts: Sequence[dict[str, tf.Tensor]]) -> dict[str, tf.Tensor]:
    """Per-style statistics dicts `{key: [1, 1, C]}` -> one dict `{key: [1, K, C]}`."""
    return {k: tf.concat([p[k] for p in parts], axis=1) for k in parts[0]}


def _frame_array(frame: np.ndarray, keep_uint8: bool) -> np.ndarray:
    """One validated frame `[H, W, 3]` -> `[1, H, W, 3]`: uint8 as is, a view (when the model
    takes it), else float32 in [0, 1]."""
    if frame.dtype == np.uint8 and keep_uint8:
        return frame[None]
    return _image_to_float(frame)[None]


def _mask_tensor(mask: np.ndarray) -> tf.Tensor:
    """One validated mask `[H, W, K-1]` -> float32 `[1, H, W, K-1]` in [0, 1].

    The conversion runs as TensorFlow ops (multi-threaded) rather than a NumPy cast; the arithmetic
    (cast, times float32(1/255)) is the same as `_mask_to_float`.
    """
    m = tf.convert_to_tensor(mask[None])
    if m.dtype == tf.uint8:
        return _uint8_mask_to_float(m)
    return tf.cast(m, tf.float32)


def _uint8_to_float(m):
    return tf.cast(m, tf.float32) * np.float32(1.0 / 255.0)


# Traced, so the product reuses the cast's buffer: one float mask at full resolution, not two.
_uint8_mask_to_float = tf.function(
    _uint8_to_float, input_signature=[tf.TensorSpec([None] * 4, tf.uint8)], autograph=False
)


def _blend(grids, next_grids, weight):
    """`(1 - w) G_a + w G_b`, the formula of `ops.interpolate_grids`, inside a traced render."""
    return grids + weight * (next_grids - grids)


def _render_specs(grids, frame) -> list:
    """Input signature of a traced render: both grids, the blend weight and the frame."""
    grid_spec = tf.TensorSpec([None, *grids.shape[1:]], tf.float32)
    frame_spec = tf.TensorSpec([None, None, None, 3], frame.dtype)
    return [grid_spec, grid_spec, tf.TensorSpec([], tf.float32), frame_spec]


class _Traced:
    """The model's inference pieces as traced functions, shared by all stylizers of one model.

    Signatures are relaxed to any frame size and any K, so each function is traced once per
    option (soft-mask mode) and frame dtype (uint8 or float32). Autograph is off: the model's
    methods are plain graph code (autograph's conversion of Keras internals fails). The model is
    held by a weak reference so the cache below does not keep it alive.

    With a `LocalizedStyleModel` (anything with `render_inference`), uint8 frames go into the
    traced functions as they are: `render` is then the fused inference render (cast, guide,
    slice/apply and clip, see `LocalizedStyleModel.render_inference`). Other models (e.g. the
    SavedModel adapter of `lvst_tf.export`) get float32 frames and `model.render`, clipped here.
    """

    def __init__(self, model: Any):
        self._model_ref = weakref.ref(model)
        self._fns: dict[tuple, Any] = {}
        self.fused = callable(getattr(model, "render_inference", None))

    @property
    def model(self):
        model = self._model_ref()
        if model is None:
            raise RuntimeError("the model of this VideoStylizer no longer exists.")
        return model

    @staticmethod
    def _relaxed(structure):
        return {k: tf.TensorSpec([None] * v.shape.rank, v.dtype) for k, v in structure.items()}

    def predict(self, frame, mask, stats, state, soft_mask_mode):
        """One keyframe: frame `[1, H, W, 3]` (uint8 or float32), mask `[1, H, W, K-1]` float32."""
        key = ("predict_first" if state is None else "predict_next", soft_mask_mode, frame.dtype)
        fn = self._fns.get(key)
        if fn is None:
            specs = [
                tf.TensorSpec([None, None, None, 3], frame.dtype),
                tf.TensorSpec([None, None, None, None], tf.float32),
                self._relaxed(stats),
            ]
            if state is None:

                def first(frame, mask, stats):
                    return self.model.predict_grids(
                        frame, mask, stats, state=None, soft_mask_mode=soft_mask_mode
                    )

                fn = tf.function(first, input_signature=specs, autograph=False)
            else:

                def following(frame, mask, stats, state):
                    return self.model.predict_grids(
                        frame, mask, stats, state=state, soft_mask_mode=soft_mask_mode
                    )

                specs.append(self._relaxed(state))
                fn = tf.function(following, input_signature=specs, autograph=False)
            self._fns[key] = fn
        if state is None:
            return fn(frame, mask, stats)
        return fn(frame, mask, stats, state)

    def encode(self, style, mask=None):
        """One style image `[1, h, w, 3]` float32 (any size) and optionally its region mask
        `[1, h, w]` float32 -> `encode_styles` dict `[1, 1, C]`."""
        key = ("encode",) if mask is None else ("encode_masked",)
        fn = self._fns.get(key)
        if fn is None:
            spec = tf.TensorSpec([None, None, None, 3], tf.float32)
            if mask is None:

                def encode(style):
                    return self.model.encode_styles(style)

                fn = tf.function(encode, input_signature=[spec], autograph=False)
            else:

                def encode_masked(style, mask):
                    return self.model.encode_styles(style, style_masks=mask)

                mask_spec = tf.TensorSpec([None, None, None], tf.float32)
                fn = tf.function(encode_masked, input_signature=[spec, mask_spec], autograph=False)
            self._fns[key] = fn
        return fn(style) if mask is None else fn(style, mask)

    def render(self, grids, next_grids, weight, frame):
        """Grids `(1 - w) G_a + w G_b` (the formula of `ops.interpolate_grids`), rendered on frame
        `[1, H, W, 3]` (uint8 or float32) and clipped to [0, 1]: `[1, H, W, 3]` float32."""
        key = ("render", frame.dtype)
        fn = self._fns.get(key)
        if fn is None:
            model_ref = self._model_ref
            fused = self.fused

            def render(grids, next_grids, weight, frame):
                model = model_ref()
                grid = _blend(grids, next_grids, weight)
                if fused:
                    return model.render_inference(grid, frame)
                if frame.dtype == tf.uint8:
                    frame = tf.cast(frame, tf.float32) * (1.0 / 255.0)
                out = model.render(grid, frame)
                return tf.clip_by_value(out, 0.0, 1.0)  # the pipeline's only clipping

            fn = tf.function(render, input_signature=_render_specs(grids, frame), autograph=False)
            self._fns[key] = fn
        return fn(grids, next_grids, weight, frame)

    def render_strips(self, grids, next_grids, weight, frame, strips):
        """`render` of a frame strip by strip (`strips`: row ranges from the model's
        `render_strips`, covering the frame), each written into one preallocated output:
        `[1, H, W, 3]` float32 NumPy array, the same values as `render` (docs/inference.md#strips).
        Each strip is rendered from the rows it reads (`model.strip_window`, `render_window`), so
        only those rows of `frame` (a NumPy array or a CPU tensor) are copied into a tensor at a
        time. Only for a model with `render_inference`."""
        frame = np.asarray(frame)  # a CPU tensor's array shares its buffer
        key = ("render_strips", tf.as_dtype(frame.dtype))
        fn = self._fns.get(key)
        model_ref = self._model_ref
        if fn is None:

            def render_rows(grids, next_grids, weight, window, top, start, stop, height):
                grid = _blend(grids, next_grids, weight)
                return model_ref().render_window(grid, window, top, (start, stop), height)

            scalar = tf.TensorSpec([], tf.int32)
            specs = [*_render_specs(grids, frame), scalar, scalar, scalar, scalar]
            fn = tf.function(render_rows, input_signature=specs, autograph=False)
            self._fns[key] = fn
        height = frame.shape[1]
        out = np.empty((*frame.shape[:3], 3), np.float32)
        for start, stop in strips:
            # Only the rows the strip reads become a tensor: the whole frame is never copied.
            low, high = (int(v) for v in model_ref().strip_window(start, stop, height))
            out[:, start:stop] = fn(
                grids,
                next_grids,
                weight,
                frame[:, low:high],
                np.int32(low),
                np.int32(start),
                np.int32(stop),
                np.int32(height),
            )
        return out

    def tracing_counts(self, soft_mask_mode) -> dict[str, int]:
        names = ("encode", "predict_first", "predict_next", "render", "render_strips")
        counts = {name: 0 for name in names}
        counts.update({f"{name}_uint8": 0 for name in names[1:]})
        for key, fn in self._fns.items():
            name = key[0]
            if name in ("predict_first", "predict_next") and key[1] != soft_mask_mode:
                continue
            if name == "encode_masked":
                name = "encode"
            elif key[-1] == tf.uint8:
                name += "_uint8"
            counts[name] += fn.experimental_get_tracing_count()
        return counts


_TRACED_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _traced_for(model: Any) -> _Traced:
    """The shared `_Traced` of a model: new stylizers of a model reuse its traces."""
    try:
        traced = _TRACED_CACHE.get(model)
        if traced is None:
            traced = _TRACED_CACHE[model] = _Traced(model)
        return traced
    except TypeError:  # not weak-referenceable: no sharing
        return _Traced(model)


_ZERO = np.float32(0.0)


class VideoStylizer:
    """Localized photorealistic video stylization with r-frame grid sub-sampling.

    Args:
      model: a `LocalizedStyleModel` from `lvst_tf.models.build_model` (or any object with the same
        `encode_styles`, `predict_grids`, `render` methods, see docs/DESIGN.md).
      r: grid sub-sampling factor, an int >= 1 (docs/method.md#subsampling). Keyframes are those of
        `ops.keyframe_schedule`: 0, r, 2r, ... and, with `"linear"`, the last frame. r = 1 predicts
        a grid for every frame.
      interpolation: one of `ops.INTERPOLATION_MODES`: `"linear"` (grids of frames between
        keyframes a < t < b are `(1 - w) G_a + w G_b`, `w = (t - a) / (b - a)`; adds up to r - 1
        frames of latency) or `"hold"` (causal: every frame is output as soon as it arrives with the
        last keyframe's grid; the last frame is then not a keyframe).
      soft_mask_mode: None (default: the model's own mode, `model.soft_mask_mode`) or one of
        `ops.SOFT_MASK_MODES` (`"normalized"`, `"paper"`, docs/method.md#soft-mask), passed to
        `model.predict_grids`.
      render_strip_pixels: None (default: the model's `RENDER_STRIP_PIXELS`, 2 MP) or an int
        >= 1. A frame of more pixels is rendered in horizontal strips of at most this many pixels
        (`model.render_strips`) into one output array, which bounds the render's full-resolution
        temporaries; the output is the same (docs/inference.md#strips). Smaller frames, and models
        without `render_strips`, are rendered in one piece.

    Styles are encoded once each per call (an image used by several schedule entries once). The
    ST-AdaIN state is carried from keyframe to keyframe and reset at the start of every `stylize` /
    `stream` call. The traced functions are built once per model, shared by all its stylizers, and
    take any frame size and K, so new sizes, calls or stylizers do not retrace.

    Public pieces (the very functions `stream` runs, for tools and benchmarks): `encode_schedule`,
    `predict_keyframe`, `render_frame`, `tracing_counts`.
    """

    def __init__(
        self,
        model: Any,
        r: int = 1,
        interpolation: str = "linear",
        soft_mask_mode: str | None = None,
        render_strip_pixels: int | None = None,
    ):
        for method in ("encode_styles", "predict_grids", "render"):
            if not callable(getattr(model, method, None)):
                raise ValueError(
                    f"model must provide `{method}` (a LocalizedStyleModel from "
                    f"lvst_tf.models.build_model); got {type(model).__name__}."
                )
        if isinstance(r, (bool, np.bool_)) or not isinstance(r, numbers.Integral) or r < 1:
            raise ValueError(f"r must be an int >= 1 (grid sub-sampling factor); got {r!r}.")
        if interpolation not in INTERPOLATIONS:
            raise ValueError(
                f"interpolation must be one of {INTERPOLATIONS}; got {interpolation!r}."
            )
        if soft_mask_mode is not None and soft_mask_mode not in SOFT_MASK_MODES:
            raise ValueError(
                f"soft_mask_mode must be one of {SOFT_MASK_MODES} or None (the model's own "
                f"mode); got {soft_mask_mode!r}."
            )
        if render_strip_pixels is not None and (
            isinstance(render_strip_pixels, (bool, np.bool_))
            or not isinstance(render_strip_pixels, numbers.Integral)
            or render_strip_pixels < 1
        ):
            raise ValueError(
                f"render_strip_pixels must be None or an int >= 1; got {render_strip_pixels!r}."
            )
        self.model = model
        self.r = int(r)
        self.interpolation = interpolation
        self.soft_mask_mode = soft_mask_mode
        self.render_strip_pixels = None if render_strip_pixels is None else int(render_strip_pixels)
        self._style_cache: dict[tuple[int, int], tuple[Any, Any, dict[str, tf.Tensor]]] = {}
        self._traced = _traced_for(model)

    @property
    def effective_soft_mask_mode(self) -> str | None:
        """The soft-mask mode `predict_grids` runs with (None: the model's own, unknown here)."""
        if self.soft_mask_mode is not None:
            return self.soft_mask_mode
        return getattr(self.model, "soft_mask_mode", None)

    def tracing_counts(self) -> dict[str, int]:
        """Traces of each traced piece: at most one per model, option and frame dtype, whatever the
        frame sizes, K, or number of calls and stylizers (tests check it). Keys: `encode` (masked
        and unmasked styles), `predict_first`, `predict_next`, `render` (float frames) and
        `predict_first_uint8`, `predict_next_uint8`, `render_uint8` (uint8 frames)."""
        return self._traced.tracing_counts(self.effective_soft_mask_mode)

    # -- styles --------------------------------------------------------------------------------------

    def _encode_style(self, style: np.ndarray, mask: np.ndarray | None) -> dict[str, tf.Tensor]:
        """Statistics `{key: [1, 1, C]}` of one style image (over its region mask, if any), cached
        by object identity."""
        key = (id(style), id(mask))
        cached = self._style_cache.get(key)
        if cached is not None and cached[0] is style and cached[1] is mask:
            return cached[2]
        # Each style separately: the K images may have different sizes (encode_styles resizes).
        style_t = tf.convert_to_tensor(_image_to_float(style)[None])
        if mask is None:
            stats = self._traced.encode(style_t)
        else:
            stats = self._traced.encode(style_t, tf.convert_to_tensor(_mask_to_float(mask)[None]))
        stats = {
            k: tf.reshape(tf.convert_to_tensor(v, tf.float32), [1, 1, -1]) for k, v in stats.items()
        }
        # Keep `style` and `mask` referenced so their ids cannot be reused while cached.
        self._style_cache[key] = (style, mask, stats)
        return stats

    def encode_schedule(
        self,
        styles: Sequence[Any] | None,
        style_schedule: Sequence[tuple] | None = None,
        style_masks: Sequence[Any] | None = None,
    ) -> list[tuple[int, dict[str, tf.Tensor]]]:
        """Validates and encodes styles (and a schedule) as `stylize` / `stream` do.

        Args: `styles`, `style_schedule`, `style_masks` as in `stream`.

        Returns:
          `[(frame_index, stats), ...]` in increasing frame order; `stats` is the dict of
          `encode_styles` with `[1, K, C_i]` tensors (`styles` is the entry at frame 0).
        """
        styles, schedule, masks, _ = self._check_inputs(styles, style_schedule, style_masks)
        return self._encode_entries(styles, schedule, masks)

    def _encode_entries(self, styles, schedule, masks) -> list[tuple[int, dict[str, tf.Tensor]]]:
        entries: list[tuple[int, list[np.ndarray], list | None]] = []
        if styles is not None:
            entries.append((0, styles, masks))
        if schedule:
            entries.extend(schedule)
        self._style_cache = {}
        encoded = []
        for index, entry_styles, entry_masks in entries:
            entry_masks = entry_masks or [None] * len(entry_styles)
            parts = [self._encode_style(s, m) for s, m in zip(entry_styles, entry_masks)]
            encoded.append((index, _concat_stats(parts)))
        return encoded

    @staticmethod
    def _stats_at(encoded: list[tuple[int, dict[str, tf.Tensor]]], t: int) -> dict[str, tf.Tensor]:
        """Style statistics at frame t: linear blend between the two schedule entries around t."""
        if t <= encoded[0][0]:
            return encoded[0][1]
        if t >= encoded[-1][0]:
            return encoded[-1][1]
        for (i0, s0), (i1, s1) in zip(encoded[:-1], encoded[1:]):
            if i0 <= t < i1:
                w = (t - i0) / (i1 - i0)
                return {k: (1.0 - w) * s0[k] + w * s1[k] for k in s0}
        raise AssertionError("unreachable")

    # -- the traced pieces ---------------------------------------------------------------------------

    def predict_keyframe(
        self,
        frame: Any,
        mask: Any,
        stats: dict[str, tf.Tensor],
        state: dict[str, tf.Tensor] | None = None,
    ) -> dict[str, tf.Tensor]:
        """`model.predict_grids` on one keyframe through the stylizer's traced function.

        Args:
          frame: `[1, H, W, 3]` uint8 or float32 tensor (or array).
          mask: `[1, H, W, K-1]` float32 in [0, 1], or uint8 0/255 (divided by 255 here).
          stats: `[1, K, C_i]` statistics, e.g. from `encode_schedule`.
          state: None (first keyframe) or the previous keyframe's `state_0..state_5`.

        Returns:
          The `predict_grids` dict (`grids [1, GH, GW, GD, 12]`, `state_i`, ...).
        """
        frame = tf.convert_to_tensor(frame)
        if frame.dtype == tf.uint8 and not self._traced.fused:
            frame = _uint8_to_float(frame)
        elif frame.dtype != tf.uint8:
            frame = tf.cast(frame, tf.float32)
        mask = tf.convert_to_tensor(mask)
        # uint8 masks are 0/255, as everywhere else (a plain cast would read 255).
        mask = _uint8_to_float(mask) if mask.dtype == tf.uint8 else tf.cast(mask, tf.float32)
        if state is not None:
            state = {k: v for k, v in state.items() if k.startswith("state_")}
        return self._traced.predict(frame, mask, stats, state, self.effective_soft_mask_mode)

    def render_frame(
        self, grids: Any, frame: Any, next_grids: Any = None, weight: float = 0.0
    ) -> np.ndarray:
        """Renders one frame as `stream` does: `[1, H, W, 3]` float32 NumPy array in [0, 1]
        (clipped); large frames in strips (`render_strip_pixels`, docs/inference.md#strips).

        Args:
          grids: `[1, GH, GW, GD, 12]`, the grid G_a of the keyframe at or before the frame.
          frame: `[1, H, W, 3]` uint8 or float32 tensor (or array).
          next_grids: optional G_b of the next keyframe; the frame then uses
            `(1 - weight) G_a + weight G_b` (the formula of `ops.interpolate_grids`).
          weight: float in [0, 1].
        """
        frame = tf.convert_to_tensor(frame)
        if frame.dtype != tf.uint8:
            frame = tf.cast(frame, tf.float32)
        grids = tf.convert_to_tensor(grids, tf.float32)
        next_grids = grids if next_grids is None else tf.convert_to_tensor(next_grids, tf.float32)
        return self._render(grids, next_grids, np.float32(weight), frame)

    def _render(self, grids, next_grids, weight, frame) -> np.ndarray:
        """The render of `render_frame` and `stream`: `[1, H, W, 3]` float32, in strips for frames
        above `render_strip_pixels` (docs/inference.md#strips)."""
        strips_of = getattr(self.model, "render_strips", None)
        if self._traced.fused and callable(strips_of):
            height, width = frame.shape[1], frame.shape[2]
            strips = strips_of(height, width, self.render_strip_pixels)
            if len(strips) > 1:
                return self._traced.render_strips(grids, next_grids, weight, frame, strips)
        # .numpy() of a CPU tensor shares its buffer: no copy of the output frame.
        frame = tf.convert_to_tensor(frame)
        return self._traced.render(grids, next_grids, weight, frame).numpy()

    # -- public API ----------------------------------------------------------------------------------

    def _check_inputs(self, styles, style_schedule, style_masks=None):
        """Validates styles / schedule / masks; returns (styles or None, schedule or None,
        style masks or None, K)."""
        if styles is None and style_schedule is None:
            raise ValueError("styles is required (a list of K style images, last = background).")
        if styles is None and style_masks is not None:
            raise ValueError(
                "style_masks belong to `styles`, which is None; give schedule entries as "
                "(frame_index, styles, style_masks) instead."
            )
        checked_styles = None if styles is None else _validate_styles(styles, "styles")
        masks = None
        if checked_styles is not None:
            masks = _validate_style_masks(style_masks, checked_styles, "style_masks")
        num_styles = None if checked_styles is None else len(checked_styles)
        schedule = None
        if style_schedule is not None:
            schedule = _validate_schedule(style_schedule, num_styles)
            if checked_styles is not None and schedule[0][0] == 0:
                raise ValueError(
                    "style_schedule has an entry at frame 0 and `styles` is given too; "
                    "pass styles=None (the schedule then defines every frame) or drop that entry."
                )
            num_styles = len(schedule[0][1])
        return checked_styles, schedule, masks, num_styles

    def stream(
        self,
        frames_and_masks: Iterable[tuple[Any, Any]],
        styles: Sequence[Any] | None,
        style_schedule: Sequence[tuple] | None = None,
        style_masks: Sequence[Any] | None = None,
    ) -> Iterator[np.ndarray]:
        """Stylizes a stream of frames; holds at most r + 1 full-resolution input frames.

        Args:
          frames_and_masks: iterable of `(frame, mask)`: frame `[H, W, 3]` uint8 or float in [0, 1];
            mask `[H, W]` (one object) or `[H, W, K-1]`, uint8 0/255, bool or float in [0, 1].
            H, W and K-1 must stay the same over the stream; each frame is validated on arrival.
            uint8 frames are the fast path: they go into the model as they are (no float copy).
          styles: list of K style images `[h, w, 3]`, any size, last = background. May be None when
            `style_schedule` is given; otherwise it is the styles at frame 0.
          style_schedule: optional list of `(frame_index, styles)` (or `(frame_index, styles,
            style_masks)`), strictly increasing indices; the style statistics blend linearly
            between consecutive entries (before the first entry the first is used, after the last
            the last).
          style_masks: optional style-region masks for `styles`: a list of K masks, mask k
            `[h_k, w_k]` at the size of style image k (uint8 0/255, bool or float in [0, 1]), or
            None for the whole image. Region k of the video then takes its style statistics from
            that region of style k only (`model.encode_styles(style_masks=...)`).

        Returns:
          An iterator of output frames `[H, W, 3]` float32 in [0, 1], in input order. With
          `"linear"` frames between keyframes come out when the next keyframe (or the end of the
          stream) arrives; with `"hold"` each frame comes out before the next one is read.

        Raises:
          ValueError: bad styles / schedule / style masks (at once), bad frames or masks (when
            they arrive), an empty stream (at its end).
        """
        checked_styles, schedule, masks, num_styles = self._check_inputs(
            styles, style_schedule, style_masks
        )
        if isinstance(frames_and_masks, (np.ndarray, tf.Tensor, str, bytes)) or not isinstance(
            frames_and_masks, Iterable
        ):
            raise ValueError(
                "frames_and_masks must be an iterable of (frame [H, W, 3], mask [H, W] or "
                f"[H, W, K-1]) pairs; got {type(frames_and_masks).__name__}."
            )
        return self._run(
            self._validated_pairs(frames_and_masks, num_styles), checked_styles, schedule, masks
        )

    def stylize(
        self,
        frames: Any,
        masks: Any,
        styles: Sequence[Any] | None,
        style_schedule: Sequence[tuple] | None = None,
        style_masks: Sequence[Any] | None = None,
    ) -> np.ndarray:
        """Stylizes a whole video held in memory.

        The result holds the whole clip in float32: `T * H * W * 12` bytes (4x a uint8 input;
        e.g. 1.4 GB for 10 frames of 3000x4000). For long or large videos use `stream`, which
        holds at most r + 1 input frames and hands out one output frame at a time.

        Args:
          frames: `[T, H, W, 3]` uint8 or float in [0, 1], any H, W.
          masks: `[T, H, W]` (one object; background = complement) or `[T, H, W, K-1]` (K-1 objects;
            background = complement of their union), uint8 0/255, bool or float in [0, 1]. Masks that
            are all zero (or all one) are valid: the background (or the objects) then cover the frame.
          styles: list of K style images `[h, w, 3]` of any size, last = background (None allowed with
            a `style_schedule`).
          style_schedule: see `stream`.
          style_masks: see `stream`.

        Returns:
          `[T, H, W, 3]` float32 in [0, 1] (clipped here, at the very end); identical to the frames of
          `stream` over the same inputs.
        """
        checked_styles, schedule, style_region_masks, num_styles = self._check_inputs(
            styles, style_schedule, style_masks
        )
        frames = _validate_image(frames, "frames", rank=4)
        masks = _validate_mask(masks, "masks", leading=1)
        if masks.shape[0] != frames.shape[0]:
            raise ValueError(
                f"masks has {masks.shape[0]} frames but frames has {frames.shape[0]}; "
                "expected one mask per frame."
            )
        if masks.shape[1:3] != frames.shape[1:3]:
            raise ValueError(
                f"masks have size {masks.shape[1:3]} but frames have {frames.shape[1:3]}; "
                "expected masks [T, H, W] or [T, H, W, K-1] at the frames' H, W."
            )
        if masks.shape[-1] + 1 != num_styles:
            raise ValueError(
                f"masks give K-1 = {masks.shape[-1]} objects, so K = {masks.shape[-1] + 1} styles "
                f"are expected (last = background); got {num_styles} styles."
            )
        out = np.empty(frames.shape, np.float32)
        pairs = ((frames[t], masks[t]) for t in range(frames.shape[0]))
        count = 0
        for t, o in enumerate(self._run(pairs, checked_styles, schedule, style_region_masks)):
            out[t] = o
            count += 1
        assert count == frames.shape[0]
        return out

    # -- core ----------------------------------------------------------------------------------------

    def _validated_pairs(self, pairs: Iterable[tuple[Any, Any]], num_styles: int):
        """Validates each streamed (frame, mask) as it arrives; consistent H, W and K-1."""
        size = None
        for t, pair in enumerate(pairs):
            if not isinstance(pair, (tuple, list)) or len(pair) != 2:
                raise ValueError(
                    f"frames_and_masks item {t} must be a (frame, mask) pair; "
                    f"got {type(pair).__name__}."
                )
            frame = _validate_image(pair[0], f"frame {t}", rank=3)
            mask = _validate_mask(pair[1], f"mask {t}", leading=0)
            if mask.shape[:2] != frame.shape[:2]:
                raise ValueError(
                    f"mask {t} has size {mask.shape[:2]} but frame {t} has {frame.shape[:2]}; "
                    "expected mask [H, W] or [H, W, K-1] at the frame's H, W."
                )
            if mask.shape[-1] + 1 != num_styles:
                raise ValueError(
                    f"mask {t} gives K-1 = {mask.shape[-1]} objects, so K = {mask.shape[-1] + 1} "
                    f"styles are expected (last = background); got {num_styles} styles."
                )
            if size is None:
                size = frame.shape[:2]
            elif frame.shape[:2] != size:
                raise ValueError(
                    f"frame {t} has size {frame.shape[:2]} but the stream started at {size}; "
                    "every frame of a stream must have the same H, W."
                )
            yield frame, mask
        if size is None:
            raise ValueError("frames_and_masks is empty; expected at least one (frame, mask) pair.")

    def _segment_weights(self, t_key: int) -> np.ndarray:
        """Interpolation weights `[t_key + 1]` of the frames up to keyframe `t_key`.

        They come from `ops.keyframe_schedule` (the one keyframe rule) over the frames seen so far,
        `t_key + 1` of them: its keyframes are 0, r, 2r, ... and its last frame `t_key`, so it
        covers both a regular keyframe and the end of the stream.
        """
        with tf.init_scope():
            return ops.keyframe_schedule(t_key + 1, self.r).weight.numpy()

    def _run(self, pairs, styles, schedule, style_masks=None) -> Iterator[np.ndarray]:
        """The streaming core shared by `stream` and `stylize` (inputs already validated).

        Keyframes follow `ops.keyframe_schedule`: frame t is a keyframe when t is a multiple of r
        (keyframes of the schedule of every video longer than t), and, with `"linear"`, the last
        frame, which the end of the stream reveals. Frames after the last keyframe wait (linear
        mode) until the next keyframe or the end of the stream; their grids are then blended with
        the schedule's weights.
        """
        encoded = None
        state = None
        key_grids = None  # grids [1, GH, GW, GD, 12] of the last keyframe
        pending: list[tuple[int, Any]] = []  # frames after the last keyframe (linear mode)
        pending_mask: np.ndarray | None = None  # mask of the newest pending frame
        r = self.r
        keep_uint8 = self._traced.fused
        traced = self._traced
        # Resolved per call (not baked into a trace): None means the model's own mode.
        soft_mask_mode = self.effective_soft_mask_mode

        def predict(t, frame_t, mask):
            nonlocal state
            out = traced.predict(
                frame_t, _mask_tensor(mask), self._stats_at(encoded, t), state, soft_mask_mode
            )
            state = {k: v for k, v in out.items() if k.startswith("state_")}
            return out["grids"]

        def render(grids, frame_t, next_grids=None, weight=_ZERO):
            next_grids = grids if next_grids is None else next_grids
            return self._render(grids, next_grids, weight, frame_t)[0]

        def keyframe(t, frame, mask):
            """Predicts keyframe t, renders the pending frames before it, then t itself."""
            nonlocal key_grids
            # NumPy frames (uint8: views of the caller's arrays) until a render or predict needs a
            # tensor: large frames become tensors only strip by strip (`render_strips`).
            frame_a = _frame_array(frame, keep_uint8)
            grids = predict(t, tf.convert_to_tensor(frame_a), mask)
            if pending:
                weights = self._segment_weights(t)
                for t_p, frame_p in pending:
                    yield render(key_grids, _frame_array(frame_p, keep_uint8), grids, weights[t_p])
                pending.clear()
            key_grids = grids
            yield render(grids, frame_a)

        for t, (frame, mask) in enumerate(pairs):
            if encoded is None:
                # Styles are encoded once the first frame has passed validation.
                encoded = self._encode_entries(styles, schedule, style_masks)
            if t % r == 0:
                pending_mask = None
                yield from keyframe(t, frame, mask)
            elif self.interpolation == "hold":
                yield render(key_grids, _frame_array(frame, keep_uint8))
            else:
                pending.append((t, frame))
                pending_mask = mask
            del frame, mask
        if pending:
            # The end of the stream makes the newest pending frame a keyframe: the last frame of
            # `ops.keyframe_schedule` (docs/method.md#subsampling).
            t_last, frame_last = pending.pop()
            yield from keyframe(t_last, frame_last, pending_mask)
