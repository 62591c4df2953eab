"""Streaming localized video stylization with temporal grid sub-sampling (METHOD sections 2 and 6).

`VideoStylizer` drives the three inference pieces of the model (`encode_styles`, `predict_grids`,
`render`, see docs/DESIGN.md):

- style images are encoded once each; a `style_schedule` blends their statistics linearly over time
  (METHOD section 3, "style transitions" [decision]);
- bilateral grids are predicted on keyframes 0, r, 2r, ... and on the last frame; frames in between get
  grids interpolated by `lvst_tf.ops.interpolate_grids` (METHOD section 6), or, in the causal `"hold"`
  mode, the last keyframe's grid;
- the ST-AdaIN state advances from keyframe to keyframe (it is passed explicitly from one
  `predict_grids` call to the next);
- every frame is rendered at its own full resolution, one frame at a time, and clipped to [0, 1] only
  there, at the very end.

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

_INTERPOLATIONS = ("linear", "hold")
_SOFT_MASK_MODES = ("normalized", "paper")


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


def _validate_styles(styles: Any, name: str) -> list[np.ndarray]:
    """A list of K >= 2 style images `[h, w, 3]` of any size (or an array `[K, h, w, 3]`)."""
    if isinstance(styles, (np.ndarray, tf.Tensor)):
        arr = _as_array(styles, name)
        if arr.ndim != 4:
            raise ValueError(
                f"{name} must be a list of K images [h, w, 3] or an array [K, h, w, 3]; "
                f"got an array of shape {tuple(arr.shape)}."
            )
        styles = list(arr)
    if not isinstance(styles, collections.abc.Sequence) or isinstance(styles, (str, bytes)):
        raise ValueError(
            f"{name} must be a list of K style images [h, w, 3] (last = background); "
            f"got {type(styles).__name__}."
        )
    if len(styles) < 2:
        raise ValueError(
            f"{name} must hold K >= 2 style images (objects..., background); got {len(styles)}."
        )
    return [_validate_image(s, f"{name}[{k}]", rank=3) for k, s in enumerate(styles)]


def _validate_schedule(schedule: Any, num_styles: int | None) -> list[tuple[int, list[np.ndarray]]]:
    """`[(frame_index, styles), ...]`, strictly increasing non-negative indices, equal K."""
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
        if not isinstance(entry, collections.abc.Sequence) or len(entry) != 2:
            raise ValueError(f"style_schedule[{i}] must be a (frame_index, styles) pair.")
        index, entry_styles = entry
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
        out.append((index, entry_styles))
    return out


# ----------------------------------------------------------------------------------------------------
# The stylizer.
# ----------------------------------------------------------------------------------------------------


def _concat_stats(parts: Sequence[dict[str, tf.Tensor]]) -> dict[str, tf.Tensor]:
    """Per-style statistics dicts `{key: [1, 1, C]}` -> one dict `{key: [1, K, C]}`."""
    return {k: tf.concat([p[k] for p in parts], axis=1) for k in parts[0]}


class _Traced:
    """`predict_grids` and `render` of one model as traced functions, shared by its stylizers.

    Signatures are relaxed to any frame size and any K, so each function is traced once (`predict`
    once per soft-mask mode). Autograph is off: the model's
    methods are plain graph code (autograph's conversion of Keras internals fails). The model is
    held by a weak reference so the cache below does not keep it alive.
    """

    def __init__(self, model: Any):
        self._model_ref = weakref.ref(model)
        self._fns: dict[tuple, Any] = {}

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
        """One keyframe: frame `[1, H, W, 3]`, mask `[1, H, W, K-1]` float32 -> predict_grids dict."""
        key = ("predict_first" if state is None else "predict_next", soft_mask_mode)
        fn = self._fns.get(key)
        if fn is None:
            specs = [
                tf.TensorSpec([None, None, None, 3], tf.float32),
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

    def encode(self, style):
        """One style image `[1, h, w, 3]` float32 (any size) -> `encode_styles` dict `[1, 1, C]`."""
        fn = self._fns.get(("encode",))
        if fn is None:

            def encode(style):
                return self.model.encode_styles(style)

            spec = tf.TensorSpec([None, None, None, 3], tf.float32)
            fn = tf.function(encode, input_signature=[spec], autograph=False)
            self._fns[("encode",)] = fn
        return fn(style)

    def render(self, grids, frame):
        """grids `[1, GH, GW, GD, 12]`, frame `[1, H, W, 3]` -> `[1, H, W, 3]`, not clipped."""
        fn = self._fns.get(("render",))
        if fn is None:

            def render(grids, frame):
                return self.model.render(grids, frame)

            specs = [
                tf.TensorSpec([None, *grids.shape[1:]], tf.float32),
                tf.TensorSpec([None, None, None, 3], tf.float32),
            ]
            fn = tf.function(render, input_signature=specs, autograph=False)
            self._fns[("render",)] = fn
        return fn(grids, frame)

    def tracing_counts(self, soft_mask_mode) -> dict[str, int]:
        keys = {
            "encode": ("encode",),
            "predict_first": ("predict_first", soft_mask_mode),
            "predict_next": ("predict_next", soft_mask_mode),
            "render": ("render",),
        }
        return {
            name: self._fns[key].experimental_get_tracing_count() if key in self._fns else 0
            for name, key in keys.items()
        }


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


class VideoStylizer:
    """Localized photorealistic video stylization with r-frame grid sub-sampling.

    Args:
      model: a `LocalizedStyleModel` from `lvst_tf.models.build_model` (or any object with the same
        `encode_styles`, `predict_grids`, `render` methods, see docs/DESIGN.md).
      r: grid sub-sampling factor, an int >= 1 (METHOD section 6). Keyframes are 0, r, 2r, ... and,
        with `"linear"`, the last frame. r = 1 predicts a grid for every frame.
      interpolation: `"linear"` (grids of frames between keyframes a < t < b are
        `(1 - w) G_a + w G_b`, `w = (t - a) / (b - a)`; adds up to r - 1 frames of latency) or
        `"hold"` (causal: every frame is output as soon as it arrives with the last keyframe's grid;
        the last frame is then not a keyframe).
      soft_mask_mode: passed to `model.predict_grids` (`"normalized"` or `"paper"`, METHOD section 5).

    Styles are encoded once each per call (an image used by several schedule entries once). The
    ST-AdaIN state is carried from keyframe to keyframe and reset at the start of every `stylize` /
    `stream` call. The traced functions are built once per model, shared by all its stylizers, and
    take any frame size and K, so new sizes, calls or stylizers do not retrace.
    """

    def __init__(
        self,
        model: Any,
        r: int = 1,
        interpolation: str = "linear",
        soft_mask_mode: str = "normalized",
    ):
        for method in ("encode_styles", "predict_grids", "render"):
            if not callable(getattr(model, method, None)):
                raise ValueError(
                    f"model must provide `{method}` (a LocalizedStyleModel from "
                    f"lvst_tf.models.build_model); got {type(model).__name__}."
                )
        if isinstance(r, (bool, np.bool_)) or not isinstance(r, numbers.Integral) or r < 1:
            raise ValueError(f"r must be an int >= 1 (grid sub-sampling factor); got {r!r}.")
        if interpolation not in _INTERPOLATIONS:
            raise ValueError(
                f"interpolation must be one of {_INTERPOLATIONS}; got {interpolation!r}."
            )
        if soft_mask_mode not in _SOFT_MASK_MODES:
            raise ValueError(
                f"soft_mask_mode must be one of {_SOFT_MASK_MODES}; got {soft_mask_mode!r}."
            )
        self.model = model
        self.r = int(r)
        self.interpolation = interpolation
        self.soft_mask_mode = soft_mask_mode
        self._style_cache: dict[int, tuple[np.ndarray, dict[str, tf.Tensor]]] = {}

        self._traced = _traced_for(model)

    def tracing_counts(self) -> dict[str, int]:
        """Traces of each traced piece: at most one per model and option, whatever the frame sizes,
        K, or number of calls and stylizers (tests check it)."""
        return self._traced.tracing_counts(self.soft_mask_mode)

    # -- styles --------------------------------------------------------------------------------------

    def _encode_style(self, style: np.ndarray) -> dict[str, tf.Tensor]:
        """Statistics `{key: [1, 1, C]}` of one style image, cached by object identity."""
        cached = self._style_cache.get(id(style))
        if cached is not None and cached[0] is style:
            return cached[1]
        # Each style separately: the K images may have different sizes (encode_styles resizes).
        stats = self._traced.encode(tf.convert_to_tensor(_image_to_float(style)[None]))
        stats = {
            k: tf.reshape(tf.convert_to_tensor(v, tf.float32), [1, 1, -1]) for k, v in stats.items()
        }
        # Keep `style` referenced so its id cannot be reused while cached.
        self._style_cache[id(style)] = (style, stats)
        return stats

    def _encode_schedule(
        self, styles: list[np.ndarray] | None, schedule: list[tuple[int, list[np.ndarray]]] | None
    ) -> list[tuple[int, dict[str, tf.Tensor]]]:
        entries: list[tuple[int, list[np.ndarray]]] = []
        if styles is not None:
            entries.append((0, styles))
        if schedule:
            entries.extend(schedule)
        self._style_cache = {}
        return [(i, _concat_stats([self._encode_style(s) for s in st])) for i, st in entries]

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

    # -- public API ----------------------------------------------------------------------------------

    def _check_inputs(self, styles, style_schedule):
        """Validates styles / schedule; returns (styles or None, schedule or None, K)."""
        if styles is None and style_schedule is None:
            raise ValueError("styles is required (a list of K style images, last = background).")
        checked_styles = None if styles is None else _validate_styles(styles, "styles")
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
        return checked_styles, schedule, num_styles

    def stream(
        self,
        frames_and_masks: Iterable[tuple[Any, Any]],
        styles: Sequence[Any] | None,
        style_schedule: Sequence[tuple[int, Sequence[Any]]] | None = None,
    ) -> Iterator[np.ndarray]:
        """Stylizes a stream of frames; holds at most r + 1 full-resolution input frames.

        Args:
          frames_and_masks: iterable of `(frame, mask)`: frame `[H, W, 3]` uint8 or float in [0, 1];
            mask `[H, W]` (one object) or `[H, W, K-1]`, uint8 0/255, bool or float in [0, 1].
            H, W and K-1 must stay the same over the stream; each frame is validated on arrival.
          styles: list of K style images `[h, w, 3]`, any size, last = background. May be None when
            `style_schedule` is given; otherwise it is the styles at frame 0.
          style_schedule: optional list of `(frame_index, styles)`, strictly increasing indices; the
            style statistics blend linearly between consecutive entries (before the first entry the
            first is used, after the last the last).

        Returns:
          An iterator of output frames `[H, W, 3]` float32 in [0, 1], in input order. With
          `"linear"` frames between keyframes come out when the next keyframe (or the end of the
          stream) arrives; with `"hold"` each frame comes out before the next one is read.

        Raises:
          ValueError: bad styles / schedule (at once), bad frames or masks (when they arrive), an
            empty stream (at its end).
        """
        checked_styles, schedule, num_styles = self._check_inputs(styles, style_schedule)
        if isinstance(frames_and_masks, (np.ndarray, tf.Tensor, str, bytes)) or not isinstance(
            frames_and_masks, Iterable
        ):
            raise ValueError(
                "frames_and_masks must be an iterable of (frame [H, W, 3], mask [H, W] or "
                f"[H, W, K-1]) pairs; got {type(frames_and_masks).__name__}."
            )
        return self._run(
            self._validated_pairs(frames_and_masks, num_styles), checked_styles, schedule
        )

    def stylize(
        self,
        frames: Any,
        masks: Any,
        styles: Sequence[Any] | None,
        style_schedule: Sequence[tuple[int, Sequence[Any]]] | None = None,
    ) -> np.ndarray:
        """Stylizes a whole video held in memory.

        Args:
          frames: `[T, H, W, 3]` uint8 or float in [0, 1], any H, W.
          masks: `[T, H, W]` (one object; background = complement) or `[T, H, W, K-1]` (K-1 objects;
            background = complement of their union), uint8 0/255, bool or float in [0, 1]. Masks that
            are all zero (or all one) are valid: the background (or the objects) then cover the frame.
          styles: list of K style images `[h, w, 3]` of any size, last = background (None allowed with
            a `style_schedule`).
          style_schedule: see `stream`.

        Returns:
          `[T, H, W, 3]` float32 in [0, 1] (clipped here, at the very end); identical to the frames of
          `stream` over the same inputs.
        """
        checked_styles, schedule, num_styles = self._check_inputs(styles, style_schedule)
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
        for t, o in enumerate(self._run(pairs, checked_styles, schedule)):
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

    def _run(self, pairs, styles, schedule) -> Iterator[np.ndarray]:
        """The streaming core shared by `stream` and `stylize` (inputs already validated)."""
        encoded = None
        state = None
        last_key: tuple[int, tf.Tensor] | None = None  # (index, grids [1, GH, GW, GD, 12])
        pending: list[tuple[int, np.ndarray]] = []  # frames after the last keyframe (linear mode)
        pending_mask: np.ndarray | None = None  # mask of the newest pending frame
        r = self.r

        def as_tensor(frame):
            return tf.convert_to_tensor(_image_to_float(frame)[None])

        def predict(t, frame_t, mask):
            nonlocal state
            stats = self._stats_at(encoded, t)
            mask_t = tf.convert_to_tensor(_mask_to_float(mask)[None])
            out = self._traced.predict(frame_t, mask_t, stats, state, self.soft_mask_mode)
            state = {k: v for k, v in out.items() if k.startswith("state_")}
            return out["grids"]

        def render(grids, frame_t):
            out = self._traced.render(grids, frame_t).numpy()[0]
            np.clip(out, 0.0, 1.0, out=out)  # the only clipping of the pipeline (METHOD section 2)
            return out

        def flush(t_key, key_grids):
            """Renders the pending frames between `last_key` and the new keyframe `t_key`."""
            if not pending:
                return
            t0, g0 = last_key
            seg = ops.interpolate_grids(
                tf.concat([g0, key_grids], axis=0), [0, t_key - t0], t_key - t0 + 1, mode="linear"
            )
            for t, frame in pending:
                yield render(seg[t - t0 : t - t0 + 1], as_tensor(frame))

        for t, (frame, mask) in enumerate(pairs):
            if encoded is None:
                # Styles are encoded once the first frame has passed validation.
                encoded = self._encode_schedule(styles, schedule)
            if t % r == 0:
                frame_t = as_tensor(frame)  # converted once for predict and render
                grids = predict(t, frame_t, mask)
                if self.interpolation == "linear":
                    yield from flush(t, grids)
                    pending.clear()
                    pending_mask = None
                last_key = (t, grids)
                yield render(grids, frame_t)
                del frame_t
            elif self.interpolation == "hold":
                yield render(last_key[1], as_tensor(frame))
            else:
                pending.append((t, frame))
                pending_mask = mask
            del frame, mask
        if pending:
            # The end of the stream makes the newest pending frame a keyframe (METHOD section 6).
            t_last, frame_last = pending.pop()
            frame_t = as_tensor(frame_last)
            grids = predict(t_last, frame_t, pending_mask)
            yield from flush(t_last, grids)
            pending.clear()
            yield render(grids, frame_t)
