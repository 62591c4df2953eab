"""A script that iterates the training dataset and exits must exit cleanly (code 0, promptly).

Before the fix, an iterator still alive at interpreter exit was destroyed during finalization while
element builds were in flight: the process hung forever (without flow) or aborted with "terminate
called without an active exception" (exit 134, with flow), in most runs. `lvst_tf.data.pipeline`
now closes its pipelines in an `atexit` hook, before finalization.
"""

import os
import pathlib
import subprocess
import sys
import textwrap

import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]

# Iterators held by module globals (alive at exit), several batches consumed, elements in flight.
_SCRIPT = """
import sys
from lvst_tf import data
source = data.DavisFolder(str(data.sample_davis_dir()), split="train")
kept = []
for with_flow in (True, False):
    ds = data.make_train_dataset(
        source, batch_size=2, clip_length=3, crop_size=96, seed=0, with_flow=with_flow
    )
    it = iter(ds)
    for _ in range(3):
        batch = next(it)
    kept.append(it)
print("ITERATED", flush=True)
"""


def _env():
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


@pytest.mark.parametrize("attempt", [0, 1])
def test_script_iterating_the_dataset_exits_cleanly(tmp_path, attempt):
    del attempt  # two runs: the failure this guards against was a race (most runs, not all)
    script = tmp_path / "iterate.py"
    script.write_text(textwrap.dedent(_SCRIPT))
    proc = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=240,  # a hang fails here (TimeoutExpired) instead of blocking the suite
    )
    assert "ITERATED" in proc.stdout, proc.stderr[-3000:]
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-3000:])
    assert "terminate called" not in proc.stderr


def test_closed_pipeline_fails_its_next_element_and_goes_idle():
    import tensorflow as tf

    from lvst_tf import data
    from lvst_tf.data import pipeline

    source = data.DavisFolder(str(data.sample_davis_dir()), split="train")
    with pipeline.recording_pipelines() as created:
        ds = data.make_train_dataset(
            source, batch_size=1, clip_length=2, crop_size=32, seed=3, with_flow=False, prefetch=1
        )
    assert len(created) == 1
    first = next(iter(ds))
    assert first["frames"].shape == (1, 2, 32, 32, 3)
    assert pipeline.close_pipelines(created, timeout=60)
    running, _ = created[0].state()
    assert running == 0
    with pytest.raises(tf.errors.OpError, match="pipeline was closed"):
        next(iter(ds))  # a new iterator of a closed pipeline builds nothing


def test_shards_together_are_the_global_batches():
    """Two input pipelines (two workers) see exactly the elements of one pipeline's global batch."""
    from lvst_tf import data

    source = data.DavisFolder(str(data.sample_davis_dir()), split="train")
    kwargs = dict(batch_size=4, clip_length=2, crop_size=32, seed=5, with_flow=False, start_step=2)
    whole = next(iter(data.make_train_dataset(source, **kwargs)))
    parts = [next(iter(data.make_train_dataset(source, shard=(i, 2), **kwargs))) for i in range(2)]
    for key in whole:
        np.testing.assert_array_equal(
            np.concatenate([p[key].numpy() for p in parts]), whole[key].numpy(), err_msg=key
        )
    # One pipeline, two replicas: consecutive per-replica batches make up the global batch.
    it = iter(data.make_train_dataset(source, shard=(0, 1, 2), **kwargs))
    halves = [next(it) for _ in range(2)]
    for key in whole:
        np.testing.assert_array_equal(
            np.concatenate([h[key].numpy() for h in halves]), whole[key].numpy(), err_msg=key
        )
    with pytest.raises(ValueError, match="shard"):
        data.make_train_dataset(source, shard=(0, 3), **kwargs)  # 4 clips do not split in 3
