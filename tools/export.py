r"""Exports a training workdir as a SavedModel with explicit signatures.

Usage:
  python tools/export.py --workdir=runs/quickstart [--checkpoint=ckpt-200] \
      [--output=saved_models/quickstart]

The model is rebuilt from `<workdir>/operative_config.gin` (no hyperparameter retyped) and restored
from the latest (or the named) checkpoint. Signatures: `serving_default`, `serving_uint8`,
`encode_styles`, `predict_grids`, `render` (docs/serving.md). For TF Serving, export into a version
folder: `--output=saved_models/quickstart/1`.
"""

import os
import pathlib
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags, logging  # noqa: E402

# Runs from a source checkout without installing the package.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

_WORKDIR = flags.DEFINE_string(
    "workdir", None, "Training workdir (operative_config.gin, checkpoints/)."
)
_CHECKPOINT = flags.DEFINE_string(
    "checkpoint", None, "Checkpoint step, name in checkpoints/ (ckpt-N) or prefix; default latest."
)
_OUTPUT = flags.DEFINE_string(
    "output", None, "SavedModel folder; default saved_models/<basename of workdir>."
)


def default_output(workdir: str) -> pathlib.Path:
    """`saved_models/<basename of workdir>` under the repository root."""
    name = pathlib.Path(workdir).resolve().name
    return pathlib.Path(__file__).resolve().parents[1] / "saved_models" / name


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    if not _WORKDIR.value:
        raise app.UsageError("--workdir is required (a training workdir).")
    from lvst_tf import export

    output = pathlib.Path(_OUTPUT.value) if _OUTPUT.value else default_output(_WORKDIR.value)
    try:
        model = export.load_model_from_workdir(_WORKDIR.value, _CHECKPOINT.value)
        logging.info("Rebuilt the model of %s; exporting to %s", _WORKDIR.value, output)
        path = export.export_saved_model(model, output)
    except ValueError as e:
        sys.exit(f"export.py: error: {e}")
    print(f"SavedModel written to {path} (signatures: {', '.join(export.SIGNATURE_NAMES)})")


if __name__ == "__main__":
    app.run(main)
