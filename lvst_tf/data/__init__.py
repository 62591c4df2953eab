"""Training data (docs/method.md#losses, #training): clip sources, the tf.data pipeline, mask noise,
styles (optical flow: `lvst_tf.flow`).

Sources: `DavisFolder`, `TfdsDavis`, `VideoFolder` (each iterable over `Sequence(name, frames,
instances)`). Pipeline: `make_train_dataset`. Shipped sample media: `samples_root()`.
See docs/data.md.
"""

from lvst_tf.data.mask_noise import MaskNoise
from lvst_tf.data.pipeline import ClipSampler, dataset_from_sampler, make_train_dataset
from lvst_tf.data.samples import (
    corpus_root,
    sample_davis_dir,
    sample_style_paths,
    samples_root,
)
from lvst_tf.data.sources import (
    DAVIS_DIR_ENV,
    ClipSource,
    DavisFolder,
    Sequence,
    TfdsDavis,
    VideoFolder,
)
from lvst_tf.data.styles import (
    ImageFolderStyles,
    SequenceFrameStyles,
    StyleSource,
    TfdsImageStyles,
    make_style_source,
)

__all__ = [
    "DAVIS_DIR_ENV",
    "ClipSampler",
    "ClipSource",
    "DavisFolder",
    "ImageFolderStyles",
    "MaskNoise",
    "Sequence",
    "SequenceFrameStyles",
    "StyleSource",
    "TfdsDavis",
    "TfdsImageStyles",
    "VideoFolder",
    "corpus_root",
    "dataset_from_sampler",
    "make_style_source",
    "make_train_dataset",
    "sample_davis_dir",
    "sample_style_paths",
    "samples_root",
]
