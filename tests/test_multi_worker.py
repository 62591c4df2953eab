"""MultiWorkerMirroredStrategy for real: two worker processes on 127.0.0.1 train the smoke config.

Two `tools/train.py --strategy=multi_worker` processes (TF_CONFIG: two workers, each one CPU
replica) train two steps of gin/smoke.gin with a global batch of 2 clips (each worker's input
pipeline builds its own clip of every global batch). Then:
- the applied gradients (Adam's first moments) equal those of a single-worker run on the same
  global batches (same config, default strategy), up to float rounding;
- the checkpoint the chief wrote resumes on one worker (default strategy) and trains on.
"""

import os
import pathlib
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

pytestmark = pytest.mark.slow

REPO = pathlib.Path(__file__).resolve().parents[1]
BINDINGS = [
    "train.num_steps = 2",
    "train.checkpoint_every = 2",
    "train.run_eagerly = True",  # tracing costs more than two eager steps here
    "train.eval_every = 0",
    "train.image_summary_every = 0",
    "make_train_dataset.batch_size = 2",  # the global batch: one clip per worker
]


def _free_ports(count):
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _cmd(workdir, *extra):
    cmd = [sys.executable, "tools/train.py", "--gin_file=smoke.gin", f"--workdir={workdir}"]
    return cmd + [f"--gin_bindings={b}" for b in BINDINGS] + list(extra)


def _env(**extra):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.pop("TF_CONFIG", None)
    env.update(extra)
    return env


def _run_workers(workdir, log_dir, timeout=1500):
    """Starts both workers, waits for both; kills the other if one fails (it would wait forever
    in a collective). Returns the return codes."""
    ports = _free_ports(2)
    cluster = ", ".join(f'"127.0.0.1:{p}"' for p in ports)
    procs, logs = [], []
    try:
        for index in range(2):
            tf_config = (
                f'{{"cluster": {{"worker": [{cluster}]}}, '
                f'"task": {{"type": "worker", "index": {index}}}}}'
            )
            log = open(log_dir / f"worker{index}.log", "w")  # noqa: SIM115 - closed below
            logs.append(log)
            procs.append(
                subprocess.Popen(
                    _cmd(workdir, "--strategy=multi_worker"),
                    cwd=REPO,
                    env=_env(TF_CONFIG=tf_config),
                    stdout=log,
                    stderr=log,
                )
            )
        deadline = time.time() + timeout
        while time.time() < deadline and any(p.poll() is None for p in procs):
            if any(p.poll() not in (None, 0) for p in procs):
                break  # one failed: the other cannot finish alone
            time.sleep(0.5)
        return [p.poll() for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        for log in logs:
            log.close()


def _weights(workdir):
    from lvst_tf import loading

    return loading.trained_weights(loading.load_from_workdir(workdir))


def _first_moments(workdir):
    """Adam's first moment of every trained variable, in the optimizer's order, from the run's
    latest checkpoint. Keras 3's Adam tracks `_variables` = [iterations, learning_rate, then
    (momentum, velocity) per trained variable]; the shapes are checked against the variables."""
    import tensorflow as tf

    from lvst_tf.training import checkpoints

    reader = tf.train.load_checkpoint(checkpoints.resolve_checkpoint(str(workdir)))
    shapes = reader.get_variable_to_shape_map()

    def key(kind, index):
        return f"optimizer/{kind}/{index}/.ATTRIBUTES/VARIABLE_VALUE"

    count = sum(k.startswith("optimizer/_trainable_variables/") for k in shapes)
    moments = []
    for i in range(count):
        momentum, velocity = key("_variables", 2 + 2 * i), key("_variables", 3 + 2 * i)
        assert shapes[momentum] == shapes[velocity] == shapes[key("_trainable_variables", i)], i
        moments.append(reader.get_tensor(momentum))
    assert key("_variables", 2 + 2 * count) not in shapes
    return moments


def _initial_weights(workdir):
    from lvst_tf import loading

    model = loading.build_model_from_config(workdir / "operative_config.gin")
    loading.build_variables(model)
    return loading.trained_weights(model)


def test_two_workers_match_one_worker_and_resume_on_one(tmp_path):
    multi, single = tmp_path / "multi", tmp_path / "single"
    codes = _run_workers(multi, tmp_path)
    logs = {i: (tmp_path / f"worker{i}.log").read_text() for i in range(2)}
    assert codes == [0, 0], (codes, logs[0][-3000:], logs[1][-3000:])
    for log in logs.values():
        assert "global batch 2 on 2 replica(s)" in log
        assert "step 2/2" in log
    # Only the chief's checkpoint is kept; the other worker's temporary save is gone.
    assert sorted(p.name for p in (multi / "checkpoints").glob("ckpt-*.index")) == ["ckpt-2.index"]
    assert not list((multi / "tmp_workers").glob("worker_1/*"))

    proc = subprocess.run(_cmd(single), cwd=REPO, env=_env(), capture_output=True, text=True,
                          timeout=1500)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "global batch 2 on 1 replica(s)" in proc.stderr

    # The same applied gradients, seen in Adam's first moments after the two steps. (Not the
    # weights: Adam's update is about learning_rate * sign(gradient) per element, which flips for
    # gradients at the rounding level; see test_mirrored_two_cpu_replicas_match_single_device.)
    m_multi, m_single = _first_moments(multi), _first_moments(single)
    assert len(m_single) >= 40
    scale = max(float(np.max(np.abs(m))) for m in m_single)
    for i, (got, want) in enumerate(zip(m_multi, m_single)):
        np.testing.assert_allclose(got, want, atol=1e-5 * scale, err_msg=f"variable {i}")
        assert np.linalg.norm(got - want) <= 0.1 * np.linalg.norm(want), i
    # Not trivially equal: the two steps moved the weights away from the (seeded) initial ones.
    w_single = _weights(single)
    initial = _initial_weights(single)
    assert sum(not np.allclose(w_single[n], initial[n]) for n in initial) >= 10
    # The chief's checkpoint resumes on one worker (the default strategy) and trains on.
    proc = subprocess.run(
        _cmd(multi, "--gin_bindings=train.num_steps = 3"),
        cwd=REPO,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=1500,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "(step 2)" in proc.stderr and "step 3/3" in proc.stderr
    from lvst_tf.training import checkpoints

    assert checkpoints.latest_step(multi) == 3
