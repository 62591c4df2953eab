"""The training run's inputs: which clip source `train.data_root` names, and the per-worker datasets.

One rule decides where the clips come from (`make_source`):

| `train.data_root` | source |
|---|---|
| `"samples"` | the shipped `samples/davis` |
| `"corpus"` | the offline corpus of `tools/make_corpus.py` (`$LVST_TF_HOME/corpus`) |
| `"tfds"` | TFDS `davis` (prepared beforehand; `TfdsDavis.*` bindings apply) |
| a folder | a DAVIS 2017 folder |
| None | `DavisFolder.root` if bound in gin, else `$LVST_DAVIS_DIR` |

Every folder source is a `DavisFolder` built through gin, so its other bindings (`resolution`,
`cache_bytes`) apply. A `DavisFolder.root` binding is honoured only with `train.data_root = None`: if
both name a place, the run stops with a message instead of silently using one of them. The split
always comes from `train.train_split` / `train.eval_split` (a `DavisFolder.split` binding is refused).
"""

from __future__ import annotations

import gin

DATA_ROOT_KEYWORDS = ("samples", "corpus", "tfds")


def _davis_bindings():
    """`DavisFolder` gin bindings in the active scope ({} when `lvst_tf.data` is not imported)."""
    try:
        return gin.get_bindings("DavisFolder")
    except ValueError:  # not registered
        return {}


def make_source(data_root, split):
    """The clip source for `train.data_root` and a split name (see the module docstring).

    Args:
      data_root: "samples", "corpus", "tfds", a DAVIS 2017 folder (str or path), or None.
      split: the split name ("train", "val", ...).

    Returns:
      A `lvst_tf.data` clip source (`DavisFolder` or `TfdsDavis`).

    Raises:
      ValueError: naming `train.data_root` (or the conflicting binding) and what was expected, for a
        missing corpus, a folder that is not a DAVIS folder, a missing split, or conflicting
        bindings. Raised before anything is read beyond the split files.
    """
    from lvst_tf import data  # noqa: PLC0415 (reads nothing at import time, but is heavy)

    bound = _davis_bindings()
    if "split" in bound:
        raise ValueError(
            f"DavisFolder.split = {bound['split']!r} is bound, but the training run chooses the "
            "split itself: bind train.train_split / train.eval_split instead."
        )
    bound_root = bound.get("root")
    if bound_root is not None and data_root is not None:
        raise ValueError(
            f"train.data_root = {data_root!r} and DavisFolder.root = {bound_root!r} both choose the "
            "training data: bind train.data_root = None to use DavisFolder.root, or drop the "
            "DavisFolder.root binding."
        )
    if data_root is None:
        try:
            # root from the gin binding, else $LVST_DAVIS_DIR (DavisFolder's own rule).
            return data.DavisFolder(split=split)
        except ValueError as e:
            raise ValueError(
                f"train.data_root = None (DavisFolder.root binding or ${data.DAVIS_DIR_ENV}): {e}"
            ) from None
    if data_root == "tfds":
        return data.TfdsDavis(split=split)
    if data_root == "samples":
        root = data.samples_root() / "davis"
    elif data_root == "corpus":
        root = data.corpus_root()
        if not (root / "JPEGImages").is_dir():
            raise ValueError(
                f"train.data_root = 'corpus': no corpus at {str(root)!r}; build it with "
                "`python tools/make_corpus.py` (about a minute, offline packages only)."
            )
    elif isinstance(data_root, str) or hasattr(data_root, "__fspath__"):
        root = data_root
    else:
        raise ValueError(
            f"train.data_root must be one of {DATA_ROOT_KEYWORDS}, a DAVIS 2017 folder or None, "
            f"got {data_root!r}."
        )
    try:
        return data.DavisFolder(root=str(root), split=split)
    except ValueError as e:
        raise ValueError(f"train.data_root = {str(data_root)!r}: {e}") from None


def make_dataset_fn(source, seed, with_flow, start_step, global_batch):
    """A `tf.distribute` dataset function: each worker's input pipeline and its batch share.

    `strategy.distribute_datasets_from_function(fn)` calls `fn(input_context)` once per input
    pipeline (one per worker) and hands each of the worker's replicas one element of it per step.
    Pipeline `p` of `n` keeps its `global_batch / n` clips of every global batch and yields them as
    one batch per local replica (`make_train_dataset(shard=(p, n, replicas))`), so the workers
    together train on exactly the global batches one worker would (the same elements, whatever the
    number of workers and replicas). With one pipeline and one replica this is the plain dataset.
    """
    from lvst_tf import data  # noqa: PLC0415

    def dataset_fn(input_context=None):
        shard = None
        if input_context is not None:
            pipelines = input_context.num_input_pipelines
            replicas = input_context.num_replicas_in_sync // pipelines
            if global_batch % (pipelines * replicas):
                raise ValueError(
                    f"make_train_dataset.batch_size = {global_batch} (the global batch) must be "
                    f"divisible by the {pipelines * replicas} replicas."
                )
            if pipelines > 1 or replicas > 1:
                shard = (input_context.input_pipeline_id, pipelines, replicas)
        return data.make_train_dataset(
            source, seed=seed, with_flow=with_flow, start_step=start_step, shard=shard
        )

    return dataset_fn
