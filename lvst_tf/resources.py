"""Where the files that come with the project are, in a source checkout and in an installed package.

The repository keeps four kinds of non-code files: the gin configs (`gin/`), the sample media
(`samples/`), the command-line binaries (`tools/`) beside the package, and the shipped trained models
inside it (`lvst_tf/pretrained/`). A wheel has no "beside the package", so `setup.py` copies `gin/`,
`samples/` and `tools/*.py` into the package at build time, at `lvst_tf/gin`, `lvst_tf/samples` and
`lvst_tf/tools`. Each function here returns the installed copy when it exists (a non-editable install)
and the repository's folder otherwise (a checkout, or `pip install -e .`). The repository's folders are
the only copy that is edited; the installed copies are build outputs.

Nothing here imports TensorFlow.
"""

from __future__ import annotations

import pathlib

PACKAGE_DIR = pathlib.Path(__file__).resolve().parent

# Repository folders that a wheel carries inside the package (setup.py copies them; keep in step).
MIRRORED_FOLDERS = ("gin", "samples", "tools")


def shipped_folder(name: str) -> pathlib.Path:
    """`lvst_tf/<name>` when the package carries it (installed), else `<repository>/<name>`.

    Args:
      name: one of `MIRRORED_FOLDERS`.

    Raises:
      ValueError: for any other name.
    """
    if name not in MIRRORED_FOLDERS:
        raise ValueError(f"name: expected one of {MIRRORED_FOLDERS}, got {name!r}.")
    installed = PACKAGE_DIR / name
    # In a checkout `lvst_tf/tools/` exists too, holding only the package's own `__init__.py`.
    if installed.is_dir() and any(
        p.name not in ("__init__.py", "__pycache__") for p in installed.iterdir()
    ):
        return installed
    return PACKAGE_DIR.parent / name


def gin_dir() -> pathlib.Path:
    """The folder of the gin configs (`demo.gin`, `paper.gin`, ...)."""
    return shipped_folder("gin")


def samples_dir() -> pathlib.Path:
    """The shipped sample media (`davis/`, `styles/`, `videos/`); see `lvst_tf.data.samples_root`,
    which also honours `$LVST_TF_SAMPLES`."""
    return shipped_folder("samples")


def tools_dir() -> pathlib.Path:
    """The folder of the command-line binaries (`train.py`, `export.py`, ...)."""
    return shipped_folder("tools")


def pretrained_root() -> pathlib.Path:
    """`lvst_tf/pretrained`: one folder per shipped model (always inside the package)."""
    return PACKAGE_DIR / "pretrained"
