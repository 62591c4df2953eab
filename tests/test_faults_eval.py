"""Fault table of tools/eval.py (every mode): every bad input, one parametrised test.

Each case runs the tool in a subprocess (through a launcher that points the shipped-model folder at
an empty one and reports at exit whether TensorFlow was imported) and asserts: a non-zero exit code,
a readable last stderr line naming the flag or file, no traceback, nothing changed in the case's
folder (inputs and the output folder alike), and that TensorFlow was never imported: every one of
these errors is found before any work. A test checks that --verbose and LVST_TF_TRACEBACK=1 add
the traceback while the last line stays the same, and a last one stops a running evaluation with
SIGTERM and Ctrl-C.
"""

from __future__ import annotations

import dataclasses
import pathlib
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable

import pytest
from faults import LAUNCHER, Outcome, assert_clean_error, assert_unchanged, run_tool, snapshot
from test_eval import make_davis, make_styles

REPO = pathlib.Path(__file__).resolve().parents[1]
TOOL = REPO / "tools" / "eval.py"


@dataclasses.dataclass
class Case:
    name: str
    args: Callable[[pathlib.Path], list[str]]  # tmp folder -> flags (the output dir is added)
    expect: str  # a regular expression on the last stderr line


def _davis(tmp):
    return f"--data={tmp / 'davis'}"


def _styles(tmp, count=2):
    names = ("orange", "green", "blue")[:count] if count == 3 else ("orange", "blue")[:count]
    return "--styles=" + ",".join(str(tmp / "styles" / f"{n}.jpg") for n in names)


CASES = [
    # Flags of either mode.
    Case(
        "bad_mode", lambda t: ["--mode=fast"], r"--mode must be 'timing', 'quality' or 'objective'"
    ),
    Case("unknown_flag", lambda t: ["--nope=1"], r"nope"),
    Case("positional", lambda t: ["--mode=timing", "extra"], r"unexpected arguments"),
    Case("r_zero", lambda t: ["--mode=timing", "--r=0"], r"--r must be a comma list"),
    Case("r_text", lambda t: ["--mode=quality", "--r=1,a"], r"--r must be a comma list"),
    Case("r_twice", lambda t: ["--mode=timing", "--r=8,8"], r"--r lists a value twice"),
    # Model flags.
    Case(
        "two_models",
        lambda t: ["--mode=timing", f"--workdir={t}", f"--saved_model={t}"],
        r"at most one of saved_model, workdir or pretrained",
    ),
    Case(
        "checkpoint_alone",
        lambda t: ["--mode=timing", "--checkpoint=5", "--pretrained=demo"],
        r"--checkpoint",
    ),
    Case(
        "missing_workdir",
        lambda t: ["--mode=timing", f"--workdir={t / 'nope'}"],
        r"--workdir: .* is not a training workdir",
    ),
    Case(
        "not_a_saved_model",
        lambda t: ["--mode=timing", f"--saved_model={t / 'styles'}"],
        r"--saved_model: .* is not a SavedModel",
    ),
    Case("no_shipped_model", lambda t: ["--mode=timing"], r"--pretrained: no shipped model"),
    Case(
        "unknown_pretrained",
        lambda t: ["--mode=quality", "--pretrained=nope"],
        r"--pretrained: no shipped model 'nope'",
    ),
    Case(
        "baselines_with_model",
        lambda t: ["--mode=quality", "--baselines_only", f"--workdir={t}"],
        r"--baselines_only evaluates no model; remove --workdir",
    ),
    Case(
        "baselines_in_timing",
        lambda t: ["--mode=timing", "--baselines_only"],
        r"--baselines_only applies to --mode=quality only",
    ),
    # Timing flags.
    Case(
        "bad_size",
        lambda t: ["--mode=timing", "--resolutions=512"],
        r"--resolutions must be a comma list of HxW",
    ),
    Case(
        "zero_size",
        lambda t: ["--mode=timing", "--resolutions=512x512,0x5"],
        r"--resolutions .*bad item '0x5'",
    ),
    Case("zero_repeats", lambda t: ["--mode=timing", "--repeats=0"], r"--repeats must be"),
    Case(
        "quality_flag_in_timing",
        lambda t: ["--mode=timing", _davis(t)],
        r"--data applies to --mode=quality only",
    ),
    Case(
        "timing_flag_in_quality",
        lambda t: ["--mode=quality", "--repeats=2", "--baselines_only"],
        r"--repeats applies to --mode=timing only",
    ),
    # Quality flags and data.
    Case("one_region", lambda t: ["--mode=quality", "--regions=1"], r"--regions must be"),
    Case("max_frames_one", lambda t: ["--mode=quality", "--max_frames=1"], r"--max_frames must"),
    Case("max_videos_zero", lambda t: ["--mode=quality", "--max_videos=0"], r"--max_videos must"),
    Case(
        "sheet_frame_past_end",
        lambda t: ["--mode=quality", "--max_frames=4", "--sheet_frames=0,9"],
        r"--sheet_frames: frame 9 is past --max_frames=4",
    ),
    Case(
        "flow_preset",
        lambda t: ["--mode=quality", "--flow_preset=slow"],
        r"--flow_preset must be",
    ),
    Case(
        "too_few_styles",
        lambda t: ["--mode=quality", "--baselines_only", _davis(t), _styles(t, 1)],
        r"--styles must name K = 2 images",
    ),
    Case(
        "too_few_styles_for_k3",
        lambda t: ["--mode=quality", "--baselines_only", "--regions=3", _davis(t), _styles(t)],
        r"--styles must name K = 3 images",
    ),
    Case(
        "missing_style",
        lambda t: [
            "--mode=quality",
            "--baselines_only",
            _davis(t),
            f"--styles={t}/a.jpg,{t}/b.jpg",
        ],
        r"--styles: .*a\.jpg' is not a file",
    ),
    Case(
        "undecodable_style",
        lambda t: [
            "--mode=quality",
            "--baselines_only",
            _davis(t),
            f"--styles={t / 'davis' / 'ImageSets' / '2017' / 'val.txt'},{t / 'styles' / 'blue.jpg'}",
        ],
        r"styles: .*val\.txt",
    ),
    Case(
        "too_few_default_styles",
        lambda t: ["--mode=quality", "--baselines_only", "--regions=3", f"--data={t / 'data'}"],
        r"styles: .*styles' holds 2 style image\(s\), K = 3 regions need 3",
    ),
    Case(
        "missing_data",
        lambda t: ["--mode=quality", "--baselines_only", f"--data={t / 'nope'}"],
        r"--data: .*nope' is not a folder",
    ),
    Case(
        "bad_split",
        lambda t: ["--mode=quality", "--baselines_only", _davis(t), "--split=nope", _styles(t)],
        r"split: .*nope",
    ),
    Case(
        "too_few_instances",
        lambda t: ["--mode=quality", "--baselines_only", _davis(t), "--regions=3", _styles(t, 3)],
        r"data: no video with at least 2 frames and 2 instance\(s\)",
    ),
    # Objective flags.
    Case(
        "objective_with_saved_model",
        lambda t: ["--mode=objective", f"--saved_model={t}"],
        r"--mode=objective needs the model's training call and losses",
    ),
    Case(
        "objective_batches_zero", lambda t: ["--mode=objective", "--batches=0"], r"--batches must"
    ),
    Case(
        "batches_in_quality",
        lambda t: ["--mode=quality", "--batches=2"],
        r"--batches applies to --mode=objective only",
    ),
    Case(
        "quality_flag_in_objective",
        lambda t: ["--mode=objective", "--regions=3"],
        r"--regions does not apply to --mode=objective",
    ),
    Case(
        "objective_missing_data",
        lambda t: ["--mode=objective", f"--data={t / 'nope'}"],
        r"--data: .*nope' is neither 'corpus', 'samples' nor a folder",
    ),
    # Output folder.
    Case(
        "output_under_a_file",
        lambda t: ["--mode=quality", "--baselines_only", f"--output_dir={t / 'file.txt' / 'out'}"],
        r"--output_dir: .* cannot be created: .*file\.txt' is not a folder",
    ),
    Case(
        "output_is_a_file",
        lambda t: ["--mode=quality", "--baselines_only", f"--output_dir={t / 'file.txt'}"],
        r"--output_dir: .*file\.txt' exists and is not a folder",
    ),
]


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval_faults")
    make_davis(root / "davis", names=("clip_a",), num_frames=4)
    make_styles(root / "styles", ("orange", "green", "blue"))
    make_styles(root / "data" / "styles", ("orange", "blue"))
    make_davis(root / "data", names=("clip_b",), num_frames=3)
    (root / "file.txt").write_text("not a folder")
    (root / "out").mkdir()
    (root / "out" / "previous.md").write_text("an earlier result")
    (root / "pretrained").mkdir()  # no shipped model in it
    (root / "launcher.py").write_text(LAUNCHER)
    return root


def _run(shared, args, env=None):
    return run_tool(
        [shared / "launcher.py", shared / "pretrained", TOOL, *args],
        cwd=shared,
        env=env,
        timeout=300,
    )


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_fault(case, shared):
    args = case.args(shared)
    if not any(a.startswith("--output_dir=") for a in args):
        args.append(f"--output_dir={shared / 'out'}")
    before = snapshot(shared)
    outcome = _run(shared, args)
    assert_clean_error(outcome, re.compile(case.expect))
    assert outcome.last_line.startswith("eval.py: error: ")
    assert "tensorflow-imported: False" in outcome.stdout, outcome.stdout[-500:]
    assert_unchanged(before, shared)


def test_traceback_only_on_request(shared):
    args = ["--mode=quality", "--baselines_only", _davis(shared), "--split=nope", _styles(shared)]
    args.append(f"--output_dir={shared / 'out'}")
    quiet = _run(shared, args)
    assert_clean_error(quiet, re.compile(r"split: .*nope"))
    for extra, env in ((["--verbose"], None), ([], {"LVST_TF_TRACEBACK": "1"})):
        loud = _run(shared, args + extra, env)
        assert "Traceback (most recent call last)" in loud.stderr
        assert loud.last_line == quiet.last_line and loud.returncode == quiet.returncode


@pytest.mark.parametrize(
    "sig, code, expect",
    [
        (signal.SIGTERM, 143, "terminated (SIGTERM); no partial output was written."),
        (signal.SIGINT, 130, "interrupted; no partial output was written."),
    ],
    ids=["SIGTERM", "Ctrl-C"],
)
def test_stop_signal_during_the_evaluation(shared, tmp_path, sig, code, expect):
    """Stopped after its first video: the documented exit code and line, and nothing written."""
    make_davis(tmp_path / "davis", names=("clip_a", "clip_b", "clip_c"), num_frames=14,
               size=(200, 320))  # fmt: skip
    out = tmp_path / "out"
    out.mkdir()
    (out / "previous.md").write_text("an earlier result")
    args = ["--mode=quality", "--baselines_only", f"--data={tmp_path / 'davis'}",
            _styles(shared), f"--output_dir={out}"]  # fmt: skip
    before = snapshot(tmp_path)
    proc = subprocess.Popen(
        [sys.executable, str(shared / "launcher.py"), str(shared / "pretrained"), str(TOOL), *args],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    seen = []
    for line in proc.stderr:  # the progress lines, until the first video is done
        seen.append(line)
        if "video 1/3" in line:
            break
    assert proc.poll() is None, "the evaluation ended before the signal: " + "".join(seen)[-2000:]
    proc.send_signal(sig)
    sent = time.time()
    stdout, rest = proc.communicate(timeout=300)
    assert time.time() - sent < 60, "did not exit promptly after the signal"
    assert_clean_error(Outcome(proc.returncode, stdout, "".join(seen) + rest), expect, code)
    assert_unchanged(before, tmp_path)
