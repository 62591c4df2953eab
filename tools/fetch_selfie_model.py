"""Fetches MediaPipe's selfie-segmentation model (Apache-2.0) into the lvst_tf cache and prints its path.

    python tools/fetch_selfie_model.py [--dest_dir DIR] [--force]

Downloads the `mediapipe==0.10.21` wheel from PyPI with `pip download --no-deps` (mediapipe is not
installed) and extracts `mediapipe/modules/selfie_segmentation/selfie_segmentation.tflite` into
`$LVST_TF_HOME/models/` (default `~/.cache/lvst_tf/models/`). Running it again does nothing.
"""

from absl import app, flags

from lvst_tf import segmentation

_DEST_DIR = flags.DEFINE_string(
    "dest_dir", None, "Folder for the model (default: the lvst_tf cache)."
)
_FORCE = flags.DEFINE_bool("force", False, "Download again even if the model is there.")


def main(argv):
    del argv
    print(segmentation.fetch_selfie_model(_DEST_DIR.value, force=_FORCE.value))


def cli_main():
    """The command line."""
    app.run(main)


if __name__ == "__main__":
    cli_main()
