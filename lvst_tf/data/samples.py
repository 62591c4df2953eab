"""The real sample media shipped with the project (see samples/README.md)."""

from __future__ import annotations

import os
import pathlib

from lvst_tf import resources
from lvst_tf.data import image_io

SAMPLES_ENV = "LVST_TF_SAMPLES"


def samples_root() -> pathlib.Path:
    """The repository's `samples/` folder (`davis/`, `styles/`, `videos/`).

    Found beside the package (a checkout or an editable install) or inside it (a wheel: setup.py
    copies it there); `$LVST_TF_SAMPLES` overrides it.
    """
    override = os.environ.get(SAMPLES_ENV)
    if override:
        return pathlib.Path(override)
    return resources.samples_dir()


def corpus_root() -> pathlib.Path:
    """The offline training corpus `tools/make_corpus.py` builds: `$LVST_TF_HOME/corpus`.

    `train.data_root = "corpus"` trains on it and `make_train_dataset.style_source = "corpus"` draws
    styles from its `styles/` folder (docs/data.md).
    """
    from lvst_tf import assets  # noqa: PLC0415

    return assets.home_dir() / "corpus"


def sample_davis_dir() -> pathlib.Path:
    """`samples/davis`: a DAVIS-layout folder with splits `train` and `val`."""
    return samples_root() / "davis"


def sample_style_paths() -> list[pathlib.Path]:
    """The style photographs of `samples/styles/`, sorted by name."""
    return image_io.list_images(samples_root() / "styles")
