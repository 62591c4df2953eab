"""The assembled localized style model (docs/method.md#data-flow, #network) and its gin factory
`build_model`.

Data flow of one frame (docs/method.md#data-flow): the frame and its K - 1 object masks are resized
to the low resolution l x l; MaskNet enhances each object mask; the background region is 1 - max_k
of the enhanced masks; VGG features of the frame are computed once; the splatting blocks and the
grid head run once per region (the K regions batched as B * K, weights shared across regions), each
with its region mask and its style's statistics; the K grids are blended with soft grid masks built
from the low-res guide; the full-resolution frame is rendered with the full-resolution guide and
bilateral slicing.

Mixed precision (`keras.mixed_precision.set_global_policy("mixed_float16")` before `build_model`): the
convolutions of MaskNet, the VGG trunk, the splatting blocks and L1/L2/F of the grid head compute in
float16 with float32 variables; everything else is float32: the model's own policy (so its inputs are
not rounded to float16), ST-AdaIN (statistics, affine map, temporal blend, state), the style
statistics, the VGG taps, the mask outputs, Gamma and the grids, the guide, the soft grid masks and
bilateral slicing. Every tensor at the API boundary (`call`, `encode_styles`, `predict_grids`,
`render`) is float32; train with a `keras.optimizers.LossScaleOptimizer`.
"""

import os

import keras
import numpy as np
import tensorflow as tf

import gin
from lvst_tf import ops
from lvst_tf.models import _common
from lvst_tf.models import guide as guide_module
from lvst_tf.models.encoder import TAP_CHANNELS, VGGEncoder
from lvst_tf.models.grid_head import GridHead
from lvst_tf.models.guide import Guide
from lvst_tf.models.mask_net import MaskNet
from lvst_tf.models.splatting import SplattingBlock
from lvst_tf.models.st_adain import resize_mask

BLOCK_FILTERS = (8, 16, 32)
NUM_ST_ADAIN = 2 * len(BLOCK_FILTERS)
GRID_CELL = 16  # low-res pixels per grid cell: grid = low_res // 16
SOFT_MASK_MODES = ops.SOFT_MASK_MODES  # one list, owned by ops


def st_adain_channels():
    """Channels C_i of ST-AdaIN layer i = 0..5: layer 2b is in block b, layer 2b + 1 on its VGG path."""
    channels = []
    for b, filters in enumerate(BLOCK_FILTERS):
        channels += [filters, TAP_CHANNELS[b + 1]]
    return tuple(channels)


def state_channels():
    """Channels of the temporal state `state_i`, i = 0..5: layer 2b's output y~ (block b's filters),
    and for layer 2b + 1 S_b3's share of its output (also block b's filters; `SplattingBlock`)."""
    return tuple(f for f in BLOCK_FILTERS for _ in range(2))


def _as_image(x, name):
    """uint8 -> float32 / 255; other dtypes cast to float32 (nothing clipped)."""
    x = tf.convert_to_tensor(x)
    if x.dtype == tf.uint8:
        return tf.cast(x, tf.float32) / 255.0
    if x.dtype == tf.bool:
        return tf.cast(x, tf.float32)
    if not x.dtype.is_floating and not x.dtype.is_integer:
        raise ValueError(f"`{name}` must be a float or uint8 tensor, got dtype {x.dtype.name}.")
    return tf.cast(x, tf.float32)


def _check_rank(x, rank, name, form):
    if x.shape.rank is None or x.shape.rank != rank:
        raise ValueError(f"`{name}` must be {form}, got shape {x.shape}.")


def _split_batch(x, batch, count):
    """`[batch * count, ...]` -> `[batch, count, ...]`."""
    out = tf.reshape(x, tf.concat([[batch, count], tf.shape(x)[1:]], axis=0))
    return tf.ensure_shape(out, [None, None, *x.shape[1:]])


def _resize(x, size):
    """Resizes `[N, H, W, C]` to `size` (python ints): area when shrinking both axes (exact block means
    for integer factors), antialiased bilinear otherwise (enlarging, or mixed)."""
    h, w = x.shape[1], x.shape[2]
    if h is not None and w is not None:
        if (h, w) == tuple(size):
            return x
        method = "area" if h >= size[0] and w >= size[1] else "bilinear"
        return tf.image.resize(x, size, method=method, antialias=True)
    shape = tf.shape(x)
    shrink = tf.logical_and(shape[1] >= size[0], shape[2] >= size[1])
    return tf.cond(
        shrink,
        lambda: tf.image.resize(x, size, method="area"),
        lambda: tf.image.resize(x, size, method="bilinear", antialias=True),
    )


def _frames_to_float(frames, scale):
    image = tf.cast(frames, tf.float32)
    return image * scale if scale != 1.0 else image


def _crop_rows(x, top, rows):
    """Rows `top .. top + rows - 1` of `x [B, h, ...]`; under XLA a dynamic slice of static size."""
    begin = tf.concat([[0], [top], tf.zeros([x.shape.rank - 2], tf.int32)], axis=0)
    size = tf.concat([[-1], [rows], -tf.ones([x.shape.rank - 2], tf.int32)], axis=0)
    return tf.slice(x, begin, size)


def _inference_inputs(grids, frames, name):
    """Checks and converts the inputs of the inference render: (grids float32, frames uint8 or
    float32, scale to [0, 1])."""
    frames = tf.convert_to_tensor(frames)
    if frames.dtype != tf.uint8 and not frames.dtype.is_floating:
        raise ValueError(f"`{name}` must be uint8 or float, got dtype {frames.dtype.name}.")
    _check_rank(frames, 4, name, "[B, H, W, 3]")
    if frames.shape[-1] is not None and frames.shape[-1] != 3:
        raise ValueError(f"`{name}` must be [B, H, W, 3], got shape {frames.shape}.")
    grids = tf.cast(tf.convert_to_tensor(grids), tf.float32)
    _check_rank(grids, 5, "grids", "[B, GH, GW, GD, 12]")
    scale = 1.0 / 255.0 if frames.dtype == tf.uint8 else 1.0
    if frames.dtype not in (tf.uint8, tf.float32):
        frames = tf.cast(frames, tf.float32)
    return grids, frames, scale


def _check_rows(rows, height):
    """`rows = (start, stop)` of an `height`-row frame (python int or int32 tensor) -> `(start,
    stop, checks)`: int32 tensors, and the graph assertions still needed. Python ints are checked
    at once (against `height` when it is a python int too); what is not is asserted in the graph."""
    if not isinstance(rows, (tuple, list)) or len(rows) != 2:
        raise ValueError(f"`rows` must be None or (start, stop), got {rows!r}.")
    static = all(isinstance(v, int) for v in rows)
    if static:
        known = height if isinstance(height, int) else None
        if not 0 <= rows[0] < rows[1] or (known is not None and rows[1] > known):
            raise ValueError(f"`rows` must satisfy 0 <= start < stop <= H={known}: {rows}.")
    start, stop = (tf.convert_to_tensor(v, tf.int32) for v in rows)
    checks = []
    if not (static and isinstance(height, int)):
        checks.append(
            tf.debugging.assert_less_equal(
                [0, start + 1, stop],
                [start, stop, tf.convert_to_tensor(height, tf.int32)],
                message="`rows` needs 0 <= start < stop <= H",
            )
        )
    return start, stop, checks


_GUIDE_FORMS = ("guide", "parts", "weights")


def _finish(grids, guide, frames, scale, clip, form, strip=None):
    """XLA body of `render_inference`: (the guide,) cast, slice/apply, clip, as one XLA function.

    Args:
      guide: depends on `form`:
        "guide": the guide itself, computed outside (a guide that is not the fused form);
        "parts": the fused guide's parts (`Guide.fused_parts(..., stencil=True)`, its stencil a
          separate XLA function), assembled and squashed here;
        "weights": `(rows, Guide.pair_weights())`, the frame rows the guide is computed from (the
          whole frame, or a strip's window): the fused guide (stencil, border ring, assembly,
          sigmoid) is computed here too.
      frames: the rows to render, uint8 or float32 (`scale` maps them to [0, 1]).
      strip: None (the whole frame), or `(top, row_offset, total_height)`: `guide` covers a window
        (the strip and its halo), `frames` the strip's rows, which start `top` rows into the
        window and `row_offset` rows into an image of `total_height` rows.
    """
    if form not in _GUIDE_FORMS:
        raise ValueError(f"`form` must be one of {_GUIDE_FORMS}, got {form!r}.")
    if form == "weights":
        rows, weights = guide
        guide = guide_module.fused_parts_of(rows, weights, scale, stencil=True)
    if form != "guide":
        guide = tf.sigmoid(Guide.assemble_logits(guide))
    row_offset = total_height = None
    if strip is not None:
        top, row_offset, total_height = strip
        guide = _crop_rows(guide, top, tf.shape(frames)[1])
    out = ops.slice_apply_body(
        grids, guide, _frames_to_float(frames, scale), row_offset, total_height
    )
    return tf.clip_by_value(out, 0.0, 1.0) if clip else out


_finish = tf.function(_finish, jit_compile=True, autograph=False)

# Largest frame (pixels per image) `render_strips` renders in one piece; larger frames are rendered
# in horizontal strips of at most this many pixels (docs/inference.md#strips, measured there).
RENDER_STRIP_PIXELS = 2_000_000


def render_strips(height, width, max_pixels=None):
    """Row ranges `[(start, stop), ...]` in which to render an `height x width` frame.

    The whole frame, `[(0, height)]`, when `height * width <= max_pixels`; otherwise the fewest
    horizontal strips of at most `max_pixels` pixels (at least one row each), their heights equal
    up to one row (taller strips first). `render_inference(..., rows=(start, stop))` of every range
    put together is the untiled render.

    Args:
      height, width: python ints >= 1.
      max_pixels: python int >= 1; None: `RENDER_STRIP_PIXELS`.
    """
    max_pixels = _common.check_int(
        RENDER_STRIP_PIXELS if max_pixels is None else max_pixels, "max_pixels"
    )
    if max_pixels < 1:
        raise ValueError(f"`max_pixels` must be >= 1, got {max_pixels}.")
    if height * width <= max_pixels:
        return [(0, height)]
    rows = max(1, max_pixels // width)
    count = -(-height // rows)
    base, extra = divmod(height, count)
    bounds = [0]
    for i in range(count):
        bounds.append(bounds[-1] + base + (1 if i < extra else 0))
    return list(zip(bounds[:-1], bounds[1:]))


def _paper_two_region_masks(grid_masks, num_regions_static):
    """The paper's two-region blend weights for K = 2: `[M, 1 - M]`, M the object's soft grid mask.

    Gamma = M Gamma_fg + (1 - M) Gamma_bg (docs/method.md#soft-mask) uses the object's Algorithm 1
    mask only; the background's own soft mask is not used, so wherever M < 1 inside the object (a
    fully masked cell whose guide spans several bins) the background grid leaks in. For K > 2 the
    paper gives no rule: the K soft masks are normalised as in "normalized" mode.

    Args:
      grid_masks: `[B, K, GH, GW, GD]` Algorithm 1 masks of the K regions (background last).
      num_regions_static: K as a python int, or None when only known at run time.
    """

    def two_region():
        fg = grid_masks[:, :1]
        return tf.concat([fg, 1.0 - fg], axis=1)

    if num_regions_static is not None:
        return two_region() if num_regions_static == 2 else grid_masks
    return tf.cond(tf.equal(tf.shape(grid_masks)[1], 2), two_region, lambda: grid_masks)


@keras.saving.register_keras_serializable(package="lvst_tf")
class LocalizedStyleModel(keras.Model):
    """The network of supplement Table 1 with K-region composition (docs/method.md#data-flow,
    #network).

    Members: `encoder` (frozen VGGEncoder), `mask_net`, `guide`, `blocks` (3 SplattingBlocks),
    `head` (GridHead), `low_res`, `grid_shape` = (GH, GW, GD).

    Methods (B batch, T frames, K regions, l = low_res; see docs/models.md):
      call(inputs) training-time clip pass -> dict output, enhanced_masks, region_masks,
        region_grids, grids, grid_masks.
      encode_styles(styles) -> dict mean_i, std_i `[B, K, C_i]`, i = 0..5.
      predict_grids(frames, masks, style_stats, state=None, soft_mask_mode=...) -> dict of grids
        and the next ST-AdaIN state `state_0..state_5`.
      render(grids, frames) -> `[B, H, W, 3]`.
      set_identity_head(): Gamma = exact identity (zero kernel), so outputs equal inputs.

    Use `build_model` to construct it; the constructor arguments are those of `build_model`.
    """

    def __init__(
        self,
        vgg_weights="imagenet",
        low_res=256,
        grid_depth=8,
        hidden_activation=None,
        share_middle_conv=False,
        l1_stride=2,
        temporal_blend=True,
        alpha_init=0.5,
        adain_epsilon=1e-5,
        identity_init=True,
        guide_dtype="float32",
        guide_impl="auto",
        soft_mask_mode="normalized",
        seed=0,
        state_gradient=True,
        conv_padding="zeros",
        vgg_padding="zeros",
        **kwargs,
    ):
        # The model's own policy is float32 even under a mixed global policy: Keras would otherwise
        # round the input frames to float16 before `call` (sub-layers keep the global policy).
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        low_res = _common.check_positive_int(low_res, "low_res")
        if low_res % GRID_CELL:
            raise ValueError(f"`low_res` must be a positive multiple of 16, got {low_res!r}.")
        if l1_stride not in (1, 2) or isinstance(l1_stride, bool):
            raise ValueError(f"`l1_stride` must be 1 or 2, got {l1_stride!r}.")
        if soft_mask_mode not in SOFT_MASK_MODES:
            raise ValueError(
                f"`soft_mask_mode` must be one of {SOFT_MASK_MODES}, got {soft_mask_mode!r}."
            )
        seed = _common.check_int(seed, "seed")
        if vgg_weights is not None and not isinstance(vgg_weights, (str, os.PathLike)):
            raise ValueError(
                "`vgg_weights` must be 'imagenet', a path to a VGG-19 .h5 weights file, or None, "
                f"got {vgg_weights!r}."
            )
        self.low_res = low_res
        self.grid_depth = _common.check_positive_int(grid_depth, "grid_depth")
        self.l1_stride = int(l1_stride)
        # With stride-2 L1 the grid is low_res / 16; with stride 1 it is low_res / 8.
        grid_hw = low_res // (8 * self.l1_stride)
        self.grid_shape = (grid_hw, grid_hw, self.grid_depth)
        self.soft_mask_mode = soft_mask_mode
        self._config = {
            "vgg_weights": None if vgg_weights is None else os.fspath(vgg_weights),
            "low_res": low_res,
            "grid_depth": self.grid_depth,
            "hidden_activation": _common.check_activation(hidden_activation, "hidden_activation"),
            "share_middle_conv": _common.check_bool(share_middle_conv, "share_middle_conv"),
            "l1_stride": self.l1_stride,
            "temporal_blend": _common.check_bool(temporal_blend, "temporal_blend"),
            "alpha_init": alpha_init,
            "adain_epsilon": adain_epsilon,
            "identity_init": _common.check_bool(identity_init, "identity_init"),
            "guide_dtype": _common.check_dtype(guide_dtype, "guide_dtype"),
            "guide_impl": guide_impl,
            "soft_mask_mode": soft_mask_mode,
            "seed": seed,
            "state_gradient": _common.check_bool(state_gradient, "state_gradient"),
            "conv_padding": _common.check_padding(conv_padding),
            "vgg_padding": _common.check_padding(vgg_padding, "vgg_padding"),
        }
        c = self._config
        self.mask_net = MaskNet(c["hidden_activation"], seed=seed + 100, name="mask_net")
        if guide_impl not in ("auto", "fused", "convs"):
            raise ValueError(
                f"`guide_impl` must be 'auto', 'fused' or 'convs', got {guide_impl!r}."
            )
        if guide_impl == "fused" and (
            c["hidden_activation"] is not None or guide_dtype != "float32"
        ):
            raise ValueError(
                "`guide_impl`='fused' is exact only with hidden_activation=None and "
                "guide_dtype='float32'; use guide_impl='auto' or 'convs'."
            )
        self.guide = Guide(
            c["hidden_activation"], guide_dtype, impl=guide_impl, seed=seed + 200, name="guide"
        )
        # One attribute per block (not a list): tf.train.Checkpoint tracks named attributes.
        in_channels = TAP_CHANNELS[0]
        for b, filters in enumerate(BLOCK_FILTERS):
            setattr(
                self,
                f"splatting_{b + 1}",
                SplattingBlock(
                    filters,
                    in_channels,
                    TAP_CHANNELS[b + 1],
                    share_middle=c["share_middle_conv"],
                    temporal=c["temporal_blend"],
                    alpha_init=alpha_init,
                    epsilon=adain_epsilon,
                    seed=seed + 300 + 10 * b,
                    state_gradient=c["state_gradient"],
                    conv_padding=c["conv_padding"],
                    name=f"splatting_{b + 1}",
                ),
            )
            in_channels = filters
        self.head = GridHead(
            self.grid_depth,
            in_channels=in_channels,
            l1_stride=self.l1_stride,
            identity_init=c["identity_init"],
            seed=seed + 400,
            conv_padding=c["conv_padding"],
            name="grid_head",
        )
        # The encoder last: a bad `vgg_weights` fails after the cheap checks above, before any data.
        self.encoder = VGGEncoder(
            vgg_weights, seed=seed, padding=c["vgg_padding"], name="vgg_encoder"
        )
        self.built = True

    # ------------------------------------------------------------------ helpers
    @property
    def blocks(self):
        """The three splatting blocks, in order."""
        return tuple(getattr(self, f"splatting_{b + 1}") for b in range(len(BLOCK_FILTERS)))

    @property
    def st_adain_channels(self):
        return st_adain_channels()

    def st_adain_sizes(self):
        """Spatial size (h = w) of ST-AdaIN layer i's feature at the low resolution."""
        return tuple(self.low_res // 2 ** (i // 2 + 1) for i in range(NUM_ST_ADAIN))

    def set_identity_head(self):
        """Makes the grid head output exactly the identity transform (zero Gamma kernel).

        Then every grid is the identity and `render`/`call` return their input frames (tests, and a
        well-defined untrained starting point).
        """
        self.head.set_identity()

    def _low(self, x):
        return _resize(x, (self.low_res, self.low_res))

    def _low_uint8(self, images):
        """uint8 images `[B, H, W, C]` (frames, or masks 0/255) -> float32 in [0, 1] at low_res:
        equal to `_low(images / 255)` up to float rounding, without a full-resolution float copy
        when shrinking (area resizing reads uint8; the division happens after it)."""
        size = (self.low_res, self.low_res)
        h, w = images.shape[1], images.shape[2]

        def shrink():
            return tf.image.resize(images, size, method="area") / 255.0

        def enlarge():
            return _resize(tf.cast(images, tf.float32) / 255.0, size)

        if h is not None and w is not None:
            if (h, w) == size:
                return tf.cast(images, tf.float32) / 255.0
            return shrink() if h >= size[0] and w >= size[1] else enlarge()
        shape = tf.shape(images)
        return tf.cond(tf.logical_and(shape[1] >= size[0], shape[2] >= size[1]), shrink, enlarge)

    # ------------------------------------------------------------------ styles
    def encode_styles(self, styles, return_features=False, style_masks=None):
        """Statistics of the K style images at every ST-AdaIN layer (the whole style path).

        Args:
          styles: `[K, h, w, 3]` or `[B, K, h, w, 3]` (any size, resized to low_res x low_res), float
            in [0, 1] or uint8; or a python list of K `[h_k, w_k, 3]` images of different sizes.
          return_features: see Returns.
          style_masks: optional style-region masks, one per style image: the statistics of style k
            are then taken over that region of style k only (masked mean and std at every layer,
            like the content side; an all-zero mask falls back to the whole image). Same layout as
            `styles` without the channel axis: `[K, h, w]`, `[B, K, h, w]`, or (with a list of
            styles) a list of K `[h_k, w_k]` masks, where None means the whole image. Float in
            [0, 1] (uint8 0/255 and bool accepted); resized to low_res like the styles. None (the
            default): every statistic is over the whole style image.

        Returns:
          dict `mean_i`, `std_i` (i = 0..5), each `[B, K, C_i]` float32 (B = 1 for the unbatched
          forms), C = (8, 128, 16, 256, 32, 512). Statistics of different styles may be blended
          linearly (style transitions, docs/method.md#st-adain).
          With `return_features=True`, `(stats, features)`: also the four VGG taps of the styles at
          the low resolution, `[B, K, l / 2^i, l / 2^i, C]` (the training losses reuse them).
        """
        masks_low = None
        if isinstance(styles, (list, tuple)):
            if not styles:
                raise ValueError("`styles` must hold at least one image, got an empty list.")
            if style_masks is not None and (
                not isinstance(style_masks, (list, tuple)) or len(style_masks) != len(styles)
            ):
                raise ValueError(
                    f"`style_masks` must be a list of {len(styles)} masks [h_k, w_k] (or None "
                    "entries), one per style image."
                )
            images, masks = [], []
            for k, image in enumerate(styles):
                image = _as_image(image, f"styles[{k}]")
                _check_rank(image, 3, f"styles[{k}]", "[h, w, 3]")
                if image.shape[-1] != 3:
                    raise ValueError(f"`styles[{k}]` must be [h, w, 3], got shape {image.shape}.")
                images.append(self._low(image[None])[0])
                if style_masks is not None:
                    mask = style_masks[k]
                    if mask is None:
                        masks.append(tf.ones([self.low_res, self.low_res]))
                        continue
                    mask = _as_image(mask, f"style_masks[{k}]")
                    _check_rank(mask, 2, f"style_masks[{k}]", "[h_k, w_k] (the size of styles[k])")
                    if mask.shape[:2] != image.shape[:2]:
                        raise ValueError(
                            f"`style_masks[{k}]` has shape {mask.shape}; expected the size of "
                            f"styles[{k}], {tuple(image.shape[:2])}."
                        )
                    masks.append(self._low(mask[None, ..., None])[0, ..., 0])
            styles = tf.stack(images)[None]
            if style_masks is not None:
                masks_low = tf.clip_by_value(tf.stack(masks), 0.0, 1.0)  # [K, l, l]
        styles = _as_image(styles, "styles")
        if styles.shape.rank == 4:
            styles = styles[None]
        _check_rank(styles, 5, "styles", "[K, h, w, 3] or [B, K, h, w, 3]")
        if styles.shape[-1] is not None and styles.shape[-1] != 3:
            raise ValueError(f"`styles` must have 3 channels, got shape {styles.shape}.")
        shape = tf.shape(styles)
        flat = tf.reshape(styles, tf.concat([[-1], shape[2:]], axis=0))
        flat = tf.ensure_shape(flat, [None, *styles.shape[2:4], 3])
        if style_masks is not None and masks_low is None:
            masks = _as_image(style_masks, "style_masks")
            if masks.shape.rank == 3:
                masks = masks[None]
            _check_rank(masks, 4, "style_masks", "[K, h, w] or [B, K, h, w] (the styles' layout)")
            for axis in range(4):
                a, b = masks.shape[axis], styles.shape[axis]
                if a is not None and b is not None and a != b:
                    raise ValueError(
                        f"`style_masks` {masks.shape} must match `styles` {styles.shape} without "
                        "the channel axis."
                    )
            with tf.control_dependencies(
                [
                    tf.debugging.assert_equal(
                        tf.shape(masks), shape[:4], message="style_masks must match styles"
                    )
                ]
            ):
                masks = tf.reshape(masks, tf.concat([[-1], shape[2:4], [1]], axis=0))
            masks_low = tf.clip_by_value(self._low(masks)[..., 0], 0.0, 1.0)
        feats = self.encoder(self._low(flat))
        s = feats[0]
        stats = {}
        for b, block in enumerate(self.blocks):
            last = b == len(self.blocks) - 1  # the last style output feeds nothing: skip it
            s, moments = block.style_path(s, feats[b + 1], compute_output=not last, mask=masks_low)
            for j, (mean, std) in enumerate(moments):
                i = 2 * b + j
                stats[f"mean_{i}"] = tf.reshape(mean, [shape[0], shape[1], -1])
                stats[f"std_{i}"] = tf.reshape(std, [shape[0], shape[1], -1])
        if return_features:
            return stats, [_split_batch(f, shape[0], shape[1]) for f in feats]
        return stats

    # ------------------------------------------------------------------ keyframes
    def _check_style_stats(self, style_stats):
        if not isinstance(style_stats, dict):
            raise ValueError(
                "`style_stats` must be the dict returned by encode_styles (keys mean_0..5, std_0..5)."
            )
        channels = st_adain_channels()
        for i in range(NUM_ST_ADAIN):
            for key in (f"mean_{i}", f"std_{i}"):
                if key not in style_stats:
                    raise ValueError(f"`style_stats` lacks key {key!r} (use encode_styles).")
                value = tf.convert_to_tensor(style_stats[key])
                if value.shape.rank != 3 or value.shape[-1] not in (None, channels[i]):
                    raise ValueError(
                        f"`style_stats[{key!r}]` must be [B, K, {channels[i]}], got {value.shape}."
                    )

    def predict_grids(
        self,
        frames,
        masks,
        style_stats,
        state=None,
        soft_mask_mode=None,
        training=False,
        return_features=False,
    ):
        """Grids for one keyframe (docs/method.md#data-flow, steps 1-5), with explicit ST-AdaIN
        state.

        Args:
          frames: `[B, H, W, 3]` float in [0, 1] or uint8, any H, W (resized to low_res inside).
          masks: `[B, H, W, K-1]` object masks in [0, 1] (uint8 0/255 and bool accepted), same H, W.
          style_stats: dict from `encode_styles`, `[B, K, C_i]` (B may be 1 for any frame batch).
          state: None (first frame of a clip) or the `state_0..state_5` of the previous keyframe
            (extra keys ignored); tensors with zero elements also mean "first frame".
          soft_mask_mode: "normalized" / "paper"; None = the model's default.
          training: unused (no dropout or normalisation layers); kept for the Keras convention.
          return_features: also return `features`, the four VGG taps of the low-res frames
          (`[B, l / 2^i, l / 2^i, C]`; the training losses reuse them).

        Returns:
          dict: `grids [B, GH, GW, GD, 12]` (blended), `region_grids [B, K, GH, GW, GD, 12]`,
          `grid_masks [B, K, GH, GW, GD]`, `enhanced_masks [B, l, l, K-1]`, `region_masks [B, l, l, K]`,
          `guide_low [B, l, l]`, and `state_i [B, K, h_i, h_i, S_i]` (i = 0..5), S = (8, 8, 16, 16,
          32, 32) (`state_channels`): y~ of layer 2b, and S_b3's share of y~ of layer 2b + 1.
        """
        del training
        mode = self.soft_mask_mode if soft_mask_mode is None else soft_mask_mode
        if mode not in SOFT_MASK_MODES:
            raise ValueError(f"`soft_mask_mode` must be one of {SOFT_MASK_MODES}, got {mode!r}.")
        frames = tf.convert_to_tensor(frames)
        # uint8 frames are resized as they are (area resizing reads uint8): no full-resolution
        # float copy of the frame is made, the division by 255 happens at the low resolution.
        frames_uint8 = frames.dtype == tf.uint8
        if not frames_uint8:
            frames = _as_image(frames, "frames")
        # uint8 masks (0/255) likewise: resized as they are, divided by 255 at the low resolution.
        masks = tf.convert_to_tensor(masks)
        masks_uint8 = masks.dtype == tf.uint8
        if not masks_uint8:
            masks = _as_image(masks, "masks")
        if masks.shape.rank == 3:
            masks = masks[..., None]  # one object: [B, H, W] -> [B, H, W, 1]
        _check_rank(frames, 4, "frames", "[B, H, W, 3]")
        _check_rank(masks, 4, "masks", "[B, H, W, K-1]")
        if frames.shape[-1] is not None and frames.shape[-1] != 3:
            raise ValueError(f"`frames` must be [B, H, W, 3], got shape {frames.shape}.")
        for axis, what in ((0, "batch"), (1, "height"), (2, "width")):
            a, b = frames.shape[axis], masks.shape[axis]
            if a is not None and b is not None and a != b:
                raise ValueError(
                    f"`frames` {frames.shape} and `masks` {masks.shape} differ in {what}."
                )
        self._check_style_stats(style_stats)
        num_objects = masks.shape[-1]
        num_regions_static = None if num_objects is None else num_objects + 1
        style_k = tf.convert_to_tensor(style_stats["mean_0"]).shape[1]
        if num_regions_static is not None and style_k is not None and style_k != num_regions_static:
            raise ValueError(
                f"`masks` gives {num_objects} object(s), so K = {num_regions_static} regions need "
                f"{num_regions_static} styles (last = background), but `style_stats` has K = {style_k}."
            )
        low = self.low_res
        batch = tf.shape(frames)[0]
        num_regions = tf.shape(masks)[-1] + 1
        checks = [
            tf.debugging.assert_equal(
                tf.shape(frames)[:3], tf.shape(masks)[:3], message="frames/masks B, H, W differ"
            ),
            tf.debugging.assert_equal(
                tf.shape(style_stats["mean_0"])[1],
                num_regions,
                message="masks give K-1 objects: style_stats must have K styles",
            ),
        ]
        with tf.control_dependencies(checks):
            frames_low = self._low_uint8(frames) if frames_uint8 else self._low(frames)
        masks_low = self._low_uint8(masks) if masks_uint8 else self._low(masks)
        masks_low = tf.clip_by_value(masks_low, 0.0, 1.0)

        # Mask enhancement, each object separately: [B * (K-1), low, low, 4] -> [B, low, low, K-1].
        objects = tf.reshape(tf.transpose(masks_low, [0, 3, 1, 2]), [-1, low, low, 1])
        rgb = tf.repeat(frames_low, num_regions - 1, axis=0)
        enhanced = self.mask_net(tf.concat([rgb, objects], axis=-1))
        enhanced = tf.transpose(tf.reshape(enhanced, [batch, -1, low, low]), [0, 2, 3, 1])
        enhanced = tf.ensure_shape(enhanced, [frames.shape[0], low, low, num_objects])
        region_masks = ops.region_masks(enhanced)  # [B, low, low, K], background last
        region_flat = tf.reshape(tf.transpose(region_masks, [0, 3, 1, 2]), [-1, low, low])
        regions = num_regions if num_regions_static is None else num_regions_static

        # Content features once per frame. The K regions are batched as B * K (b-major) from the
        # first per-region tensor on: the VGG taps (and block 1's S_b1 of relu1_1) are shared, and
        # ST-AdaIN broadcasts them over the regions instead of copying them K times.
        taps = self.encoder(frames_low)

        def flat_stats(key):
            value = tf.cast(tf.convert_to_tensor(style_stats[key]), tf.float32)
            value = tf.broadcast_to(value, tf.stack([batch, num_regions, tf.shape(value)[2]]))
            return tf.reshape(value, [-1, value.shape[-1] or tf.shape(value)[-1]])

        prev = self._flat_state(state)
        new_state = {}
        c = taps[0]
        block_masks = region_flat
        for b, block in enumerate(self.blocks):
            # Both ST-AdaIN layers of block b work at taps[b + 1]'s size: the region masks are
            # pooled to it once, from the previous block's (2x2 block means of 2x2 block means).
            block_masks = resize_mask(block_masks, _common.spatial_size(taps[b + 1]))
            i0, i1 = 2 * b, 2 * b + 1
            stats = [
                (flat_stats(f"mean_{i0}"), flat_stats(f"std_{i0}")),
                (flat_stats(f"mean_{i1}"), flat_stats(f"std_{i1}")),
            ]
            c, (y0, y1) = block.content_path(
                c,
                taps[b + 1],
                block_masks,
                stats,
                (prev[i0], prev[i1]),
                regions=regions,
                content_shared=b == 0,
            )
            for i, y in ((i0, y0), (i1, y1)):
                new_state[f"state_{i}"] = tf.reshape(
                    tf.cast(y, tf.float32),  # float32 at the API boundary (a no-op by default)
                    tf.concat([[batch, num_regions], tf.shape(y)[1:]], axis=0),
                )
        gh, gw, gd = self.grid_shape
        region_grids = self.head(c)  # [B * K, GH, GW, GD, 12]
        region_grids = tf.reshape(region_grids, [batch, -1, gh, gw, gd, 12])

        guide_low = self.guide(frames_low)  # [B, low, low]
        guide_rep = tf.repeat(guide_low, num_regions, axis=0)
        grid_masks = ops.soft_grid_mask(guide_rep, region_flat, self.grid_shape, mode=mode)
        grid_masks = tf.reshape(grid_masks, [batch, -1, gh, gw, gd])
        if mode == "paper":
            grid_masks = _paper_two_region_masks(grid_masks, num_regions_static)
        grids = ops.blend_grids(region_grids, grid_masks)
        out = {
            "grids": grids,
            "region_grids": region_grids,
            "grid_masks": grid_masks,
            "enhanced_masks": enhanced,
            "region_masks": region_masks,
            "guide_low": guide_low,
        }
        out.update(new_state)
        if return_features:
            out["features"] = taps
        return out

    def _flat_state(self, state):
        """State dict `state_i [B, K, h, w, S_i]` -> list of `[B * K, h, w, S_i]` (None = first
        frame)."""
        if state is None:
            return [None] * NUM_ST_ADAIN
        if not isinstance(state, dict):
            raise ValueError(
                "`state` must be None or the dict of state_0..state_5 from predict_grids."
            )
        flat = []
        channels = state_channels()
        for i in range(NUM_ST_ADAIN):
            key = f"state_{i}"
            if key not in state:
                raise ValueError(f"`state` lacks key {key!r}; pass None for the first frame.")
            if state[key] is None:
                raise ValueError(f"`state[{key!r}]` is None; pass state=None for the first frame.")
            value = tf.cast(tf.convert_to_tensor(state[key]), tf.float32)
            if value.shape.rank != 5 or value.shape[-1] not in (None, channels[i]):
                raise ValueError(
                    f"`state[{key!r}]` must be [B, K, h, w, {channels[i]}], got {value.shape}."
                )
            if value.shape.num_elements() == 0:
                flat.append(None)
                continue
            shape = tf.shape(value)
            flat.append(tf.reshape(value, tf.concat([[-1], shape[2:]], axis=0)))
        return flat

    # ------------------------------------------------------------------ rendering
    render_strips = staticmethod(render_strips)

    def render(self, grids, frames, impl="auto"):
        """Full-resolution render (docs/method.md#data-flow, step 6): guide at full res +
        slice/apply.

        Args:
          grids: `[B, GH, GW, GD, 12]` float32.
          frames: `[B, H, W, 3]` float in [0, 1] or uint8, any H, W.
          impl: the slice/apply implementation, `ops.SLICE_IMPLS` ("auto", "xla", "tf").

        Returns:
          `[B, H, W, 3]` float32, not clipped.
        """
        frames = _as_image(frames, "frames")
        _check_rank(frames, 4, "frames", "[B, H, W, 3]")
        grids = tf.cast(tf.convert_to_tensor(grids), tf.float32)
        _check_rank(grids, 5, "grids", "[B, GH, GW, GD, 12]")
        return ops.bilateral_slice_apply(grids, self.guide(frames), frames, impl=impl)

    def render_inference(self, grids, frames, clip=True, rows=None):
        """Inference render: `render` with uint8 frames taken as they are and one fused pass.

        With the fused guide, its 5x5 convolution is a stencil on the frame as it is
        (`guide.stencil_logits`: the uint8 -> float cast and the 1/255, folded into the kernel,
        happen inside it, so no full-resolution float copy of the frame exists); then its border
        ring, sigmoid, the frame's uint8 -> float conversion, the slice/apply and the final clip.
        A whole frame runs all of it as one XLA-compiled function; a strip (`rows`) runs the
        stencil as a separate one (less resident memory per compiled strip shape). No gradient is
        meant to flow here (training uses `render`).

        Args:
          grids: `[B, GH, GW, GD, 12]` float32.
          frames: `[B, H, W, 3]` uint8 (0..255) or float in [0, 1], any H, W.
          clip: clip the output to [0, 1] (the pipeline's only clipping, docs/method.md#data-flow).
          rows: None (the whole frame) or `(start, stop)`, ints or scalar int32 tensors with
            0 <= start < stop <= H: only output rows `start .. stop - 1`, computed from those rows
            of `frames` and `guide.halo` rows either side (docs/inference.md#strips). They equal
            the same rows of the whole render (to float rounding: the convolution's and the
            slice's arithmetic per pixel is the same), so a large frame can be rendered strip by
            strip (`render_strips`) with small temporaries.

        Returns:
          `[B, H, W, 3]` float32 (`[B, stop - start, W, 3]` with `rows`); equals
          `render(grids, frames / 255 or frames)` (clipped) up to float rounding.
        """
        grids, frames, scale = _inference_inputs(grids, frames, "frames")
        if rows is not None:
            return self._render_rows(grids, frames, scale, clip, rows)

        def plain():
            guide = self.guide(_frames_to_float(frames, scale))
            return _finish(grids, guide, frames, scale, clip, "guide")

        if not self.guide.use_fused:
            return plain()

        def fused():
            # The whole frame: the fused guide inside the one XLA function (at 512x512 its render
            # took 0.87x the time of the "parts" form, measured in one process).
            guide = (frames, self.guide.pair_weights())
            return _finish(grids, guide, frames, scale, clip, "weights")

        h, w = frames.shape[1], frames.shape[2]
        if h is not None and w is not None:
            return fused() if min(h, w) >= 3 else plain()
        shape = tf.shape(frames)
        return tf.cond(tf.minimum(shape[1], shape[2]) >= 3, fused, plain)

    def strip_window(self, start, stop, height):
        """The frame rows `(low, high)` whose guide the render of output rows `start .. stop - 1`
        of an `height`-row frame reads: the strip and `guide.halo` rows either side; at the
        frame's top or bottom the window extends further into the frame instead, so every strip
        of a given height has the same window height (one compiled shape for all of them). The one
        owner of that rule (`render_inference(rows=...)`, `VideoStylizer`'s strips). Ints or scalar
        int32 tensors in; scalar int32 tensors out."""
        halo = self.guide.halo
        size = stop - start + 2 * halo
        high = tf.minimum(tf.maximum(stop + halo, size), height)
        return tf.maximum(high - size, 0), high

    def _render_rows(self, grids, frames, scale, clip, rows):
        """`render_inference` of output rows `rows = (start, stop)` (arguments already checked)."""
        height = frames.shape[1] if frames.shape[1] is not None else tf.shape(frames)[1]
        start, stop, checks = _check_rows(rows, height)
        with tf.control_dependencies(checks):
            low, high = self.strip_window(start, stop, height)
            window = frames[:, low:high]
        return self._render_window(grids, window, low, start, stop, height, scale, clip)

    def render_window(self, grids, window, top, rows, height, clip=True):
        """`render_inference(grids, frames, clip, rows)` from a window of the frame's rows only.

        Args:
          grids: `[B, GH, GW, GD, 12]` float32.
          window: rows `top .. top + h - 1` of the `[B, height, W, 3]` frame (uint8 or float, as in
            `render_inference`). They must cover `strip_window(start, stop, height)`, i.e. hold
            the strip and the rows its guide reads.
          top: the frame row of `window[:, 0]` (int or scalar int32 tensor).
          rows: `(start, stop)`, the output rows, in frame rows.
          height: the frame's height H.
          clip: as `render_inference`.

        Returns:
          `[B, stop - start, W, 3]` float32: those rows of the whole frame's render (to float
          rounding), without the whole frame in memory (`VideoStylizer` renders large frames from
          windows of the caller's array).
        """
        grids, window, scale = _inference_inputs(grids, window, "window")
        start, stop, checks = _check_rows(rows, height)
        top = tf.convert_to_tensor(top, tf.int32)
        low, high = self.strip_window(start, stop, height)
        checks.append(
            tf.debugging.assert_less_equal(
                [top, high],
                [low, top + tf.shape(window)[1]],
                message="`window` must cover strip_window(start, stop, height)",
            )
        )
        with tf.control_dependencies(checks):
            window = tf.identity(window)
        return self._render_window(grids, window, top, start, stop, height, scale, clip)

    def _render_window(self, grids, window, top, start, stop, height, scale, clip):
        """Output rows `start .. stop - 1` of an `height`-row frame, from its rows `top ..` in
        `window` (covering `strip_window`; arguments already checked)."""
        strip = window[:, start - top : stop - top]
        where = (start - top, start, height)  # the strip in the window, in the frame

        def plain():
            guide = self.guide(_frames_to_float(window, scale))
            return _finish(grids, guide, strip, scale, clip, "guide", strip=where)

        if not self.guide.use_fused:
            return plain()

        def fused():
            # The fused form's ring fix on the window's cut rows lands in the halo, cropped away.
            # Strips: the stencil as its own XLA function. The one-function form, compiled for
            # each strip shape, kept ~60 MB more resident (peak of a 9-frame 3000x4000 stream at
            # r = 8: 1656 MB against 1594 MB) and was no faster there (0.99x at 1000x2000 and
            # 3000x4000).
            guide = self.guide.fused_parts(window, scale, stencil=True)
            return _finish(grids, guide, strip, scale, clip, "parts", strip=where)

        # The same rule as the whole render, on the whole frame's size (a window of a frame of
        # H >= 3 rows has >= 3 rows).
        width = window.shape[2]
        if isinstance(height, int) and width is not None:
            return fused() if min(height, width) >= 3 else plain()
        return tf.cond(tf.minimum(height, tf.shape(window)[2]) >= 3, fused, plain)

    # ------------------------------------------------------------------ training call
    def call(self, inputs, training=None):
        """Training-time pass over a clip; ST-AdaIN state flows from frame t - 1 to t.

        Args:
          inputs: dict `frames [B, T, h, w, 3]` in [0, 1], `masks [B, T, h, w, K-1]` (noisy) in [0, 1],
            `styles [B, K, hs, ws, 3]` in [0, 1]. T must be static.

        Returns:
          dict `output [B, T, h, w, 3]` (not clipped), `enhanced_masks [B, T, l, l, K-1]`,
          `region_masks [B, T, l, l, K]`, `region_grids [B, T, K, GH, GW, GD, 12]`,
          `grids [B, T, GH, GW, GD, 12]`, `grid_masks [B, T, K, GH, GW, GD]`, and the VGG taps the
          model computed, which the losses reuse instead of running VGG again:
          `content_features` (4 tensors `[B, T, l / 2^i, l / 2^i, C]`, the low-res frames) and
          `style_features` (4 tensors `[B, K, l / 2^i, l / 2^i, C]`, the low-res styles).
        """
        if not isinstance(inputs, dict) or not {"frames", "masks", "styles"} <= set(inputs):
            raise ValueError("`inputs` must be a dict with keys 'frames', 'masks' and 'styles'.")
        frames = _as_image(inputs["frames"], "frames")
        masks = _as_image(inputs["masks"], "masks")
        _check_rank(frames, 5, "inputs['frames']", "[B, T, h, w, 3]")
        _check_rank(masks, 5, "inputs['masks']", "[B, T, h, w, K-1]")
        num_frames = frames.shape[1]
        if num_frames is None:
            raise ValueError("`inputs['frames']` needs a static number of frames T.")
        if masks.shape[1] is not None and masks.shape[1] != num_frames:
            raise ValueError(f"`frames` has T = {num_frames} but `masks` has T = {masks.shape[1]}.")
        style_stats, style_features = self.encode_styles(inputs["styles"], return_features=True)
        state = None
        keys = ("output", "enhanced_masks", "region_masks", "region_grids", "grids", "grid_masks")
        steps = {k: [] for k in keys}
        content_features = [[] for _ in style_features]
        for t in range(num_frames):
            pred = self.predict_grids(
                frames[:, t], masks[:, t], style_stats, state, return_features=True
            )
            state = {f"state_{i}": pred[f"state_{i}"] for i in range(NUM_ST_ADAIN)}
            steps["output"].append(self.render(pred["grids"], frames[:, t]))
            for k in keys[1:]:
                steps[k].append(pred[k])
            for stack, tap in zip(content_features, pred["features"]):
                stack.append(tap)
        out = {k: tf.stack(v, axis=1) for k, v in steps.items()}
        out["content_features"] = [tf.stack(v, axis=1) for v in content_features]
        out["style_features"] = style_features
        return out

    def get_config(self):
        config = super().get_config()
        config.update(self._config)
        return config

    @classmethod
    def from_config(cls, config):
        return cls(**config)


@gin.configurable
def build_model(
    vgg_weights="imagenet",
    low_res=256,
    grid_depth=8,
    hidden_activation=None,
    share_middle_conv=False,
    l1_stride=2,
    temporal_blend=True,
    alpha_init=0.5,
    adain_epsilon=1e-5,
    identity_init=True,
    guide_dtype="float32",
    guide_impl="auto",
    soft_mask_mode="normalized",
    seed=0,
    state_gradient=True,
    conv_padding="zeros",
    vgg_padding="zeros",
):
    """Builds the localized style model (gin name `build_model`); see docs/models.md.

    Args:
      vgg_weights: "imagenet" (Keras cache or download; fails at once offline), a path to a VGG-19
        .h5 weights file (Keras 3 `.weights.h5` or legacy keras.applications h5), or None (seeded
        random weights, logged as a warning).
      low_res: side of the square low-res stream (256); a multiple of 16; grid = low_res // 16.
      grid_depth: GD, depth cells of the bilateral grid (8); Gamma has 12 * GD channels.
      hidden_activation: activation of M1, M2, G1 (None = table's "act -") [decision].
      share_middle_conv: share S_b2 between content and style paths (False) [decision].
      l1_stride: stride of L1 (2) [decision].
      temporal_blend: ST-AdaIN temporal blend on (True) [decision].
      alpha_init: initial blend weight alpha = sigmoid(a) (0.5) [decision].
      adain_epsilon: ST-AdaIN epsilon inside the square root (1e-5).
      identity_init: Gamma starts near identity (True) [decision].
      guide_dtype: compute dtype of the guide convolutions, "float32" (default) or "bfloat16".
      guide_impl: evaluation of the guide: "auto" (default; the exact fused 5x5 polyphase form when
        hidden_activation is None and guide_dtype is float32, else the conv pair), "fused", "convs".
      soft_mask_mode: default soft grid mask mode, "normalized" [decision] or "paper".
      seed: int, seed of every initialiser (and of the random VGG when vgg_weights is None).
      state_gradient: whether gradients flow through the ST-AdaIN temporal state (True, the default:
        in a training clip the loss of frame t reaches frames 0..t-1 through the six states) or
        stop at it (False: `tf.stop_gradient` on y~_{t-1}; the forward pass is identical).
      conv_padding: how the 3x3 convolutions of the splatting blocks and the grid head pad their
        input: "zeros" (Keras 'same', the default; the paper does not say) or "reflect" (mirrored
        'same', `ReflectConv2D`) [decision]. Zero padding tells those layers where the frame
        border is, even on a flat input; the weights are the same in both modes, so a checkpoint
        restores into either (docs/training.md, "The demo model"). The mask net and the guide
        keep zero padding.
      vgg_padding: the same choice for the frozen VGG encoder, which is also the loss network:
        "zeros" (Keras' VGG-19, the default) or "reflect" (mirrored, same weights) [decision]. With
        zeros every VGG tap responds to the frame border, and on flat frames that response is the
        strongest signal the splatting blocks get (docs/training.md, "The demo model").

    Returns:
      A built `LocalizedStyleModel`.
    """
    return LocalizedStyleModel(
        vgg_weights=vgg_weights,
        low_res=low_res,
        grid_depth=grid_depth,
        hidden_activation=hidden_activation,
        share_middle_conv=share_middle_conv,
        l1_stride=l1_stride,
        temporal_blend=temporal_blend,
        alpha_init=alpha_init,
        adain_epsilon=adain_epsilon,
        identity_init=identity_init,
        guide_dtype=guide_dtype,
        guide_impl=guide_impl,
        soft_mask_mode=soft_mask_mode,
        seed=seed,
        state_gradient=state_gradient,
        conv_padding=conv_padding,
        vgg_padding=vgg_padding,
    )


def count_trainable_params(model):
    """Number of trainable scalars of a model (VGG excluded, since it is frozen)."""
    return int(sum(np.prod(v.shape) for v in model.trainable_weights))
