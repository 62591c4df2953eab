"""Guidance learner G1-G2 (supplement Table 1): the bilateral-grid guide z = Guide(I).

Fast exact form ("fused"): with no hidden activation (the default reading of the table's "act -"),
G2 o G1 is linear before the sigmoid, so the two 3x3 convolutions compose into one 5x5 convolution
3 -> 1 with bias b2 + sum(K2) . b1. That is exact everywhere except on the outermost pixel ring, where G2
reads G1's zero padding (not G1's bias); those four lines are recomputed with the plain convolution
pair on thin slabs. A 5x5 convolution with a single output channel runs poorly in oneDNN, so it is
evaluated in polyphase form: 8 neighbouring pixels of a row are viewed as 24 channels (a free reshape),
and one 5x3 convolution 24 -> 8 produces them all. At 3000x4000 the plain pair took 3.0-3.1x as long
on this CPU (tools/bench_model.py, docs/benchmarks.md), and this form agrees with it to float32
rounding (~1e-6).

The inference render (`LocalizedStyleModel.render_inference`, already XLA-compiled) evaluates the
same 5x5 sum differently: `stencil_logits`, shifted slices of the zero-padded frame times the
kernel's scalars (5 row sums of 15 terms, then their sum over the 5 rows), compiled with XLA. It
reads the uint8 frame as it is (no full-resolution float copy) and does the 75 useful
multiply-adds per pixel instead of the polyphase form's 360; at 1000x2000 its single-pass form took
0.57x the polyphase convolution's time on this CPU. It has no gradient path worth using
(training and the non-XLA export keep the polyphase form).
"""

import keras
import numpy as np
import tensorflow as tf

from lvst_tf.models import _common

GUIDE_IMPLS = ("auto", "fused", "convs")
_PHASES = 8  # pixels per polyphase group


def _polyphase_index(phases=_PHASES, size=5, channels=3):
    """Gather indices mapping a [5, 5, C] kernel (flattened, + one zero slot) onto the polyphase
    kernel [5, 3, phases * C, phases]: output phase p of block j reads block j - 1 .. j + 1."""
    zero = size * size * channels
    index = np.full((size, 3, phases * channels, phases), zero, np.int32)
    half = size // 2
    for dy in range(size):
        for p in range(phases):
            for dx in range(size):
                block, q = divmod(p + dx - half, phases)  # block in -1..1 since half < phases
                for c in range(channels):
                    index[dy, block + 1, q * channels + c, p] = (dy * size + dx) * channels + c
    return index


_POLY_INDEX = _polyphase_index()


def _stencil_logits(x, kernel):
    """z[n, y, x] = sum over dy, dx, c of kernel[dy, dx, c] * x[n, y + dy - 2, x + dx - 2, c], with
    zeros outside the image ('same' padding): x `[N, H, W, 3]` (uint8 or float), kernel `[5, 5, 3]`.

    In two passes: for every kernel row dy, the row sum over dx and c at every padded row (15
    multiply-adds a pixel, the cast inside), then z adds the 5 row sums shifted by dy. Only fast
    under XLA; 0.78x the time of the 75-term single pass on a 500x4000 strip (one process).
    """
    size = int(kernel.shape[0])
    half = size // 2
    height, width = tf.shape(x)[1], tf.shape(x)[2]
    padded = tf.pad(x, [[0, 0], [half, half], [half, half], [0, 0]])
    padded = tf.cast(padded, tf.float32)
    z = 0.0
    for dy in range(size):
        row_sum = 0.0  # [N, H + 2 * half, W]
        for dx in range(size):
            window = padded[:, :, dx : dx + width]
            for c in range(int(kernel.shape[2])):
                row_sum += kernel[dy, dx, c] * window[..., c]
        z += row_sum[:, dy : dy + height]
    return z


stencil_logits = tf.function(_stencil_logits, jit_compile=True, autograph=False)
stencil_logits.__doc__ = _stencil_logits.__doc__


def pair_logits(x, weights):
    """The plain pair without the final sigmoid: `[N, h, w, 3]` -> `[N, h, w]`; weights
    `(k1, b1, k2, b2)` (`Guide.pair_weights`)."""
    k1, b1, k2, b2 = weights
    h = tf.nn.conv2d(x, k1, 1, "SAME") + b1
    return (tf.nn.conv2d(h, k2, 1, "SAME") + b2)[..., 0]


def fused_kernel(weights):
    """The pair composed: K[dy, dx, c] = sum over a + e = dy, b + f = dx of K2[a, b, :] . K1[e, f,
    c, :], and the bias b2 + sum(K2) . b1; weights `(k1, b1, k2, b2)`."""
    k1, b1, k2, b2 = weights  # k1 [3, 3, 3, 16], k2 [3, 3, 16, 1]
    k2 = k2[..., 0]
    kernel = tf.zeros([5, 5, 3])
    for a in range(3):
        for b in range(3):
            part = tf.einsum("efcm,m->efc", k1, k2[a, b])
            kernel += tf.pad(part, [[a, 2 - a], [b, 2 - b], [0, 0]])
    return kernel, b2[0] + tf.reduce_sum(k2 * b1)


def fused_parts_of(x, weights, scale=1.0, stencil=False):
    """The fused form's pieces before assembly (exact form only: no hidden activation, float32,
    H, W >= 3).

    Args:
      x: `[N, H, W, 3]`, the image divided by `scale`: float32, or uint8 with `scale` = 1 / 255
        (the frame as it is). The scale is folded into the kernel and a uint8 frame is padded
        before its one cast to float32, so the only full-resolution float copy of the frame is
        the polyphase convolution's input (none with `stencil`); the result equals the guide of
        `x * scale` up to float rounding.
      weights: `(k1, b1, k2, b2)`, `Guide.pair_weights()`.
      scale: python float.
      stencil: compute z with the XLA stencil (`stencil_logits`, the inference render) instead of
        the polyphase convolution (oneDNN, differentiable; the default). Same values up to float
        rounding.

    Returns:
      `(z, bias, left, right, top, bottom)`: z `[N, H, W8]` the 5x5 convolution without bias
      (W8 = W rounded up to a multiple of 8; W8 = W with `stencil`), bias a scalar, left/right
      `[N, H, 1]` and top/bottom `[N, 1, W]` the exact logits of the outermost ring.
      `Guide.assemble_logits` turns them into the logits; cheap elementwise work that an XLA
      consumer can fuse.
    """
    shape = tf.shape(x)
    n, height, width = shape[0], shape[1], shape[2]
    kernel, bias = fused_kernel(weights)
    if scale != 1.0:
        kernel = kernel * scale
    if stencil:
        return (stencil_logits(x, kernel), bias, *_ring_logits(x, weights, scale, width))
    flat = tf.concat([tf.reshape(kernel, [-1]), [0.0]], axis=0)
    poly_kernel = tf.gather(flat, _POLY_INDEX)  # [5, 3, 24, 8]
    padded_w = (width + _PHASES - 1) // _PHASES * _PHASES
    # Zero columns on the right are what 'same' padding reads anyway, so padding is exact. No
    # padding (and no copy) when the width already is a multiple of 8.
    paddings = [[0, 0], [0, 0], [0, padded_w - width], [0, 0]]
    static_w = x.shape[2]
    if static_w is not None:
        xp = x if static_w % _PHASES == 0 else tf.pad(x, paddings)
    else:
        xp = tf.cond(tf.equal(padded_w, width), lambda: tf.identity(x), lambda: tf.pad(x, paddings))
    xp = tf.cast(xp, tf.float32)
    xs = tf.reshape(xp, [n, height, padded_w // _PHASES, 3 * _PHASES])
    z = tf.reshape(tf.nn.conv2d(xs, poly_kernel, 1, "SAME"), [n, height, padded_w])
    return (z, bias, *_ring_logits(xp, weights, scale, width))


def _ring_logits(x, weights, scale, width):
    """Exact logits of the outermost ring, where G2 reads zero padding, not G1(x): left/right
    `[N, H, 1]`, top/bottom `[N, 1, W]`, recomputed with the pair on 3-pixel slabs of `x` (its
    first `width` columns are the image; uint8 slabs are cast here)."""

    def ring(slab):
        slab = tf.cast(slab, tf.float32)
        return pair_logits(slab if scale == 1.0 else slab * scale, weights)

    left = ring(x[:, :, :3])[:, :, :1]
    right = ring(x[:, :, width - 3 : width])[:, :, -1:]
    top = ring(x[:, :3, :width])[:, :1]
    bottom = ring(x[:, -3:, :width])[:, -1:]
    return left, right, top, bottom


@keras.saving.register_keras_serializable(package="lvst_tf")
class Guide(keras.layers.Layer):
    """Guide map of an image: G1 16 (3x3), G2 1 (3x3, sigmoid), stride 1.

    Runs at the low resolution for the soft grid masks and at full resolution for rendering
    (docs/method.md#data-flow, steps 5-6); at 3000x4000 its convolutions dominate the render time.

    Call: `images [N, H, W, 3]` float32 in [0, 1] -> `[N, H, W]` float32 in [0, 1].

    Args:
      hidden_activation: activation of G1; None (default) = the table's "act -" [decision].
      compute_dtype: "float32" (default) or "bfloat16" (variables stay float32, the convolutions
        compute in bfloat16 through a mixed Keras dtype policy; output cast back to float32).
      impl: "auto" (default: "fused" when it is exact, i.e. no hidden activation and float32, else
        "convs"), "fused" (composed 5x5 polyphase convolution + exact border, see the module
        docstring) or "convs" (the two Conv2D layers as written). The weights are the same Conv2D
        pair in every case; only the evaluation differs.
      seed: int, seed of the kernel initialisers.
      **kwargs: Keras layer arguments. The layer's own `dtype` policy defaults to "float32" whatever
        the global policy: the guide is always float32 in and out (its convolutions use
        `compute_dtype`), since it sets the depth coordinate of bilateral slicing.
    """

    def __init__(
        self, hidden_activation=None, compute_dtype="float32", impl="auto", seed=0, **kwargs
    ):
        # Not the global policy: under "mixed_float16" the images would be rounded to float16 on
        # entry and the fused kernel would read float16 weights.
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.hidden_activation = _common.check_activation(hidden_activation, "hidden_activation")
        self.compute_dtype_name = _common.check_dtype(compute_dtype, "compute_dtype")
        if impl not in GUIDE_IMPLS:
            raise ValueError(f"`impl` must be one of {GUIDE_IMPLS}, got {impl!r}.")
        exact = self.hidden_activation is None and self.compute_dtype_name == "float32"
        if impl == "fused" and not exact:
            raise ValueError(
                "`impl`='fused' needs hidden_activation=None and compute_dtype='float32' (the "
                "composition of the two convolutions is only exact then); use 'auto' or 'convs'."
            )
        self.impl = impl
        self.use_fused = exact and impl != "convs"
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

    @property
    def halo(self):
        """Receptive radius of the guide in pixels (2: two 3x3 convolutions): the guide of rows
        `a .. b - 1` computed on rows `a - halo .. b - 1 + halo` alone (clamped to the image) equals
        the whole image's, in every form (the fused form's ring fix and the 5x5 kernel reach no
        further); only rows within `halo` of a cut that is not the image border differ."""
        return sum(int(conv.kernel_size[0]) // 2 for conv in (self.g1, self.g2))

    # ------------------------------------------------------------------ fused evaluation
    def pair_weights(self):
        """`(k1, b1, k2, b2)`: the G1, G2 kernels and biases as tensors, the weights argument of
        `pair_logits` and `fused_parts_of` (for an XLA function that takes them as inputs)."""
        return tuple(
            tf.convert_to_tensor(v)
            for v in (self.g1.kernel, self.g1.bias, self.g2.kernel, self.g2.bias)
        )

    def _pair_logits(self, x):
        return pair_logits(x, self.pair_weights())

    def fused_parts(self, x, scale=1.0, stencil=False):
        """`fused_parts_of(x, self.pair_weights(), scale, stencil)`: see there."""
        return fused_parts_of(x, self.pair_weights(), scale, stencil)

    @staticmethod
    def assemble_logits(parts):
        """`fused_parts` -> the guide's logits `[N, H, W]` (apply a sigmoid for the guide)."""
        z, bias, left, right, top, bottom = parts
        width = tf.shape(top)[2]
        z = z[:, :, :width] + bias
        z = tf.concat([left, z[:, :, 1:-1], right], axis=2)
        return tf.concat([top, z[:, 1:-1], bottom], axis=1)

    def _fused_logits(self, x):
        return self.assemble_logits(self.fused_parts(x))

    def call(self, images):
        if images.shape.rank is not None and images.shape.rank != 4:
            raise ValueError(f"Guide input must be [N, H, W, 3], got shape {images.shape}.")
        if images.shape[-1] is not None and images.shape[-1] != 3:
            raise ValueError(f"Guide input must have 3 channels, got shape {images.shape}.")
        x = tf.cast(images, tf.float32)
        if not self.use_fused:
            return tf.cast(self.g2(self.g1(x))[..., 0], tf.float32)
        h, w = x.shape[1], x.shape[2]
        if h is not None and w is not None:
            if min(h, w) < 3:  # the ring fix needs 3 rows and columns
                return tf.sigmoid(self._pair_logits(x))
            return tf.sigmoid(self._fused_logits(x))
        shape = tf.shape(x)
        big = tf.minimum(shape[1], shape[2]) >= 3
        logits = tf.cond(big, lambda: self._fused_logits(x), lambda: self._pair_logits(x))
        return tf.sigmoid(logits)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:3])

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "hidden_activation": self.hidden_activation,
                "compute_dtype": self.compute_dtype_name,
                "impl": self.impl,
                "seed": self.seed,
            }
        )
        return config
