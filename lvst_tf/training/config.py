"""Strict gin parsing for the training binaries, with the project's gin configs on the path."""

import os
import pathlib

import gin
from lvst_tf import resources

# The repository's gin/ (a checkout or an editable install) or the package's copy (a wheel).
GIN_DIR = resources.gin_dir()


def parse_gin_config(gin_files, gin_bindings=(), search_paths=()):
    """Parses gin files then bindings strictly (an unknown configurable or parameter raises).

    Every module that registers configurables is imported first, so a misspelled name fails here,
    before any work. `search_paths` and `gin/` of the repository are searched for the files and
    their `include`s, so `paper.gin` works from any folder and `gin/paper.gin` from the repository
    root (or from any folder, where it names the shipped config: a missing `gin/<name>` falls back
    to the project's own `<name>`).

    Args:
      gin_files: list of file names or paths.
      gin_bindings: list of binding strings, applied after the files.
      search_paths: extra folders to search.
    """
    import lvst_tf.data  # noqa: F401, PLC0415  (registers configurables)
    import lvst_tf.losses  # noqa: F401, PLC0415
    import lvst_tf.models  # noqa: F401, PLC0415
    import lvst_tf.training  # noqa: F401, PLC0415

    if isinstance(gin_files, str) or isinstance(gin_bindings, str):
        raise ValueError("gin_files and gin_bindings must be lists of strings, not a string.")
    folders = [os.fspath(p) for p in search_paths] + [str(GIN_DIR)]
    for folder in folders:
        gin.add_config_file_search_path(folder)
    files = []
    for name in gin_files:
        name = os.fspath(name)
        if not os.path.exists(name) and not os.path.isabs(name):
            parts = pathlib.PurePath(name).parts
            # "gin/x.gin" written for the repository root also names the shipped x.gin elsewhere.
            shipped = [os.path.join(str(GIN_DIR), parts[1])] if parts[:-1] == ("gin",) else []
            for candidate in [os.path.join(folder, name) for folder in folders] + shipped:
                if os.path.exists(candidate):
                    name = candidate
                    break
            else:
                raise ValueError(
                    f"gin file {name!r} not found (searched the current folder and {folders})."
                )
        files.append(name)
    gin.parse_config_files_and_bindings(files, list(gin_bindings), skip_unknown=False)
