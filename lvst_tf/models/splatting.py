"""Splatting blocks 1-3 (supplement Table 1 with the reading of docs/method.md#network).

Block b takes the content/style features (c, s) of the previous scale and the VGG features (vc, vs) at
its own output scale:
  a_c = S_b1(c), a_s = S_b1(s)                 S_b1: 3x3 stride 2, relu, shared by both paths [paper]
  a_c' = ST-AdaIN(a_c; a_s)                    (in-block ST-AdaIN layer)
  b_c = S_b2c(a_c'), b_s = S_b2s(a_s)          S_b2: 3x3 stride 1, relu, one per path [decision]
  t = ST-AdaIN(vc; vs)                         (VGG-path ST-AdaIN layer)
  c_out = S_b3(concat(b_c, t)), s_out = S_b3(concat(b_s, vs))   S_b3: 3x3, relu, shared [paper]
On the content path t is a per-channel affine map of vc per region, so S_b3's share of it is one
convolution of vc with a per-region scaled kernel (`vgg_projection`): t itself, `vgg_channels` wide
for every region, is never formed, and the temporal state of that layer is S_b3's share of t.
The style path never depends on the content, so the style side is run once per style image and
represented only by the statistics of a_s and vs (what the two ST-AdaIN layers consume).

Mixed precision: the convolutions follow the global policy (float16 compute under "mixed_float16"),
the ST-AdaIN layers and the style statistics are float32 (see st_adain.py); each concatenation casts
its second operand to the dtype of the convolution output it joins.
"""

import keras
import tensorflow as tf

from lvst_tf.models import _common
from lvst_tf.models.st_adain import STAdaIN, feature_moments, masked_moments, resize_mask


@keras.saving.register_keras_serializable(package="lvst_tf")
class SplattingBlock(keras.layers.Layer):
    """One splatting block with its two ST-AdaIN layers.

    Args:
      filters: output channels of all three convolutions (8, 16, 32 for blocks 1-3).
      in_channels: channels of (c, s) (64 = relu1_1 for block 1, else the previous block's filters).
      vgg_channels: channels of (vc, vs) (128, 256, 512 = relu2_1, relu3_1, relu4_1).
      share_middle: share S_b2 between the content and style paths (decision: False, per-path).
      temporal: temporal blend in both ST-AdaIN layers (decision: True).
      alpha_init: initial temporal blend weight of both ST-AdaIN layers.
      epsilon: ST-AdaIN epsilon (inside the square root).
      seed: int, seed of the kernel initialisers.
      state_gradient: gradients flow into the previous frame's ST-AdaIN states (see `STAdaIN`).
      conv_padding: "zeros" ('same', the default) or "reflect" for the three convolutions
        [decision, see `build_model`].

    Calls:
      style_path(s, vs, compute_output=True, mask=None) -> (s_out, [(mean, std) of a_s,
        (mean, std) of vs]), statistics `[N, C]` (over `mask`, a region of the style, if given).
      content_path(c, vc, mask, style_stats, states, regions=None, content_shared=False) ->
        (c_out, [state_a, state_v]); mask `[N, h, w]` at any resolution; states: [y~ of a_c',
        conv(y~ of t)] of the previous frame or [None, None]; `regions=K`: shared `[B, ...]` VGG
        inputs. The returned states, float32: y~ of a_c' (`[N, h, w, filters]`) and S_b3's share of
        y~ of t (`[N, h, w, filters]`, see `vgg_projection`).
      call(c, s, vc, vs, mask) -> (c_out, s_out): both paths for one frame without temporal state.
    """

    def __init__(
        self,
        filters,
        in_channels,
        vgg_channels,
        share_middle=False,
        temporal=True,
        alpha_init=0.5,
        epsilon=1e-5,
        seed=0,
        state_gradient=True,
        conv_padding="zeros",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.conv_padding = _common.check_padding(conv_padding)
        self.filters = _common.check_positive_int(filters, "filters")
        self.in_channels = _common.check_positive_int(in_channels, "in_channels")
        self.vgg_channels = _common.check_positive_int(vgg_channels, "vgg_channels")
        self.share_middle = _common.check_bool(share_middle, "share_middle")
        self.seed = _common.check_int(seed, "seed")
        f, pad = self.filters, self.conv_padding
        self.s1 = _common.conv(
            f, 3, "s1", seed=self.seed, strides=2, activation="relu", padding=pad
        )
        self.s2_content = _common.conv(
            f, 3, "s2_content", seed=self.seed + 1, activation="relu", padding=pad
        )
        self.s2_style = (
            self.s2_content
            if self.share_middle
            else _common.conv(f, 3, "s2_style", seed=self.seed + 2, activation="relu", padding=pad)
        )
        self.s3 = _common.conv(f, 3, "s3", seed=self.seed + 3, activation="relu", padding=pad)
        self.adain_block = STAdaIN(
            temporal, alpha_init, epsilon, state_gradient, name="st_adain_block"
        )
        self.adain_vgg = STAdaIN(temporal, alpha_init, epsilon, state_gradient, name="st_adain_vgg")
        # Input channels are known from the arguments: build now, so weights exist at once.
        self.build()

    @property
    def temporal(self):
        return self.adain_block.temporal

    def build(self, input_shape=None):
        if self.built:  # built in the constructor already (input channels are arguments)
            return
        f = self.filters
        self.s1.build((None, None, None, self.in_channels))
        self.s2_content.build((None, None, None, f))
        if not self.share_middle:
            self.s2_style.build((None, None, None, f))
        self.s3.build((None, None, None, f + self.vgg_channels))
        # Built here (not in their own constructor) so their variables are named under this block.
        self.adain_block.build()
        self.adain_vgg.build()
        self.built = True

    def _check(self, x, channels, name):
        if x.shape.rank is not None and x.shape.rank != 4:
            raise ValueError(f"`{name}` must be [N, h, w, C], got shape {x.shape}.")
        if x.shape[-1] is not None and x.shape[-1] != channels:
            raise ValueError(
                f"`{name}` must have {channels} channels for this block, got shape {x.shape}."
            )

    def style_path(self, s, vs, compute_output=True, mask=None):
        """Style path; `compute_output=False` skips S_b2s/S_b3 (s_out = None) for the last block,
        whose style output feeds nothing. `mask` (`[N, h, w]` in [0, 1], any resolution; None = the
        whole style image) restricts the statistics to a region of the style image."""
        self._check(s, self.in_channels, "s")
        self._check(vs, self.vgg_channels, "vs")
        a_s = self.s1(s)
        eps = self.adain_block.epsilon
        if mask is None:
            moments = [feature_moments(a_s, eps), feature_moments(vs, eps)]
        else:
            moments = [
                masked_moments(f, resize_mask(mask, _common.spatial_size(f)), eps)
                for f in (a_s, vs)
            ]
        if not compute_output:
            return None, moments
        b_s = self.s2_style(a_s)
        return self.s3(tf.concat([b_s, tf.cast(vs, b_s.dtype)], axis=-1)), moments

    def content_path(
        self, c, vc, mask, style_stats, states=(None, None), regions=None, content_shared=False
    ):
        """Content path of N = B * K region samples.

        With `regions=K`, `vc` is `[B, h, w, C]`, shared by the K regions (and `c` too when
        `content_shared`): block 1's S_b1 then runs once per frame and nothing is copied K times.
        The result equals that of repeating the shared inputs K times (b-major) up to float rounding.

        The VGG-path ST-AdaIN output t is never formed: S_b3 is linear in its input, so its share
        `P = conv(t)` is computed from `vc` directly (`vgg_projection`) and blended in time like t
        itself. P, not t, is the state of that layer (`[N, h, w, filters]`).
        """
        self._check(c, self.in_channels, "c")
        self._check(vc, self.vgg_channels, "vc")
        (mean_a, std_a), (mean_v, std_v) = style_stats
        a_regions = regions if content_shared else None
        a_c = self.adain_block(self.s1(c), mask, mean_a, std_a, states[0], regions=a_regions)
        b_c = self.s2_content(a_c)
        p = self.adain_vgg.blend(
            self.vgg_projection(vc, mask, mean_v, std_v, regions=regions), states[1]
        )
        kernel = self.s3.kernel[:, :, : self.filters, :]
        z = _common.linear_conv(self.s3, b_c, kernel) + tf.cast(p, self.s3.compute_dtype)
        c_out = self.s3.activation(tf.nn.bias_add(z, tf.cast(self.s3.bias, z.dtype)))
        return c_out, [a_c, p]

    def vgg_projection(self, vc, mask, style_mean, style_std, regions=None):
        """S_b3's convolution (no bias) of the VGG-path ST-AdaIN output `t = vc * scale + shift`.

        conv(t) = conv(vc) with the kernel's input channels multiplied by `scale`, plus the
        convolution of the constant field `shift` (which depends on the padding near the border).
        Each of the G frames (or samples) of `vc` runs as one plain convolution with the K regions'
        kernels side by side (`filters` outputs per region instead of a `vgg_channels`-wide t per
        region); with G unknown when traced, all run as one grouped convolution, which TensorFlow
        can differentiate on a CPU only with oneDNN (inference needs no gradient).

        Args:
          vc: `[G, h, w, vgg_channels]`: G = B frames shared by `regions=K` regions, or G = N
            samples (regions None).
          mask, style_mean, style_std, regions: as `STAdaIN`.

        Returns:
          `[G * K, h, w, filters]` (b-major) float32; K = 1 when regions is None.
        """
        scale, shift = self.adain_vgg.affine_params(vc, mask, style_mean, style_std, regions)
        if regions is None:
            scale, shift = scale[:, None], shift[:, None]  # [N, 1, C]
        f = self.filters
        kernel = tf.cast(self.s3.kernel, tf.float32)[:, :, f:, :]  # [kh, kw, C, f]
        kh, kw, channels = (int(d) for d in kernel.shape[:3])
        groups, size = tf.shape(vc)[0], tf.shape(vc)[1:3]
        # Output channel (g * K + k) * f + o of both kernels: region k of group g.
        # (A broadcast product and a matrix product: einsums of these shapes took up to 1.8 ms.)
        per_region = tf.transpose(scale, [2, 0, 1])[:, :, :, None]  # [C, G, K, 1]
        scaled = tf.reshape(kernel[:, :, :, None, None, :] * per_region, [kh, kw, channels, -1])
        taps = tf.reshape(kernel, [kh * kw, channels, f])
        shifted = tf.matmul(tf.reshape(shift, [-1, channels]), taps)  # [taps, G * K, f]
        shifted = tf.reshape(shifted, [kh, kw, 1, -1])
        if vc.shape[0] is not None:
            # G plain convolutions, group g's K * f outputs each. TensorFlow's CPU kernels without
            # oneDNN (CPUs without AVX-512) have no gradient for a grouped convolution, and
            # training needs one; with a static G (a training batch, one frame) this form needs
            # none, for the same work.
            width = tf.shape(scaled)[-1] // vc.shape[0]
            z = tf.concat(
                [
                    _common.linear_conv(
                        self.s3, vc[g : g + 1], scaled[..., g * width : (g + 1) * width]
                    )
                    for g in range(vc.shape[0])
                ],
                axis=-1,
            )
        else:  # one grouped convolution, the groups side by side in channels: [1, h, w, G * C]
            x = tf.transpose(vc, [1, 2, 0, 3])
            x = tf.reshape(x, tf.concat([[1], size, [groups * channels]], axis=0))
            z = _common.linear_conv(self.s3, x, scaled)
        ones = tf.ones(tf.concat([[1], size, [1]], axis=0), self.s3.compute_dtype)
        z = z + _common.linear_conv(self.s3, ones, shifted)
        z = tf.reshape(z, tf.concat([size, [-1, f]], axis=0))  # [h, w, G * K, f]
        z = tf.cast(tf.transpose(z, [2, 0, 1, 3]), tf.float32)
        return tf.ensure_shape(z, [None, *vc.shape[1:3], f])

    def call(self, c, s, vc, vs, mask):
        s_out, stats = self.style_path(s, vs)
        c_out, _ = self.content_path(c, vc, mask, stats)
        return c_out, s_out

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "filters": self.filters,
                "in_channels": self.in_channels,
                "vgg_channels": self.vgg_channels,
                "share_middle": self.share_middle,
                "temporal": self.adain_block.temporal,
                "alpha_init": self.adain_block.alpha_init,
                "epsilon": self.adain_block.epsilon,
                "seed": self.seed,
                "state_gradient": self.adain_block.state_gradient,
                "conv_padding": self.conv_padding,
            }
        )
        return config
