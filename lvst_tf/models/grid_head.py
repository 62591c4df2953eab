"""Grid prediction head L1, L2, F, Gamma (supplement Table 1, docs/method.md#network)."""

import keras
import numpy as np
import tensorflow as tf

from lvst_tf.models import _common

NUM_COEFFS = 12
# Row-major 3x4 identity affine matrix: coefficient 4 * row + col.
IDENTITY_COEFFS = np.array([1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0], np.float32)


def identity_bias(grid_depth):
    """Gamma bias giving the identity transform in every depth cell: `[12 * grid_depth]`."""
    return np.tile(IDENTITY_COEFFS, grid_depth)


@keras.saving.register_keras_serializable(package="lvst_tf")
class GridHead(keras.layers.Layer):
    """L1 (3x3, stride `l1_stride`, relu), L2 (3x3, relu), F (3x3, relu), Gamma (1x1, linear).

    Call: `[N, h, w, in_channels]` (32x32x32 at low_res 256) -> grid `[N, h / s, w / s, GD, 12]`
    (16x16x8x12), the 12 * GD Gamma channels reshaped depth-major (channel d * 12 + k is coefficient k
    = 4 * row + col of depth cell d).

    Args:
      grid_depth: GD (8).
      in_channels: channels of the input (32).
      width: channels of L1, L2, F (64).
      l1_stride: stride of L1 (decision: 2, the table's sizes need it although it lists 1).
      identity_init: Gamma bias = identity per depth cell and a small kernel (Glorot * 1e-2), so an
        untrained model outputs about its input (decision). False: Glorot kernel, zero bias.
      seed: int, seed of the kernel initialisers.
      conv_padding: "zeros" ('same', the default) or "reflect" for L1, L2, F [decision, see
        `build_model`]; Gamma is 1x1 and needs none.

    Mixed precision: L1, L2, F follow the global policy; Gamma is always a float32 layer (its input is
    cast up), so the coefficients, whose identity part is 1 + small, keep float32 resolution; the grid
    is float32 [decision].
    """

    def __init__(
        self,
        grid_depth=8,
        in_channels=32,
        width=64,
        l1_stride=2,
        identity_init=True,
        seed=0,
        conv_padding="zeros",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.conv_padding = _common.check_padding(conv_padding)
        self.grid_depth = _common.check_positive_int(grid_depth, "grid_depth")
        self.in_channels = _common.check_positive_int(in_channels, "in_channels")
        self.width = _common.check_positive_int(width, "width")
        if l1_stride not in (1, 2) or isinstance(l1_stride, bool):
            raise ValueError(f"`l1_stride` must be 1 or 2, got {l1_stride!r}.")
        self.l1_stride = int(l1_stride)
        self.identity_init = _common.check_bool(identity_init, "identity_init")
        self.seed = _common.check_int(seed, "seed")
        w, pad = self.width, self.conv_padding
        self.l1 = _common.conv(
            w, 3, "l1", seed=self.seed, strides=self.l1_stride, activation="relu", padding=pad
        )
        self.l2 = _common.conv(w, 3, "l2", seed=self.seed + 1, activation="relu", padding=pad)
        self.f = _common.conv(w, 3, "f", seed=self.seed + 2, activation="relu", padding=pad)
        gamma_kwargs = {}
        if self.identity_init:
            gamma_kwargs = {
                "kernel_initializer": keras.initializers.VarianceScaling(
                    scale=1e-4, mode="fan_avg", distribution="uniform", seed=self.seed + 3
                ),
                "bias_initializer": keras.initializers.Constant(identity_bias(self.grid_depth)),
            }
        self.gamma = _common.conv(
            NUM_COEFFS * self.grid_depth,
            1,
            "gamma",
            seed=self.seed + 3,
            dtype="float32",
            **gamma_kwargs,
        )
        # Input channels are known from the arguments: build now, so weights exist at once.
        self.build()

    def build(self, input_shape=None):
        if self.built:  # built in the constructor already (input channels are arguments)
            return
        self.l1.build((None, None, None, self.in_channels))
        self.l2.build((None, None, None, self.width))
        self.f.build((None, None, None, self.width))
        self.gamma.build((None, None, None, self.width))
        self.built = True

    def set_identity(self):
        """Sets Gamma to exactly the identity transform: zero kernel, identity bias."""
        kernel, _ = self.gamma.get_weights()
        self.gamma.set_weights([np.zeros_like(kernel), identity_bias(self.grid_depth)])

    def call(self, x):
        if x.shape.rank is not None and x.shape.rank != 4:
            raise ValueError(f"GridHead input must be [N, h, w, C], got shape {x.shape}.")
        if x.shape[-1] is not None and x.shape[-1] != self.in_channels:
            raise ValueError(
                f"GridHead input must have {self.in_channels} channels, got shape {x.shape}."
            )
        y = tf.cast(self.gamma(self.f(self.l2(self.l1(x)))), tf.float32)
        shape = tf.shape(y)
        grid = tf.reshape(y, [shape[0], shape[1], shape[2], self.grid_depth, NUM_COEFFS])
        # Keep the static spatial sizes for callers that need them (the ops require static GH, GW).
        return tf.ensure_shape(grid, [*y.shape[:3], self.grid_depth, NUM_COEFFS])

    def compute_output_shape(self, input_shape):
        def div(d):
            return None if d is None else -(-d // self.l1_stride)

        return (input_shape[0], div(input_shape[1]), div(input_shape[2]), self.grid_depth, 12)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "grid_depth": self.grid_depth,
                "in_channels": self.in_channels,
                "width": self.width,
                "l1_stride": self.l1_stride,
                "identity_init": self.identity_init,
                "seed": self.seed,
                "conv_padding": self.conv_padding,
            }
        )
        return config
