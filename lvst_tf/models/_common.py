"""Small helpers shared by the model layers: argument validation and activation names."""

import keras
import numpy as np

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


def conv(filters, kernel_size, name, seed, strides=1, activation=None, **kwargs):
    """A 'same'-padded Conv2D with bias, the only convolution form of supplement Table 1.

    The kernel is Glorot-uniform with the given seed (so a model is reproducible from `seed` alone)
    unless `kernel_initializer` is passed; biases start at zero unless `bias_initializer` is passed.
    """
    kwargs.setdefault("kernel_initializer", keras.initializers.GlorotUniform(seed=seed))
    return keras.layers.Conv2D(
        filters,
        kernel_size,
        strides=strides,
        padding="same",
        activation=activation,
        use_bias=True,
        name=name,
        **kwargs,
    )
