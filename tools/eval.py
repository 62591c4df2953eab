r"""Evaluates a model: the timing table (supplement Table 2) or the quality table (METHOD §9).

Usage:
  # Seconds per frame at the paper's resolutions for r = 1 and r = 8 (markdown to stdout, CSV too):
  python tools/eval.py --mode=timing --workdir=runs/quickstart
  python tools/eval.py --mode=timing --saved_model=saved_models/quickstart \
      --resolutions=512x512,1024x1024 --r=1,8 --output_dir=eval_results/quickstart

  # Warping error, style distance, leakage, gradient SSIM of ours and the baselines on the samples:
  python tools/eval.py --mode=quality --workdir=runs/quickstart [--data=DAVIS --split=val] \
      [--styles=fg.jpg,bg.jpg] [--max_frames=30] [--output_dir=...]

Outputs (in --output_dir, default eval_results/<model folder name>): timing.csv + timing.md, or
quality.csv + quality.md + contact_sheet.png (rows = videos; input | mask | ours | Reinhard). Every
file is written atomically. Metric definitions: docs/evaluation.md.
"""

import os
import pathlib
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags, logging  # noqa: E402

# Runs from a source checkout without installing the package.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

_SAVED_MODEL = flags.DEFINE_string("saved_model", None, "A SavedModel written by tools/export.py.")
_WORKDIR = flags.DEFINE_string(
    "workdir", None, "A training workdir (operative_config.gin, checkpoints/); in-process model."
)
_CHECKPOINT = flags.DEFINE_string(
    "checkpoint", None, "With --workdir: checkpoint step, name (ckpt-N) or prefix; default latest."
)
_MODE = flags.DEFINE_enum("mode", "timing", ["timing", "quality"], "What to measure.")
_RESOLUTIONS = flags.DEFINE_string(
    "resolutions",
    "512x512,1024x1024,2000x2000,3000x4000",
    "Timing: comma list of HxW full-res frame sizes (the columns).",
)
_R = flags.DEFINE_string(
    "r", "1,8", "Comma list of grid sub-sampling factors (timing rows; quality: one 'ours' per r)."
)
_OUTPUT_DIR = flags.DEFINE_string(
    "output_dir", None, "Where tables and images go (default eval_results/<model folder name>)."
)
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timing: timed calls per measurement (median).")
_DATA = flags.DEFINE_string(
    "data",
    None,
    "Quality: a DAVIS-layout folder (with --split) or a folder of videos with <name>_masks/ "
    "folders; default the shipped samples (samples/davis).",
)
_SPLIT = flags.DEFINE_string("split", "val", "Quality: DAVIS split file name.")
_STYLES = flags.DEFINE_list(
    "styles", None, "Quality: foreground,background style images; default two shipped samples."
)
_MAX_FRAMES = flags.DEFINE_integer("max_frames", 30, "Quality: first frames of each video (>= 2).")
_MAX_VIDEOS = flags.DEFINE_integer("max_videos", None, "Quality: first videos only.")
_VGG_WEIGHTS = flags.DEFINE_string(
    "vgg_weights",
    None,
    "Quality: VGG-19 for the feature style distance ('imagenet' or an .h5 file; 'none' = off). "
    "Default: the model's own encoder if its workdir config names real weights, else off.",
)
_FLOW_PRESET = flags.DEFINE_enum(
    "flow_preset", "medium", ["ultrafast", "fast", "medium"], "Quality: DIS preset of the flow."
)


def default_output_dir(model_path: str) -> pathlib.Path:
    """`eval_results/<basename of the model folder>` under the current directory."""
    return pathlib.Path("eval_results") / pathlib.Path(model_path).resolve().name


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    from lvst_tf import evaluation

    try:
        # Every flag is checked before the model is loaded.
        rs = evaluation.parse_int_list(_R.value, "--r")
        if _MODE.value == "timing":
            resolutions = evaluation.parse_resolutions(_RESOLUTIONS.value, "--resolutions")
            if _REPEATS.value < 1:
                raise ValueError(f"--repeats must be >= 1, got {_REPEATS.value}.")
        else:
            if _MAX_FRAMES.value < 2:
                raise ValueError(f"--max_frames must be >= 2, got {_MAX_FRAMES.value}.")
            if _STYLES.value is not None and len(_STYLES.value) != 2:
                raise ValueError(
                    f"--styles must name two images (foreground,background), got {_STYLES.value}."
                )
        if bool(_SAVED_MODEL.value) == bool(_WORKDIR.value):
            raise ValueError("give exactly one of --saved_model or --workdir.")
        output_dir = (
            pathlib.Path(_OUTPUT_DIR.value)
            if _OUTPUT_DIR.value
            else default_output_dir(_SAVED_MODEL.value or _WORKDIR.value)
        )
        if _MODE.value == "quality":
            style_names, styles = evaluation.load_styles(_STYLES.value)
            videos = evaluation.load_videos(
                _DATA.value, _SPLIT.value, _MAX_FRAMES.value, _MAX_VIDEOS.value
            )
        loaded = evaluation.load_model(_SAVED_MODEL.value, _WORKDIR.value, _CHECKPOINT.value)
        logging.info("Evaluating %s", loaded.describe())
        if _MODE.value == "timing":
            _, markdown = evaluation.run_timing(
                loaded, resolutions, rs, output_dir=output_dir, repeats=_REPEATS.value
            )
            written = ["timing.csv", "timing.md"]
        else:
            _, markdown = evaluation.run_quality(
                loaded,
                videos,
                styles,
                rs,
                output_dir=output_dir,
                style_names=style_names,
                vgg_weights=_VGG_WEIGHTS.value,
                flow_preset=_FLOW_PRESET.value,
            )
            written = ["quality.csv", "quality.md", "contact_sheet.png"]
    except ValueError as e:
        sys.exit(f"eval.py: error: {e}")
    print(markdown)
    print("Written: " + ", ".join(str(output_dir / name) for name in written))


if __name__ == "__main__":
    app.run(main)
