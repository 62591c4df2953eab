"""Checkpoints of a training run: `workdir/checkpoints/` via `tf.train.CheckpointManager`.

The checkpoint object is `tf.train.Checkpoint(step=..., model=<the trained parts>, optimizer=...)`
(object key `model`; `lvst_tf.loading.model_checkpoint`): the frozen VGG-19 encoder is not stored, it
comes from its source (`build_model.vgg_weights`), which keeps a checkpoint small (about 4 MB with the
Adam moments). TensorFlow writes a checkpoint's data and index files first and the `checkpoint` state file
last (itself through a temporary file and a rename), so a process killed at any moment leaves the state
file pointing at the last complete checkpoint: resuming reads that one.
"""

import os

import tensorflow as tf

CHECKPOINT_DIR = "checkpoints"


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
    """A `tf.train.CheckpointManager` numbering checkpoints by training step."""
    return tf.train.CheckpointManager(checkpoint, os.fspath(directory), max_to_keep=max_to_keep)


def resolve_checkpoint(path):
    """A checkpoint prefix from a workdir, a checkpoint folder, or a prefix.

    Args:
      path: a training workdir (holding `checkpoints/`), a folder with a `checkpoint` state file, or a
        checkpoint prefix such as `.../ckpt-20000`.

    Returns:
      The prefix (str) of the latest checkpoint found.

    Raises:
      ValueError: nothing loadable at `path`.
    """
    path = os.fspath(path)
    for folder in (os.path.join(path, CHECKPOINT_DIR), path):
        if os.path.isdir(folder):
            latest = tf.train.latest_checkpoint(folder)
            if latest:
                return latest
    if tf.io.gfile.exists(path + ".index"):
        return path
    raise ValueError(
        f"init checkpoint {path!r}: expected a training workdir (with {CHECKPOINT_DIR}/), a checkpoint "
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
    prefix = resolve_checkpoint(path)
    layer = getattr(model, attribute, None)
    if layer is None:
        raise ValueError(f"init_scope: the model has no attribute {attribute!r}.")
    # The same object-graph path as the full checkpoint: root -> model -> <attribute>.
    partial = tf.train.Checkpoint(model=tf.train.Checkpoint(**{attribute: layer}))
    status = partial.read(prefix)
    status.assert_existing_objects_matched().expect_partial()
    return prefix


def latest_step(workdir):
    """The step of the latest checkpoint under `workdir/checkpoints`, or 0."""
    latest = tf.train.latest_checkpoint(checkpoint_dir(workdir))
    if not latest:
        return 0
    return int(tf.train.load_variable(latest, "step/.ATTRIBUTES/VARIABLE_VALUE"))
