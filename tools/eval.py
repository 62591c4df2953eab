r"""Evaluates a model: the timing table (supplement Table 2), the quality table
(docs/method.md#evaluation), or the training objective of the model against reference outputs.

Usage:
  # Seconds per frame at the paper's resolutions for r = 1 and r = 8 (markdown to stdout, CSV too);
  # with no model flag, the model shipped with the package:
  python tools/eval.py --mode=timing
  python tools/eval.py --mode=timing --saved_model=saved_models/run \
      --resolutions=512x512,1024x1024 --r=1,8 --output_dir=eval_results/run

  # Warping error, per-region style distance, leakage, gradient SSIM of ours and the baselines:
  python tools/eval.py --mode=quality --workdir=runs/run            # shipped samples, K = 2
  python tools/eval.py --mode=quality --workdir=runs/run --data=$LVST_TF_HOME/evalset --regions=3 \
      --split=two_objects
  python tools/eval.py --mode=quality --baselines_only              # no model

  # The run's content and style losses on held-out batches of its own data pipeline, for the
  # model's output and for reference outputs (identity, Reinhard per region, flat style colours):
  python tools/eval.py --mode=objective                              # shipped model, corpus val
  python tools/eval.py --mode=objective --workdir=runs/run --data=samples --batches=4

Outputs (in --output_dir, default eval_results/<model name>): timing.csv + timing.md, or
quality.csv + quality.md + contact_sheet.png (rows = videos: input | regions | ours | Reinhard) +
sheets/<video>.png (rows = chosen frames: input | regions | ours), or objective.csv +
objective.md. Every file is written atomically.
A bad flag or input ends with one line `eval.py: error: ...` on stderr (exit 2) before any work;
`--verbose` or LVST_TF_TRACEBACK=1 adds the traceback of unexpected errors. Docs:
docs/evaluation.md.
"""

import os
import pathlib
import signal
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags, logging  # noqa: E402

from lvst_tf import cli  # noqa: E402

_SAVED_MODEL = flags.DEFINE_string("saved_model", None, "A SavedModel written by tools/export.py.")
_WORKDIR = flags.DEFINE_string(
    "workdir", None, "A training workdir (operative_config.gin, checkpoints/); in-process model."
)
_CHECKPOINT = flags.DEFINE_string(
    "checkpoint", None, "With --workdir: checkpoint step, name (ckpt-N) or prefix; default latest."
)
_PRETRAINED = flags.DEFINE_string(
    "pretrained", None, "A model shipped with the package (default when no model flag: 'demo')."
)
_BASELINES_ONLY = flags.DEFINE_bool(
    "baselines_only",
    False,
    "Quality: evaluate only the identity and Reinhard baselines (no model).",
)
_MODE = flags.DEFINE_string(
    "mode", "timing", "What to measure: 'timing', 'quality' or 'objective'."
)
_RESOLUTIONS = flags.DEFINE_string(
    "resolutions",
    "512x512,1024x1024,2000x2000,3000x4000",
    "Timing: comma list of HxW full-res frame sizes (the columns).",
)
_R = flags.DEFINE_string(
    "r", "1,8", "Comma list of grid sub-sampling factors (timing rows; quality: one 'ours' per r)."
)
_OUTPUT_DIR = flags.DEFINE_string(
    "output_dir", None, "Where tables and images go (default eval_results/<model name>)."
)
_REPEATS = flags.DEFINE_string("repeats", "3", "Timing: timed calls per measurement (median).")
_DATA = flags.DEFINE_string(
    "data",
    None,
    "Quality: a DAVIS-layout folder (with --split) or a folder of videos with <name>_masks/ "
    "folders; default the shipped samples (samples/davis). Objective: 'corpus', 'samples' or a "
    "DAVIS-layout folder; default the run's own training data.",
)
_SPLIT = flags.DEFINE_string("split", "val", "Quality and objective: DAVIS split file name.")
_BATCHES = flags.DEFINE_string(
    "batches", "8", "Objective: batches of one clip drawn from --split (fixed seed)."
)
_REGIONS = flags.DEFINE_string(
    "regions",
    "2",
    "Quality: K regions. Objects are the clip's instances in order (the last object also takes "
    "any further instances), the background is the rest; 2 = union of the instances.",
)
_STYLES = flags.DEFINE_list(
    "styles",
    None,
    "Quality: K style images, the objects' in order then the background's. Default: the data "
    "folder's styles.txt or styles/, else shipped samples.",
)
_MAX_FRAMES = flags.DEFINE_string("max_frames", "30", "Quality: first frames of each video (>= 2).")
_MAX_VIDEOS = flags.DEFINE_string("max_videos", None, "Quality: first usable videos only.")
_SHEET_FRAMES = flags.DEFINE_string(
    "sheet_frames",
    None,
    "Quality: frame indices of sheets/<video>.png (default first,middle,last).",
)
_VGG_WEIGHTS = flags.DEFINE_string(
    "vgg_weights",
    None,
    "Quality: VGG-19 for the feature style distance ('imagenet' or an .h5 file; 'none' = off). "
    "Default: the model's own encoder if it has real weights, else off.",
)
_FLOW_PRESET = flags.DEFINE_string(
    "flow_preset", "medium", "Quality: DIS preset of the flow: ultrafast, fast or medium."
)
_VERBOSE = flags.DEFINE_bool("verbose", False, "Print the traceback of unexpected errors.")

PROG = "eval.py"
_QUALITY_ONLY = (
    "data",
    "split",
    "regions",
    "styles",
    "max_frames",
    "max_videos",
    "sheet_frames",
    "vgg_weights",
    "flow_preset",
    "baselines_only",
)
_OBJECTIVE_FLAGS = ("data", "split", "batches")


class UsageError(ValueError):
    """A bad flag or input, reported as one line."""


def fail(message: str, code: int = 2):
    sys.stderr.write(f"{PROG}: error: {message}\n")
    sys.exit(code)


def _int_flag(flag, minimum: int) -> int:
    text = str(flag.value).strip()
    if not text.lstrip("-").isdigit() or int(text) < minimum:
        raise UsageError(f"--{flag.name} must be an integer >= {minimum}, got {flag.value!r}.")
    return int(text)


def default_output_dir(kind: str, source: str | None) -> pathlib.Path:
    """`eval_results/<model folder name>` (or `pretrained_<name>`, `baselines`)."""
    if kind == "baselines":
        name = "baselines"
    elif kind == "pretrained":
        name = f"pretrained_{source}"
    else:
        name = pathlib.Path(source).resolve().name
    return pathlib.Path("eval_results") / name


def check_output_dir(path: pathlib.Path) -> None:
    """UsageError unless `path` is a folder, or can be created (its nearest existing parent is a
    writable folder). Nothing is created here."""
    if path.exists():
        if not path.is_dir():
            raise UsageError(f"--output_dir: {str(path)!r} exists and is not a folder.")
        if not os.access(path, os.W_OK | os.X_OK):
            raise UsageError(f"--output_dir: {str(path)!r} is not writable.")
        return
    parent = path.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise UsageError(
            f"--output_dir: {str(path)!r} cannot be created: {str(parent)!r} is not a folder."
        )
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"--output_dir: {str(path)!r} cannot be created in {str(parent)!r}.")


def check_flags() -> dict:
    """Every flag, checked before anything is loaded. Returns the parsed values."""
    from lvst_tf import loading
    from lvst_tf.evaluation import parsing

    mode = _MODE.value
    if mode not in ("timing", "quality", "objective"):
        raise UsageError(f"--mode must be 'timing', 'quality' or 'objective', got {mode!r}.")
    if mode != "objective" and flags.FLAGS["batches"].present:
        raise UsageError("--batches applies to --mode=objective only.")
    out = {"mode": mode, "rs": parsing.parse_int_list(_R.value, "--r")}
    if mode == "objective":
        given = [
            n
            for n in (*_QUALITY_ONLY, "resolutions", "repeats", "r")
            if flags.FLAGS[n].present and n not in _OBJECTIVE_FLAGS
        ]
        if given:
            raise UsageError(f"--{given[0]} does not apply to --mode=objective.")
        if _SAVED_MODEL.value:
            raise UsageError(
                "--mode=objective needs the model's training call and losses: give --workdir or "
                "--pretrained, not --saved_model."
            )
        out["batches"] = _int_flag(_BATCHES, 1)
        data = _DATA.value
        if (
            data is not None
            and data not in ("corpus", "samples")
            and not pathlib.Path(data).is_dir()
        ):
            raise UsageError(
                f"--data: {data!r} is neither 'corpus', 'samples' nor a folder (objective mode)."
            )
    elif mode == "timing":
        given = [n for n in _QUALITY_ONLY if flags.FLAGS[n].present]
        if given:
            raise UsageError(f"--{given[0]} applies to --mode=quality only.")
        out["resolutions"] = parsing.parse_sizes(_RESOLUTIONS.value, "--resolutions")
        out["repeats"] = _int_flag(_REPEATS, 1)
    else:
        if flags.FLAGS["resolutions"].present or flags.FLAGS["repeats"].present:
            name = "resolutions" if flags.FLAGS["resolutions"].present else "repeats"
            raise UsageError(f"--{name} applies to --mode=timing only.")
        out["regions"] = _int_flag(_REGIONS, 2)
        out["max_frames"] = _int_flag(_MAX_FRAMES, 2)
        out["max_videos"] = None if _MAX_VIDEOS.value is None else _int_flag(_MAX_VIDEOS, 1)
        out["sheet_frames"] = (
            None
            if _SHEET_FRAMES.value is None
            else parsing.parse_int_list(_SHEET_FRAMES.value, "--sheet_frames", minimum=0)
        )
        if out["sheet_frames"] is not None and max(out["sheet_frames"]) >= out["max_frames"]:
            raise UsageError(
                f"--sheet_frames: frame {max(out['sheet_frames'])} is past --max_frames="
                f"{out['max_frames']}."
            )
        if _FLOW_PRESET.value not in ("ultrafast", "fast", "medium"):
            raise UsageError(
                f"--flow_preset must be ultrafast, fast or medium, got {_FLOW_PRESET.value!r}."
            )
        if _STYLES.value is not None and len(_STYLES.value) != out["regions"]:
            raise UsageError(
                f"--styles must name K = {out['regions']} images (the objects' in order, then the "
                f"background's), got {len(_STYLES.value)}."
            )
        for path in _STYLES.value or []:
            if not pathlib.Path(path).is_file():
                raise UsageError(f"--styles: {path!r} is not a file.")
        if _DATA.value is not None and not pathlib.Path(_DATA.value).is_dir():
            raise UsageError(f"--data: {_DATA.value!r} is not a folder.")
    model_flags = [n for n in ("saved_model", "workdir", "pretrained") if flags.FLAGS[n].value]
    if _BASELINES_ONLY.value:
        if model_flags or _CHECKPOINT.value:
            given = model_flags[0] if model_flags else "checkpoint"
            raise UsageError(f"--baselines_only evaluates no model; remove --{given}.")
        out["kind"], out["source"] = "baselines", None
    else:
        try:
            kind = loading.check_model_source(
                _SAVED_MODEL.value, _WORKDIR.value, _PRETRAINED.value, _CHECKPOINT.value
            )
        except ValueError as e:
            raise UsageError(f"--{e}") from None
        source = {
            "saved_model": _SAVED_MODEL.value,
            "workdir": _WORKDIR.value,
            "pretrained": _PRETRAINED.value or loading.DEFAULT_PRETRAINED,
        }[kind]
        out["kind"], out["source"] = kind, source
    output_dir = (
        pathlib.Path(_OUTPUT_DIR.value)
        if _OUTPUT_DIR.value
        else default_output_dir(out["kind"], out["source"])
    )
    check_output_dir(output_dir)
    out["output_dir"] = output_dir
    return out


def run(args: dict) -> None:
    from lvst_tf import evaluation, loading

    output_dir = args["output_dir"]
    if args["mode"] == "objective":
        from lvst_tf.evaluation import objective

        # The run's settings, the data and the split are read (and checked) before the model.
        config_dir = (
            pathlib.Path(args["source"])
            if args["kind"] == "workdir"
            else loading.pretrained_dir(args["source"])
        )
        plan = objective.prepare_objective(
            config_dir / loading.CONFIG_FILE, data_root=_DATA.value, split=_SPLIT.value
        )
    if args["mode"] == "quality":
        # Styles and data are read (and checked) before the model is loaded.
        style_names, styles = evaluation.load_styles(_STYLES.value, args["regions"], _DATA.value)
        videos = evaluation.load_videos(
            _DATA.value,
            _SPLIT.value,
            args["max_frames"],
            args["max_videos"],
            regions=args["regions"],
        )
    loaded = None
    if args["kind"] != "baselines":
        loaded = loading.load_model(
            saved_model=_SAVED_MODEL.value,
            workdir=_WORKDIR.value,
            pretrained=_PRETRAINED.value,
            checkpoint=_CHECKPOINT.value,
        )
        logging.info("Evaluating %s", loaded.describe())
    if args["mode"] == "objective":
        _, markdown = objective.run_objective(
            loaded, plan, batches=args["batches"], output_dir=output_dir
        )
        written = ["objective.csv", "objective.md"]
    elif args["mode"] == "timing":
        _, markdown = evaluation.run_timing(
            loaded, args["resolutions"], args["rs"], output_dir=output_dir, repeats=args["repeats"]
        )
        written = ["timing.csv", "timing.md"]
    else:
        _, markdown = evaluation.run_quality(
            loaded,
            videos,
            styles,
            args["rs"],
            output_dir=output_dir,
            style_names=style_names,
            vgg_weights=_VGG_WEIGHTS.value,
            flow_preset=_FLOW_PRESET.value,
            sheet_frames=args["sheet_frames"],
        )
        written = ["quality.csv", "quality.md", "contact_sheet.png", "sheets/"]
    print(markdown)
    print("Written: " + ", ".join(str(output_dir / name) for name in written))


def main(argv):
    if len(argv) > 1:
        fail(f"unexpected arguments {argv[1:]} (every option is a --flag).")
    show_traceback = _VERBOSE.value or os.environ.get("LVST_TF_TRACEBACK") == "1"
    try:
        args = check_flags()
        run(args)
    except BaseException as e:  # noqa: BLE001 - one clean line; the traceback only on request
        stop = cli.stop_signal(e)  # also a stop that TensorFlow's C++ layer rebuilt as another type
        if stop == signal.SIGINT:
            fail("interrupted; no partial output was written.", 130)
        if stop == signal.SIGTERM:
            fail("terminated (SIGTERM); no partial output was written.", 143)
        if not isinstance(e, Exception):
            raise
        if show_traceback:
            logging.exception("eval failed")
        if isinstance(e, ValueError):
            # gin appends "In call to configurable ..." lines to errors raised inside configurables.
            fail(str(e).strip().splitlines()[0])
        fail(f"{type(e).__name__}: {e} (rerun with --verbose for the traceback).", 1)


def cli_main():
    """The command line (also `lvst-eval`): one-line flag errors (exit 2), then `main`."""
    cli.raise_on_stop_signals()
    app.run(main, flags_parser=cli.flags_parser(PROG))


if __name__ == "__main__":
    cli_main()
