"""Smoke test of tools/bench_ops.py at a tiny size, so the benchmark does not rot."""

import os
import pathlib
import subprocess
import sys

import pytest

BENCH = pathlib.Path(__file__).resolve().parents[1] / "tools" / "bench_ops.py"


@pytest.mark.slow  # two fresh TensorFlow processes (~20-60 s on a loaded 2-core machine)
def test_bench_ops_runs_at_tiny_size():
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--sizes", "17x23", "--repeats", "1"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert any(line.startswith("| H x W | ours / floor") for line in lines), proc.stdout
    row = next(line for line in lines if line.startswith("| 17 x 23 |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1].endswith("x") and float(cells[3]) > 0 and float(cells[6]) >= 0
    if "torch not installed" not in proc.stdout:
        # grid_sample computes the same slice: the two must agree.
        diff = float(proc.stdout.rsplit(":", 1)[1])
        assert diff < 1e-4


def test_bench_ops_rejects_bad_size():
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--sizes", "12by3"], capture_output=True, text=True
    )
    assert proc.returncode == 2 and "HxW" in proc.stderr
