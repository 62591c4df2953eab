"""Masked, temporal ST-AdaIN (METHOD section 3, "ST-AdaIN").

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


def resize_mask(mask, size):
    """Area-resizes a region mask `[N, h, w]` to `size` = (h', w'); returns `[N, h', w']`.

    For the integer factors of the network (static shapes) this is an average pool, i.e. exactly the
    mean over each block, and differentiable (TF has no gradient for ResizeArea). Otherwise it falls
    back to antialiased bilinear resizing (area-like, differentiable).
    """
    mask = tf.cast(mask, tf.float32)
    h, w = mask.shape[1], mask.shape[2]
    if isinstance(size[0], int) and isinstance(size[1], int) and h is not None and w is not None:
        if (h, w) == tuple(size):
            return mask
        if h % size[0] == 0 and w % size[1] == 0:
            factor = (h // size[0], w // size[1])
            return tf.nn.avg_pool2d(mask[..., None], factor, factor, "VALID")[..., 0]
    return tf.image.resize(mask[..., None], size, method="bilinear", antialias=True)[..., 0]


def feature_moments(x, epsilon=DEFAULT_EPSILON):
    """Per-channel mean and std over the whole image: `[N, h, w, C]` -> two `[N, C]`.

    std = sqrt(var + epsilon) (epsilon inside the square root).
    """
    mean, var = tf.nn.moments(tf.cast(x, tf.float32), axes=[1, 2])
    return mean, tf.sqrt(var + epsilon)


def masked_moments(x, mask, epsilon=DEFAULT_EPSILON):
    """Per-channel mean and std of `x [N, h, w, C]` weighted by `mask [N, h, w]` in [0, 1].

    mean = sum(m x) / sum(m), var = sum(m (x - mean)^2) / sum(m), std = sqrt(var + epsilon).
    A region whose mask is empty in a sample (sum(m) == 0) falls back to the whole-image statistics
    [decision: keeps features finite; such a region gets zero weight in the grid blend anyway].

    Returns:
      (mean, std), each `[N, C]` float32.
    """
    x = tf.cast(x, tf.float32)
    m = tf.cast(mask, tf.float32)[..., None]
    area = tf.reduce_sum(m, axis=[1, 2])  # [N, 1]
    mean = tf.math.divide_no_nan(tf.reduce_sum(m * x, axis=[1, 2]), area)
    centered = x - mean[:, None, None, :]
    var = tf.math.divide_no_nan(tf.reduce_sum(m * tf.square(centered), axis=[1, 2]), area)
    full_mean, full_var = tf.nn.moments(x, axes=[1, 2])
    empty = area <= 0.0
    mean = tf.where(empty, full_mean, mean)
    var = tf.where(empty, full_var, var)
    return mean, tf.sqrt(var + epsilon)


def _has_state(state):
    """Python-level test: None or a tensor statically known to have zero elements -> no state."""
    if state is None:
        return False
    num = state.shape.num_elements()
    return num != 0


@keras.saving.register_keras_serializable(package="lvst_tf")
class STAdaIN(keras.layers.Layer):
    """Masked AdaIN with a learnable temporal blend of its output (METHOD section 3).

    Call: `(x, mask, style_mean, style_std, state=None)`:
      x `[N, h, w, C]` content feature; mask `[N, hm, wm]` region mask in [0, 1] at any resolution
      (area-resized to h, w); style_mean, style_std `[N, C]`; state `[N, h, w, C]` = y~_{t-1}, or None
      / a tensor with zero elements for the first frame of a clip.
    Returns y~_t `[N, h, w, C]`, which is also the next state.

    Args:
      temporal: bool, use the temporal blend (decision: on; off gives plain masked AdaIN and no
        trainable scalar).
      alpha_init: initial alpha = sigmoid(a) in (0, 1) [decision: 0.5, i.e. a = 0].
      epsilon: added to the variance inside the square root (1e-5).
      **kwargs: Keras layer arguments; `dtype` defaults to "float32" (see the module docstring).
    """

    def __init__(self, temporal=True, alpha_init=0.5, epsilon=DEFAULT_EPSILON, **kwargs):
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

    def adain(self, x, mask, style_mean, style_std):
        """Masked AdaIN without the temporal blend: y_t."""
        x = tf.cast(x, tf.float32)
        if x.shape[1] is None or x.shape[2] is None:
            size = tf.shape(x)[1:3]
        else:
            size = (int(x.shape[1]), int(x.shape[2]))
        mask = resize_mask(mask, size)
        mean, std = masked_moments(x, mask, self.epsilon)
        normalized = (x - mean[:, None, None, :]) / std[:, None, None, :]
        style_std = tf.cast(style_std, tf.float32)
        style_mean = tf.cast(style_mean, tf.float32)
        return normalized * style_std[:, None, None, :] + style_mean[:, None, None, :]

    def blend(self, y, state):
        """y~_t = (1 - alpha) y_t + alpha y~_{t-1}; y~_0 = y_0 (state None or with zero elements)."""
        y = tf.cast(y, tf.float32)
        if not self.temporal or not _has_state(state):
            return y
        alpha = self.alpha
        state = tf.cast(state, tf.float32)
        if state.shape.is_fully_defined() and y.shape.is_fully_defined():
            return (1.0 - alpha) * y + alpha * state
        # Dynamic shapes (exported functions): a zero-element state means "first frame".
        return tf.cond(
            tf.size(state) > 0,
            lambda: (1.0 - alpha) * y + alpha * tf.reshape(state, tf.shape(y)),
            lambda: y,
        )

    def call(self, x, mask, style_mean, style_std, state=None):
        y = self.blend(self.adain(x, mask, style_mean, style_std), state)
        return tf.cast(y, self.compute_dtype)  # a no-op with the default float32 policy

    @classmethod
    def from_config(cls, config):
        layer = cls(**config)
        layer.build()  # no input shape needed: the only weight is a scalar
        return layer

    def get_config(self):
        config = super().get_config()
        config.update(
            {"temporal": self.temporal, "alpha_init": self.alpha_init, "epsilon": self.epsilon}
        )
        return config
