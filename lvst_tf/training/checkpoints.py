"""Checkpoints of a training run: `workdir/checkpoints/ckpt-<step>.{index,data-*}` and `checkpoint`.

The checkpoint object is `tf.train.Checkpoint(step=..., model=<the trained parts>, optimizer=...)`
(object key `model`; `lvst_tf.loading.model_checkpoint`): the frozen VGG-19 encoder is not stored, it
comes from its source (`build_model.vgg_weights`), which keeps a checkpoint small (about 4 MB with the
Adam moments). The files, the variables in them (`save_counter` included) and the `checkpoint` state
file are those `tf.train.CheckpointManager` writes, so runs started by earlier versions resume.

`CheckpointStore` writes them so that a crash at any moment leaves a loadable run:
1. the new checkpoint is written (TensorFlow writes into `ckpt-N_temp/` and moves the files into
   place), flushed to disk, and read back in full;
2. only then does the `checkpoint` state file (written atomically) point at it;
3. only then are checkpoints beyond `max_to_keep` deleted, so with `max_to_keep = 1` the previous
   checkpoint survives until the new one is known to be complete.
On resume, the newest checkpoint that reads back in full is used; a newer unreadable one (a truncated
file) is moved to `checkpoints/unreadable/` with a warning. Temporary files of a run that was killed
while saving (`ckpt-N_temp/`, `checkpoint.tmp*`, `fileio.write_atomic`'s `.<name>.tmp-<pid>-*`) are
removed when the workdir is used again.
"""

from __future__ import annotations

import glob
import os
import re
import time

import tensorflow as tf
from absl import logging

from lvst_tf import fileio

CHECKPOINT_DIR = "checkpoints"
UNREADABLE_DIR = "unreadable"
_CKPT_INDEX = re.compile(r"ckpt-(\d+)\.index")


def checkpoint_dir(workdir):
    """`workdir/checkpoints` as a string."""
    return os.path.join(os.fspath(workdir), CHECKPOINT_DIR)


def make_checkpoint(model, optimizer, step):
    """The run's `tf.train.Checkpoint(step=step, model=<trained parts>, optimizer=optimizer)`."""
    from lvst_tf import loading  # noqa: PLC0415

    return tf.train.Checkpoint(
        step=step, model=loading.model_checkpoint(model), optimizer=optimizer
    )


def make_manager(checkpoint, directory, max_to_keep=3):
    """A plain `tf.train.CheckpointManager` numbering checkpoints by step (tests and tools)."""
    return tf.train.CheckpointManager(checkpoint, os.fspath(directory), max_to_keep=max_to_keep)


def checkpoint_steps(directory):
    """Steps of the `ckpt-<step>.index` files in `directory`, newest first."""
    steps = []
    for path in glob.glob(os.path.join(os.fspath(directory), "ckpt-*.index")):
        match = _CKPT_INDEX.fullmatch(os.path.basename(path))
        if match:
            steps.append(int(match.group(1)))
    return sorted(steps, reverse=True)


def _intact(prefix):
    from lvst_tf import loading  # noqa: PLC0415

    return loading.checkpoint_is_intact(prefix)


def resolve_checkpoint(path):
    """The newest intact checkpoint prefix from a workdir, a checkpoint folder, or a prefix.

    Args:
      path: a training workdir (holding `checkpoints/`), a folder of `ckpt-N` files, or a checkpoint
        prefix such as `.../ckpt-20000`.

    Returns:
      The prefix (str).

    Raises:
      ValueError: nothing loadable at `path` (missing, or every checkpoint unreadable).
    """
    from lvst_tf import loading  # noqa: PLC0415

    path = os.fspath(path)
    if os.path.isdir(os.path.join(path, CHECKPOINT_DIR)):
        try:
            return loading.resolve_checkpoint(path)
        except ValueError as e:
            raise ValueError(f"train.init_checkpoint = {path!r}: {e}") from None
    if os.path.isdir(path) and checkpoint_steps(path):
        for step in checkpoint_steps(path):
            prefix = os.path.join(path, f"ckpt-{step}")
            if _intact(prefix):
                return prefix
        raise ValueError(f"train.init_checkpoint = {path!r}: every checkpoint there is unreadable.")
    if os.path.isfile(path + ".index"):
        if not _intact(path):
            raise ValueError(
                f"train.init_checkpoint = {path!r}: the checkpoint is truncated or unreadable."
            )
        return path
    raise ValueError(
        f"train.init_checkpoint = {path!r}: expected a training workdir (with {CHECKPOINT_DIR}/), a checkpoint "
        "folder, or a checkpoint prefix like .../ckpt-20000; found no checkpoint there."
    )


def restore_submodule(path, model, attribute="mask_net"):
    """Restores only `model.<attribute>` from a run's checkpoint (phase 2 restores the mask net).

    Args:
      path: see `resolve_checkpoint`.
      model: a built model (its variables exist).
      attribute: the model attribute (a Keras layer) to restore.

    Returns:
      The checkpoint prefix restored from.
    """
    layer = getattr(model, attribute, None)
    if layer is None:
        raise ValueError(f"train.init_scope: the model has no attribute {attribute!r}.")
    prefix = resolve_checkpoint(path)
    # The same object-graph path as the full checkpoint: root -> model -> <attribute>.
    partial = tf.train.Checkpoint(model=tf.train.Checkpoint(**{attribute: layer}))
    status = partial.read(prefix)
    try:
        status.assert_existing_objects_matched().expect_partial()
    except AssertionError as e:
        raise ValueError(
            f"train.init_checkpoint: {prefix!r} holds no model.{attribute} that fits this model "
            f"({str(e).splitlines()[0]})."
        ) from None
    return prefix


def latest_step(workdir):
    """The step of the checkpoint `workdir/checkpoints/checkpoint` points at, or 0."""
    latest = tf.train.latest_checkpoint(checkpoint_dir(workdir))
    if not latest:
        return 0
    return int(tf.train.load_variable(latest, "step/.ATTRIBUTES/VARIABLE_VALUE"))


def stale_temp_files(workdir):
    """Temporary files a killed run left in `workdir`: TensorFlow's `ckpt-N_temp/` folders and
    `checkpoint.tmp*` state files, and `fileio.write_atomic`'s temporaries in the workdir
    (`.<name>.tmp-<pid>-*` whose process is gone: another tool, e.g. an evaluation writing its
    tables there, may be writing the others; `.operative_config.gin.*.tmp` is how earlier versions
    named them)."""
    workdir = os.fspath(workdir)
    ckpt = checkpoint_dir(workdir)
    found = glob.glob(os.path.join(ckpt, "ckpt-*_temp"))
    found += glob.glob(os.path.join(ckpt, "checkpoint.tmp*"))
    found += glob.glob(os.path.join(workdir, ".operative_config.gin.*.tmp"))
    found += [os.fspath(path) for path in fileio.stale_temporaries(workdir, tags=(fileio.TMP,))]
    return sorted(set(found))


def clean_stale_temp_files(workdir):
    """Removes `stale_temp_files(workdir)`; returns what was removed. Only for a workdir no other
    process is writing to (the trainer holds its lock)."""
    removed = []
    for path in stale_temp_files(workdir):
        if os.path.lexists(path):
            fileio.remove_path(path)
            removed.append(path)
    return removed


def _fsync(path):
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # e.g. a folder on a filesystem that refuses it; the read-back check still runs
    finally:
        os.close(fd)


def _prefix_files(prefix):
    return glob.glob(glob.escape(prefix) + ".index") + glob.glob(glob.escape(prefix) + ".data-*")


class CheckpointStore:
    """Writes, verifies, prunes and restores the checkpoints of one run (see the module docstring).

    Args:
      checkpoint: the `tf.train.Checkpoint` (`make_checkpoint`).
      directory: the checkpoint folder (`checkpoint_dir(workdir)`).
      max_to_keep: complete checkpoints kept after a save (>= 1).
    """

    def __init__(self, checkpoint, directory, max_to_keep=3):
        if not isinstance(max_to_keep, int) or max_to_keep < 1:
            raise ValueError(f"train.max_checkpoints must be an integer >= 1, got {max_to_keep!r}.")
        self.checkpoint = checkpoint
        self.directory = os.fspath(directory)
        self.max_to_keep = max_to_keep

    def prefix(self, step):
        return os.path.join(self.directory, f"ckpt-{int(step)}")

    def steps(self):
        return checkpoint_steps(self.directory) if os.path.isdir(self.directory) else []

    def find_resumable(self):
        """`(step, unreadable_steps)`: the newest intact checkpoint (None if there is none) and the
        steps of the newer ones that cannot be read. Reads, never writes.

        Raises:
          ValueError: checkpoints exist but none of them can be read.
        """
        steps = self.steps()
        unreadable = []
        for step in steps:
            if _intact(self.prefix(step)):
                return step, unreadable
            unreadable.append(step)
        if unreadable:
            raise ValueError(
                f"workdir: every checkpoint in {self.directory!r} is truncated or unreadable (steps "
                f"{unreadable}); nothing was changed. Restore them from a backup, or move the "
                "folder away to start the run again."
            )
        return None, []

    def restore(self):
        """Restores the newest intact checkpoint (moving newer unreadable ones aside).

        Returns:
          The restored step, or None when the folder holds no checkpoint.

        Raises:
          ValueError: every checkpoint is unreadable, or the newest intact one does not fit the
            model (another model, or another set of trained variables).
        """
        step, unreadable = self.find_resumable()
        if step is None:
            return None
        if unreadable:
            aside = os.path.join(self.directory, UNREADABLE_DIR)
            os.makedirs(aside, exist_ok=True)
            for bad in unreadable:
                for path in _prefix_files(self.prefix(bad)):
                    os.replace(path, os.path.join(aside, os.path.basename(path)))
            logging.warning(
                "Checkpoint(s) %s in %s are truncated or unreadable: moved to %s; resuming from "
                "ckpt-%d, the newest intact one.",
                ", ".join(f"ckpt-{s}" for s in unreadable),
                self.directory,
                aside,
                step,
            )
        self.restore_step(step)
        if unreadable:
            self._write_state(step)
        return step

    def restore_step(self, step):
        """Restores checkpoint `step` into the checkpoint object, checking that everything fits.

        Raises:
          ValueError: the checkpoint does not fit the model and optimizer (another model, or another
            set of trained variables).
        """
        prefix = self.prefix(step)
        try:
            self.checkpoint.restore(prefix).assert_existing_objects_matched()
        except (AssertionError, ValueError, tf.errors.OpError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ValueError(
                f"workdir: checkpoint {prefix!r} does not fit the model and optimizer built from the "
                f"current config ({first}); use the config the run was started with, or a new "
                "--workdir."
            ) from None

    def save(self, step):
        """Writes checkpoint `step`, verifies it, points the state file at it, prunes old ones.

        Returns:
          The new prefix.

        Raises:
          OSError: the checkpoint just written cannot be read back (disk full, I/O error); the
            previous checkpoints are left untouched.
        """
        os.makedirs(self.directory, exist_ok=True)
        # The counter CheckpointManager increments, so the saved variables are the same.
        self.checkpoint.save_counter.assign_add(1)
        prefix = self.checkpoint.write(self.prefix(step))
        for path in _prefix_files(prefix):
            _fsync(path)
        _fsync(self.directory)
        if not _intact(prefix):
            raise OSError(
                f"checkpoint: {prefix!r} was written but cannot be read back (disk full or an I/O "
                "error?); the previous checkpoints are kept."
            )
        self._write_state(step)
        kept = [s for s in self.steps() if s <= step][: self.max_to_keep]
        for old in self.steps():
            if old < step and old not in kept:
                for path in _prefix_files(self.prefix(old)):
                    os.remove(path)
        self._write_state(step)
        return prefix

    def _write_state(self, latest):
        """The `checkpoint` state file (atomic) as CheckpointManager writes it: relative names."""
        previous = tf.train.get_checkpoint_state(self.directory)
        stamps = {}
        if previous is not None:
            for path, stamp in zip(
                previous.all_model_checkpoint_paths, previous.all_model_checkpoint_timestamps
            ):
                stamps[os.path.basename(path)] = stamp
        names = [f"ckpt-{s}" for s in sorted(self.steps()) if s <= latest]
        now = time.time()
        # The function CheckpointManager writes the state file with (atomic, relative names).
        from tensorflow.python.checkpoint import checkpoint_management  # noqa: PLC0415

        checkpoint_management.update_checkpoint_state_internal(
            self.directory,
            f"ckpt-{latest}",
            all_model_checkpoint_paths=names,
            all_model_checkpoint_timestamps=[stamps.get(n, now) for n in names],
            last_preserved_timestamp=(previous.last_preserved_timestamp if previous else now),
            save_relative_paths=True,
        )
