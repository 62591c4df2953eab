"""Fault table of `tools/train.py`: bad inputs and faults, each run in a subprocess.

Every error case asserts (tests/faults.py): the exit code, one readable last stderr line naming the
flag, binding or file, no Python traceback, and nothing changed in the workdir (absent stays absent;
a trained workdir keeps every file). The faults that are not errors (a truncated latest checkpoint,
stale temporary files, a deliberate config change, SIGTERM / SIGINT) assert what the run does
instead: fall back and say so, clean up, keep the old config, stop with 143 / 130 and resume.
"""

from __future__ import annotations

import dataclasses
import fcntl
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import time

import faults
import pytest

REPO = faults.REPO
# Eager, no evaluation, no image summaries: the runs here are about the process, not the model.
FAST = ["train.run_eagerly = True", "train.eval_every = 0", "train.image_summary_every = 0"]
TINY = [*FAST, "train.num_steps = 2", "train.checkpoint_every = 1", "train.max_checkpoints = 2"]


def train_args(workdir, *bindings, gin_file="smoke.gin", extra=()):
    args = ["tools/train.py", f"--gin_file={gin_file}", f"--workdir={workdir}"]
    return args + [f"--gin_bindings={b}" for b in bindings] + list(extra)


def _env(**extra):
    env = {"TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    env.update(extra)
    return env


def run_train(args, timeout=600, **env):
    return faults.run_tool(args, env=_env(**env), timeout=timeout)


# ------------------------------------------------------------------------------------------------
# Bad inputs: rejected before any work; the workdir (absent) stays absent.


@dataclasses.dataclass
class InputCase:
    id: str
    args: object  # (tmp_path, workdir) -> argument list after `python`
    expect: str  # regex the last stderr line must match
    code: int = 1
    env: object = None  # (tmp_path) -> extra environment


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


INPUT_CASES = [
    InputCase("missing_workdir", lambda t, w: ["tools/train.py", "--gin_file=smoke.gin"],
              r"error: --workdir is required", 2),
    InputCase("missing_gin_file", lambda t, w: ["tools/train.py", f"--workdir={w}"],
              r"error: --gin_file is required", 2),
    InputCase("positional_argument", lambda t, w: [*train_args(w), "extra"],
              r"error: unexpected arguments \['extra'\]", 2),
    InputCase("unknown_flag", lambda t, w: [*train_args(w), "--num_steps=3"],
              r"error: .*num_steps", 2),
    InputCase("bad_strategy", lambda t, w: train_args(w, extra=["--strategy=gpu"]),
              r"error: .*strategy", 2),
    InputCase("negative_seed", lambda t, w: train_args(w, extra=["--seed=-1"]),
              r"error: --seed must be an integer >= 0", 2),
    InputCase("unknown_gin_file", lambda t, w: train_args(w, gin_file="nope.gin"),
              r"error: gin file 'nope.gin' not found"),
    InputCase("gin_file_syntax_error",
              lambda t, w: train_args(w, gin_file=_write(t / "bad.gin", "train.num_steps = (\n")),
              r"error: gin: .*bad\.gin"),
    InputCase("misspelled_parameter", lambda t, w: train_args(w, "train.num_stepz = 3"),
              r"error: Configurable 'train' doesn't have a parameter named 'num_stepz'"),
    InputCase("unknown_configurable", lambda t, w: train_args(w, "trian.num_steps = 3"),
              r"error: No configurable matching 'trian'"),
    InputCase("binding_syntax_error", lambda t, w: train_args(w, "train.num_steps = "),
              r"error: gin: .*--gin_bindings='train.num_steps = '"),
    InputCase("num_steps_unbound",
              lambda t, w: train_args(w, gin_file=_write(t / "partial.gin", "train.seed = 1\n")),
              r"error: gin: Required bindings for `train` .*num_steps"),
    InputCase("negative_num_steps", lambda t, w: train_args(w, "train.num_steps = -1"),
              r"error: train.num_steps must be an integer >= 0"),
    InputCase("unknown_trainable", lambda t, w: train_args(w, "train.trainable = 'vgg'"),
              r"error: train.trainable must be one of"),
    InputCase("zero_learning_rate", lambda t, w: train_args(w, "train.learning_rate = 0.0"),
              r"error: train.learning_rate must be a finite number > 0"),
    InputCase("zero_checkpoint_every", lambda t, w: train_args(w, "train.checkpoint_every = 0"),
              r"error: train.checkpoint_every must be an integer >= 1"),
    InputCase("missing_data_root",
              lambda t, w: train_args(w, f"train.data_root = '{t / 'no_davis'}'"),
              r"error: train.data_root = '.*no_davis': .*not a DAVIS folder"),
    InputCase("data_root_not_davis",
              lambda t, w: train_args(w, f"train.data_root = '{_write(t / 'x' / 'a.txt', '').parent}'"),
              r"error: train.data_root = '.*x': .*not a DAVIS folder"),
    InputCase("missing_split", lambda t, w: train_args(w, "train.train_split = 'test'"),
              r"error: train.data_root = 'samples': split: split file .*test.txt' is missing"),
    InputCase("corpus_not_built", lambda t, w: train_args(w, "train.data_root = 'corpus'"),
              r"error: train.data_root = 'corpus': no corpus at .*make_corpus.py",
              env=lambda t: {"LVST_TF_HOME": str(t / "home")}),
    InputCase("davis_root_conflict",
              lambda t, w: train_args(w, f"DavisFolder.root = '{REPO / 'samples' / 'davis'}'"),
              r"error: train.data_root = 'samples' and DavisFolder.root = .* both choose"),
    InputCase("davis_split_bound", lambda t, w: train_args(w, "DavisFolder.split = 'val'"),
              r"error: DavisFolder.split = 'val' is bound.*train.train_split"),
    InputCase("no_davis_dir",
              lambda t, w: train_args(w, "train.data_root = None"),
              r"error: train.data_root = None .*LVST_DAVIS_DIR",
              env=lambda t: {"LVST_DAVIS_DIR": ""}),
    InputCase("end2end_without_init_checkpoint",
              lambda t, w: train_args(w, "build_model.vgg_weights = None", gin_file="paper_end2end.gin"),
              r"error: train.trainable='all_but_mask_net' .*train.init_checkpoint"),
    InputCase("missing_init_checkpoint",
              lambda t, w: train_args(w, f"train.init_checkpoint = '{t / 'no_run'}'"),
              r"error: train.init_checkpoint = '.*no_run': .*found no checkpoint"),
    InputCase("workdir_is_a_file", lambda t, w: train_args(_write(t / "file.txt", "x")),
              r"error: workdir: '.*file.txt' exists and is not a folder"),
    InputCase("tpu_without_tpu", lambda t, w: train_args(w, extra=["--strategy=tpu"]),
              r"error: --strategy=tpu --tpu='': no TPU found"),
]  # fmt: skip


@pytest.mark.parametrize("case", INPUT_CASES, ids=[c.id for c in INPUT_CASES])
def test_bad_input_fails_cleanly_before_any_work(case, tmp_path):
    workdir = tmp_path / "run"
    args = case.args(tmp_path, workdir)
    before = faults.snapshot(workdir)
    outcome = run_train(args, **(case.env(tmp_path) if case.env else {}))
    faults.assert_clean_error(outcome, re.compile(case.expect), case.code)
    assert outcome.last_line.startswith("train.py: error: "), outcome.last_line
    faults.assert_unchanged(before, workdir)


# ------------------------------------------------------------------------------------------------
# Faults around an existing (trained) workdir.


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 2-step smoke run (checkpoints at steps 1 and 2); tests copy it."""
    workdir = tmp_path_factory.mktemp("trained") / "run"
    outcome = run_train(train_args(workdir, *TINY))
    assert outcome.returncode == 0, outcome.stderr[-3000:]
    return workdir


@pytest.fixture
def run_copy(trained, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(trained, copy)
    return copy


def _latest_step(workdir):
    from lvst_tf.training import checkpoints

    return checkpoints.latest_step(workdir)


WORKDIR_CASES = [
    # (id, bindings, expect, extra flags)
    ("structural_change", ["build_model.low_res = 64"],
     r"error: workdir: .* holds a run of another model.*build_model.low_res 32 -> 64", []),
    ("trained_part_change", ["train.trainable = 'mask_net'"],
     r"error: workdir: .*train.trainable 'all' -> 'mask_net'", []),
    ("structural_change_even_if_allowed", ["build_model.grid_depth = 4"],
     r"error: workdir: .*build_model.grid_depth 8 -> 4", ["--allow_config_change"]),
    ("setting_change", ["compute_losses.style_weight = 2.0", "train.learning_rate = 1e-3"],
     r"error: workdir: the config changed .*compute_losses.style_weight 1.0 -> 2.0; "
     r"train.learning_rate 0.0001 -> 0.001 .*--allow_config_change", []),
    ("data_change", ["make_train_dataset.crop_size = 64"],
     r"error: workdir: the config changed .*make_train_dataset.crop_size 32 -> 64", []),
]  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("case", WORKDIR_CASES, ids=[c[0] for c in WORKDIR_CASES])
def test_changed_config_is_refused_and_the_workdir_untouched(case, run_copy):
    _, bindings, expect, extra = case
    before = faults.snapshot(run_copy)
    outcome = run_train(train_args(run_copy, *TINY, "train.num_steps = 4", *bindings, extra=extra))
    faults.assert_clean_error(outcome, re.compile(expect), 1)
    faults.assert_unchanged(before, run_copy)


@pytest.mark.slow
def test_allowed_setting_change_keeps_the_old_config(run_copy):
    old_config = (run_copy / "operative_config.gin").read_text()
    args = train_args(
        run_copy,
        *TINY,
        "train.num_steps = 3",
        "train.learning_rate = 1e-3",
        extra=["--allow_config_change"],
    )
    outcome = run_train(args)
    assert outcome.returncode == 0, outcome.stderr[-3000:]
    assert "Resuming with changed settings: train.learning_rate 0.0001 -> 0.001" in outcome.stderr
    assert (run_copy / "operative_config.before_step_2.gin").read_text() == old_config
    assert "train.learning_rate = 0.001" in (run_copy / "operative_config.gin").read_text()
    assert _latest_step(run_copy) == 3
    # A run that has reached num_steps trains nothing more: the kept config is named after step 3.
    config_3 = (run_copy / "operative_config.gin").read_text()
    args = train_args(
        run_copy,
        *TINY,
        "train.num_steps = 3",
        "train.learning_rate = 1e-2",
        extra=["--allow_config_change"],
    )
    outcome = run_train(args)
    assert outcome.returncode == 0, outcome.stderr[-3000:]
    assert (run_copy / "operative_config.before_step_3.gin").read_text() == config_3
    assert _latest_step(run_copy) == 3
    # Another change at the same step keeps the earlier kept config and adds a numbered one.
    config_3b = (run_copy / "operative_config.gin").read_text()
    args[args.index("--gin_bindings=train.learning_rate = 1e-2")] = (
        "--gin_bindings=train.learning_rate = 5e-3"
    )
    outcome = run_train(args)
    assert outcome.returncode == 0, outcome.stderr[-3000:]
    assert (run_copy / "operative_config.before_step_3.gin").read_text() == config_3
    assert (run_copy / "operative_config.before_step_3_2.gin").read_text() == config_3b
    assert "train.learning_rate = 0.005" in (run_copy / "operative_config.gin").read_text()


@pytest.mark.slow
def test_free_settings_may_change(run_copy):
    outcome = run_train(train_args(run_copy, *TINY, "train.num_steps = 3", "train.log_every = 5"))
    assert outcome.returncode == 0, outcome.stderr[-3000:]
    assert "Resumed from" in outcome.stderr and _latest_step(run_copy) == 3


@pytest.mark.slow
def test_truncated_latest_checkpoint_falls_back_and_says_so(run_copy):
    ckpt = run_copy / "checkpoints"
    data = next(ckpt.glob("ckpt-2.data-*"))
    data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])
    outcome = run_train(train_args(run_copy, *TINY, "train.num_steps = 3"))
    assert outcome.returncode == 0, outcome.stderr[-3000:]
    assert faults.TRACEBACK not in outcome.stderr
    assert re.search(r"ckpt-2 in .* truncated or unreadable: moved to .*unreadable", outcome.stderr)
    assert "(step 1)" in outcome.stderr  # resumed from ckpt-1
    assert (ckpt / "unreadable" / data.name).is_file()
    assert _latest_step(run_copy) == 3
    # The retrained step 2 replaced the truncated one; the run's files read back in full.
    from lvst_tf import loading

    for step in (2, 3):
        assert loading.checkpoint_is_intact(str(ckpt / f"ckpt-{step}"))


@pytest.mark.slow
def test_every_checkpoint_truncated_is_an_error(run_copy):
    for data in (run_copy / "checkpoints").glob("ckpt-*.data-*"):
        data.write_bytes(data.read_bytes()[:100])
    before = faults.snapshot(run_copy)
    outcome = run_train(train_args(run_copy, *TINY, "train.num_steps = 3"))
    faults.assert_clean_error(
        outcome, re.compile(r"error: workdir: every checkpoint in .* is truncated or unreadable"), 1
    )
    faults.assert_unchanged(before, run_copy)


@pytest.mark.slow
def test_stale_temporary_files_are_removed(run_copy):
    stale = [
        run_copy / "checkpoints" / "ckpt-7_temp" / "part-00000-of-00001.index",
        run_copy / "checkpoints" / "checkpoint.tmp0123abcd",
        run_copy / ".operative_config.gin.x1y2.tmp",
    ]
    for path in stale:
        _write(path, "partial")
    outcome = run_train(train_args(run_copy, *TINY, "train.num_steps = 3"))
    assert outcome.returncode == 0, outcome.stderr[-3000:]
    assert "Removed temporary files of an interrupted earlier run" in outcome.stderr
    assert not any(p.exists() for p in stale)
    assert not (run_copy / "checkpoints" / "ckpt-7_temp").exists()
    assert _latest_step(run_copy) == 3


@pytest.mark.slow
def test_workdir_in_use_is_refused(run_copy):
    before = faults.snapshot(run_copy)
    fd = os.open(run_copy, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # as a running trainer holds it
        outcome = run_train(train_args(run_copy, *TINY, "train.num_steps = 3"))
    finally:
        os.close(fd)
    faults.assert_clean_error(outcome, re.compile(r"error: workdir: .* is in use by another"), 1)
    faults.assert_unchanged(before, run_copy)


@pytest.mark.slow
def test_unreadable_training_data_names_the_file(tmp_path):
    davis = tmp_path / "davis"
    shutil.copytree(REPO / "samples" / "davis", davis)
    for jpg in (davis / "JPEGImages").rglob("*.jpg"):
        jpg.write_bytes(jpg.read_bytes()[:100])  # truncated JPEGs
    workdir = tmp_path / "run"
    outcome = run_train(train_args(workdir, *TINY, f"train.data_root = '{davis}'"))
    faults.assert_clean_error(
        outcome, re.compile(r"error: training data: image: '.*\.jpg' is damaged"), 1
    )
    assert not (workdir / "checkpoints").exists()


# The non-finite case poisons compute_losses in the tool's own process (eager steps call it once
# per step), then runs the tool as `python tools/train.py` would.
_POISON = """
import runpy, sys
import numpy as np
import lvst_tf.losses as losses
real = losses.compute_losses
def poisoned(model, batch, outputs):
    total, terms = real(model, batch, outputs)
    terms = dict(terms, style=terms["style"] * np.nan)
    return total + terms["style"], terms
losses.compute_losses = poisoned
sys.argv[0] = "tools/train.py"
runpy.run_path("tools/train.py", run_name="__main__")
"""


@pytest.mark.slow
def test_non_finite_loss_on_a_fresh_run_says_nothing_was_saved(tmp_path):
    workdir = tmp_path / "run"
    outcome = run_train(["-c", _POISON, *train_args(workdir, *TINY)[1:]])
    faults.assert_clean_error(
        outcome,
        re.compile(
            r"error: Non-finite style loss \(nan\) at step 1 .*no checkpoint had been written yet"
        ),
        1,
    )
    assert not (workdir / "checkpoints").exists()


@pytest.mark.slow
def test_non_finite_loss_keeps_the_last_checkpoint(run_copy):
    protected = [run_copy / "checkpoints", run_copy / "operative_config.gin"]
    before = faults.snapshot(*protected)
    outcome = run_train(["-c", _POISON, *train_args(run_copy, *TINY, "train.num_steps = 4")[1:]])
    faults.assert_clean_error(
        outcome,
        re.compile(r"error: Non-finite style loss \(nan\) at step 3 .*checkpoint of step 2 in "),
        1,
    )
    faults.assert_unchanged(before, *protected)


# ------------------------------------------------------------------------------------------------
# Signals: exit promptly with 143 / 130, the step reached saved, and the run resumes.


def _start(args, log_path):
    log = open(log_path, "w")  # noqa: SIM115 - closed by _stop
    full = dict(os.environ, **_env())
    proc = subprocess.Popen([sys.executable, *args], cwd=REPO, env=full, stdout=log, stderr=log)
    return proc, log


def _wait_for_text(path, text, proc, timeout):
    """Waits until the log holds `text` (or one of a tuple of texts), the process ends or the
    timeout passes; returns whether the text is there."""
    texts = (text,) if isinstance(text, str) else text

    def found():
        log = pathlib.Path(path).read_text()
        return any(t in log for t in texts)

    deadline = time.time() + timeout
    while time.time() < deadline:
        if found() or proc.poll() is not None:
            return found()
        time.sleep(0.2)
    return False


@pytest.mark.slow
@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_saves_exits_with_its_code_and_resumes(run_copy, tmp_path, sig, code):
    log_path = tmp_path / "log.txt"
    args = train_args(run_copy, *TINY, "train.num_steps = 1000", "train.checkpoint_every = 1000")
    proc, log = _start(args, log_path)
    try:
        assert _wait_for_text(log_path, "step 3/1000", proc, 400), log_path.read_text()[-3000:]
        sent = time.time()
        proc.send_signal(sig)
        returncode = proc.wait(timeout=120)
        took = time.time() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
    text = log_path.read_text()
    outcome = faults.Outcome(returncode, "", text)
    name = sig.name
    faults.assert_clean_error(
        outcome,
        re.compile(
            rf"train.py: stopped by {name} at step (\d+): the checkpoint of step \1 is saved"
        ),
        code,
    )
    stopped = int(re.search(r"stopped by \w+ at step (\d+)", outcome.last_line).group(1))
    assert stopped >= 3 and _latest_step(run_copy) == stopped
    print(f"{name}: exit {returncode} {took:.1f} s after the signal (step {stopped})")
    resumed = run_train(train_args(run_copy, *TINY, f"train.num_steps = {stopped + 1}"))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"(step {stopped})" in resumed.stderr and _latest_step(run_copy) == stopped + 1


@pytest.mark.slow
def test_sigterm_before_training_writes_nothing(tmp_path):
    log_path = tmp_path / "log.txt"
    workdir = tmp_path / "run"
    proc, log = _start(train_args(workdir, *TINY), log_path)
    try:
        # TensorFlow announces itself while it is imported, inside main (the handler is set):
        # oneDNN's line, or the CPU feature line on CPUs without it; the model's first warning
        # (random VGG weights) comes before training otherwise.
        announced = ("oneDNN", "cpu_feature_guard", "RANDOM weights")
        assert _wait_for_text(log_path, announced, proc, 120), log_path.read_text()[-3000:]
        proc.send_signal(signal.SIGTERM)
        returncode = proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
    outcome = faults.Outcome(returncode, "", log_path.read_text())
    faults.assert_clean_error(outcome, re.compile(r"SIGTERM"), 143)
    if re.search(r"before training started|before the first step", outcome.last_line):
        assert not (workdir / "checkpoints").exists()
