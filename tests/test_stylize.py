"""End-to-end tests of tools/stylize.py on the shipped sample clips."""

import importlib.util
import os
import pathlib
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from lvst_tf import video_io

REPO = pathlib.Path(__file__).resolve().parents[1]
SAMPLES = REPO / "samples"
CLIP = SAMPLES / "videos" / "carphone.mp4"
CLIP_MASKS = SAMPLES / "videos" / "carphone_masks"
CUP = SAMPLES / "davis" / "JPEGImages" / "480p" / "cup_a"
CUP_SPEC = "hsv:v<110|s>70,open=7,close=7,min_area=2000"
STYLE_A = SAMPLES / "styles" / "EveningGlow.jpg"
STYLE_B = SAMPLES / "styles" / "DarkestHour.jpg"
STYLES = f"{STYLE_A},{STYLE_B}"


def _load_tool():
    spec = importlib.util.spec_from_file_location("stylize_tool", REPO / "tools" / "stylize.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


stylize_tool = _load_tool()


def _run(*args, timeout=600):
    env = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run(
        [sys.executable, str(REPO / "tools" / "stylize.py"), *args],
        capture_output=True, text=True, timeout=timeout, env=env,
    )  # fmt: skip


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    from test_export import make_workdir

    path = tmp_path_factory.mktemp("stylize_workdir")
    make_workdir(path)
    return path


# ----------------------------------------------------------------------------------------------------
# Bad inputs: clear messages before any work (no model is loaded for most of them).


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(input=f"{REPO}/missing.mp4"), "input: '.*missing.mp4' does not exist"),
        (dict(input=CLIP, masks=f"{SAMPLES / 'davis/Annotations/480p/carphone_a'}"), "has 30 masks but the input has 20"),
        (dict(input=CLIP, masks=CLIP_MASKS, styles=f"{STYLE_A},{REPO}/nope.jpg"), "nope.jpg' is not a file"),
        (dict(input=CLIP, masks=CLIP_MASKS, styles=f"{STYLE_A}"), "1 style images for 1 mask source"),
        (dict(input=CLIP, masks=CLIP_MASKS, styles=STYLES, saved_model="/nonexistent"), "saved_model: '/nonexistent' is not a SavedModel folder"),
        (dict(input=CLIP, masks=CLIP_MASKS, styles=STYLES, workdir=REPO / "samples"), "is not a training workdir"),
        (dict(input=CLIP, masks=CLIP_MASKS, styles=STYLES), "exactly one of --saved_model"),
        (dict(input=CLIP, masks=CLIP_MASKS, style_schedule="zero:a.jpg"), "must look like FRAME:STYLE"),
        (dict(input=CLIP, masks="threshold:xyz:a<1"), "(?i)space|spec"),
        (dict(input=CLIP, masks=CLIP_MASKS, styles=STYLES, output="x.gif"), "unknown extension"),
        (dict(input=CLIP, r=0), "r: must be an int >= 1"),
    ],
)  # fmt: skip
def test_bad_inputs_fail_before_work(tmp_path, kwargs, message):
    kwargs.setdefault("output", tmp_path / "out.mp4")
    kwargs["output"] = str(kwargs["output"])
    with pytest.raises(ValueError, match=message):
        stylize_tool.prepare(
            **{k: str(v) if isinstance(v, pathlib.Path) else v for k, v in kwargs.items()}
        )
    assert list(tmp_path.iterdir()) == []


def test_cli_reports_errors_on_one_line(tmp_path):
    proc = _run(f"--input={tmp_path / 'missing.mp4'}", f"--output={tmp_path / 'o.mp4'}")
    assert proc.returncode != 0
    assert "stylize.py: error: input:" in proc.stderr and "missing.mp4" in proc.stderr


def test_mask_size_mismatch(tmp_path):
    import cv2

    folder = tmp_path / "small_masks"
    folder.mkdir()
    for i in range(20):
        cv2.imwrite(str(folder / f"{i:05d}.png"), np.zeros((40, 50), np.uint8))
    with pytest.raises(ValueError, match="masks are 50x40 but the input frames are 176x144"):
        stylize_tool.prepare(input=str(CLIP), masks=str(folder), output=str(tmp_path / "o.mp4"))


def test_unreadable_style_image(tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"no image")
    with pytest.raises(ValueError, match="cannot decode .*broken.jpg"):
        stylize_tool.prepare(
            input=str(CLIP), masks=str(CLIP_MASKS), styles=f"{STYLE_A},{broken}",
            output=str(tmp_path / "o.mp4"),
        )  # fmt: skip


def test_style_schedule_parsing():
    schedule = stylize_tool.parse_style_schedule(f"0:{STYLES};12:{STYLE_B},{STYLE_A}")
    assert [i for i, _ in schedule] == [0, 12]
    assert all(len(s) == 2 and s[0].dtype == np.uint8 for _, s in schedule)
    np.testing.assert_array_equal(schedule[0][1][0], schedule[1][1][1])
    assert stylize_tool.parse_style_schedule("") is None


def test_interrupted_run_leaves_no_output(tmp_path):
    """An exception mid-stream removes the temporaries: no final video, no preview."""

    class Failing:
        def stream(self, pairs, styles, schedule):
            for t, (frame, _) in enumerate(pairs):
                if t == 3:
                    raise RuntimeError("injected failure")
                yield frame.astype(np.float32) / 255.0

    reader = video_io.read_frames(CLIP)
    masks = stylize_tool.parse_masks(str(CLIP_MASKS), reader)
    out = tmp_path / "out.mp4"
    with pytest.raises(RuntimeError, match="injected"):
        stylize_tool.run(
            reader, masks, Failing(), None, None, out, 10.0, preview=True, progress=False
        )
    assert list(tmp_path.iterdir()) == []

    # The same run without the failure writes everything.
    class Identity:
        def stream(self, pairs, styles, schedule):
            for frame, _ in pairs:
                yield frame

    summary = stylize_tool.run(
        reader, masks, Identity(), None, None, out, 10.0, preview=True, progress=False
    )
    assert summary["frames"] == 20
    preview = video_io.read_image(summary["preview_png"])
    assert preview.shape == (144, 3 * 176, 3)
    assert (
        len(video_io.read_frames(out)) == 20
        and len(video_io.read_frames(summary["preview_mp4"])) == 20
    )


# ----------------------------------------------------------------------------------------------------
# Real runs.


@pytest.mark.slow
def test_workdir_mp4_with_mask_folder_and_preview(workdir, tmp_path):
    out = tmp_path / "styled.mp4"
    proc = _run(
        f"--input={CLIP}", f"--masks={CLIP_MASKS}", f"--styles={STYLES}", f"--workdir={workdir}",
        "--r=4", f"--output={out}", "--preview",
        f"--style_schedule=10:{STYLE_B},{STYLE_A}",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    source, result = video_io.read_frames(CLIP), video_io.read_frames(out)
    assert (len(result), result.size, result.fps) == (len(source), source.size, source.fps)
    preview = video_io.read_image(tmp_path / "styled_preview.png")
    assert preview.shape == (144, 3 * 176, 3)
    assert len(video_io.read_frames(tmp_path / "styled_preview.mp4")) == 20
    assert "frame/s" in proc.stderr or "frame" in proc.stderr  # tqdm progress


@pytest.mark.slow
def test_saved_model_frame_folder_threshold_masks_match_library(workdir, tmp_path):
    """--saved_model streaming through the exported pieces equals the in-process stylizer."""
    from lvst_tf import export, segmentation
    from lvst_tf.inference import VideoStylizer

    model = export.load_model_from_workdir(workdir)
    saved = export.export_saved_model(model, tmp_path / "saved")
    out = tmp_path / "frames_out"
    proc = _run(
        f"--input={CUP}", f"--masks=threshold:{CUP_SPEC}", f"--styles={STYLES}",
        f"--saved_model={saved}", "--r=8", f"--output={out}",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    frames = np.stack(list(video_io.read_frames(CUP)))
    got = np.stack(list(video_io.read_frames(out)))
    assert got.shape == frames.shape
    masks = np.stack([segmentation.threshold_mask(f, CUP_SPEC) for f in frames])[..., None]
    styles = [video_io.read_image(STYLE_A), video_io.read_image(STYLE_B)]
    ref = VideoStylizer(model, r=8).stylize(frames, masks, styles)
    # PNG frames are the float frames rounded to 8 bits.
    assert np.abs(got.astype(np.float32) - ref * 255.0).max() <= 1.0 + 1e-3


@pytest.mark.slow
def test_sigterm_mid_run_leaves_no_final_file(workdir, tmp_path):
    out = tmp_path / "killed.mp4"
    env = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "tools" / "stylize.py"), f"--input={CUP}",
         f"--masks=threshold:{CUP_SPEC}", f"--styles={STYLES}", f"--workdir={workdir}",
         f"--output={out}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
    )  # fmt: skip
    deadline = time.time() + 400
    try:
        # Wait until the writer's temporary exists (work has started), then stop the run.
        while time.time() < deadline and proc.poll() is None:
            if any(p.name.startswith(".killed.tmp-") for p in tmp_path.iterdir()):
                break
            time.sleep(0.2)
        assert proc.poll() is None, "the run ended before it could be interrupted"
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0
    assert "interrupted" in stderr.decode()
    assert list(tmp_path.iterdir()) == []
