r"""Trains the localized video style transfer model (docs/method.md#losses, #training) from gin
configs.

A thin absl main over `lvst_tf.training`; all hyperparameters live in gin (see docs/training.md).

Examples (from the repository root):
  python tools/train.py --gin_file=gin/quickstart.gin --workdir=runs/quickstart
  python tools/train.py --gin_file=paper.gin --workdir=runs/paper \
      --gin_bindings='train.data_root="/data/DAVIS"' --strategy=mirrored

`gin/` of this repository is always on the gin search path, so `--gin_file=paper.gin` and
`--gin_file=gin/paper.gin` both work; `--gin_bindings` are applied after the files. Parsing is strict:
an unknown configurable or parameter fails before any work is done.

Reusing a workdir resumes it from its newest intact checkpoint, after checking that the config still
describes the same run: a changed model (`build_model.*`, `train.trainable`) is refused; other
changed settings (loss weights, learning rate, data, ...) are refused unless
`--allow_config_change`; run settings (`train.num_steps`, logging, checkpoint and evaluation
intervals) may change freely.

Exit codes: 0 finished; 1 error (one line on stderr naming the flag, binding or file; the traceback
only with --verbose or LVST_TF_TRACEBACK=1), including a non-finite loss; 2 bad command line; 130
stopped by SIGINT (Ctrl-C), 143 stopped by SIGTERM: a step done since the last checkpoint is saved
first, and rerunning the same command resumes.
"""

import os
import pathlib
import signal
import sys
import tokenize
import traceback

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags, logging  # noqa: E402

from lvst_tf import cli  # noqa: E402  (no TensorFlow at import time)

PROG = "train.py"
TRACEBACK_ENV = "LVST_TF_TRACEBACK"
EXIT_ERROR, EXIT_USAGE = 1, 2
EXIT_SIGNAL = {"SIGINT": 130, "SIGTERM": 143}

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
    "config. An existing workdir resumes from its newest intact checkpoint.",
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
_ALLOW_CONFIG_CHANGE = flags.DEFINE_bool(
    "allow_config_change",
    False,
    "Resume a workdir although non-structural settings (loss weights, learning rate, data, ...) "
    "differ from its recorded operative_config.gin (the old one is kept beside it).",
)
_VERBOSE = flags.DEFINE_bool(
    "verbose", False, f"Print the traceback of an error (also: env {TRACEBACK_ENV}=1)."
)


def _stopped_before_training(signum):
    if signum == signal.SIGINT:
        _fail("interrupted (SIGINT) before training started; nothing written.", 130)
    _fail("terminated (SIGTERM) before training started; nothing written.", 143)


def _show_traceback():
    return _VERBOSE.value or os.environ.get(TRACEBACK_ENV, "") not in ("", "0")


def _fail(message, code=EXIT_ERROR):
    if _show_traceback() and sys.exc_info()[0] is not None:
        traceback.print_exc()
    # One line; gin appends "In call to configurable ..." lines to errors raised inside a call.
    parts = [p.strip() for p in str(message).splitlines()]
    message = " ".join(p for p in parts if p and not p.startswith("In call to configurable"))
    logging.flush()
    sys.stderr.write(f"{PROG}: error: {message}\n")
    sys.stderr.flush()
    sys.exit(code)


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
        try:
            resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu)
            tf.config.experimental_connect_to_cluster(resolver)
            tf.tpu.experimental.initialize_tpu_system(resolver)
        except (ValueError, RuntimeError, tf.errors.OpError) as e:
            raise ValueError(f"--strategy=tpu --tpu={tpu!r}: no TPU found ({e})") from None
        return tf.distribute.TPUStrategy(resolver)
    raise ValueError(f"--strategy must be default, mirrored, multi_worker or tpu, got {name!r}.")


def _unparsable(text):
    """The parse error of a gin text (parsed only: nothing is bound or imported), or None."""
    import gin.config_parser as parser_lib  # noqa: PLC0415

    class Delegate(parser_lib.ParserDelegate):
        def configurable_reference(self, scoped_name, evaluate):
            return None

        def macro(self, name):
            return None

    try:
        list(parser_lib.ConfigParser(text, Delegate()))
    except (SyntaxError, tokenize.TokenError) as e:
        return e
    return None


def _gin_syntax_message(e, gin_files, bindings):
    """One line for a gin syntax error, naming the --gin_file or --gin_bindings entry."""
    msg = e.msg if isinstance(e, SyntaxError) else str(e.args[0] if e.args else e)
    if isinstance(e, SyntaxError) and e.filename:
        text = f": {e.text.strip()!r}" if e.text and e.text.strip() else ""
        return f"gin: {msg} ({e.filename} line {e.lineno}{text})"
    from lvst_tf.training import config  # noqa: PLC0415

    for name in gin_files:
        for path in (pathlib.Path(name), config.GIN_DIR / name):
            if path.is_file():
                if _unparsable(path.read_text(encoding="utf-8", errors="replace")) is not None:
                    return f"gin: {msg} in --gin_file={name}"
                break
    for binding in bindings:
        if _unparsable(binding) is not None:
            return f"gin: {msg} in --gin_bindings={binding!r}"
    return f"gin: {msg} (in a --gin_file or --gin_bindings entry)"


def run():
    """Parses gin, builds the strategy, trains; returns `train_phases`' result."""
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
    return training.train_phases(
        _WORKDIR.value, strategy=strategy, allow_config_change=_ALLOW_CONFIG_CHANGE.value
    )


def main(argv):
    cli.raise_on_stop_signals()  # until the trainer installs its own handlers
    if len(argv) > 1:
        _fail(f"unexpected arguments {argv[1:]}; every option is a --flag.", EXIT_USAGE)
    if not _WORKDIR.value:
        _fail("--workdir is required (the run folder, e.g. --workdir=runs/quickstart).", EXIT_USAGE)
    if not _GIN_FILE.value:
        _fail("--gin_file is required (e.g. --gin_file=gin/quickstart.gin).", EXIT_USAGE)
    if _SEED.value is not None and _SEED.value < 0:
        _fail(f"--seed must be an integer >= 0, got {_SEED.value}.", EXIT_USAGE)
    try:
        # Inside a try: SIGTERM / Ctrl-C while TensorFlow is imported end with one line too.
        import tensorflow as tf  # noqa: PLC0415

        from lvst_tf.training import NonFiniteLossError  # noqa: PLC0415
    except (KeyboardInterrupt, cli.Terminated) as e:
        _stopped_before_training(cli.stop_signal(e))
    try:
        result = run()
    except (SyntaxError, tokenize.TokenError) as e:
        _fail(_gin_syntax_message(e, _GIN_FILE.value, _GIN_BINDINGS.value))
    except (ValueError, NonFiniteLossError) as e:
        _fail(str(e))
    except RuntimeError as e:
        if cli.stop_signal(e):  # a stop that TensorFlow's C++ layer rebuilt as a RuntimeError
            _stopped_before_training(cli.stop_signal(e))
        if "Required bindings" in str(e):  # gin: a gin.REQUIRED parameter is not bound
            _fail(f"gin: {e} (bind it with --gin_bindings or in a --gin_file).")
        _fail(f"unexpected RuntimeError: {e} (rerun with --verbose for the traceback)")
    except OSError as e:
        _fail(f"{type(e).__name__}: {e}")
    except tf.errors.OpError as e:
        first = str(e.message).strip().splitlines()[0] if str(e.message).strip() else ""
        _fail(f"TensorFlow {type(e).__name__}: {first}")
    except (KeyboardInterrupt, cli.Terminated) as e:
        _stopped_before_training(cli.stop_signal(e))
    except Exception as e:  # noqa: BLE001 - one line for anything unexpected, traceback on request
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        _fail(
            f"unexpected {type(e).__name__}: {first} (rerun with --verbose or "
            f"{TRACEBACK_ENV}=1 for the traceback)"
        )
    # The run is over: a signal now would only interrupt the last message.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if result.get("stopped_by"):
        saved = result.get("saved_step")
        where = (
            f"the checkpoint of step {saved} is saved"
            if saved is not None
            else "no checkpoint was written yet"
        )
        logging.flush()
        at = "before the first step" if result["step"] is None else f"at step {result['step']}"
        sys.stderr.write(
            f"{PROG}: stopped by {result['stopped_by']} {at}: {where}; rerun the same command to "
            "resume.\n"
        )
        sys.stderr.flush()
        sys.exit(EXIT_SIGNAL.get(result["stopped_by"], EXIT_ERROR))
    logging.info("Finished at step %d.", result["step"])


def cli_main():
    """The command line (also `lvst-train`): INFO logging, one-line flag errors, then `main`."""
    logging.set_verbosity(logging.INFO)
    app.run(main, flags_parser=cli.flags_parser(PROG))


if __name__ == "__main__":
    cli_main()
