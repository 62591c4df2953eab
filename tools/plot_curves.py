r"""Draws a training run's loss curves (TensorBoard scalar events) as one PNG.

    python tools/plot_curves.py --workdir=training_runs/demo --output=docs/demo_training_curves.png

A workdir of several phases (`train_phases`: `mask_pretrain/`, `end2end/`, ...) is drawn on one step
axis, phase after phase, with the boundaries marked; `--phases` picks some. Evaluation scalars (held-out
clips) are dots, training scalars a line with a moving average on top.
"""

import pathlib

import numpy as np
from absl import app, flags

_WORKDIR = flags.DEFINE_string("workdir", None, "A training workdir (or the parent of its phases).")
_OUTPUT = flags.DEFINE_string("output", None, "The PNG to write.")
_PHASES = flags.DEFINE_list("phases", None, "Phase folders in order (default: all that exist).")
_TAGS = flags.DEFINE_list(
    "tags",
    [
        "loss/total",
        "loss/style",
        "loss/colour",
        "loss/content",
        "loss/laplacian",
        "loss/temporal",
        "loss/mask",
        "metrics/warping_error",
        "metrics/warping_error_input",
    ],
    "Scalar tags, one panel each.",
)
_TITLE = flags.DEFINE_string("title", "", "Title line (default: the workdir's name).")


def main(argv):
    del argv
    if not _WORKDIR.value or not _OUTPUT.value:
        raise SystemExit("plot_curves: --workdir and --output are required.")
    root = pathlib.Path(_WORKDIR.value)
    if not root.is_dir():
        raise SystemExit(f"plot_curves: --workdir {str(root)!r} is not a folder.")
    from lvst_tf import curves  # noqa: PLC0415 (TensorFlow start-up after the argument checks)

    names = _PHASES.value or sorted(
        (p.name for p in root.iterdir() if (p / "train").is_dir()),
        key=lambda n: (root / n / "train").stat().st_mtime,
    )
    phases = [root / n for n in names] if names else [root]
    train, evaluation, marks, offset = {}, {}, [], 0
    for phase in phases:
        part_train = curves.read_scalars(phase / "train", offset)
        part_eval = curves.read_scalars(phase / "eval", offset)
        if len(phases) > 1:
            marks.append((offset, phase.name))
        last = max((int(s.steps.max()) for s in part_train.values() if len(s.steps)), default=0)
        for source, target in ((part_train, train), (part_eval, evaluation)):
            for tag, series in source.items():
                if tag in target:
                    target[tag] = curves.Series(
                        np.concatenate([target[tag].steps, series.steps]),
                        np.concatenate([target[tag].values, series.values]),
                    )
                else:
                    target[tag] = series
        offset = last
    tags = [t for t in _TAGS.value if t in train or t in evaluation]
    try:
        image = curves.draw_curves(
            train, evaluation, tags, title=_TITLE.value or root.name, marks=marks
        )
    except ValueError as e:
        raise SystemExit(f"plot_curves: {e}") from None
    curves.write_png(_OUTPUT.value, image)
    print(f"Wrote {_OUTPUT.value} ({len(tags)} panels, steps up to {offset}).")


def cli_main():
    """The command line (also `lvst-plot-curves`)."""
    app.run(main)


if __name__ == "__main__":
    cli_main()
