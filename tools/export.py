r"""Exports a trained model as a SavedModel with explicit signatures.

Usage:
  python tools/export.py --workdir=runs/my_run [--checkpoint=ckpt-200] [--output=saved_models/my_run/1]
  python tools/export.py --pretrained=demo --output=saved_models/demo/1
  python tools/export.py --workdir=runs/my_run --output=saved_models/my_run/1 --overwrite

The model comes from `lvst_tf.loading` (a training workdir at its newest intact or a named
checkpoint, or a model shipped with the package). Signatures: `serving_default`, `serving_uint8`,
`encode_styles`, `predict_grids`, `render` (docs/serving.md). For TF Serving, export into a version
folder (`.../1`).

Safety: the output is checked before the model is loaded. An existing output is replaced only with
`--overwrite`, and only if it is a previous export (marker file `lvst_export.json`); an output that
is, is inside, or contains the workdir / shipped model is always refused. The export is written to a
hidden temporary sibling and renamed into place; an interrupted run leaves nothing at the output,
unless the stop came once the export was complete (it still exits 130 / 143, saying "after the
export was written to", and the export there is whole).

Exit codes: 0 done; 1 error (one line on stderr naming the flag or file; the traceback only with
--verbose or LVST_TF_TRACEBACK=1); 2 bad command line; 130 Ctrl-C; 143 SIGTERM.
"""

import os
import pathlib
import signal
import sys
import time
import traceback

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags, logging  # noqa: E402

from lvst_tf import cli, export, loading  # noqa: E402  (none imports TensorFlow at import time)

PROG = "export.py"

_WORKDIR = flags.DEFINE_string(
    "workdir", None, "Training workdir (operative_config.gin, checkpoints/)."
)
_CHECKPOINT = flags.DEFINE_string(
    "checkpoint",
    None,
    "With --workdir: step, name in checkpoints/ (ckpt-N) or prefix; default newest.",
)
_PRETRAINED = flags.DEFINE_string(
    "pretrained", None, "A model shipped with the package (lvst_tf/pretrained/NAME), e.g. 'demo'."
)
_OUTPUT = flags.DEFINE_string(
    "output", None, "SavedModel folder; default ./saved_models/<workdir or pretrained name>."
)
_OVERWRITE = flags.DEFINE_bool(
    "overwrite", False, "Replace an existing output if (and only if) it is a previous export."
)
_RENDER_IMPL = flags.DEFINE_enum(
    "render_impl",
    "xla",
    ["xla", "tf"],
    "Slice implementation of the full-resolution render: 'xla' (compiled once per frame size; TF "
    "Serving needs --xla_cpu_compilation_enabled=true) or 'tf' (no XLA; ~3x slower render at 12 MP).",
)
_VERBOSE = flags.DEFINE_bool(
    "verbose", False, "Print the traceback of an error (also: env LVST_TF_TRACEBACK=1)."
)


def _stopped_after_write(output, sigint: bool) -> None:
    """Exit 130 (`sigint`) / 143 for a stop that came while the finished export was being put in
    place, or that a finaliser swallowed: the export at `output` is complete, and the message says
    so."""
    if sigint:
        _fail(f"interrupted (Ctrl-C) after the export was written to {str(output)!r}.", 130)
    _fail(f"terminated (SIGTERM) after the export was written to {str(output)!r}.", 143)


def _stopped(output, start: float, sigint: bool) -> None:
    """Exit 130 (`sigint`) / 143 for a stop during main(): says whether the export is complete."""
    if output and _finished_here(output, start):
        _stopped_after_write(output, sigint)
    where = f" at {str(output)!r}" if output else ""
    if sigint:
        _fail(f"interrupted (Ctrl-C); nothing written{where}.", 130)
    _fail(f"terminated (SIGTERM); nothing written{where}.", 143)


def _fail(message: str, code: int = 1):
    if sys.exc_info()[0] is not None and (
        _VERBOSE.value or os.environ.get("LVST_TF_TRACEBACK") == "1"
    ):
        traceback.print_exc()
    sys.stderr.write(f"{PROG}: error: {message}\n")
    sys.stderr.flush()
    sys.exit(code)


def default_output(workdir: str | None, pretrained: str | None) -> pathlib.Path:
    """`saved_models/<basename of workdir or pretrained name>` in the current folder."""
    name = pathlib.Path(workdir).resolve().name if workdir else pretrained
    return pathlib.Path("saved_models") / name


def input_paths(workdir: str | None, pretrained: str | None, checkpoint: str | None) -> list:
    """The paths the export reads (the output may not overlap them)."""
    paths = []
    if workdir:
        paths.append(workdir)
        if checkpoint and os.sep in checkpoint:
            paths.append(os.path.dirname(os.path.abspath(checkpoint)))
    else:
        paths.append(str(loading.pretrained_dir(pretrained)))
    return paths


def _finished_here(output: pathlib.Path, start: float) -> bool:
    marker = export.read_marker(output)
    return bool(marker) and float(marker.get("created_unix", 0)) >= start


def main(argv):
    start = time.time()
    if len(argv) > 1:
        _fail(f"unexpected arguments {argv[1:]}; every option is a --flag.", 2)
    workdir, pretrained, checkpoint = _WORKDIR.value, _PRETRAINED.value, _CHECKPOINT.value
    output = None
    try:
        # Cheap checks first, without TensorFlow: the model source, then the output.
        if not workdir:
            pretrained = pretrained or loading.DEFAULT_PRETRAINED
        loading.check_model_source(workdir=workdir, pretrained=pretrained, checkpoint=checkpoint)
        inputs = input_paths(workdir, pretrained, checkpoint)
        output = export.check_output(
            _OUTPUT.value or default_output(workdir, pretrained), _OVERWRITE.value, inputs
        )
        # Then the slow part: load the model and trace and write the export.
        loaded = loading.load_model(workdir=workdir, pretrained=pretrained, checkpoint=checkpoint)
        logging.info("Loaded %s; exporting to %s", loaded.describe(), output)
        path = export.export_saved_model(
            loaded.model,
            output,
            overwrite=_OVERWRITE.value,
            render_impl=_RENDER_IMPL.value,
            inputs=inputs,
            source=loaded.describe(),
        )
    except ValueError as e:
        _fail(str(e))
    except OSError as e:
        _fail(str(e) if str(e).startswith("output:") else f"{type(e).__name__}: {e}")
    except BaseException as e:  # noqa: BLE001 - one line for anything unexpected, traceback on request
        stop = cli.stop_signal(e)  # also a stop that TensorFlow's C++ layer rebuilt as another type
        if stop:
            _stopped(output, start, stop == signal.SIGINT)
        if not isinstance(e, Exception):
            raise
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        _fail(
            f"unexpected {type(e).__name__}: {first} (rerun with --verbose or "
            "LVST_TF_TRACEBACK=1 for the traceback)"
        )
    if cli.SIGNALLED:  # a stop whose exception a finaliser swallowed: the export is complete
        _stopped_after_write(path, cli.SIGNALLED[0] == signal.SIGINT)
    print(f"SavedModel written to {path} (signatures: {', '.join(export.SIGNATURE_NAMES)})")


def cli_main():
    """The whole command-line behaviour: SIGTERM handling, flag parsing, exit codes."""
    cli.raise_on_stop_signals()
    try:
        app.run(main, flags_parser=cli.flags_parser(PROG))
    except KeyboardInterrupt:  # Ctrl-C outside main() (e.g. while parsing flags)
        sys.stderr.write(f"{PROG}: error: interrupted (Ctrl-C); nothing written.\n")
        sys.exit(130)
    except cli.Terminated:
        sys.stderr.write(f"{PROG}: error: terminated (SIGTERM); nothing written.\n")
        sys.exit(143)


if __name__ == "__main__":
    cli_main()
