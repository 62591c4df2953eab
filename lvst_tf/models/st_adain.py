"""Masked, temporal ST-AdaIN (docs/method.md#st-adain, "ST-AdaIN").

Masked AdaIN: y = sigma_s * (x - mu_m(x)) / sigma_m(x) + mu_s, where mu_m, sigma_m are per-channel
statistics of the content feature x over the region mask (area-resized to the feature resolution,
eps inside the square root) and mu_s, sigma_s are the statistics of the style feature over the whole
style image. Temporal blend: y~_t = (1 - alpha) y_t + alpha y~_{t-1}, y~_0 = y_0, alpha = sigmoid(a),
one learnable scalar `a` per layer; the state y~ is per layer and per region and is carried by the
caller (explicit state, so a SavedModel can stay stateless).

Mixed precision: the layer's dtype policy defaults to "float32" whatever the global policy is, so under
"mixed_float16" its inputs (a float16 feature, float32 masks and style statistics) are cast to float32,
the statistics (mean, var, eps, sqrt), the affine map and the temporal blend run in float32, and the
output / next state is float32 (the following convolution casts it to its own compute dtype). An
explicit `dtype=` policy is honoured: the maths still runs in float32 and the output is cast to the
layer's compute dtype.
"""

import math

import keras
import tensorflow as tf

from lvst_tf.models import _common

DEFAULT_EPSILON = 1e-5


MASK_RESIZE_FALLBACKS = ("bilinear", "area")
EMPTY_REGION_RULES = ("image", "floor")
VARIANCE_FORMS = ("centered", "expanded")


def resize_mask(mask, size, fallback="bilinear"):
    """Resizes region masks to a feature resolution: the one owner of that rule (model and losses).

    For integer factors (static shapes) this is an average pool, i.e. exactly the mean over each
    block (the fraction of the feature cell inside the region), and differentiable (TF has no
    gradient for ResizeArea). Other sizes use `fallback`: "bilinear" (antialiased bilinear, area-like
    and differentiable: the model) or "area" (`tf.image.resize(method="area")`: the training loss,
    which needs no mask gradient).

    Args:
      mask: `[N, h, w]` or `[N, h, w, K]` float in [0, 1].
      size: (h', w'), python ints or an int32 tensor.
      fallback: "bilinear" or "area", see above.

    Returns:
      The mask at `size`, same rank, float32.
    """
    if fallback not in MASK_RESIZE_FALLBACKS:
        raise ValueError(f"`fallback` must be one of {MASK_RESIZE_FALLBACKS}, got {fallback!r}.")
    mask = tf.cast(mask, tf.float32)
    squeeze = mask.shape.rank == 3
    if squeeze:
        mask = mask[..., None]
    h, w = mask.shape[1], mask.shape[2]
    static = isinstance(size[0], int) and isinstance(size[1], int)
    if static and h is not None and w is not None and (h, w) == tuple(size):
        out = mask
    elif static and h is not None and w is not None and h % size[0] == 0 and w % size[1] == 0:
        factor = (h // size[0], w // size[1])
        out = tf.nn.avg_pool2d(mask, factor, factor, "VALID")
    elif fallback == "area":
        out = tf.image.resize(mask, size, method="area")
    else:
        out = tf.image.resize(mask, size, method="bilinear", antialias=True)
    return out[..., 0] if squeeze else out


def feature_moments(x, epsilon=DEFAULT_EPSILON):
    """Per-channel mean and std over the whole image: `[N, h, w, C]` -> two `[N, C]`.

    std = sqrt(var + epsilon) (epsilon inside the square root). The one owner of this rule: the
    style path of the model and the training loss's style targets both use it.
    """
    mean, var = tf.nn.moments(tf.cast(x, tf.float32), axes=[1, 2])
    return mean, tf.sqrt(var + epsilon)


def masked_moments(x, mask, epsilon=DEFAULT_EPSILON, empty="image", variance="centered"):
    """Per-channel mean and std of `x` weighted by region masks: the one owner of masked statistics.

    mean = sum(m x) / sum(m), var = sum(m (x - mean)^2) / sum(m), std = sqrt(var + epsilon).

    Args:
      x: `[N, h, w, C]` features.
      mask: `[N, h, w]` (one region per sample, results `[N, C]`) or `[N, h, w, K]` (K regions
        sharing the same features, results `[N, K, C]`), in [0, 1], at the resolution of `x`
        (see `resize_mask`).
      epsilon: inside the square root (and the area floor of `empty="floor"`).
      empty: how a region with no area is treated. "image" (ST-AdaIN): a region whose mask sums to
        0 in a sample takes the whole-image statistics [decision: keeps features finite; such a region
        gets zero weight in the grid blend anyway]. "floor" (the training loss): sums are divided by
        max(sum(m), epsilon), so an empty region gets mean 0 and std sqrt(epsilon).
      variance: how var is computed. Both take the region means as one matrix product
        `[K, h*w] x [h*w, C]`.
        "centered" (ST-AdaIN): two passes, the squared deviations of each region from its own mean
        (one `[N, K, h*w, C]` temporary) weighted by its mask; no cancellation, in the values nor
        in their gradients. (A one-pass form about the image mean was 1.5x faster but loses digits
        for regions whose mean lies far from the image's: 1.5e-4 relative error on the std of a
        region 10 of its standard deviations away, and its mask gradient cancels the same way.)
        "expanded" (the training loss): E_m[x^2] - mean^2 from a second matrix product, clamped at
        0; it loses precision when a channel's mean is large against its spread.
        They agree up to float rounding on features like VGG's.

    Returns:
      (mean, std) float32, each `[N, C]` or `[N, K, C]`.
    """
    if empty not in EMPTY_REGION_RULES:
        raise ValueError(f"`empty` must be one of {EMPTY_REGION_RULES}, got {empty!r}.")
    if variance not in VARIANCE_FORMS:
        raise ValueError(f"`variance` must be one of {VARIANCE_FORMS}, got {variance!r}.")
    x = tf.cast(x, tf.float32)
    m = tf.cast(mask, tf.float32)
    single = m.shape.rank == 3
    if single:
        m = m[..., None]
    # One more region, the whole image, for the fallback of the "image" rule: its mean comes with
    # the others' matrix product.
    whole = empty == "image"
    if whole:
        m = tf.concat([m, tf.ones_like(m[..., :1])], axis=-1)
    total = tf.reduce_sum(m, axis=[1, 2])[..., None]  # [N, K, 1]
    area = tf.maximum(total, epsilon) if empty == "floor" else total
    # [N, h*w, K]^T x [N, h*w, C]: a batched matrix product per moment.
    shape = tf.shape(x)
    m_flat = tf.reshape(m, tf.stack([shape[0], -1, tf.shape(m)[-1]]))
    x_flat = tf.reshape(x, tf.stack([shape[0], -1, shape[3]]))
    mean = tf.math.divide_no_nan(tf.matmul(m_flat, x_flat, transpose_a=True), area)
    if variance == "centered":
        # Each region's squared deviations from its own mean ([N, K, h*w, C]), weighted by its mask
        # as a batched matrix-vector product: no cancellation, in the values or in their gradient.
        # The whole image's column is centred on its own mean: one pass.
        regions = slice(None, -1) if whole else slice(None)  # the masks' own columns
        m_first = tf.transpose(m_flat[..., regions], [0, 2, 1])  # [N, K, h*w]
        var = tf.math.divide_no_nan(
            _weighted_squares(x_flat, m_first, mean[:, regions]), area[:, regions]
        )
        if whole:
            # The whole image's variance is read only for an empty region: one more pass over the
            # features, so it is computed only when some region is empty.
            def full():
                return tf.reduce_mean(tf.math.squared_difference(x_flat, mean[:, -1:]), axis=1)

            full_var = tf.cond(
                tf.reduce_any(total[:, :-1] <= 0.0), full, lambda: tf.zeros_like(mean[:, -1])
            )
            var = tf.concat([var, full_var[:, None]], axis=1)
    else:
        second = tf.math.divide_no_nan(tf.matmul(m_flat, tf.square(x_flat), transpose_a=True), area)
        var = tf.maximum(second - tf.square(mean), 0.0)
    if whole:
        mean, full_mean = mean[:, :-1], mean[:, -1:]
        var, full_var = var[:, :-1], var[:, -1:]
    if empty == "image":
        is_empty = total[:, :-1] <= 0.0
        mean = tf.where(is_empty, full_mean, mean)
        var = tf.where(is_empty, full_var, var)
    std = tf.sqrt(var + epsilon)
    if single:
        return mean[:, 0], std[:, 0]
    return mean, std


def _weighted_squares(x_flat, m_first, mean):
    """`sum_p m[n, k, p] (x[n, p, c] - mean[n, k, c])^2` -> `[N, K, C]` (K = `m_first`'s regions).

    With K static, one region at a time: a `[N, h*w, C]` deviation against a `[N, 1, C]` mean and a
    matrix-vector product (1.5-2.5x faster on CPU than one `[N, K, h*w, C]` broadcast, which
    TensorFlow computes with its generic rank-4 broadcast). Same values: each region's sum is the
    same dot product.
    """
    k = m_first.shape[1]
    if k is None:
        deviation = tf.math.squared_difference(x_flat[:, None], mean[:, :, None, :])
        return tf.einsum("nkp,nkpc->nkc", m_first, deviation)
    sums = [
        tf.matmul(m_first[:, i : i + 1], tf.math.squared_difference(x_flat, mean[:, i : i + 1]))
        for i in range(k)
    ]
    return sums[0] if k == 1 else tf.concat(sums, axis=1)


def _has_state(state):
    """Python-level test: None or a tensor statically known to have zero elements -> no state."""
    if state is None:
        return False
    num = state.shape.num_elements()
    return num != 0


@keras.saving.register_keras_serializable(package="lvst_tf")
class STAdaIN(keras.layers.Layer):
    """Masked AdaIN with a learnable temporal blend of its output (docs/method.md#st-adain).

    Call: `(x, mask, style_mean, style_std, state=None, regions=None)`:
      x `[N, h, w, C]` content feature; mask `[N, hm, wm]` region mask in [0, 1] at any resolution
      (area-resized to h, w); style_mean, style_std `[N, C]`; state `[N, h, w, C]` = y~_{t-1}, or None
      / a tensor with zero elements for the first frame of a clip.
      With `regions=K`, x is `[B, h, w, C]` shared by K regions and N = B * K (b-major) for the
      masks, statistics and state: the same result as repeating x K times, without the copy.
    Returns y~_t `[N, h, w, C]`, which is also the next state.

    Args:
      temporal: bool, use the temporal blend (decision: on; off gives plain masked AdaIN and no
        trainable scalar).
      alpha_init: initial alpha = sigmoid(a) in (0, 1) [decision: 0.5, i.e. a = 0].
      epsilon: added to the variance inside the square root (1e-5).
      state_gradient: bool, whether gradients flow into the previous frame's state y~_{t-1}
        (default True: through a training clip, the loss of frame t reaches frames 0..t-1 through
        every ST-AdaIN state). False stops them there (`tf.stop_gradient`); the forward values are
        the same either way.
      **kwargs: Keras layer arguments; `dtype` defaults to "float32" (see the module docstring).
    """

    def __init__(
        self,
        temporal=True,
        alpha_init=0.5,
        epsilon=DEFAULT_EPSILON,
        state_gradient=True,
        **kwargs,
    ):
        # Statistics of float16 features are fragile (var of large activations, eps = 1e-5 below
        # float16 resolution): the layer is float32 by default even under a mixed global policy.
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.temporal = _common.check_bool(temporal, "temporal")
        if not isinstance(alpha_init, (int, float)) or not 0.0 < float(alpha_init) < 1.0:
            raise ValueError(f"`alpha_init` must be a float in (0, 1), got {alpha_init!r}.")
        if not isinstance(epsilon, (int, float)) or float(epsilon) <= 0.0:
            raise ValueError(f"`epsilon` must be a float > 0, got {epsilon!r}.")
        self.alpha_init = float(alpha_init)
        self.epsilon = float(epsilon)
        self.state_gradient = _common.check_bool(state_gradient, "state_gradient")
        self.blend_logit = None

    def build(self, input_shape=None):
        if self.temporal and self.blend_logit is None:
            logit = math.log(self.alpha_init / (1.0 - self.alpha_init))
            self.blend_logit = self.add_weight(
                name="blend_logit",
                shape=(),
                initializer=keras.initializers.Constant(logit),
                trainable=True,
            )
        self.built = True

    @property
    def alpha(self):
        """The temporal blend weight sigmoid(a) (0 when the temporal blend is off)."""
        if not self.temporal:
            return tf.constant(0.0)
        return tf.sigmoid(tf.cast(tf.convert_to_tensor(self.blend_logit), tf.float32))

    def affine_params(self, x, mask, style_mean, style_std, regions=None):
        """The masked AdaIN map as a per-channel affine `y = x * scale + shift`: the one owner of it.

        Args: as `adain`.

        Returns:
          (scale, shift) float32: `[N, C]`, or `[B, K, C]` with `regions=K` (x `[B, h, w, C]`).
        """
        x = tf.cast(x, tf.float32)
        size = _common.spatial_size(x)
        mask = resize_mask(mask, size)
        style_std = tf.cast(style_std, tf.float32)
        style_mean = tf.cast(style_mean, tf.float32)
        if regions is None:
            mean, std = masked_moments(x, mask, self.epsilon)
        else:
            # Shared features: masks [B * K, h, w] -> [B, h, w, K]; statistics [B, K, C].
            masks = tf.reshape(mask, tf.stack([-1, regions, size[0], size[1]]))
            mean, std = masked_moments(x, tf.transpose(masks, [0, 2, 3, 1]), self.epsilon)
            channels = x.shape[-1] if x.shape[-1] is not None else tf.shape(x)[-1]
            style_std = tf.reshape(style_std, tf.stack([-1, regions, channels]))
            style_mean = tf.reshape(style_mean, tf.stack([-1, regions, channels]))
        # y = (x - mean) / std * style_std + style_mean = x * scale + shift.
        scale = style_std / std
        return scale, style_mean - mean * scale

    def adain(self, x, mask, style_mean, style_std, regions=None):
        """Masked AdaIN without the temporal blend: y_t `[N, h, w, C]` (see the class docstring)."""
        x = tf.cast(x, tf.float32)
        scale, shift = self.affine_params(x, mask, style_mean, style_std, regions)
        if regions is None:
            return x * scale[:, None, None, :] + shift[:, None, None, :]
        y = x[:, None] * scale[:, :, None, None, :] + shift[:, :, None, None, :]  # [B, K, h, w, C]
        out = tf.reshape(y, tf.concat([[-1], tf.shape(y)[2:]], axis=0))
        return tf.ensure_shape(out, [None, *x.shape[1:]])

    def blend(self, y, state):
        """y~_t = (1 - alpha) y_t + alpha y~_{t-1}; y~_0 = y_0 (state None or with zero elements)."""
        y = tf.cast(y, tf.float32)
        if not self.temporal or not _has_state(state):
            return y
        alpha = self.alpha
        state = tf.cast(state, tf.float32)
        if not self.state_gradient:
            state = tf.stop_gradient(state)
        if state.shape.is_fully_defined() and y.shape.is_fully_defined():
            return (1.0 - alpha) * y + alpha * state
        # Dynamic shapes (exported functions): a zero-element state means "first frame".
        return tf.cond(
            tf.size(state) > 0,
            lambda: (1.0 - alpha) * y + alpha * tf.reshape(state, tf.shape(y)),
            lambda: y,
        )

    def call(self, x, mask, style_mean, style_std, state=None, regions=None):
        y = self.blend(self.adain(x, mask, style_mean, style_std, regions), state)
        return tf.cast(y, self.compute_dtype)  # a no-op with the default float32 policy

    @classmethod
    def from_config(cls, config):
        layer = cls(**config)
        layer.build()  # no input shape needed: the only weight is a scalar
        return layer

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "temporal": self.temporal,
                "alpha_init": self.alpha_init,
                "epsilon": self.epsilon,
                "state_gradient": self.state_gradient,
            }
        )
        return config
