"""Guidance learner G1-G2 (supplement Table 1): the bilateral-grid guide z = Guide(I)."""

import keras
import tensorflow as tf

from lvst_tf.models import _common


@keras.saving.register_keras_serializable(package="lvst_tf")
class Guide(keras.layers.Layer):
    """Guide map of an image: G1 16 (3x3), G2 1 (3x3, sigmoid), stride 1.

    Runs at the low resolution for the soft grid masks and at full resolution for rendering (METHOD
    section 2 steps 5-6); at 3000x4000 its two 3x3 convolutions dominate the render time.

    Call: `images [N, H, W, 3]` float32 in [0, 1] -> `[N, H, W]` float32 in [0, 1].

    Args:
      hidden_activation: activation of G1; None (default) = the table's "act -" [decision].
      compute_dtype: "float32" (default) or "bfloat16" (variables stay float32, the convolutions
        compute in bfloat16 through a mixed Keras dtype policy; output cast back to float32).
      seed: int, seed of the kernel initialisers.
    """

    def __init__(self, hidden_activation=None, compute_dtype="float32", seed=0, **kwargs):
        super().__init__(**kwargs)
        self.hidden_activation = _common.check_activation(hidden_activation, "hidden_activation")
        self.compute_dtype_name = _common.check_dtype(compute_dtype, "compute_dtype")
        self.seed = _common.check_int(seed, "seed")
        policy = (
            "float32"
            if self.compute_dtype_name == "float32"
            else f"mixed_{self.compute_dtype_name}"
        )
        act = self.hidden_activation
        self.g1 = _common.conv(16, 3, "g1", seed=self.seed, activation=act, dtype=policy)
        self.g2 = _common.conv(1, 3, "g2", seed=self.seed + 1, activation="sigmoid", dtype=policy)
        # Input channels are known from the arguments: build now, so weights exist at once.
        self.build()

    def build(self, input_shape=None):
        if self.built:  # built in the constructor already (input channels are arguments)
            return
        self.g1.build((None, None, None, 3))
        self.g2.build((None, None, None, 16))
        self.built = True

    def call(self, images):
        if images.shape.rank is not None and images.shape.rank != 4:
            raise ValueError(f"Guide input must be [N, H, W, 3], got shape {images.shape}.")
        if images.shape[-1] is not None and images.shape[-1] != 3:
            raise ValueError(f"Guide input must have 3 channels, got shape {images.shape}.")
        z = self.g2(self.g1(tf.cast(images, tf.float32)))
        return tf.cast(z[..., 0], tf.float32)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:3])

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "hidden_activation": self.hidden_activation,
                "compute_dtype": self.compute_dtype_name,
                "seed": self.seed,
            }
        )
        return config
