"""Small helpers shared by the model layers: argument validation, activation names and the one
convolution form (zero or reflect padding)."""

import keras
import numpy as np
import tensorflow as tf

# Names accepted for the hidden activation of MaskNet and Guide (a decision,
# docs/method.md#network).
HIDDEN_ACTIVATIONS = (None, "relu", "leaky_relu", "elu", "tanh", "sigmoid", "gelu", "swish")


def check_positive_int(value, name):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"`{name}` must be an int >= 1, got {value!r}.")
    return int(value)


def check_int(value, name):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"`{name}` must be an int, got {value!r}.")
    return int(value)


def check_bool(value, name):
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"`{name}` must be True or False, got {value!r}.")
    return bool(value)


def check_activation(value, name):
    """None / "linear" / "none" mean no activation (the table's "act -")."""
    if isinstance(value, str) and value.lower() in ("none", "linear", "-"):
        value = None
    if value not in HIDDEN_ACTIVATIONS:
        raise ValueError(
            f"`{name}` must be one of {HIDDEN_ACTIVATIONS} (or 'linear'), got {value!r}."
        )
    return value


def check_dtype(value, name, allowed=("float32", "bfloat16", "float16")):
    if value not in allowed:
        raise ValueError(f"`{name}` must be one of {allowed}, got {value!r}.")
    return value


PADDINGS = ("zeros", "reflect")


def check_padding(value, name="conv_padding"):
    if value not in PADDINGS:
        raise ValueError(f"`{name}` must be one of {PADDINGS}, got {value!r}.")
    return value


def spatial_size(x):
    """(h, w) of `[N, h, w, ...]`: python ints when static, else the dynamic int32 size."""
    if x.shape[1] is None or x.shape[2] is None:
        return tf.shape(x)[1:3]
    return (int(x.shape[1]), int(x.shape[2]))


def _same_amounts(size, kernel, stride):
    """(before, after) padding of one axis that gives 'same' output size ceil(size / stride), split
    as TensorFlow's 'same' splits it (the extra pixel after)."""
    out = (size + stride - 1) // stride
    total = tf.maximum((out - 1) * stride + kernel - size, 0)
    return [total // 2, total - total // 2]


@keras.saving.register_keras_serializable(package="lvst_tf")
class ReflectConv2D(keras.layers.Conv2D):
    """A Conv2D whose 'same' padding mirrors the input (`tf.pad` mode REFLECT, edge pixel not
    repeated) instead of adding zeros: the output size and the split of the padding are those of
    'same' padding, the weights (names and shapes) those of a plain Conv2D, so a checkpoint of
    either restores into the other. Needs every padded side to be at least 2 pixels."""

    def __init__(self, *args, **kwargs):
        kwargs["padding"] = "valid"
        super().__init__(*args, **kwargs)

    def pad(self, inputs):
        """The input mirrored by the amounts of 'same' padding."""
        shape = tf.shape(inputs)
        (kh, kw), (sh, sw) = self.kernel_size, self.strides
        paddings = [
            [0, 0],
            _same_amounts(shape[1], kh, sh),
            _same_amounts(shape[2], kw, sw),
            [0, 0],
        ]
        return tf.pad(inputs, paddings, mode="REFLECT")

    def call(self, inputs):
        return super().call(self.pad(inputs))

    def compute_output_shape(self, input_shape):
        def out(size, stride):
            return None if size is None else -(-size // stride)

        n, h, w = input_shape[0], input_shape[1], input_shape[2]
        return (n, out(h, self.strides[0]), out(w, self.strides[1]), self.filters)


def linear_conv(layer, inputs, kernel):
    """`layer`'s convolution (its padding and strides) with another kernel, no bias, no activation.

    `kernel` is `[kh, kw, C_in, C_out]` in the layer's kernel size; `C_in` may divide the input's
    channels (a grouped convolution, one group per `C_in` input channels and `C_out / groups`
    outputs). Runs in the layer's compute dtype.
    """
    dtype = layer.compute_dtype
    inputs = tf.cast(inputs, dtype)
    kernel = tf.cast(kernel, dtype)
    padding = "SAME"
    if isinstance(layer, ReflectConv2D):
        inputs, padding = layer.pad(inputs), "VALID"
    return tf.nn.conv2d(inputs, kernel, [1, *layer.strides, 1], padding)


def conv(filters, kernel_size, name, seed, strides=1, activation=None, padding="zeros", **kwargs):
    """A 'same'-size Conv2D with bias, the only convolution form of supplement Table 1.

    The kernel is Glorot-uniform with the given seed (so a model is reproducible from `seed` alone)
    unless `kernel_initializer` is passed; biases start at zero unless `bias_initializer` is passed.
    `padding`: "zeros" (Keras' 'same') or "reflect" (`ReflectConv2D`); the weights are the same.
    """
    kwargs.setdefault("kernel_initializer", keras.initializers.GlorotUniform(seed=seed))
    layer = ReflectConv2D if check_padding(padding, "padding") == "reflect" else keras.layers.Conv2D
    return layer(
        filters,
        kernel_size,
        strides=strides,
        padding="same",
        activation=activation,
        use_bias=True,
        name=name,
        **kwargs,
    )
