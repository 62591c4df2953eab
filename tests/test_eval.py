"""tools/eval.py and lvst_tf.evaluation: timing and quality tables on tiny sizes."""

import csv
import os
import pathlib
import subprocess
import sys

import cv2
import numpy as np
import pytest

from lvst_tf import evaluation

REPO = pathlib.Path(__file__).resolve().parents[1]


# --- fixtures ---------------------------------------------------------------------------------------


def make_workdir(path: pathlib.Path, low_res: int = 32) -> pathlib.Path:
    """A training-workdir stand-in: operative config + `tf.train.Checkpoint(model=model)`."""
    import tensorflow as tf

    import gin
    from lvst_tf import models

    path.mkdir(parents=True, exist_ok=True)
    gin.clear_config()
    try:
        gin.parse_config(["build_model.vgg_weights = None", f"build_model.low_res = {low_res}"])
        model = models.build_model()
        (path / "operative_config.gin").write_text(gin.operative_config_str())
    finally:
        gin.clear_config()
    # One call of every inference piece creates all variables before saving.
    frames = tf.zeros([1, low_res, low_res, 3])
    stats = model.encode_styles(tf.zeros([2, low_res, low_res, 3]))
    out = model.predict_grids(frames, tf.zeros([1, low_res, low_res, 1]), stats)
    model.render(out["grids"], frames)
    tf.train.Checkpoint(model=model).save(str(path / "checkpoints" / "ckpt"))
    return path


def make_davis(root: pathlib.Path, names=("clip_a", "clip_b"), num_frames=4, size=(48, 64)):
    """A DAVIS-layout folder: a translating texture and a moving rectangle mask per sequence."""
    from lvst_tf.data import image_io

    h, w = size
    rng = np.random.default_rng(0)
    for name in names:
        big = cv2.GaussianBlur(rng.random((h + 30, w + 30, 3)).astype(np.float32), (0, 0), 3)
        big = (big - big.min()) / (big.max() - big.min())
        for t in range(num_frames):
            image = (big[t : t + h, 2 * t : 2 * t + w] * 255).astype(np.uint8)
            image_io.write_image(root / "JPEGImages" / "480p" / name / f"{t:05d}.jpg", image)
            ids = np.zeros((h, w), np.uint8)
            ids[10 + t : 30 + t, 15:40] = 1
            image_io.write_palette_png(root / "Annotations" / "480p" / name / f"{t:05d}.png", ids)
    (root / "ImageSets" / "2017").mkdir(parents=True, exist_ok=True)
    (root / "ImageSets" / "2017" / "val.txt").write_text("\n".join(names) + "\n")
    return root


def make_styles(folder: pathlib.Path):
    from lvst_tf.data import image_io

    rng = np.random.default_rng(1)
    paths = []
    for name, colour in (("orange", (0.9, 0.5, 0.2)), ("blue", (0.2, 0.4, 0.9))):
        image = np.clip(rng.random((40, 50, 3)) * 0.3 + np.array(colour) * 0.7, 0, 1)
        paths.append(folder / f"{name}.jpg")
        image_io.write_image(paths[-1], (image * 255).astype(np.uint8))
    return paths


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval_assets")
    workdir = make_workdir(root / "workdir")
    davis = make_davis(root / "davis")
    styles = make_styles(root / "styles")
    loaded = evaluation.load_model(workdir=str(workdir))
    return {"root": root, "workdir": workdir, "davis": davis, "styles": styles, "loaded": loaded}


# --- flags ------------------------------------------------------------------------------------------


def test_parse_flag_lists():
    assert evaluation.parse_resolutions("512x512, 3000x4000") == [(512, 512), (3000, 4000)]
    assert evaluation.parse_int_list("1,8") == [1, 8]
    for bad in ("512", "512x", "0x5", "5x5,,"):
        with pytest.raises(ValueError, match="HxW"):
            evaluation.parse_resolutions(bad)
    for bad in ("0", "1,a", ""):
        with pytest.raises(ValueError, match="integers >= 1"):
            evaluation.parse_int_list(bad)


def test_load_model_needs_exactly_one_source(tmp_path):
    with pytest.raises(ValueError, match="exactly one"):
        evaluation.load_model()
    with pytest.raises(ValueError, match="exactly one"):
        evaluation.load_model(saved_model="a", workdir="b")
    with pytest.raises(ValueError, match="workdir"):
        evaluation.load_model(workdir=str(tmp_path))


# --- timing -----------------------------------------------------------------------------------------


class _FakeModel:
    """Model stand-in whose render runs out of memory above a pixel budget."""

    low_res = 16
    grid_shape = (1, 1, 8)

    def __init__(self, max_pixels):
        self.max_pixels = max_pixels

    def encode_styles(self, styles):
        import tensorflow as tf

        return {"mean_0": tf.zeros([1, 2, 4]), "std_0": tf.ones([1, 2, 4])}

    def predict_grids(self, frames, masks, style_stats, state=None):
        import tensorflow as tf

        return {"grids": tf.zeros([1, 1, 1, 8, 12]), "state_0": tf.zeros([1, 4])}

    def render(self, grids, frames):
        import tensorflow as tf

        if frames.shape[1] * frames.shape[2] > self.max_pixels:
            raise tf.errors.ResourceExhaustedError(None, None, "OOM when allocating tensor")
        return frames


def test_timing_table_layout_and_oom(tmp_path, monkeypatch):
    loaded = evaluation.LoadedModel(_FakeModel(max_pixels=40 * 40), "saved_model", "fake")
    resolutions = [(16, 16), (32, 48), (64, 64)]
    result, markdown = evaluation.run_timing(
        loaded, resolutions, [1, 8], output_dir=tmp_path, repeats=1
    )
    assert result.render[(64, 64)] is None and result.seconds_per_frame(1, (64, 64)) is None
    for hw in resolutions[:2]:
        for r in (1, 8):
            expected = result.predict[hw] / r + result.render[hw]
            assert result.seconds_per_frame(r, hw) == pytest.approx(expected)
    # Table 2 layout: one row per r, one column per resolution, OOM where memory ran out.
    assert "| r | 16x16 | 32x48 | 64x64 |" in markdown
    row_r8 = next(line for line in markdown.splitlines() if line.startswith("| r = 8 |"))
    assert row_r8.endswith("| OOM |")
    assert "TensorFlow" in markdown and "device:" in markdown
    assert "NOT measured here" in markdown and "| Ours (paper), r = 8 | 0.0048 |" in markdown
    rows = list(csv.DictReader((tmp_path / "timing.csv").open()))
    assert len(rows) == 6
    assert {(r["r"], r["resolution"], r["status"]) for r in rows if r["status"] == "OOM"} == {
        ("1", "64x64", "OOM"),
        ("8", "64x64", "OOM"),
    }
    assert (tmp_path / "timing.md").read_text() == markdown
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary files left
    # A size whose estimated memory exceeds the available memory is skipped and reported as OOM.
    monkeypatch.setattr(evaluation, "_available_memory_bytes", lambda: 10_000)
    result = evaluation.time_model(loaded, [(64, 64)], [1], repeats=1)
    assert result.render[(64, 64)] is None and "skipped" in result.notes[(64, 64)]


def test_timing_on_a_tiny_workdir(assets, tmp_path):
    result, markdown = evaluation.run_timing(
        assets["loaded"], [(64, 64), (96, 128)], [1, 4], output_dir=tmp_path, repeats=1
    )
    for hw in [(64, 64), (96, 128)]:
        assert result.predict[hw] > 0 and result.render[hw] > 0
        assert result.seconds_per_frame(4, hw) < result.seconds_per_frame(1, hw)
    assert "low_res 32" in markdown
    assert len(list(csv.DictReader((tmp_path / "timing.csv").open()))) == 4


# --- quality ----------------------------------------------------------------------------------------


def test_quality_on_a_tiny_davis_folder(assets, tmp_path):
    videos = evaluation.load_videos(assets["davis"], "val", max_frames=3)
    assert [v.name for v in videos] == ["clip_a", "clip_b"]
    assert videos[0].frames.shape == (3, 48, 64, 3) and videos[0].masks.shape == (3, 48, 64, 1)
    names, styles = evaluation.load_styles(assets["styles"])
    rows, markdown = evaluation.run_quality(
        assets["loaded"], videos, styles, rs=[1, 2], output_dir=tmp_path, style_names=names
    )
    methods = ["input (identity)", "Reinhard per region", "ours r = 1", "ours r = 2"]
    assert [r["method"] for r in rows if r["video"] == "MEAN"] == methods
    by = {(r["video"], r["method"]): r for r in rows}
    for video in ("clip_a", "clip_b"):
        identity = by[(video, "input (identity)")]
        # The input is its own floor, keeps every edge and leaks nothing.
        assert identity["warp_error"] == pytest.approx(identity["warp_error_input"])
        assert identity["grad_ssim"] == pytest.approx(1.0)
        assert abs(identity["leak_mean"]) < 1e-4
        reinhard = by[(video, "Reinhard per region")]
        assert reinhard["style_lab_fg"] < 1.0 and reinhard["style_lab_bg"] < 1.0
        assert reinhard["style_lab_fg"] < identity["style_lab_fg"]
        for method in methods:
            assert np.isfinite([by[(video, method)][c] for c in evaluation.QUALITY_COLUMNS]).all()
    mean = by[("MEAN", "ours r = 1")]
    assert mean["warp_error"] == pytest.approx(
        np.mean([by[(v, "ours r = 1")]["warp_error"] for v in ("clip_a", "clip_b")])
    )
    # Files: CSV (per video + mean), markdown, contact sheet (2 video rows x 4 columns).
    csv_rows = list(csv.DictReader((tmp_path / "quality.csv").open()))
    assert len(csv_rows) == 12 and set(evaluation.QUALITY_COLUMNS) <= set(csv_rows[0])
    assert "### Mean over videos" in (tmp_path / "quality.md").read_text()
    assert "VGG style distance: not computed" in markdown
    sheet = cv2.imread(str(tmp_path / "contact_sheet.png"))
    assert sheet is not None and sheet.shape[1] > 4 * 160 * 64 / 48 and sheet.shape[0] > 2 * 160


def test_quality_arguments_are_checked(assets, tmp_path):
    videos = evaluation.load_videos(assets["davis"], "val", max_frames=2, max_videos=1)
    assert len(videos) == 1 and len(videos[0].frames) == 2
    _, styles = evaluation.load_styles(assets["styles"])
    with pytest.raises(ValueError, match="two images"):
        evaluation.run_quality(None, videos, styles * 2)
    with pytest.raises(ValueError, match="max_frames"):
        evaluation.load_videos(assets["davis"], "val", max_frames=1)
    with pytest.raises(ValueError, match="split"):
        evaluation.load_videos(assets["davis"], "nope")
    with pytest.raises(ValueError, match="data"):
        evaluation.load_videos(tmp_path / "missing")
    with pytest.raises(ValueError, match="at least two"):
        evaluation.load_styles(assets["styles"][:1])
    with pytest.raises(ValueError, match="rs must be"):
        evaluation.run_quality(None, videos, styles, rs=[0])
    with pytest.raises(ValueError, match="resolutions"):
        evaluation.time_model(assets["loaded"], [(0, 5)], [1])


def test_quality_on_the_shipped_samples(assets):
    from lvst_tf import data

    if not (data.sample_davis_dir() / "ImageSets").is_dir():
        pytest.skip("samples/davis not built (tools/make_samples.py)")
    videos = evaluation.load_videos(None, "val", max_frames=3, max_videos=2)
    names, styles = evaluation.load_styles(None)
    rows, _ = evaluation.run_quality(assets["loaded"], videos, styles, rs=[2], style_names=names)
    identity = [r for r in rows if r["method"] == "input (identity)" and r["video"] != "MEAN"]
    assert len(identity) == len(videos)
    assert all(r["warp_error"] == pytest.approx(r["warp_error_input"]) for r in identity)


# --- the binary -------------------------------------------------------------------------------------


def _run_eval(args, cwd):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    return subprocess.run(
        [sys.executable, str(REPO / "tools" / "eval.py"), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_eval_binary_rejects_bad_flags(tmp_path):
    proc = _run_eval(["--mode=timing", "--resolutions=512"], tmp_path)
    assert proc.returncode != 0 and "--resolutions must be a comma list" in proc.stderr
    proc = _run_eval(["--mode=timing", "--resolutions=64x64"], tmp_path)
    assert proc.returncode != 0 and "exactly one of --saved_model or --workdir" in proc.stderr


@pytest.mark.slow
def test_eval_binary_timing_with_a_saved_model(assets, tmp_path):
    from lvst_tf import export

    saved = export.export_saved_model(assets["loaded"].model, tmp_path / "saved")
    out = tmp_path / "out"
    proc = _run_eval(
        [
            f"--saved_model={saved}",
            "--mode=timing",
            "--resolutions=64x64,96x128",
            "--r=1,4",
            "--repeats=1",
            f"--output_dir={out}",
        ],
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| r = 4 |" in proc.stdout and "saved_model" in proc.stdout
    rows = list(csv.DictReader((out / "timing.csv").open()))
    assert len(rows) == 4 and all(float(r["seconds_per_frame"]) > 0 for r in rows)


@pytest.mark.slow
def test_eval_binary_quality_with_a_workdir_on_the_samples(assets, tmp_path):
    from lvst_tf import data

    if not (data.sample_davis_dir() / "ImageSets").is_dir():
        pytest.skip("samples/davis not built (tools/make_samples.py)")
    out = tmp_path / "out"
    # Default data (the shipped samples) and default styles.
    proc = _run_eval(
        [
            f"--workdir={assets['workdir']}",
            "--mode=quality",
            "--max_frames=3",
            "--max_videos=1",
            "--r=1,4",
            f"--output_dir={out}",
        ],
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "ours r = 4" in proc.stdout and "FallenLeaf" in proc.stdout
    for name in ("quality.csv", "quality.md", "contact_sheet.png"):
        assert (out / name).is_file()
    assert not [p for p in out.iterdir() if p.name.startswith(".")]
