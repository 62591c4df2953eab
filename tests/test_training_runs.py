"""End-to-end training runs on the shipped samples (slow: each traces or steps the real model).

Runs that depend on process-level state (signals, logical devices, the CLI) go through subprocesses.
"""

import json
import os
import pathlib
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import tensorflow as tf

import gin
from lvst_tf import loading, losses, training
from lvst_tf.training import checkpoints

pytestmark = pytest.mark.slow

REPO = pathlib.Path(__file__).resolve().parents[1]
# Fast variants of smoke.gin for runs whose point is not the traced step.
EAGER = ["train.run_eagerly = True", "train.image_summary_every = 0", "train.eval_every = 0"]


def _env():
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


def _train_cmd(workdir, *bindings, gin_file="smoke.gin"):
    cmd = [sys.executable, "tools/train.py", f"--gin_file={gin_file}", f"--workdir={workdir}"]
    return cmd + [f"--gin_bindings={b}" for b in bindings]


def _run(cmd, timeout=600):
    proc = subprocess.run(
        cmd, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=timeout
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc.stderr  # absl logs to stderr


def _events(folder):
    tags = {}
    for name in sorted(os.listdir(folder)):
        if name.startswith("events.out.tfevents"):
            for event in tf.compat.v1.train.summary_iterator(os.path.join(folder, name)):
                for value in event.summary.value:
                    tags.setdefault(value.tag, []).append(event.step)
    return tags


def _latest_step(workdir):
    return checkpoints.latest_step(workdir)


def test_smoke_cli_writes_outputs_then_resumes(tmp_path):
    workdir = tmp_path / "run"
    log = _run(_train_cmd(workdir))  # gin/smoke.gin: 3 traced steps, checkpoints at 2 and 3
    assert "step 3/3" in log
    assert _latest_step(workdir) == 3
    config = (workdir / "operative_config.gin").read_text()
    assert "train.num_steps = 3" in config and "build_model.low_res = 32" in config
    train_tags = _events(workdir / "train")
    assert "loss/colour" not in train_tags  # off in smoke.gin: a term of weight 0 is not logged
    for term in (*(t for t in losses.TERMS if t != "colour"), "total"):
        assert train_tags[f"loss/{term}"] == [1, 2, 3], term
    for tag in ("learning_rate", "steps_per_second", "gin/operative_config"):
        assert tag in train_tags
    for name in ("content", "noisy_mask", "enhanced_mask", "styles", "output"):
        assert train_tags[f"images/{name}"] == [2]
    eval_tags = _events(workdir / "eval")
    assert eval_tags["loss/style"] == [0, 3]
    assert "metrics/warping_error" in eval_tags
    # Reusing the workdir resumes at step 3 and continues to the new num_steps.
    log = _run(_train_cmd(workdir, "train.num_steps = 5", *EAGER))
    assert "(step 3)" in log and "Resumed" in log
    assert "step 4/5" in log and "step 1/" not in log
    assert _latest_step(workdir) == 5
    prefix = tf.train.latest_checkpoint(str(workdir / "checkpoints"))
    names = dict(tf.train.list_variables(prefix))
    iterations = [n for n in names if n.startswith("optimizer/") and "iteration" in n]
    assert iterations, sorted(names)[:20]
    assert int(tf.train.load_variable(prefix, iterations[0])) == 5  # optimizer state was restored


def _wait_for(predicate, proc, timeout):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.2)
    return False


def test_sigkill_during_training_resumes(tmp_path):
    workdir = tmp_path / "run"
    cmd = _train_cmd(workdir, "train.num_steps = 1000", "train.checkpoint_every = 1", *EAGER)
    proc = subprocess.Popen(
        cmd, cwd=REPO, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        assert _wait_for(lambda: _latest_step(workdir) >= 2, proc, 400), "no checkpoint written"
        # Kill at an arbitrary moment of the following steps (possibly while saving).
        time.sleep(np.random.default_rng().uniform(0.0, 2.0))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    killed_at = _latest_step(workdir)
    assert killed_at >= 2
    log = _run(_train_cmd(workdir, f"train.num_steps = {killed_at + 1}", *EAGER))
    assert f"(step {killed_at})" in log
    assert _latest_step(workdir) == killed_at + 1


def test_sigterm_saves_a_checkpoint_and_exits(tmp_path):
    workdir = tmp_path / "run"
    cmd = _train_cmd(workdir, "train.num_steps = 1000", "train.checkpoint_every = 1000", *EAGER)
    log_path = tmp_path / "log.txt"
    with open(log_path, "w") as log_file:
        proc = subprocess.Popen(cmd, cwd=REPO, env=_env(), stdout=log_file, stderr=log_file)
        try:
            started = _wait_for(lambda: "step 1/1000" in log_path.read_text(), proc, 400)
            assert started, log_path.read_text()[-3000:]
            proc.send_signal(signal.SIGTERM)
            # 143 = 128 + SIGTERM: a scheduler can tell a stopped run from a finished one (0).
            assert proc.wait(timeout=120) == 143
        finally:
            if proc.poll() is None:
                proc.kill()
    log = log_path.read_text()
    assert "SIGTERM received" in log and "Stopped by SIGTERM" in log
    stopped = _latest_step(workdir)
    assert 1 <= stopped < 1000
    assert f"stopped by SIGTERM at step {stopped}: the checkpoint of step {stopped} is saved" in log
    assert "Finished at step" not in log


_MIRRORED_SCRIPT = """
import json, sys
import numpy as np
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from lvst_tf import training
from lvst_tf.training import loop
training.parse_gin_config(["smoke.gin"], [
    "train.num_steps = 1", "train.run_eagerly = True", "train.eval_every = 0",
    "train.image_summary_every = 0", "make_train_dataset.batch_size = 2",
    "compute_losses.colour_weight = 0.4"])
trainers = []
run = loop.Trainer.run
loop.Trainer.run = lambda self: trainers.append(self) or run(self)
mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
assert mirrored.num_replicas_in_sync == 2
out = {"mirrored": training.train(sys.argv[1] + "/mirrored", strategy=mirrored),
       "single": training.train(sys.argv[1] + "/single")}
for name, trainer in zip(out, trainers):
    # After one Adam step the first moment is (1 - beta_1) * the applied (all-reduced) gradient.
    opt = trainer.optimizer
    grads = {v.path: np.asarray(opt._momentums[opt._get_variable_index(v)]) / (1 - opt.beta_1)
             for v in trainer.variables}
    np.savez(sys.argv[1] + f"/{name}_gradients.npz", **grads)
print("RESULT" + json.dumps(out))
"""


def test_mirrored_two_cpu_replicas_match_single_device(tmp_path):
    """Two replicas on a batch of 2 (one clip each) against one device on the same batch: the same
    losses, and the same applied gradients (each replica's, averaged over the global batch).

    The gradients are compared up to float rounding of the model at an untrained start, measured
    against the largest gradient of the step: a batch of 2 and its two halves round differently,
    and at random weights the K region grids are nearly equal, so the grid blend turns rounding in
    the rendered frame into relative differences of 1e-3 and more in the small gradients that
    reach the mask network. (The weights after the step are not compared: Adam's first update is
    learning_rate * sign(gradient) per element, which flips for gradients at the rounding level.)
    """
    script = tmp_path / "mirrored.py"
    script.write_text(textwrap.dedent(_MIRRORED_SCRIPT))
    proc = subprocess.run(
        [sys.executable, str(script), str(tmp_path)],
        cwd=REPO,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT"))
    result = json.loads(line[len("RESULT") :])
    for key in (*losses.TERMS, "total"):  # the colour term is on in this run
        np.testing.assert_allclose(result["mirrored"][key], result["single"][key], rtol=1e-4)
    mirrored = np.load(tmp_path / "mirrored_gradients.npz")
    single = np.load(tmp_path / "single_gradients.npz")
    assert sorted(mirrored.files) == sorted(single.files) and len(single.files) >= 40
    scale = max(float(np.max(np.abs(single[name]))) for name in single.files)
    for name in single.files:
        # Element by element, to rounding of the step's largest gradient (measured: 1e-7 of it).
        np.testing.assert_allclose(mirrored[name], single[name], atol=1e-5 * scale, err_msg=name)
        # Each variable as a whole, to 10 % of its own gradient (measured: up to 3 %, the mask
        # network's, whose gradients are 1e-5 of the largest): a wrong reduction (summed instead of
        # averaged, one replica's gradient lost) is off by 50-100 %.
        diff = np.linalg.norm(mirrored[name] - single[name])
        assert diff <= 0.1 * np.linalg.norm(single[name]), (name, diff)


@pytest.fixture
def smoke_gin():
    def parse(*bindings):
        gin.clear_config()
        training.parse_gin_config(["smoke.gin"], [*EAGER, *bindings])

    yield parse
    gin.clear_config()


def _restored_weights(prefix):
    """{layer attribute: {variable path: value}} of a model (current gin config) restored from
    `prefix`. Restoring through the object graph matters: a checkpoint stores each variable once,
    under its shortest path, which for trained variables can be the optimizer's, not `model/...`."""
    from lvst_tf import models

    with gin.config_scope(None):
        model = models.build_model()
    loading.restore_checkpoint(model, prefix)
    layers = {"mask_net": model.mask_net, "encoder": model.encoder, "head": model.head}
    return {k: {w.path: w.numpy() for w in layer.weights} for k, layer in layers.items()}


def test_phase2_freezes_mask_net_and_vgg(tmp_path, smoke_gin):
    phase1, phase2 = tmp_path / "mask_pretrain", tmp_path / "end2end"
    smoke_gin(
        "train.num_steps = 1",
        "train.trainable = 'mask_net'",
        "compute_losses.content_weight = 0.0",
        "compute_losses.style_weight = 0.0",
        "compute_losses.laplacian_weight = 0.0",
        "compute_losses.temporal_weight = 0.0",
    )
    result = training.train(str(phase1))
    assert set(k for k in result if k in losses.TERMS) == {"mask"}
    smoke_gin("train.num_steps = 2", "train.trainable = 'all_but_mask_net'")
    training.train(str(phase2), init_checkpoint=str(phase1))
    w1 = _restored_weights(checkpoints.resolve_checkpoint(str(phase1)))
    w2 = _restored_weights(checkpoints.resolve_checkpoint(str(phase2)))
    for layer in ("mask_net", "encoder"):
        # mask net: restored from phase 1, then unchanged by two phase-2 steps; VGG: frozen in both
        # phases (same seeded initialisation).
        assert w1[layer] and w1[layer].keys() == w2[layer].keys()
        for name in w1[layer]:
            np.testing.assert_array_equal(w1[layer][name], w2[layer][name], err_msg=name)
    # The rest did train: phase 1 left the grid head at its (seeded) initialisation, phase 2 moved it.
    assert any(not np.array_equal(w1["head"][n], w2["head"][n]) for n in w1["head"])


def test_non_finite_loss_stops_and_keeps_the_last_checkpoint(tmp_path, smoke_gin, monkeypatch):
    smoke_gin("train.num_steps = 5", "train.checkpoint_every = 1")
    calls = {"n": 0}
    real = losses.compute_losses

    def poisoned(model, batch, outputs):
        total, terms = real(model, batch, outputs)
        calls["n"] += 1
        if calls["n"] >= 3:  # the third training step
            terms = dict(terms, style=terms["style"] * np.nan)
            total = total + terms["style"]
        return total, terms

    monkeypatch.setattr(losses, "compute_losses", poisoned)
    with pytest.raises(training.NonFiniteLossError, match=r"Non-finite style .* at step 3"):
        training.train(str(tmp_path / "run"))
    assert _latest_step(tmp_path / "run") == 2


def test_short_run_improves_style(tmp_path, smoke_gin):
    """150 steps at 64x64 on the samples: the style loss drops and the output's masked colour
    statistics move toward each region's style."""
    smoke_gin(
        "build_model.low_res = 64",
        "make_train_dataset.crop_size = 64",
        "make_train_dataset.batch_size = 1",
        "train.run_eagerly = False",
        "train.num_steps = 150",
        "train.learning_rate = 1e-3",
        "train.checkpoint_every = 150",
        "train.log_every = 50",
        "train.summary_every = 50",
        "compute_losses.temporal_mode = 'frame_difference'",
    )
    from lvst_tf import data, models

    workdir = tmp_path / "run"
    source = data.DavisFolder(str(data.samples_root() / "davis"), split="val")
    batches = list(data.make_train_dataset(source, seed=99, with_flow=False).take(3))
    with gin.config_scope(None):
        model = models.build_model()

    def measure():
        style, colour = [], []
        for batch in batches:
            inputs = {k: batch[v] for k, v in (("frames", "frames"), ("masks", "noisy_masks"))}
            inputs["styles"] = batch["styles"]
            outputs = model(inputs, training=False)
            _, terms = losses.compute_losses(model, batch, outputs)
            style.append(float(terms["style"]))
            regions = losses.region_masks_from_objects(batch["clean_masks"]).numpy()
            out = np.clip(outputs["output"].numpy(), 0, 1)
            styles = batch["styles"].numpy()
            for k in range(regions.shape[-1]):
                w = regions[..., k : k + 1]
                if w.mean() < 0.05:
                    continue
                mean = (out * w).sum(axis=(1, 2, 3)) / w.sum(axis=(1, 2, 3))  # [B, 3]
                colour.append(np.abs(mean - styles[:, k].mean(axis=(1, 2))).mean())
        return np.mean(style), np.mean(colour)

    style_before, colour_before = measure()
    training.train(str(workdir))
    prefix = checkpoints.resolve_checkpoint(str(workdir))
    loading.restore_checkpoint(model, prefix)
    style_after, colour_after = measure()
    assert style_after < 0.8 * style_before, (style_before, style_after)
    assert colour_after < colour_before, (colour_before, colour_after)
