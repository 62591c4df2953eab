"""The quickstart's pipeline mode, end to end with --fast (smoke config, tiny sizes): train, export,
stylize through the SavedModel, evaluate. (Its default mode, the shipped model, runs in CI from a
non-editable install: .ci/run, with --quality.) Flag combinations that make no sense are refused
before any work."""

import os
import pathlib
import subprocess
import sys

import pytest

from lvst_tf import video_io

REPO = pathlib.Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_quickstart_fast_end_to_end(tmp_path):
    out = tmp_path / "qs"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run(
        [
            sys.executable, str(REPO / "tools" / "quickstart.py"), "--pipeline", "--fast",
            f"--output_dir={out}",
        ],
        capture_output=True, text=True, timeout=1200, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    # Trained on the smoke config, exported from that workdir, stylized through the SavedModel.
    assert (out / "workdir_fast" / "operative_config.gin").is_file()
    assert (out / "saved_model_fast" / "saved_model.pb").is_file()
    source = video_io.read_frames(REPO / "samples" / "videos" / "carphone.mp4")
    result = video_io.read_frames(out / "carphone_stylized.mp4")
    assert (len(result), result.size, result.fps) == (len(source), source.size, source.fps)
    preview = video_io.read_image(out / "carphone_stylized_preview.png")
    assert preview.shape == (source.height, 3 * source.width, 3)
    eval_files = [p.name for p in (out / "eval").rglob("*") if p.is_file()]
    assert any(name.endswith(".md") for name in eval_files), eval_files
    assert any(name.endswith(".csv") for name in eval_files), eval_files
    # Every printed output path exists.
    assert str(out / "carphone_stylized.mp4") in proc.stdout


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--quality", "--pipeline"], "--quality applies only without --pipeline"),
        (["--fast"], "--fast and --skip_train apply only with --pipeline"),
    ],
)
def test_flag_combinations_refused_before_any_work(tmp_path, flags, message):
    out = tmp_path / "qs"
    proc = subprocess.run(
        [sys.executable, str(REPO / "tools" / "quickstart.py"), *flags, f"--output_dir={out}"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode != 0
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not out.exists()
