r"""Trains the localized video style transfer model (METHOD §7-8) from gin configs.

A thin absl main over `lvst_tf.training`; all hyperparameters live in gin (see docs/training.md).

Examples (from the repository root):
  python tools/train.py --gin_file=gin/quickstart.gin --workdir=runs/quickstart
  python tools/train.py --gin_file=paper.gin --workdir=runs/paper \
      --gin_bindings='train.data_root="/data/DAVIS"' --strategy=mirrored

`gin/` of this repository is always on the gin search path, so `--gin_file=paper.gin` and
`--gin_file=gin/paper.gin` both work; `--gin_bindings` are applied after the files. Parsing is strict:
an unknown configurable or parameter fails before any work is done. Reusing a workdir resumes.
"""

import os
import pathlib
import sys

_REPO = pathlib.Path(__file__).resolve().parents[1]
if str(_REPO) not in sys.path:  # a fresh clone without `pip install -e .` still imports lvst_tf
    sys.path.insert(0, str(_REPO))

from absl import app, flags, logging  # noqa: E402

_GIN_FILE = flags.DEFINE_multi_string(
    "gin_file", [], "Gin config file(s), by path or by name on the search path (e.g. paper.gin)."
)
_GIN_BINDINGS = flags.DEFINE_multi_string(
    "gin_bindings", [], "Gin bindings applied after the files, e.g. 'train.num_steps = 100'."
)
_GIN_SEARCH_PATH = flags.DEFINE_multi_string(
    "gin_search_path",
    [],
    "Extra folders searched for gin files and includes (gin/ is always on it).",
)
_WORKDIR = flags.DEFINE_string(
    "workdir",
    None,
    "Run folder: checkpoints/, train/ and eval/ TensorBoard events, the operative "
    "config. An existing workdir resumes from its latest checkpoint.",
)
_STRATEGY = flags.DEFINE_enum(
    "strategy",
    "default",
    ["default", "mirrored", "multi_worker", "tpu"],
    "tf.distribute strategy: default (one device), mirrored (all local GPUs), multi_worker "
    "(TF_CONFIG cluster), tpu.",
)
_TPU = flags.DEFINE_string("tpu", "", "TPU address for --strategy=tpu ('' = local TPU VM).")
_MIXED_PRECISION = flags.DEFINE_bool(
    "mixed_precision", False, "Mixed precision: float16 with loss scaling (bfloat16 on TPU)."
)
_SEED = flags.DEFINE_integer(
    "seed", None, "Random seed (model init and data stream); overrides the gin binding train.seed."
)


def make_strategy(name, tpu=""):
    """The `tf.distribute.Strategy` for `--strategy`."""
    import tensorflow as tf  # noqa: PLC0415

    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "tpu":
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu)
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    raise ValueError(f"--strategy must be default, mirrored, multi_worker or tpu, got {name!r}.")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    if not _WORKDIR.value:
        raise app.UsageError("--workdir is required.")
    if not _GIN_FILE.value:
        raise app.UsageError("--gin_file is required (e.g. --gin_file=gin/quickstart.gin).")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    bindings = list(_GIN_BINDINGS.value)
    if _SEED.value is not None:
        bindings.append(f"train.seed = {_SEED.value}")
    from lvst_tf.training import config  # noqa: PLC0415

    # Strict: a misspelled configurable or parameter fails here, before any work.
    config.parse_gin_config(_GIN_FILE.value, bindings, _GIN_SEARCH_PATH.value)

    import keras  # noqa: PLC0415

    from lvst_tf import training  # noqa: PLC0415

    strategy = make_strategy(_STRATEGY.value, _TPU.value)
    if _MIXED_PRECISION.value:
        policy = "mixed_bfloat16" if _STRATEGY.value == "tpu" else "mixed_float16"
        keras.mixed_precision.set_global_policy(policy)
        logging.info("Mixed precision policy: %s", policy)
    result = training.train_phases(_WORKDIR.value, strategy=strategy)
    logging.info("Finished at step %d.", result["step"])


if __name__ == "__main__":
    logging.set_verbosity(logging.INFO)
    app.run(main)
