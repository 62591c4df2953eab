"""tools/eval.py and lvst_tf.evaluation: timing and quality tables (K = 2 and 3) on tiny sizes."""

import csv
import os
import pathlib
import subprocess
import sys

import cv2
import numpy as np
import pytest

from lvst_tf import evaluation, loading
from lvst_tf.evaluation import quality, report, timing

REPO = pathlib.Path(__file__).resolve().parents[1]


# --- fixtures ---------------------------------------------------------------------------------------


def make_workdir(path: pathlib.Path, low_res: int = 32, soft_mask_mode: str = "normalized"):
    """A training-workdir stand-in: operative config + a checkpoint of the trained parts."""
    import tensorflow as tf

    import gin
    from lvst_tf import models

    path.mkdir(parents=True, exist_ok=True)
    gin.clear_config()
    try:
        gin.parse_config(
            [
                "build_model.vgg_weights = None",
                f"build_model.low_res = {low_res}",
                f"build_model.soft_mask_mode = '{soft_mask_mode}'",
            ]
        )
        model = models.build_model()
        (path / "operative_config.gin").write_text(gin.operative_config_str())
    finally:
        gin.clear_config()
    loading.build_variables(model)
    # Random weights give near-identity outputs; larger head weights make the soft-mask mode matter.
    rng = np.random.default_rng(0)
    for w in model.head.weights:
        w.assign(rng.normal(0, 0.2, w.shape).astype(np.float32))
    tf.train.Checkpoint(model=loading.model_checkpoint(model)).save(
        str(path / "checkpoints" / "ckpt")
    )
    return path


def make_davis(root, names=("clip_a", "clip_b"), num_frames=4, size=(48, 64), two_objects=False):
    """A DAVIS-layout folder: a translating texture and one (or two) moving rectangles per clip."""
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
            if two_objects:
                ids[5:25, 45 - t : 60 - t] = 2
            image_io.write_palette_png(root / "Annotations" / "480p" / name / f"{t:05d}.png", ids)
    (root / "ImageSets" / "2017").mkdir(parents=True, exist_ok=True)
    (root / "ImageSets" / "2017" / "val.txt").write_text("\n".join(names) + "\n")
    return root


STYLE_COLOURS = {"orange": (0.9, 0.5, 0.2), "green": (0.3, 0.8, 0.3), "blue": (0.2, 0.4, 0.9)}


def make_styles(folder: pathlib.Path, names=("orange", "blue")):
    from lvst_tf.data import image_io

    rng = np.random.default_rng(1)
    paths = []
    for name in names:
        colour = STYLE_COLOURS[name]
        image = np.clip(rng.random((40, 50, 3)) * 0.3 + np.array(colour) * 0.7, 0, 1)
        paths.append(folder / f"{name}.jpg")
        image_io.write_image(paths[-1], (image * 255).astype(np.uint8))
    return paths


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval_assets")
    workdir = make_workdir(root / "workdir")
    return {
        "root": root,
        "workdir": workdir,
        "davis": make_davis(root / "davis"),
        "davis3": make_davis(root / "davis3", names=("two_a",), num_frames=3, two_objects=True),
        "styles": make_styles(root / "styles"),
        "styles3": make_styles(root / "styles3", ("orange", "green", "blue")),
        "loaded": loading.load_model(workdir=str(workdir)),
    }


@pytest.fixture(scope="module")
def paper_workdir(tmp_path_factory):
    return make_workdir(tmp_path_factory.mktemp("paper") / "workdir", soft_mask_mode="paper")


# --- flags ------------------------------------------------------------------------------------------


def test_parse_flag_lists():
    assert evaluation.parse_sizes("512x512, 3000X4000") == [(512, 512), (3000, 4000)]
    assert evaluation.parse_size("2x3") == (2, 3)
    assert evaluation.parse_int_list("1,8") == [1, 8]
    assert evaluation.parse_int_list("0,5", minimum=0) == [0, 5]
    for bad in ("512", "512x", "0x5", "5x5,,", "", "-1x4", "axb"):
        with pytest.raises(ValueError, match="HxW"):
            evaluation.parse_sizes(bad, "--resolutions")
    for bad in ("0", "1,a", "", "1,1"):
        with pytest.raises(ValueError, match="--r"):
            evaluation.parse_int_list(bad, "--r")


# --- timing -----------------------------------------------------------------------------------------


class _FakeModel:
    """Model stand-in whose render runs out of memory above a pixel budget."""

    low_res = 16
    grid_shape = (1, 1, 8)
    soft_mask_mode = "normalized"

    def __init__(self, max_pixels):
        self.max_pixels = max_pixels

    def encode_styles(self, styles):
        import tensorflow as tf

        return {"mean_0": tf.zeros([1, 2, 4]), "std_0": tf.ones([1, 2, 4])}

    def predict_grids(self, frames, masks, style_stats, state=None, soft_mask_mode=None):
        import tensorflow as tf

        assert soft_mask_mode == "normalized"
        return {"grids": tf.zeros([1, 1, 1, 8, 12]), "state_0": tf.zeros([1, 4])}

    def render(self, grids, frames):
        import tensorflow as tf

        if frames.shape[1] * frames.shape[2] > self.max_pixels:
            raise tf.errors.ResourceExhaustedError(None, None, "OOM when allocating tensor")
        return frames


def test_timing_table_layout_and_oom(tmp_path, monkeypatch):
    loaded = loading.LoadedModel(_FakeModel(max_pixels=40 * 40), "saved_model", "fake")
    resolutions = [(16, 16), (32, 48), (64, 64)]
    result, markdown = evaluation.run_timing(
        loaded, resolutions, [1, 8], output_dir=tmp_path, repeats=1
    )
    assert result.render[(64, 64)] is None and result.seconds_per_frame(1, (64, 64)) is None
    # Table 2 layout: one row per r, one column per resolution, OOM where memory ran out.
    assert "| r | 16x16 | 32x48 | 64x64 |" in markdown
    row_r8 = next(line for line in markdown.splitlines() if line.startswith("| r = 8 |"))
    assert row_r8.endswith("| OOM |")
    assert "TensorFlow" in markdown and "device:" in markdown
    assert "NOT measured here" in markdown and "| Ours (paper), r = 8 | 0.0048 |" in markdown
    rows = list(csv.DictReader((tmp_path / "timing.csv").open()))
    assert len(rows) == 6
    assert {(r["r"], r["resolution"]) for r in rows if r["status"] == "OOM"} == {
        ("1", "64x64"),
        ("8", "64x64"),
    }
    # The CSV holds the measured numbers: predict / r + render, as printed in the table.
    for row in rows:
        hw = tuple(int(v) for v in row["resolution"].split("x"))
        if row["status"] == "ok":
            p, q = result.predict[hw], result.render[hw]
            assert float(row["seconds_per_frame"]) == pytest.approx(p / int(row["r"]) + q, abs=1e-6)
    assert (tmp_path / "timing.md").read_text() == markdown
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary files left
    # A size whose estimated memory exceeds the available memory is skipped and reported as OOM.
    monkeypatch.setattr(timing, "available_memory_bytes", lambda: 10_000)
    result = evaluation.time_model(loaded, [(64, 64)], [1], repeats=1)
    assert result.render[(64, 64)] is None and "skipped" in result.notes[(64, 64)]


def _timed_pieces(loaded, size=(40, 56)):
    """What the timing measures, on one input: (grids of the steady-state predict, render)."""
    import tensorflow as tf

    predict, render = timing.timing_functions(loaded)
    rng = np.random.default_rng(3)
    frames = tf.constant(rng.random((1, *size, 3)), tf.float32)
    masks = tf.constant((rng.random((1, *size, 1)) > 0.5).astype(np.float32))
    stats = loaded.model.encode_styles(tf.constant(rng.random((2, 32, 32, 3)), tf.float32))
    first = predict(frames, masks, stats, None)
    state = {k: v for k, v in first.items() if k.startswith("state_")}
    grids = predict(frames, masks, stats, state)["grids"]
    return frames, masks, stats, state, np.asarray(grids), np.asarray(render(grids, frames))


def test_device_description_names_the_cpu_features_ratios_depend_on():
    import tensorflow as tf

    text = timing.device_description()
    if tf.config.list_physical_devices("GPU"):
        assert text.startswith("GPU: ")
        return
    assert text.startswith("CPU: ") and "cores available" in text
    with open("/proc/cpuinfo", encoding="utf-8") as f:
        avx512 = "avx512f" in f.read().split()
    assert f"AVX-512: {'yes' if avx512 else 'no'}" in text
    assert "oneDNN: on" in text or "oneDNN: off" in text


def test_timing_measures_the_model_in_its_own_soft_mask_mode(assets, paper_workdir, tmp_path):
    for loaded in (assets["loaded"], loading.load_model(workdir=str(paper_workdir))):
        mode = loaded.soft_mask_mode
        frames, masks, stats, state, grids, rendered = _timed_pieces(loaded)
        model = loaded.model
        expected = model.predict_grids(frames, masks, stats, state=state, soft_mask_mode=mode)
        # Traced against eager: float32 rounding only, relative to the grid values (up to ~30
        # here), which the render sums with the pixel values.
        scale = float(np.abs(expected["grids"]).max())
        np.testing.assert_allclose(grids, expected["grids"], atol=2e-6 * scale)
        np.testing.assert_allclose(
            rendered, model.render(expected["grids"], frames), atol=4e-6 * scale
        )
        other = "normalized" if mode == "paper" else "paper"
        wrong = model.predict_grids(frames, masks, stats, state=state, soft_mask_mode=other)
        assert np.abs(grids - np.asarray(wrong["grids"])).max() > 1e-4
    assert loading.load_model(workdir=str(paper_workdir)).soft_mask_mode == "paper"
    result, markdown = evaluation.run_timing(
        assets["loaded"], [(64, 64), (96, 128)], [1, 4], output_dir=tmp_path, repeats=1
    )
    assert all(result.predict[hw] > 0 and result.render[hw] > 0 for hw in result.resolutions)
    assert "low_res 32" in markdown and "soft mask normalized" in markdown


# --- regions ----------------------------------------------------------------------------------------


def test_instance_masks_rule():
    ids = np.array([[[0, 1, 2, 3], [3, 2, 0, 1]]], np.uint8)  # [T=1, 2, 4]
    k2 = quality.instance_masks(ids, 2)
    assert k2.shape == (1, 2, 4, 1)
    np.testing.assert_array_equal(k2[..., 0], ids > 0)  # K = 2: the union
    k3 = quality.instance_masks(ids, 3)
    np.testing.assert_array_equal(k3[..., 0], ids == 1)
    np.testing.assert_array_equal(k3[..., 1], ids >= 2)  # the last object takes the rest
    k4 = quality.instance_masks(ids, 4)
    np.testing.assert_array_equal(k4[..., 2], ids == 3)
    assert quality.instance_masks(ids, 5) is None  # three instances cannot make four objects
    assert quality.region_names(3) == ["obj1", "obj2", "bg"]
    columns = quality.quality_columns(3)
    assert len([c for c in columns if c.startswith("leak_") and "_into_" in c]) == 6
    assert "leak_obj2_into_bg" in columns and "style_lab_obj1" in columns


def test_colour_regions_and_frames_sheet():
    masks = np.zeros((3, 10, 12, 2), np.float32)
    masks[:, :5, :6, 0] = 1
    masks[:, 5:, 6:, 1] = 1
    painted = report.colour_regions(masks[0])
    colours = report.region_colours(3)
    np.testing.assert_array_equal(painted[0, 0], colours[0])
    np.testing.assert_array_equal(painted[9, 11], colours[1])
    np.testing.assert_array_equal(painted[0, 11], colours[2])  # background
    frames = np.zeros((3, 10, 12, 3), np.uint8)
    sheet = report.frames_sheet(frames, masks, {"ours": frames / 255.0}, [0, 2], tile_height=40)
    # Header + 2 rows of (label 18 + tile 40 + pad 4); 3 tiles of 48 px plus padding.
    assert sheet.shape == (24 + 2 * (18 + 40 + 4), 3 * (48 + 4), 3)
    with pytest.raises(ValueError, match="out of range"):
        report.frames_sheet(frames, masks, {}, [3])


# --- quality ----------------------------------------------------------------------------------------


def _lab_distance_reference(frames, region, style):
    """Independent Lab distance with OpenCV's conversion (a table approximation of the sRGB curve,
    so it agrees to a fraction of a unit): region `[T, H, W]` bool, mean over frames."""

    def lab(img):
        return cv2.cvtColor(img.astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab).astype(np.float64)

    s = lab(style).reshape(-1, 3)
    out = []
    for frame, mask in zip(frames, region):
        px = lab(frame)[mask]
        out.append(np.linalg.norm(px.mean(0) - s.mean(0)) + np.linalg.norm(px.std(0) - s.std(0)))
    return float(np.mean(out))


def test_quality_k2_on_a_tiny_davis_folder(assets, tmp_path):
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
    for video in videos:
        identity = by[(video.name, "input (identity)")]
        # The input is its own floor, keeps every edge and leaks nothing.
        assert identity["warp_error"] == pytest.approx(identity["warp_error_input"])
        assert identity["grad_ssim"] == pytest.approx(1.0)
        assert abs(identity["leak_mean"]) < 1e-4
        # Against an independent Lab computation (OpenCV) of the foreground and the background.
        fg = video.masks[..., 0] > 0.5
        assert identity["style_lab_fg"] == pytest.approx(
            _lab_distance_reference(video.frames, fg, styles[0]), rel=3e-3
        )
        assert identity["style_lab_bg"] == pytest.approx(
            _lab_distance_reference(video.frames, ~fg, styles[1]), rel=3e-3
        )
        reinhard = by[(video.name, "Reinhard per region")]
        assert reinhard["style_lab_fg"] < 1.0 and reinhard["style_lab_bg"] < 1.0
        for method in methods:
            assert np.isfinite([by[(video.name, method)][c] for c in quality.QUALITY_COLUMNS]).all()
    mean = by[("MEAN", "ours r = 1")]
    assert mean["warp_error"] == pytest.approx(
        np.mean([by[(v.name, "ours r = 1")]["warp_error"] for v in videos])
    )
    csv_rows = list(csv.DictReader((tmp_path / "quality.csv").open()))
    assert len(csv_rows) == 12 and set(quality.QUALITY_COLUMNS) <= set(csv_rows[0])
    assert "### Mean over videos" in (tmp_path / "quality.md").read_text()
    assert "VGG style distance: not computed" in markdown
    sheet = cv2.imread(str(tmp_path / "contact_sheet.png"))
    assert sheet.shape[0] == 24 + 2 * (18 + 160 + 4)  # header + one row per video
    frames_sheet = cv2.imread(str(tmp_path / "sheets" / "clip_a.png"))
    assert frames_sheet.shape[0] == 24 + 3 * (18 + 200 + 4)  # first, middle, last frame


def test_quality_k3_regions_and_baselines_only(assets, tmp_path):
    # K = 3 needs two instances: the one-instance clips are skipped, the two-object clip is used.
    with pytest.raises(ValueError, match="instance"):
        evaluation.load_videos(assets["davis"], "val", regions=3)
    videos = evaluation.load_videos(assets["davis3"], "val", regions=3)
    assert len(videos) == 1 and videos[0].masks.shape == (3, 48, 64, 2)
    names, styles = evaluation.load_styles(assets["styles3"], regions=3)
    rows, markdown = evaluation.run_quality(
        None, videos, styles, output_dir=tmp_path, style_names=names, sheet_frames=[1]
    )
    assert [r["method"] for r in rows if r["video"] == "MEAN"] == [
        "input (identity)",
        "Reinhard per region",
    ]
    assert "none (baselines only)" in markdown and "obj1 orange, obj2 green, bg blue" in markdown
    by = {(r["video"], r["method"]): r for r in rows}
    identity, reinhard = by[("two_a", "input (identity)")], by[("two_a", "Reinhard per region")]
    video = videos[0]
    regions = [video.masks[..., 0] > 0.5, video.masks[..., 1] > 0.5]
    regions.append(~(regions[0] | regions[1]))
    for name, region, style in zip(("obj1", "obj2", "bg"), regions, styles):
        assert identity[f"style_lab_{name}"] == pytest.approx(
            _lab_distance_reference(video.frames, region, style), rel=3e-3
        )
        assert reinhard[f"style_lab_{name}"] < 1.5
    leaks = [c for c in quality.quality_columns(3) if "_into_" in c]
    assert all(abs(identity[c]) < 1e-4 for c in leaks)  # float32 round-off only
    # Reinhard puts each region on its own style: every region moves away from the others' styles.
    assert all(reinhard[c] < 0 for c in leaks)
    header = (tmp_path / "quality.csv").read_text().splitlines()[0].split(",")
    assert header[3:] == list(quality.quality_columns(3))
    sheet = cv2.imread(str(tmp_path / "sheets" / "two_a.png"))
    assert sheet.shape[0] == 24 + (18 + 200 + 4)  # one chosen frame
    with pytest.raises(ValueError, match="K = 3"):
        evaluation.run_quality(None, videos, styles[:2])


def test_quality_uses_the_models_soft_mask_mode(paper_workdir, assets):
    from lvst_tf.inference import VideoStylizer

    loaded = loading.load_model(workdir=str(paper_workdir))
    videos = evaluation.load_videos(assets["davis"], "val", max_frames=3, max_videos=1)
    _, styles = evaluation.load_styles(assets["styles"])
    rows, markdown = evaluation.run_quality(loaded, videos, styles, rs=[1])
    assert "soft mask paper" in markdown
    ours = next(r for r in rows if r["method"] == "ours r = 1" and r["video"] != "MEAN")
    video = videos[0]
    flow, valid = evaluation.quality.metrics.warping_flows(video.frames)
    floor = evaluation.quality.metrics.warping_error(video.frames, flow, valid)
    scores = {}
    for mode in ("paper", "normalized"):
        out = VideoStylizer(loaded.model, r=1, soft_mask_mode=mode).stylize(
            video.frames, video.masks, styles
        )
        scores[mode] = quality.evaluate_output(video, out, styles, flow, valid, floor)
    for column in quality.QUALITY_COLUMNS:
        assert ours[column] == pytest.approx(scores["paper"][column], rel=1e-5, abs=1e-7)
    assert abs(scores["paper"]["style_lab_fg"] - scores["normalized"]["style_lab_fg"]) > 1e-3


def test_quality_arguments_are_checked(assets, tmp_path):
    videos = evaluation.load_videos(assets["davis"], "val", max_frames=2, max_videos=1)
    assert len(videos) == 1 and len(videos[0].frames) == 2
    _, styles = evaluation.load_styles(assets["styles"])
    with pytest.raises(ValueError, match="K = 2"):
        evaluation.run_quality(None, videos, styles * 2)
    with pytest.raises(ValueError, match="max_frames"):
        evaluation.load_videos(assets["davis"], "val", max_frames=1)
    with pytest.raises(ValueError, match="split"):
        evaluation.load_videos(assets["davis"], "nope")
    with pytest.raises(ValueError, match="data"):
        evaluation.load_videos(tmp_path / "missing")
    with pytest.raises(ValueError, match="K = 2"):
        evaluation.load_styles(assets["styles"][:1])
    with pytest.raises(ValueError, match="styles"):
        evaluation.load_styles([tmp_path / "a.jpg", tmp_path / "b.jpg"])
    with pytest.raises(ValueError, match="rs must be"):
        evaluation.run_quality(None, videos, styles, rs=[0])
    with pytest.raises(ValueError, match="resolutions"):
        evaluation.time_model(assets["loaded"], [(0, 5)], [1])


def test_default_styles_from_a_data_folder(tmp_path, assets):
    folder = tmp_path / "data"
    paths = make_styles(folder / "styles", ("orange", "green", "blue"))
    # Without styles.txt: the first K-1 files (sorted) for the objects, the last for the background.
    assert quality.default_style_paths(2, folder) == [paths[2], paths[0]]  # blue, orange
    (folder / "styles.txt").write_text("styles/orange.jpg\nstyles/green.jpg\nstyles/blue.jpg\n")
    assert quality.default_style_paths(3, folder) == paths
    assert quality.default_style_paths(2, folder) == [paths[0], paths[2]]
    with pytest.raises(ValueError, match="K = 4"):
        quality.default_style_paths(4, folder)


def test_quality_on_the_shipped_samples(assets):
    from lvst_tf import data

    if not (data.sample_davis_dir() / "ImageSets").is_dir():
        pytest.skip("samples/davis not built (tools/make_samples.py)")
    videos = evaluation.load_videos(None, "val", max_frames=3, max_videos=2)
    names, styles = evaluation.load_styles(None)
    assert names == ["FallenLeaf", "DarkestHour"]
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


@pytest.mark.slow
def test_eval_binary_paper_mode_end_to_end(paper_workdir, assets, tmp_path):
    """Timing and quality of a paper-mode model through the binary: both in "paper" mode."""
    from lvst_tf.inference import VideoStylizer

    out = tmp_path / "out"
    proc = _run_eval(
        [
            f"--workdir={paper_workdir}",
            "--mode=quality",
            f"--data={assets['davis']}",
            f"--styles={','.join(map(str, assets['styles']))}",
            "--max_frames=3",
            "--max_videos=1",
            "--r=2",
            f"--output_dir={out}",
        ],
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "soft mask paper" in proc.stdout
    ours = next(
        r
        for r in csv.DictReader((out / "quality.csv").open())
        if r["method"] == "ours r = 2" and r["video"] == "clip_a"
    )
    loaded = loading.load_model(workdir=str(paper_workdir))
    video = evaluation.load_videos(assets["davis"], "val", max_frames=3, max_videos=1)[0]
    _, styles = evaluation.load_styles(assets["styles"])
    flow, valid = quality.metrics.warping_flows(video.frames)
    floor = quality.metrics.warping_error(video.frames, flow, valid)
    for mode, same in (("paper", True), ("normalized", False)):
        output = VideoStylizer(loaded.model, r=2, soft_mask_mode=mode).stylize(
            video.frames, video.masks, styles
        )
        expected = quality.evaluate_output(video, output, styles, flow, valid, floor)
        close = float(ours["style_lab_fg"]) == pytest.approx(expected["style_lab_fg"], rel=1e-4)
        assert close == same, (mode, ours["style_lab_fg"], expected["style_lab_fg"])
    proc = _run_eval(
        [
            f"--workdir={paper_workdir}",
            "--mode=timing",
            "--resolutions=48x64",
            "--r=1,4",
            "--repeats=1",
            f"--output_dir={out}",
        ],
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "soft mask paper" in proc.stdout and "| r = 4 |" in proc.stdout


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
def test_eval_binary_quality_k3_and_baselines_only(assets, tmp_path):
    out = tmp_path / "out"
    proc = _run_eval(
        [
            f"--workdir={assets['workdir']}",
            "--mode=quality",
            f"--data={assets['davis3']}",
            "--regions=3",
            f"--styles={','.join(map(str, assets['styles3']))}",
            "--r=1",
            "--sheet_frames=0,2",
            f"--output_dir={out}",
        ],
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "leak_obj1_into_obj2" in proc.stdout and "ours r = 1" in proc.stdout
    assert (out / "sheets" / "two_a.png").is_file()
    base = tmp_path / "base"
    proc = _run_eval(
        [
            "--mode=quality",
            "--baselines_only",
            f"--data={assets['davis']}",
            "--max_frames=3",
            f"--styles={','.join(map(str, assets['styles']))}",
            f"--output_dir={base}",
        ],
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    methods = {r["method"] for r in csv.DictReader((base / "quality.csv").open())}
    assert methods == {"input (identity)", "Reinhard per region"}


@pytest.mark.slow
def test_eval_binary_quality_on_the_samples(assets, tmp_path):
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
