"""Mask enhancement network M1-M3 (supplement Table 1, docs/method.md#data-flow, step 2)."""

import keras
import tensorflow as tf

from lvst_tf.models import _common


@keras.saving.register_keras_serializable(package="lvst_tf")
class MaskNet(keras.layers.Layer):
    """Enhances one noisy object mask with the frame: M1 16, M2 8, M3 1 (sigmoid), all 3x3 stride 1.

    Call: `inputs [N, h, w, 4]` = concat(RGB in [0, 1], noisy mask in [0, 1]) -> `[N, h, w, 1]` in
    [0, 1]. With K - 1 objects the model calls it once per object (objects batched as N = B * (K - 1)).

    Args:
      hidden_activation: activation of M1 and M2; None (default) reads the table's "act -" as no
        activation [decision, gin `build_model.hidden_activation`].
      seed: int, seed of the kernel initialisers.

    Mixed precision: the convolutions follow the global policy; the output is cast to float32.
    """

    def __init__(self, hidden_activation=None, seed=0, **kwargs):
        super().__init__(**kwargs)
        self.hidden_activation = _common.check_activation(hidden_activation, "hidden_activation")
        self.seed = _common.check_int(seed, "seed")
        act = self.hidden_activation
        self.m1 = _common.conv(16, 3, "m1", seed=self.seed, activation=act)
        self.m2 = _common.conv(8, 3, "m2", seed=self.seed + 1, activation=act)
        self.m3 = _common.conv(1, 3, "m3", seed=self.seed + 2, activation="sigmoid")
        # Input channels are known from the arguments: build now, so weights exist at once.
        self.build()

    def build(self, input_shape=None):
        if self.built:  # built in the constructor already (input channels are arguments)
            return
        self.m1.build((None, None, None, 4))
        self.m2.build((None, None, None, 16))
        self.m3.build((None, None, None, 8))
        self.built = True

    def call(self, inputs):
        if inputs.shape.rank is not None and inputs.shape.rank != 4:
            raise ValueError(f"MaskNet input must be [N, h, w, 4], got shape {inputs.shape}.")
        if inputs.shape[-1] is not None and inputs.shape[-1] != 4:
            raise ValueError(
                f"MaskNet input must have 4 channels (RGB + mask), got shape {inputs.shape}."
            )
        return tf.cast(self.m3(self.m2(self.m1(tf.cast(inputs, tf.float32)))), tf.float32)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:3], 1)

    def get_config(self):
        config = super().get_config()
        config.update({"hidden_activation": self.hidden_activation, "seed": self.seed})
        return config
