r"""The one-command main job: train, export, stylize and evaluate on the shipped samples, offline.

Usage:
  python tools/quickstart.py                 # about 10-15 minutes on a 2-core CPU
  python tools/quickstart.py --fast          # a minute or two: the smoke config, tiny sizes (CI)

Steps (each a subprocess running one of the repository's binaries, so every command printed here
can be re-run by hand):
  1. tools/train.py --gin_file=gin/quickstart.gin on samples/ (gin/smoke.gin with --fast);
  2. tools/export.py: a SavedModel with the serving signatures;
  3. tools/stylize.py with two styles on the sample clips: a video and a side-by-side preview PNG
     (input | mask | output) per clip, through the exported SavedModel;
  4. tools/eval.py --mode=timing at two small sizes and --mode=quality on the sample videos.

Everything goes under --output_dir (default outputs/quickstart, git-ignored); the paths are printed
at the end. IMPORTANT: offline, VGG-19 has seeded *random* weights (no ImageNet download) and the
training set is four short sample clips, so the result shows the machinery, not the paper's
quality. For that, train gin/paper.gin (ImageNet VGG-19 weights, DAVIS 2017).
"""

from __future__ import annotations

import os
import pathlib
import shlex
import subprocess
import sys
import time

from absl import app, flags

REPO = pathlib.Path(__file__).resolve().parents[1]
SAMPLES = REPO / "samples"

_OUTPUT_DIR = flags.DEFINE_string(
    "output_dir", str(REPO / "outputs" / "quickstart"), "Where every output goes."
)
_FAST = flags.DEFINE_bool("fast", False, "Smoke config, tiny sizes, one clip: for CI.")
_SKIP_TRAIN = flags.DEFINE_bool(
    "skip_train", False, "Reuse the workdir of a previous run instead of training (resumes anyway)."
)

NOTICE = (
    "NOTE: this offline quickstart uses a randomly initialised VGG-19 (no ImageNet weights can be "
    "downloaded here) and trains briefly on four short sample clips. It demonstrates the whole "
    "pipeline (train -> export -> stylize -> evaluate), not the paper's quality: real quality needs "
    "ImageNet VGG-19 weights and DAVIS 2017, i.e. the paper configs (gin/paper.gin)."
)

# (name, input, masks, foreground style, background style)
CLIPS = [
    (
        "carphone",
        SAMPLES / "videos" / "carphone.mp4",
        str(SAMPLES / "videos" / "carphone_masks"),
        SAMPLES / "styles" / "EveningGlow.jpg",
        SAMPLES / "styles" / "DarkestHour.jpg",
    ),
    (
        "cup",
        SAMPLES / "davis" / "JPEGImages" / "480p" / "cup_b",
        "threshold:hsv:v<110|s>70,open=7,close=7,min_area=2000",
        SAMPLES / "styles" / "FallenLeaf.jpg",
        SAMPLES / "styles" / "coffee.jpg",
    ),
]


def _run(step: str, args: list[str], log_dir: pathlib.Path) -> None:
    """Runs one binary, echoing its output live (and into a log); stops the quickstart on failure."""
    command = [sys.executable, *args]
    print(f"\n=== {step}\n$ {shlex.join(command)}", flush=True)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL=os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    log = log_dir / f"{step.replace(' ', '_')}.log"
    start = time.time()
    with open(log, "w") as f:
        proc = subprocess.Popen(
            command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        for line in proc.stdout:
            f.write(line)
            # tqdm redraws with carriage returns: show the latest state only.
            print(f"  | {line.rstrip().split(chr(13))[-1][:300]}", flush=True)
        proc.wait()
    print(f"  ({time.time() - start:.0f} s; log {log})", flush=True)
    if proc.returncode != 0:
        sys.exit(f"quickstart: step '{step}' failed (exit {proc.returncode}); see {log}")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    out = pathlib.Path(_OUTPUT_DIR.value).resolve()
    fast = _FAST.value
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    print(NOTICE, flush=True)
    start = time.time()

    workdir = out / ("workdir_fast" if fast else "workdir")
    gin_file = REPO / "gin" / ("smoke.gin" if fast else "quickstart.gin")
    if not (_SKIP_TRAIN.value and (workdir / "operative_config.gin").is_file()):
        _run(
            "1 train",
            [str(REPO / "tools" / "train.py"), f"--gin_file={gin_file}", f"--workdir={workdir}"],
            logs,
        )

    saved_model = out / ("saved_model_fast" if fast else "saved_model")
    _run(
        "2 export",
        [
            str(REPO / "tools" / "export.py"),
            f"--workdir={workdir}",
            f"--output={saved_model}",
            "--overwrite",  # a rerun replaces this tool's own earlier export (and nothing else)
        ],
        logs,
    )

    results = {}
    for name, source, masks, style_fg, style_bg in CLIPS[:1] if fast else CLIPS:
        video = out / f"{name}_stylized.mp4"
        _run(
            f"3 stylize {name}",
            [
                str(REPO / "tools" / "stylize.py"),
                f"--input={source}",
                f"--masks={masks}",
                f"--styles={style_fg},{style_bg}",
                f"--saved_model={saved_model}",
                f"--r={1 if fast else 4}",
                f"--output={video}",
                "--preview",
                "--overwrite",  # a rerun replaces this tool's own earlier results
            ],
            logs,
        )
        results[name] = (video, out / f"{name}_stylized_preview.png")

    eval_dir = out / "eval"
    sizes = "64x64,128x128" if fast else "256x256,512x512"
    _run(
        "4 eval timing",
        [
            str(REPO / "tools" / "eval.py"),
            f"--saved_model={saved_model}",
            "--mode=timing",
            f"--resolutions={sizes}",
            "--r=1,8",
            f"--repeats={1 if fast else 3}",
            f"--output_dir={eval_dir}",
        ],
        logs,
    )
    quality = [
        str(REPO / "tools" / "eval.py"),
        f"--saved_model={saved_model}",
        "--mode=quality",
        f"--output_dir={eval_dir}",
    ]
    if fast:
        quality += ["--max_frames=4", "--max_videos=1", "--r=1", "--flow_preset=ultrafast"]
    _run("5 eval quality", quality, logs)

    print(f"\n=== Done in {time.time() - start:.0f} s. Outputs under {out}:")
    print(f"  training run (TensorBoard: tensorboard --logdir={workdir}): {workdir}")
    print(f"  SavedModel (docs/serving.md): {saved_model}")
    for name, (video, png) in results.items():
        print(f"  {name}: video {video}\n  {' ' * len(name)}  side by side {png}")
    tables = sorted(p for p in eval_dir.rglob("*") if p.suffix in (".md", ".csv", ".png"))
    for table in tables:
        print(f"  eval: {table}")
    print(NOTICE)


if __name__ == "__main__":
    app.run(main)
