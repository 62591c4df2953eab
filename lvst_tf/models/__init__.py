"""The network of supplement Table 1 as Keras layers, and `build_model` (docs/method.md#data-flow,
#network).

Modules: `encoder` (frozen VGG-19), `mask_net` (M1-M3), `guide` (G1-G2), `st_adain` (masked temporal
ST-AdaIN), `splatting` (splatting blocks 1-3), `grid_head` (L1, L2, F, Gamma), `model`
(`LocalizedStyleModel`, `build_model`). See docs/models.md.
"""

from lvst_tf.models.encoder import VGGEncoder, load_vgg_weights
from lvst_tf.models.grid_head import GridHead
from lvst_tf.models.guide import Guide
from lvst_tf.models.mask_net import MaskNet
from lvst_tf.models.model import (
    NUM_ST_ADAIN,
    LocalizedStyleModel,
    build_model,
    count_trainable_params,
    st_adain_channels,
    state_channels,
)
from lvst_tf.models.splatting import SplattingBlock
from lvst_tf.models.st_adain import STAdaIN, feature_moments, masked_moments

__all__ = [
    "NUM_ST_ADAIN",
    "GridHead",
    "Guide",
    "LocalizedStyleModel",
    "MaskNet",
    "STAdaIN",
    "SplattingBlock",
    "VGGEncoder",
    "build_model",
    "count_trainable_params",
    "feature_moments",
    "load_vgg_weights",
    "masked_moments",
    "st_adain_channels",
    "state_channels",
]
