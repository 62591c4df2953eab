"""Masks for a user's video: person masks from the selfie model, or a colour threshold.

    python tools/make_masks.py --input clip.mp4 [--output clip_masks] [--method selfie|threshold]
        [--threshold_spec "hsv:v<110|s>70,open=7,close=7,min_area=2000"] [--model_path M.tflite]

Reads a video file or a folder of frames frame by frame and writes one 0/255 grey PNG per frame,
`%05d.png` in frame order, into `--output` (default: `<input name>_masks/` beside the input, the layout
`lvst_tf.data.VideoFolder` reads). Each PNG is written atomically; an interrupted run is resumed by
running the same command again (existing masks are kept unless `--overwrite`). The output folder must
not be the input, and may hold nothing but such masks (a folder of other files is refused). Every
argument is checked before the selfie model is loaded; errors are one line (the traceback only with
LVST_TF_TRACEBACK=1).
The selfie model comes from `tools/fetch_selfie_model.py`; the threshold syntax is documented in
`lvst_tf/segmentation.py` and docs/data.md.
"""

import os
import pathlib
import sys

from absl import app, flags

from lvst_tf import segmentation, video_io

_INPUT = flags.DEFINE_string("input", None, "Video file or folder of frames.", required=True)
_OUTPUT = flags.DEFINE_string(
    "output", None, "Mask folder (default: <input>_masks beside the input)."
)
_METHOD = flags.DEFINE_enum("method", "selfie", ["selfie", "threshold"], "How masks are made.")
_THRESHOLD_SPEC = flags.DEFINE_string(
    "threshold_spec", None, "Colour rule for --method=threshold, e.g. 'hsv:v<110|s>70,open=7'."
)
_MODEL_PATH = flags.DEFINE_string(
    "model_path", None, "selfie_segmentation.tflite (default: the fetch tool's cache)."
)
_PROB_THRESHOLD = flags.DEFINE_float("prob_threshold", 0.5, "Selfie probability cut, in (0, 1).")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Recompute masks that already exist.")


def default_output(input_path: pathlib.Path) -> pathlib.Path:
    name = input_path.name if input_path.is_dir() else input_path.stem
    return input_path.parent / f"{name}_masks"


def run():
    input_path = pathlib.Path(_INPUT.value)
    video_io.read_frames(input_path, argument="input")  # exists, decodes: before any model work
    if not 0.0 < _PROB_THRESHOLD.value < 1.0:
        raise ValueError(f"prob_threshold: must be in (0, 1), got {_PROB_THRESHOLD.value}.")
    output = pathlib.Path(_OUTPUT.value) if _OUTPUT.value else default_output(input_path)
    segmentation.check_mask_folder(input_path, output)
    if _METHOD.value == "threshold":
        if not _THRESHOLD_SPEC.value:
            raise ValueError("threshold_spec: required with --method=threshold.")
        try:
            spec = segmentation.parse_threshold_spec(_THRESHOLD_SPEC.value)
        except ValueError as e:
            raise ValueError(f"threshold_spec: {e}") from None

        def make_mask(frame):
            return segmentation.threshold_mask(frame, spec) > 0.5

    else:
        segmenter = segmentation.SelfieSegmenter(_MODEL_PATH.value)

        def make_mask(frame):
            return segmenter(frame) > _PROB_THRESHOLD.value

    written, kept = segmentation.write_mask_folder(
        input_path, output, make_mask, overwrite=_OVERWRITE.value
    )
    print(f"{output}: {written} masks written, {kept} kept")


def main(argv):
    if len(argv) > 1:
        sys.exit(f"make_masks.py: error: unexpected arguments {argv[1:]}.")
    try:
        run()
    except (ValueError, OSError) as e:
        if os.environ.get("LVST_TF_TRACEBACK", "") not in ("", "0"):
            raise
        sys.exit(f"make_masks.py: error: {e}")


def cli_main():
    """The command line (also `lvst-make-masks`)."""
    app.run(main)


if __name__ == "__main__":
    cli_main()
