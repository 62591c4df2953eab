"""Output protection: the one owner of how every tool writes its results (no TensorFlow import).

The rules, shared by the exporter, the video and image writers, the corpus and evaluation-set
builders, the trainer's workdir files and everything else that writes:

- Nothing a tool did not create is ever replaced. A tool's output folder carries a marker file
  (:class:`MarkedFolder`) by which a later run recognises it; an existing output of the same tool is
  replaced only with `overwrite=True` (`--overwrite`), unless that tool documents rebuilding its
  own output in place (`MarkedFolder.replace_without_overwrite`).
- An output that is, lies inside, or contains one of the run's inputs is refused
  (:func:`check_not_input`).
- Everything is written to a hidden temporary sibling of its destination, named
  `.<name>.<tag>-<pid>-<random>` (:func:`make_temporary`), and renamed into place when complete
  (:func:`write_atomic` for whole files, :func:`replace_folder` for folders). The process id in the
  name lets a later run remove the temporaries of a killed one (:func:`clean_stale_temporaries`)
  without touching those of a writer that is still running.
- Files and folders get the mode a plain `open` / `mkdir` would give them under the user's umask.
- Problems are found before any work: a parent that is a file, a folder that cannot be written
  (:func:`check_writable` creates and removes a probe file, which also catches read-only mounts and
  works for root). Every refusal is a `ValueError` naming the argument and the path.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import errno
import json
import os
import pathlib
import re
import shutil
import signal
import tempfile
import threading
from collections.abc import Callable, Iterable

TMP = "tmp"  # tag of a write in progress
OLD = "old"  # tag of a replaced output moved aside for a moment

_UMASK_LOCK = threading.Lock()
_SWEPT_FOLDERS: set[str] = set()  # folders whose stale write_atomic temporaries were removed
_SWEEP_LOCK = threading.Lock()


# ----------------------------------------------------------------------------------------------------
# Modes.


def current_umask() -> int:
    """The process umask (read without leaving it changed)."""
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def default_file_mode() -> int:
    """The mode a plain `open(path, "w")` would give a new file: 0o666 minus the umask."""
    return 0o666 & ~current_umask()


def default_folder_mode() -> int:
    """The mode a plain `os.mkdir` would give a new folder: 0o777 minus the umask."""
    return 0o777 & ~current_umask()


def apply_umask(root: str | os.PathLike) -> None:
    """Gives `root` and every folder and file under it the umask's modes.

    For trees written by code that picks its own modes (TensorFlow's SavedModel writer, `mkdtemp`'s
    private 0700): a reader running as another user must see what the umask allows.
    """
    dir_mode, file_mode = default_folder_mode(), default_file_mode()
    os.chmod(root, dir_mode)
    for folder, dirs, files in os.walk(root):
        for name in dirs:
            os.chmod(os.path.join(folder, name), dir_mode)
        for name in files:
            os.chmod(os.path.join(folder, name), file_mode)


# ----------------------------------------------------------------------------------------------------
# Processes and temporaries.


def process_alive(pid: int) -> bool:
    """True if process `pid` exists (this process counts; another user's process too)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_path(path: str | os.PathLike) -> None:
    """Removes a file, a symlink (not its target) or a folder tree, if it exists."""
    path = pathlib.Path(path)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def temporary_prefix(path: str | os.PathLike, tag: str = TMP) -> str:
    """`.<name>.<tag>-<pid>-`: how this process's temporaries for `path` begin."""
    return f".{pathlib.Path(path).name}.{tag}-{os.getpid()}-"


def make_temporary(
    path: str | os.PathLike, tag: str = TMP, folder: bool = False, suffix: str = ""
) -> pathlib.Path:
    """Creates an empty temporary file (or folder) beside `path`, named by :func:`temporary_prefix`.

    It lives in `path`'s folder (which must exist), so the final rename is atomic, and has the
    umask's mode. `suffix` ends the name (a video writer picks its container from the extension).
    """
    path = pathlib.Path(path)
    prefix = temporary_prefix(path, tag)
    if folder:
        tmp = tempfile.mkdtemp(dir=path.parent, prefix=prefix, suffix=suffix)
        os.chmod(tmp, default_folder_mode())  # mkdtemp makes it private
    else:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=prefix, suffix=suffix)
        try:
            os.fchmod(fd, default_file_mode())
        finally:
            os.close(fd)
    return pathlib.Path(tmp)


def _temporary_pattern(name: str | None, tags: Iterable[str]) -> re.Pattern:
    stem = re.escape(name) if name is not None else r".+"
    alternatives = "|".join(re.escape(t) for t in tags)
    return re.compile(rf"\.{stem}\.(?:{alternatives})-(\d+)-.+")


def list_temporaries(
    folder: str | os.PathLike, name: str | None = None, tags: Iterable[str] = (TMP, OLD)
) -> list[tuple[pathlib.Path, int]]:
    """`(path, pid)` of the temporaries in `folder` (of the output `name`, or of any output),
    sorted by path; whether their process still runs is not looked at."""
    folder = pathlib.Path(folder)
    if not folder.is_dir():
        return []
    pattern = _temporary_pattern(name, tags)
    found = []
    for entry in folder.iterdir():
        match = pattern.fullmatch(entry.name)
        if match:
            found.append((entry, int(match.group(1))))
    return sorted(found)


def stale_temporaries(
    folder: str | os.PathLike, name: str | None = None, tags: Iterable[str] = (TMP, OLD)
) -> list[pathlib.Path]:
    """The temporaries in `folder` (of the output `name`, or of any output) whose process is gone:
    left by a killed writer, safe to remove."""
    return [path for path, pid in list_temporaries(folder, name, tags) if not process_alive(pid)]


def clean_stale_temporaries(
    path: str | os.PathLike,
    tags: Iterable[str] = (TMP, OLD),
    keep: Callable[[pathlib.Path], bool] | None = None,
) -> list[pathlib.Path]:
    """Removes the temporaries of the output `path` (`.<name>.<tag>-<pid>-*`) whose process is gone.

    Args:
      path: the output whose temporaries are meant; those of other outputs are left alone.
      tags: the temporary kinds to look for.
      keep: optional test; a temporary for which it returns True is left in place (e.g. one that
        holds files its writer never writes).

    Returns:
      The removed paths.
    """
    path = pathlib.Path(os.path.abspath(os.fspath(path)))
    removed = []
    for entry in stale_temporaries(path.parent, path.name, tags):
        if keep is None or not keep(entry):
            remove_path(entry)
            removed.append(entry)
    return removed


def _sweep_stale_files(folder: pathlib.Path) -> None:
    """Once per process and folder: removes `write_atomic` temporaries of dead processes there."""
    key = os.fspath(folder)
    with _SWEEP_LOCK:
        if key in _SWEPT_FOLDERS:
            return
        _SWEPT_FOLDERS.add(key)
    for entry in stale_temporaries(folder, tags=(TMP,)):
        if entry.is_file() and not entry.is_symlink():
            with contextlib.suppress(OSError):
                entry.unlink()


def write_atomic(path: str | os.PathLike, data: bytes | str) -> None:
    """Writes `data` (bytes, or str as UTF-8) to `path` through a temporary file and a rename.

    The temporary (:func:`make_temporary`) is removed if anything fails, so `path` either keeps its
    old content or gets the whole new one; the file gets the umask's mode. The first write into a
    folder also removes the temporaries that killed processes left there.
    """
    if isinstance(data, str):
        data = data.encode("utf-8")
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _sweep_stale_files(path.parent)
    tmp = make_temporary(path)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        remove_path(tmp)
        raise


# ----------------------------------------------------------------------------------------------------
# Checks made before any work.


def _nearest_existing(path: pathlib.Path, argument: str) -> pathlib.Path:
    """`path`'s nearest existing ancestor folder; ValueError if that ancestor is not a folder."""
    for parent in path.parents:
        if os.path.lexists(parent):
            if not parent.is_dir():
                raise ValueError(
                    f"{argument}: cannot create {str(path)!r}: {str(parent)!r} is a file, not a "
                    "folder."
                )
            return parent
    return pathlib.Path(path.anchor or ".")


def check_writable(path: str | os.PathLike, argument: str = "output") -> None:
    """ValueError naming `argument` unless `path` can be created or replaced: its folder, or the
    nearest existing ancestor when the folder is still to be made, is a folder in which a probe
    file can be created (and is removed at once). Nothing is left behind."""
    path = pathlib.Path(os.path.abspath(os.fspath(path)))
    folder = _nearest_existing(path, argument)
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=temporary_prefix(path, "probe"))
        os.close(fd)
        os.remove(probe)
    except OSError as e:
        raise ValueError(
            f"{argument}: cannot write in {str(folder)!r}: {e.strerror or e}."
        ) from None


def _same(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    with contextlib.suppress(OSError):
        if os.path.samefile(a, b):  # also hard links
            return True
    return os.path.realpath(a) == os.path.realpath(b)


def input_overlap(output: str | os.PathLike, inputs: Iterable, inside: bool = True):
    """How `output` overlaps the first of `inputs` it overlaps: `(relation, label, input)` with
    relation "is" (the same file or folder, hard links included), "contains" or, with `inside`,
    "is inside"; None if it overlaps none.

    Args:
      output: the output path.
      inputs: paths, or `(label, path)` pairs (the label names the input in messages, e.g.
        "masks source"; the default label is "input"). Empty entries are skipped.
      inside: also count an output inside an input folder.
    """
    out = pathlib.Path(os.path.realpath(output))
    for item in inputs:
        label, source = item if isinstance(item, tuple) else ("input", item)
        if not source:
            continue
        src = pathlib.Path(os.path.realpath(source))
        if _same(output, source):
            return "is", label, source
        if out in src.parents:
            return "contains", label, source
        if inside and src in out.parents:
            return "is inside", label, source
    return None


def check_not_input(
    output: str | os.PathLike,
    inputs: Iterable,
    argument: str = "output",
    inside: bool = True,
    advice: str = "an output never replaces or holds an input (even with --overwrite); choose "
    "another output name",
) -> None:
    """ValueError `ARGUMENT: 'OUTPUT' <relation> the <label> 'INPUT'; <advice>.` if `output` is one
    of `inputs`, contains one, or (with `inside`) lies inside one (see `input_overlap`)."""
    overlap = input_overlap(output, inputs, inside)
    if overlap is not None:
        relation, label, source = overlap
        raise ValueError(
            f"{argument}: {str(output)!r} {relation} the {label} {str(source)!r}; {advice}."
        )


def check_output_file(path: str | os.PathLike, overwrite: bool = False, argument="output") -> None:
    """ValueError naming `argument` unless the file `path` may be written: not an existing folder,
    replaced only with `overwrite`, in a writable folder."""
    path = pathlib.Path(path)
    if path.is_dir():
        raise ValueError(
            f"{argument}: {str(path)!r} is an existing folder; expected a file name here."
        )
    if os.path.lexists(path) and not overwrite:
        raise ValueError(
            f"{argument}: {str(path)!r} exists; pass --overwrite to replace it (or choose another "
            "name)."
        )
    check_writable(path, argument)


# ----------------------------------------------------------------------------------------------------
# Marked output folders.


@dataclasses.dataclass(frozen=True)
class MarkedFolder:
    """One tool's output folders, recognised by a marker file the tool writes into each of them.

    Attributes:
      marker: the marker's file name inside the folder.
      tool: what identifies the tool: the marker is JSON whose `key` entry equals it.
      description: what such a folder is, for messages ("an export", "a frame folder").
      writer: who writes it, for messages ("tools/export.py", "this tool").
      key: the marker's JSON entry that holds `tool`.
      entries: optional test of the names (besides the marker) such a folder may hold; a folder
        holding any other name is not replaced. None: anything.
      legacy_markers: earlier non-JSON marker contents (bytes) that also count as the tool's.
      replace_without_overwrite: the tool rebuilds its own output in place without `overwrite`
        (a deterministic build); anything else it still refuses.
      temp_tag: the tag of the tool's temporary folders (`.<name>.<temp_tag>-<pid>-*`).
    """

    marker: str
    tool: str
    description: str
    writer: str
    key: str = "tool"
    entries: Callable[[str], bool] | None = None
    legacy_markers: tuple[bytes, ...] = ()
    replace_without_overwrite: bool = False
    temp_tag: str = TMP

    def read_marker(self, folder: str | os.PathLike) -> dict | None:
        """The marker of `folder` as a dict if it is this tool's, else None."""
        try:
            raw = (pathlib.Path(folder) / self.marker).read_bytes()
        except OSError:
            return None
        if raw in self.legacy_markers:
            return {self.key: self.tool}
        try:
            data = json.loads(raw.decode("utf-8"))
        except ValueError:
            return None
        if not isinstance(data, dict) or data.get(self.key) != self.tool:
            return None
        return data

    def is_ours(self, folder: str | os.PathLike) -> bool:
        """True if `folder` holds this tool's marker."""
        return self.read_marker(folder) is not None

    def marker_bytes(self, **fields) -> bytes:
        """The marker's content: JSON with `key: tool` first, then `fields`."""
        return (json.dumps({self.key: self.tool, **fields}, indent=1) + "\n").encode("utf-8")

    def foreign_entries(self, folder: str | os.PathLike) -> list[str] | None:
        """None if `folder` is not this tool's (no marker); else the sorted names in it that the
        tool does not write (empty when clean)."""
        if not self.is_ours(folder):
            return None
        names = sorted(p.name for p in pathlib.Path(folder).iterdir() if p.name != self.marker)
        if self.entries is None:
            return []
        return [n for n in names if not self.entries(n)]

    def check_output(
        self,
        output: str | os.PathLike,
        overwrite: bool = False,
        inputs: Iterable = (),
        argument: str = "output",
    ) -> pathlib.Path:
        """Checks an output folder before any work; returns it as an absolute path.

        Allowed: a folder that does not exist yet (its nearest existing ancestor must be a writable
        folder), an empty folder, and a previous output of this tool that holds nothing else (only
        with `overwrite`, unless `replace_without_overwrite`).

        Raises:
          ValueError naming `argument`: the output is, is inside or contains one of `inputs`
            (:func:`check_not_input`); it exists and is not a folder (a symlink counts as not a
            folder); it is a non-empty folder without this tool's marker, or with names the tool does
            not write; it is a previous output and `overwrite` is False; a parent is a file; its
            folder is not writable.
        """
        out = pathlib.Path(os.path.abspath(os.fspath(output)))
        shown = str(output)
        check_not_input(
            output,
            inputs,
            argument,
            advice=f"write {self.description} to a folder of its own",
        )
        if os.path.lexists(out):
            if out.is_symlink() or not out.is_dir():
                raise ValueError(
                    f"{argument}: {shown!r} exists and is not a folder; choose a new folder name."
                )
            if any(out.iterdir()):
                foreign = self.foreign_entries(out)
                if foreign is None:
                    raise ValueError(
                        f"{argument}: refusing to replace folder {shown!r}, which is not "
                        f"{self.description} written by {self.writer} (no {self.marker}); choose "
                        "another name or empty it yourself."
                    )
                if foreign:
                    raise ValueError(
                        f"{argument}: refusing to replace folder {shown!r}, which is not "
                        f"{self.description} written by {self.writer} (it also holds "
                        f"{foreign[:3]}, which {self.writer} does not write); move them away or "
                        "choose another name."
                    )
                if not overwrite and not self.replace_without_overwrite:
                    raise ValueError(
                        f"{argument}: {shown!r} already holds {self.description}; pass "
                        "--overwrite to replace it (or choose another name)."
                    )
        check_writable(out, argument)
        return out

    def clean_stale(self, output: str | os.PathLike) -> list[pathlib.Path]:
        """Removes the temporary folders of earlier runs for `output` whose process is gone
        (:func:`clean_stale_temporaries`), except those that hold names the tool does not write.

        Returns:
          The removed folders.
        """

        def keep(candidate: pathlib.Path) -> bool:
            if candidate.is_symlink() or not candidate.is_dir():
                return True
            if self.entries is None:
                return False
            names = (p.name for p in candidate.iterdir())
            return any(n != self.marker and not self.entries(n) for n in names)

        return clean_stale_temporaries(output, tags=(self.temp_tag, OLD), keep=keep)

    @contextlib.contextmanager
    def building(
        self,
        output: str | os.PathLike,
        overwrite: bool = False,
        inputs: Iterable = (),
        argument: str = "output",
        **marker_fields,
    ):
        """Context that writes one output folder atomically; yields the temporary folder to fill.

        On entry: `check_output` (nothing is created if it refuses), the missing parents are made,
        stale temporaries of killed runs are removed (`clean_stale`) and a fresh temporary folder is
        made beside `output`. When the block ends without an error: the marker (with
        `marker_fields`) is written into it, its tree gets the umask's modes, `output` is checked
        again (it may have changed meanwhile) and the temporary is renamed into place
        (:func:`replace_folder`), with SIGINT / SIGTERM held. On any error (or interruption) the
        temporary and the parent folders this call made are removed and `output` is left as it was.
        """
        out = self.check_output(output, overwrite, inputs, argument)
        created = [p for p in reversed(out.parents) if not os.path.lexists(p)]
        tmp = None
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            self.clean_stale(out)
            tmp = make_temporary(out, self.temp_tag, folder=True)
            yield tmp
            # A plain write: the folder itself is renamed into place, and a write_atomic temporary
            # left inside by a kill would make the folder foreign to `clean_stale`.
            (tmp / self.marker).write_bytes(self.marker_bytes(**marker_fields))
            apply_umask(tmp)
            with signals_deferred():
                self.check_output(out, overwrite, inputs, argument)
                replace_folder(tmp, out)
        except BaseException:
            if tmp is not None:
                remove_path(tmp)
            for folder in reversed(created):
                with contextlib.suppress(OSError):
                    folder.rmdir()  # only the empty parents this call made
            raise


# ----------------------------------------------------------------------------------------------------
# Renaming a finished output into place.


class WriteError(OSError):
    """Writing an output failed (full disk, I/O error, an output that changed during the run); the
    message is one line naming the argument and the path."""


def commit_file(
    tmp: str | os.PathLike, path: str | os.PathLike, overwrite: bool = False, argument="output"
) -> None:
    """Renames the finished temporary file `tmp` to `path`.

    Without `overwrite` a file that appeared at `path` during the run is never replaced: the new
    file is hard-linked to `path`, which fails if the name is taken (a plain rename is the fallback
    on file systems without hard links).

    Raises:
      WriteError: `path` became a folder, or (without `overwrite`) appeared during the run; `tmp`
        is left for the caller to remove.
    """
    tmp, path = pathlib.Path(tmp), pathlib.Path(path)
    if path.is_dir():
        raise WriteError(f"{argument}: {str(path)!r} became a folder during the run; not replaced.")
    if overwrite:
        os.replace(tmp, path)
        return
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise WriteError(
            f"{argument}: {str(path)!r} appeared during the run; not replaced (pass --overwrite "
            "to replace it)."
        ) from None
    except OSError:  # a file system without hard links
        if os.path.lexists(path):
            raise
        os.replace(tmp, path)
        return
    os.unlink(tmp)


# Folders.


@contextlib.contextmanager
def signals_deferred():
    """Holds SIGINT / SIGTERM (delivered right after) while outputs are renamed into place."""
    blockable = hasattr(signal, "pthread_sigmask")
    if blockable:
        old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        if blockable:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: pathlib.Path, b: pathlib.Path) -> bool:
    """Atomically swaps two existing paths (Linux renameat2); False where that is not available."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_uint,
    ]
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(b))


def replace_folder(new: str | os.PathLike, output: str | os.PathLike) -> None:
    """Moves the finished folder `new` (a temporary sibling) to `output`, which is absent, an empty
    folder or a previous output the caller has checked.

    A previous output is swapped with `new` in one atomic step where the system can (Linux
    `renameat2`), then removed; elsewhere it is moved aside (`.<name>.old-<pid>-*`), `new` renamed
    in, and the old one removed (put back if the rename fails). SIGINT / SIGTERM wait until the
    renames are done, so an interrupted run leaves either the old or the new output.
    """
    new, output = pathlib.Path(new), pathlib.Path(output)
    with signals_deferred():
        if not os.path.lexists(output):
            os.replace(new, output)
            return
        if _exchange(new, output):
            remove_path(new)  # now the previous output
            return
        old = make_temporary(output, OLD, folder=True)
        os.rmdir(old)
        os.replace(output, old)
        try:
            os.replace(new, output)
        except BaseException:
            os.replace(old, output)
            raise
        remove_path(old)
