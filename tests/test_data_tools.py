"""Smoke tests of the data tools: make_masks (threshold path; selfie path when the model is there)
and bench_data."""

import pathlib
import subprocess
import sys

import numpy as np
import pytest

from lvst_tf import data, segmentation
from lvst_tf.data import image_io

_TOOLS = pathlib.Path(__file__).resolve().parents[1] / "tools"


def _run(tool, *args):
    result = subprocess.run(
        [sys.executable, str(_TOOLS / tool), *args], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def test_make_masks_threshold_on_a_frame_folder(tmp_path):
    frames = tmp_path / "clip"
    for t in range(3):
        image = np.full((40, 50, 3), 230, np.uint8)
        image[10:30, 5 + 5 * t : 25 + 5 * t] = 10
        image_io.write_image(frames / f"{t:03d}.png", image)
    out = _run(
        "make_masks.py", f"--input={frames}", "--method=threshold", "--threshold_spec=hsv:v<110"
    )
    assert "3 masks written" in out
    masks = sorted((tmp_path / "clip_masks").glob("*.png"))
    assert [p.name for p in masks] == ["00000.png", "00001.png", "00002.png"]
    for t, path in enumerate(masks):
        expected = np.zeros((40, 50), np.int32)
        expected[10:30, 5 + 5 * t : 25 + 5 * t] = 255
        np.testing.assert_array_equal(image_io.read_label_map(path), expected)
    # The result is a VideoFolder sequence; running again keeps what is there.
    assert data.VideoFolder(tmp_path)[0].instances.max() == 1
    written, kept = segmentation.write_mask_folder(
        frames, tmp_path / "clip_masks", lambda f: segmentation.threshold_mask(f, "hsv:v<110")
    )
    assert (written, kept) == (0, 3)


@pytest.mark.skipif(
    not segmentation.default_model_path().is_file(),
    reason="selfie model absent; run `python tools/fetch_selfie_model.py` (CI does)",
)
def test_selfie_masks_for_the_sample_video(tmp_path):
    video = data.samples_root() / "videos" / "carphone.mp4"
    segmenter = segmentation.SelfieSegmenter()
    written, kept = segmentation.write_mask_folder(video, tmp_path / "m", segmenter, progress=False)
    assert (written, kept) == (20, 0)
    masks = sorted((tmp_path / "m").glob("*.png"))
    shipped = data.samples_root() / "videos" / "carphone_masks"
    for t in (0, 19):
        ours = image_io.read_label_map(masks[t]) > 0
        theirs = image_io.read_label_map(shipped / f"{t:05d}.png") > 0
        assert (ours & theirs).sum() / (ours | theirs).sum() > 0.9


def test_make_masks_bad_flags(tmp_path):
    result = subprocess.run(
        [sys.executable, str(_TOOLS / "make_masks.py"), f"--input={tmp_path / 'nope.mp4'}"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode != 0 and "does not exist" in result.stderr


@pytest.mark.slow
def test_bench_data_prints_a_table():
    out = _run(
        "bench_data.py", "--batches=1", "--batch_size=1", "--crop_size=32", "--clip_length=2"
    )
    assert "clips/s" in out and out.count("| tf.data pipeline") == 2
