r"""Packages a training run's weights as a model shipped with lvst_tf (`lvst_tf/pretrained/<name>/`).

    python tools/package_model.py --workdir=training_runs/demo/end2end --name=demo --overwrite

Writes `weights.npz` (the trained parts, ~1.4 MB; the frozen VGG encoder comes from its source when
the model is loaded), the run's `operative_config.gin`, `reference.npz` (the model's frames on a fixed
sample input, which `tests/test_pretrained.py` recomputes) and `PROVENANCE.md`. Load it with
`lvst_tf.loading.load_model(pretrained=NAME)` or any tool's `--pretrained=NAME`.
"""

import pathlib

from absl import app, flags

_WORKDIR = flags.DEFINE_string("workdir", None, "The training workdir (one phase's folder).")
_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "A checkpoint step or name (default latest).")
_NAME = flags.DEFINE_string("name", "demo", "The shipped model's name (a folder name).")
_NOTES = flags.DEFINE_string("notes", "", "Text added to PROVENANCE.md.")
_OVERWRITE = flags.DEFINE_bool(
    "overwrite", False, "Replace an existing shipped model of that name."
)


def main(argv):
    del argv
    from lvst_tf import loading  # noqa: PLC0415

    if not _WORKDIR.value:
        raise SystemExit("package_model: --workdir is required.")
    name = _NAME.value
    if not name or "/" in name or name.startswith("."):
        raise SystemExit(f"package_model: --name must be a plain folder name, got {name!r}.")
    output = pathlib.Path(loading.PRETRAINED_DIR) / name
    if output.exists() and not _OVERWRITE.value:
        raise SystemExit(f"package_model: {output} exists; pass --overwrite to replace it.")
    try:
        prefix = loading.save_pretrained(_WORKDIR.value, output, _CHECKPOINT.value, _NOTES.value)
    except ValueError as e:
        raise SystemExit(f"package_model: {e}") from None
    print(f"Packaged {prefix} as {output}.")


def cli_main():
    """The command line."""
    app.run(main)


if __name__ == "__main__":
    cli_main()
