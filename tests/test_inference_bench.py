"""Smoke test of tools/bench_model.py at a tiny size in a subprocess (no timing is asserted)."""

import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_bench_model_smoke(tmp_path):
    output = tmp_path / "table.md"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "tools" / "bench_model.py"),
            "--sizes=40x56,33x47",
            "--repeats=1",
            "--low_res=64",
            "--end_to_end_frames=3",
            "--end_to_end_repeats=1",
            "--rss_frames=2",
            "--rss_size=24x40",
            "--rss_strip_pixels=300",  # 24x40 = 960 pixels: the worker renders in strips
            f"--output={output}",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = output.read_text()
    assert text in proc.stdout
    for needle in (
        "| | 40x56 | 33x47 |",
        "| r = 1 (predict + render) |",
        "| r = 8 (predict / 8 + render) |",
        "| bandwidth floor |",
        "| predict / plain VGG |",
        "| render in `stream` / floor |",
        "| unfused / fused render |",
        "| r = 1 / r = 8 speed-up (pieces) |",
        "End to end, `VideoStylizer.stream` at 40x56",
        "Peak RSS, `stream` of 2 uint8 frames of 24x40 at r = 8 (render_strip_pixels=300;",
        "load average",
    ):
        assert needle in text, needle
    assert not list(tmp_path.glob(".bench_model.*"))  # the atomic write left no temp file


@pytest.mark.parametrize(
    "flag, message",
    [
        ("--sizes=12by5", "--sizes takes HxW"),
        ("--rss_strip_pixels=0", "--rss_strip_pixels must be"),
    ],
)
def test_bench_model_rejects_bad_flags(tmp_path, flag, message):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "bench_model.py"), flag],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
        cwd=tmp_path,
    )
    assert proc.returncode != 0
    assert message in proc.stderr
