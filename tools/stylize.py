r"""Stylizes a video with localized photorealistic style transfer, streaming
(docs/method.md#data-flow, #subsampling).

A thin absl main over `lvst_tf.stylize_video` (docs/stylize.md has the full description).

Examples (from the repository root):
  # The model shipped with the package, one object from a mask folder + the background:
  python tools/stylize.py --input=samples/videos/carphone.mp4 \
      --masks=samples/videos/carphone_masks \
      --styles=samples/styles/EveningGlow.jpg,samples/styles/DarkestHour.jpg \
      --output=out.mp4 --preview
  # A training workdir, colour-threshold masks, PNG frames out, a style change at frame 20:
  python tools/stylize.py --input=samples/davis/JPEGImages/480p/cup_b \
      --masks='threshold:hsv:v<110|s>70,open=7,close=7,min_area=2000' \
      --styles=a.jpg,bg.jpg --style_schedule='20:c.jpg,bg.jpg' --workdir=runs/my_run \
      --output=out_frames

Every argument is checked before TensorFlow is imported; errors are one line naming the flag and file
(the traceback only with --verbose or LVST_TF_TRACEBACK=1). An existing output is replaced only with
--overwrite, never when it is an input, and a folder only when this tool wrote it. Exit codes: 0 done,
1 error, 2 bad command line, 130 SIGINT, 143 SIGTERM; only 0 leaves anything at the output names.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

from lvst_tf import cli, stylize_video  # noqa: E402

_INPUT = flags.DEFINE_string(
    "input", None, "Video file (mp4/avi/mov/mkv/webm/m4v) or folder of frames (sorted by name)."
)
_MASKS = flags.DEFINE_string(
    "masks",
    None,
    "One mask source per object, separated by ';': a mask video, a folder of mask images (0/255 "
    "grey, soft values allowed, or DAVIS palette PNGs), auto-person, or threshold:SPEC.",
)
_STYLES = flags.DEFINE_string(
    "styles",
    None,
    "Comma-separated style images, one per mask source, the last for the background.",
)
_STYLE_SCHEDULE = flags.DEFINE_string(
    "style_schedule",
    None,
    "Style changes: FRAME:STYLES;FRAME:STYLES..., STYLES as in --styles; the style statistics "
    "blend linearly between entries. Without an entry at frame 0, --styles are frame 0's.",
)
_STYLE_MASKS = flags.DEFINE_string(
    "style_masks",
    None,
    "Optional style-region masks, one per --styles image ('-' = the whole image): region k of the "
    "video takes its style from the masked part of style image k.",
)
_R = flags.DEFINE_integer("r", 1, "Grid sub-sampling: a keyframe every r frames.")
_INTERPOLATION = flags.DEFINE_enum(
    "interpolation",
    "linear",
    ["linear", "hold"],
    "Grids between keyframes: linear, or hold (causal).",
)
_SAVED_MODEL = flags.DEFINE_string("saved_model", None, "A SavedModel folder (tools/export.py).")
_WORKDIR = flags.DEFINE_string("workdir", None, "A training workdir (tools/train.py).")
_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "With --workdir: a checkpoint step or name.")
_PRETRAINED = flags.DEFINE_string(
    "pretrained",
    None,
    "A model shipped with the package by name (default when no model flag: demo).",
)
_OUTPUT = flags.DEFINE_string(
    "output", None, "Output video (.mp4/.mov/.m4v/.mkv: even sizes; .avi: any size) or folder name."
)
_OVERWRITE = flags.DEFINE_bool(
    "overwrite",
    False,
    "Replace an existing output (never an input, nor a folder this tool did not write).",
)
_PREVIEW = flags.DEFINE_bool(
    "preview",
    False,
    "Also write <output>_preview.png and <output>_preview.mp4 (input | mask | output).",
)
_PREVIEW_FRAME = flags.DEFINE_integer("preview_frame", -1, "Frame of the preview PNG; -1 = middle.")
_MAX_FRAMES = flags.DEFINE_integer("max_frames", 0, "Stylize only the first N frames (0 = all).")
_FPS = flags.DEFINE_float("fps", 0.0, "Output fps; 0 = the input's (30 for frame folders).")
_STRIP_PIXELS = flags.DEFINE_integer(
    "render_strip_pixels",
    0,
    "Frames of more pixels are rendered in horizontal strips of at most this many pixels (less "
    "memory, same output); 0 = the model's default (2,000,000).",
)
_VERBOSE = flags.DEFINE_bool("verbose", False, "Print the traceback of an error.")


def main(argv):
    if len(argv) > 1:
        print(
            f"stylize.py: error: unexpected arguments {argv[1:]} (flags look like --name=value).",
            file=sys.stderr,
        )
        sys.exit(2)
    request = stylize_video.Request(
        input=_INPUT.value,
        masks=_MASKS.value,
        styles=_STYLES.value,
        style_schedule=_STYLE_SCHEDULE.value,
        style_masks=_STYLE_MASKS.value,
        r=_R.value,
        interpolation=_INTERPOLATION.value,
        saved_model=_SAVED_MODEL.value,
        workdir=_WORKDIR.value,
        pretrained=_PRETRAINED.value,
        checkpoint=_CHECKPOINT.value,
        output=_OUTPUT.value,
        overwrite=_OVERWRITE.value,
        preview=_PREVIEW.value,
        preview_frame=_PREVIEW_FRAME.value,
        max_frames=_MAX_FRAMES.value,
        fps=_FPS.value,
        render_strip_pixels=_STRIP_PIXELS.value,
    )
    sys.exit(stylize_video.main(request, prog="stylize.py", verbose=_VERBOSE.value))


def cli_main():
    """The command line (also `lvst-stylize`): one-line flag errors (exit 2), then `main`."""
    app.run(main, flags_parser=cli.flags_parser("stylize.py"))


if __name__ == "__main__":
    cli_main()
