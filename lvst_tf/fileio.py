"""Atomic file writing, shared by every module that writes results (no TensorFlow import)."""

from __future__ import annotations

import os
import pathlib
import tempfile
import threading

_UMASK_LOCK = threading.Lock()


def current_umask() -> int:
    """The process umask (read without leaving it changed)."""
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def default_file_mode() -> int:
    """The mode a plain `open(path, "w")` would give a new file: 0o666 minus the umask."""
    return 0o666 & ~current_umask()


def write_atomic(path: str | os.PathLike, data: bytes | str) -> None:
    """Writes `data` (bytes, or str as UTF-8) to `path` through a temporary file and a rename.

    The temporary file lives in the destination folder (so the rename is atomic) and is removed if
    anything fails, so `path` either keeps its old content or gets the whole new one.
    """
    if isinstance(data, str):
        data = data.encode("utf-8")
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            os.fchmod(f.fileno(), default_file_mode())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
