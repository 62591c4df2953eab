"""Masks for a user's video: person masks from the selfie model, or a colour threshold.

    python tools/make_masks.py --input clip.mp4 [--output clip_masks] [--method selfie|threshold]
        [--threshold_spec "hsv:v<110|s>70,open=7,close=7,min_area=2000"] [--model_path M.tflite]

Reads a video file or a folder of frames frame by frame and writes one 0/255 grey PNG per frame,
`%05d.png` in frame order, into `--output` (default: `<input name>_masks/` beside the input, the layout
`lvst_tf.data.VideoFolder` reads). Each PNG is written atomically; an interrupted run is resumed by
running the same command again (existing masks are kept unless `--overwrite`).
The selfie model comes from `tools/fetch_selfie_model.py`; the threshold syntax is documented in
`lvst_tf/segmentation.py` and docs/data.md.
"""

import pathlib

from absl import app, flags

from lvst_tf import segmentation

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


def main(argv):
    del argv
    input_path = pathlib.Path(_INPUT.value)
    if not input_path.exists():
        raise ValueError(
            f"--input: {str(input_path)!r} does not exist (a video file or frame folder)."
        )
    if not 0.0 < _PROB_THRESHOLD.value < 1.0:
        raise ValueError(f"--prob_threshold must be in (0, 1), got {_PROB_THRESHOLD.value}.")
    if _METHOD.value == "threshold":
        if not _THRESHOLD_SPEC.value:
            raise ValueError("--threshold_spec is required with --method=threshold.")
        spec = segmentation.parse_threshold_spec(_THRESHOLD_SPEC.value)

        def make_mask(frame):
            return segmentation.threshold_mask(frame, spec) > 0.5

    else:
        segmenter = segmentation.SelfieSegmenter(_MODEL_PATH.value)

        def make_mask(frame):
            return segmenter(frame) > _PROB_THRESHOLD.value

    output = pathlib.Path(_OUTPUT.value) if _OUTPUT.value else default_output(input_path)
    written, kept = segmentation.write_mask_folder(
        input_path, output, make_mask, overwrite=_OVERWRITE.value
    )
    print(f"{output}: {written} masks written, {kept} kept")


if __name__ == "__main__":
    app.run(main)
