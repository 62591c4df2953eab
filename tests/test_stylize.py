"""Tests of lvst_tf.stylize_video and tools/stylize.py on the shipped sample clips.

The bad-input table of the tool (exit codes, one-line errors, outputs untouched) is in
tests/test_faults_stylize.py; this file tests what the library computes.
"""

import os
import pathlib
import re
import select
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from lvst_tf import loading, stylize_video, video_io

REPO = pathlib.Path(__file__).resolve().parents[1]
SAMPLES = REPO / "samples"
CLIP = SAMPLES / "videos" / "carphone.mp4"
CLIP_MASKS = SAMPLES / "videos" / "carphone_masks"
CUP = SAMPLES / "davis" / "JPEGImages" / "480p" / "cup_a"
CUP_SPEC = "hsv:v<110|s>70,open=7,close=7,min_area=2000"
STYLE_A = SAMPLES / "styles" / "EveningGlow.jpg"
STYLE_B = SAMPLES / "styles" / "DarkestHour.jpg"
STYLES = f"{STYLE_A},{STYLE_B}"
TOOL = REPO / "tools" / "stylize.py"


def make_tiny_models(root: pathlib.Path, low_res: int = 32) -> tuple[pathlib.Path, pathlib.Path]:
    """A shipped-model folder `root/pretrained/demo` and a training workdir `root/workdir`, both tiny
    (random VGG, `low_res`); returns (the pretrained root to use as loading.PRETRAINED_DIR, workdir)."""
    from test_export import make_workdir

    from lvst_tf import models

    demo = root / "pretrained" / "demo"
    demo.mkdir(parents=True)
    model = models.build_model(vgg_weights=None, low_res=low_res, seed=5)
    loading.build_variables(model)
    loading.save_trained_weights(model, demo / loading.WEIGHTS_FILE)
    (demo / loading.CONFIG_FILE).write_text(
        f"build_model.vgg_weights = None\nbuild_model.low_res = {low_res}\nbuild_model.seed = 5\n"
    )
    make_workdir(root / "workdir", low_res=low_res)
    return root / "pretrained", root / "workdir"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_models(tmp_path_factory.mktemp("stylize_models"))


@pytest.fixture(autouse=True)
def fake_shipped_model(tmp_path_factory, monkeypatch):
    """A stand-in shipped model for in-process `prepare` calls, which only check its files exist
    (tests that load a model pass a real one)."""
    root = tmp_path_factory.getbasetemp() / "fake_pretrained"
    (root / "demo").mkdir(parents=True, exist_ok=True)
    (root / "demo" / loading.WEIGHTS_FILE).write_bytes(b"")
    (root / "demo" / loading.CONFIG_FILE).write_text("")
    monkeypatch.setattr(loading, "PRETRAINED_DIR", root)


def _run(*args, timeout=600):
    env = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run(
        [sys.executable, str(TOOL), *map(str, args)],
        capture_output=True, text=True, timeout=timeout, env=env,
    )  # fmt: skip


def _request(tmp_path, **kwargs):
    defaults = dict(
        input=str(CLIP), masks=str(CLIP_MASKS), styles=STYLES, output=str(tmp_path / "out.mp4")
    )
    defaults.update({k: str(v) if isinstance(v, pathlib.Path) else v for k, v in kwargs.items()})
    return stylize_video.Request(**defaults)


# ----------------------------------------------------------------------------------------------------
# Parsing and checks (no TensorFlow).


def test_style_schedule_parsing():
    schedule = stylize_video.parse_style_schedule(f"0:{STYLES};12:{STYLE_B},{STYLE_A}")
    assert schedule == [(0, [STYLE_A, STYLE_B]), (12, [STYLE_B, STYLE_A])]
    assert stylize_video.parse_style_schedule("") is None
    for bad, message in [
        ("zero:a.jpg", "must look like"),
        ("5:a.jpg;5:b.jpg", "frame 5 comes after frame 5"),
        ("5:", "names no style image"),
        (";", "no entry"),
    ]:
        with pytest.raises(ValueError, match=message):
            stylize_video.parse_style_schedule(bad)


def test_prepare_builds_the_plan_without_tensorflow(tmp_path):
    """A valid request is checked completely in a process that never imports TensorFlow."""
    request = (
        f"input={str(CLIP)!r}, masks={str(CLIP_MASKS) + ';threshold:gray:y<60'!r}, "
        f"styles={STYLES + ',' + str(STYLE_A)!r}, output={str(tmp_path / 'o.avi')!r}, "
        f"preview=True, style_schedule={'5:' + STYLES + ',' + str(STYLE_B)!r}"
    )
    code = (
        "import sys\n"
        "from lvst_tf import stylize_video\n"
        f"plan = stylize_video.prepare(stylize_video.Request({request}))\n"
        "print(plan.num_frames, len(plan.mask_sources), len(plan.styles), plan.schedule[0][0],"
        " plan.fps, plan.preview_png.name, plan.preview_video.name)\n"
        "print('tensorflow' in sys.modules)\n"
    )
    fake = tmp_path / "pretrained" / "demo"
    fake.mkdir(parents=True)
    (fake / "weights.npz").write_bytes(b"")  # only the paths are checked before loading
    (fake / "operative_config.gin").write_text("")
    launcher = (
        "import pathlib, sys; import lvst_tf.loading as l; "
        f"l.PRETRAINED_DIR = pathlib.Path({str(tmp_path / 'pretrained')!r}); exec(sys.argv[1])"
    )
    proc = subprocess.run(
        [sys.executable, "-c", launcher, code], capture_output=True, text=True, cwd=REPO
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    first, second = proc.stdout.split("\n")[:2]
    assert first == "20 2 3 5 29.97 o_preview.png o_preview.mp4"
    assert second == "False"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pretrained"]


def test_mask_sources_stack_in_order(tmp_path):
    reader = video_io.read_frames(CLIP)
    sources = stylize_video.parse_mask_sources(f"{CLIP_MASKS};threshold:gray:y<60", reader)
    assert [s.kind for s in sources] == ["file", "threshold"]
    starts = [s.start() for s in sources]
    for t, frame in enumerate(reader):
        file_mask, threshold_mask = (start(frame) for start in starts)
        want = video_io.read_image_unchanged(CLIP_MASKS / f"{t:05d}.png") / np.float32(255.0)
        np.testing.assert_array_equal(file_mask, want)
        grey = frame.astype(np.float64) @ [0.299, 0.587, 0.114]
        # OpenCV's fixed-point grey conversion can differ by one level from the float formula.
        agree = (threshold_mask > 0.5) == (grey < 60)
        assert agree.mean() > 0.99


class _Identity:
    """A stand-in stylizer: returns the input frames (to test the run without a model)."""

    def __init__(self, fail_at=None):
        self.fail_at = fail_at

    def stream(self, pairs, styles, schedule):
        for t, (frame, _) in enumerate(pairs):
            if t == self.fail_at:
                raise RuntimeError("injected failure")
            yield frame.astype(np.float32) / 255.0


def test_failed_run_leaves_nothing_and_a_good_one_writes_everything(tmp_path):
    plan = stylize_video.prepare(_request(tmp_path, preview=True))
    with pytest.raises(RuntimeError, match="injected"):
        stylize_video.run(plan, _Identity(fail_at=3), progress=False)
    assert list(tmp_path.iterdir()) == []
    plan = stylize_video.prepare(_request(tmp_path, preview=True, preview_frame=4))
    summary = stylize_video.run(plan, _Identity(), progress=False)
    assert summary["frames"] == 20
    out = np.stack(list(video_io.read_frames(plan.output)))
    src = np.stack(list(video_io.read_frames(CLIP)))
    assert np.abs(out.astype(int) - src).mean() < 3  # identity through mp4v
    panel = video_io.read_image(summary["preview_png"])
    assert panel.shape == (144, 3 * 176, 3)
    mask = video_io.read_image(CLIP_MASKS / "00004.png")
    np.testing.assert_array_equal(panel[:, 176:352], mask)
    np.testing.assert_array_equal(panel[:, :176], src[4])
    assert len(video_io.read_frames(summary["preview_mp4"])) == 20
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["out.mp4", "out_preview.png", "out_preview.mp4"]
    )


def test_interrupt_between_frames_removes_the_temporaries(tmp_path):
    stop = stylize_video.StopFlag()
    plan = stylize_video.prepare(_request(tmp_path, output=tmp_path / "frames", preview=True))

    class Signalling(_Identity):
        def stream(self, pairs, styles, schedule):
            for t, out in enumerate(super().stream(pairs, styles, schedule)):
                if t == 5:
                    stop.signum = signal.SIGTERM  # what the handler does
                yield out

    with pytest.raises(stylize_video.Interrupted) as info:
        stylize_video.run(plan, Signalling(), stop=stop, progress=False)
    assert info.value.exit_code == 143
    assert list(tmp_path.iterdir()) == []


def test_odd_size_avi_and_max_frames_and_fps(tmp_path):
    odd = np.stack(list(video_io.read_frames(CLIP)))[:8, :143, :175]
    with video_io.FrameWriter(tmp_path / "odd.avi", fps=10) as writer:
        for frame in odd:
            writer.write(frame)
    plan = stylize_video.prepare(
        _request(tmp_path, input=tmp_path / "odd.avi", masks="threshold:gray:y<60",
                 output=tmp_path / "o.avi", max_frames=5, fps=7.5)
    )  # fmt: skip
    stylize_video.run(plan, _Identity(), progress=False)
    reader = video_io.read_frames(tmp_path / "o.avi")
    assert (len(reader), reader.size, reader.fps) == (5, (143, 175), 7.5)
    with pytest.raises(ValueError, match="even width and height"):
        stylize_video.prepare(
            _request(tmp_path, input=tmp_path / "odd.avi", masks="threshold:gray:y<60")
        )


# ----------------------------------------------------------------------------------------------------
# Real runs.


@pytest.mark.slow
def test_workdir_mp4_with_mask_folder_and_preview(tiny, tmp_path):
    _, workdir = tiny
    out = tmp_path / "styled.mp4"
    proc = _run(
        f"--input={CLIP}", f"--masks={CLIP_MASKS}", f"--styles={STYLES}", f"--workdir={workdir}",
        "--r=4", f"--output={out}", "--preview", f"--style_schedule=10:{STYLE_B},{STYLE_A}",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    source, result = video_io.read_frames(CLIP), video_io.read_frames(out)
    assert (len(result), result.size, result.fps) == (len(source), source.size, source.fps)
    preview = video_io.read_image(tmp_path / "styled_preview.png")
    assert preview.shape == (144, 3 * 176, 3)
    assert len(video_io.read_frames(tmp_path / "styled_preview.mp4")) == 20
    # The progress bar reached the last frame, and the summary names the output.
    assert re.search(r"stylize: 100%\|[^|]*\| 20/20 ", proc.stderr), proc.stderr[-2000:]
    assert proc.stdout.splitlines()[0] == f"Wrote 20 frames at 29.97 fps to {out}"
    assert "model: workdir" in proc.stderr


@pytest.mark.slow
def test_style_schedule_changes_the_output(tiny, tmp_path):
    """Frame 0 is untouched by a schedule entry at frame 10; from frame 10 on, the output moves to
    what the swapped styles give."""
    _, workdir = tiny
    loaded = loading.load_model(workdir=str(workdir))

    def stylize(name, **kwargs):
        plan = stylize_video.prepare(_request(tmp_path, output=tmp_path / name, **kwargs))
        stylize_video.run(plan, stylize_video.make_stylizer(plan, loaded), progress=False)
        return np.stack(list(video_io.read_frames(tmp_path / name))).astype(np.float64)

    plain = stylize("plain", workdir=workdir)
    swapped = stylize("swapped", workdir=workdir, styles=f"{STYLE_B},{STYLE_A}")
    scheduled = stylize("scheduled", workdir=workdir, style_schedule=f"10:{STYLE_B},{STYLE_A}")
    assert np.abs(plain - swapped).mean() > 2.0  # the styles matter for this model
    np.testing.assert_array_equal(scheduled[0], plain[0])
    assert np.abs(scheduled[5] - plain[5]).mean() > 0.1  # blending between frames 0 and 10
    last_to_swapped = np.abs(scheduled[-1] - swapped[-1]).mean()
    last_to_plain = np.abs(scheduled[-1] - plain[-1]).mean()
    assert last_to_swapped < 0.5 * last_to_plain, (last_to_swapped, last_to_plain)


@pytest.mark.slow
def test_style_masks_select_the_style_statistics(tiny, tmp_path):
    """A style mask covering the whole style image changes nothing; one covering its top half
    changes the foreground's style (the top of EveningGlow is sky, the bottom is dark)."""
    _, workdir = tiny
    loaded = loading.load_model(workdir=str(workdir))
    height, width = video_io.read_image(STYLE_A).shape[:2]
    full = np.full((height, width), 255, np.uint8)
    top = full.copy()
    top[height // 2 :] = 0
    video_io.write_image(tmp_path / "full.png", full)
    video_io.write_image(tmp_path / "top.png", top)

    def stylize(name, **kwargs):
        plan = stylize_video.prepare(
            _request(tmp_path, workdir=workdir, output=tmp_path / name, max_frames=3, **kwargs)
        )
        stylize_video.run(plan, stylize_video.make_stylizer(plan, loaded), progress=False)
        return np.stack(list(video_io.read_frames(tmp_path / name))).astype(np.float64)

    plain = stylize("plain")
    whole = stylize("whole", style_masks=f"{tmp_path / 'full.png'},-")
    halved = stylize("halved", style_masks=f"{tmp_path / 'top.png'},-")
    assert np.abs(whole - plain).max() <= 1.0  # the same statistics (float sums may round)
    assert np.abs(halved - plain).mean() > 1.0


@pytest.mark.slow
def test_render_strip_pixels_changes_memory_not_output(tiny, tmp_path):
    """--render_strip_pixels: 176x144 frames in strips of 5 rows give the single-piece output."""
    _, workdir = tiny
    loaded = loading.load_model(workdir=str(workdir))

    def stylize(name, **kwargs):
        plan = stylize_video.prepare(
            _request(tmp_path, workdir=workdir, output=tmp_path / name, max_frames=3, **kwargs)
        )
        stylizer = stylize_video.make_stylizer(plan, loaded)
        stylize_video.run(plan, stylizer, progress=False)
        return stylizer, np.stack(list(video_io.read_frames(tmp_path / name))).astype(np.int16)

    plain_stylizer, plain = stylize("plain")
    strip_stylizer, strips = stylize("strips", render_strip_pixels=5 * 176)
    assert plain_stylizer.render_strip_pixels is None
    assert strip_stylizer.render_strip_pixels == 5 * 176
    assert len(loaded.model.render_strips(144, 176, 5 * 176)) == 29  # the strips really ran
    assert np.abs(strips - plain).max() <= 1  # float rounding may move an 8-bit value by one


@pytest.mark.slow
def test_saved_model_frame_folder_threshold_masks_match_library(tiny, tmp_path):
    """--saved_model streaming through the exported pieces equals the in-process stylizer."""
    from lvst_tf import export, segmentation
    from lvst_tf.inference import VideoStylizer

    _, workdir = tiny
    model = loading.load_model(workdir=str(workdir)).model
    saved = export.export_saved_model(model, tmp_path / "saved")
    out = tmp_path / "frames_out"
    proc = _run(
        f"--input={CUP}", f"--masks=threshold:{CUP_SPEC}", f"--styles={STYLES}",
        f"--saved_model={saved}", "--r=8", f"--output={out}", "--render_strip_pixels=5000",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "render_strip_pixels: a SavedModel's render signatures take whole frames" in proc.stderr
    frames = np.stack(list(video_io.read_frames(CUP)))
    got = np.stack(list(video_io.read_frames(out)))
    assert got.shape == frames.shape
    masks = np.stack([segmentation.threshold_mask(f, CUP_SPEC) for f in frames])[..., None]
    styles = [video_io.read_image(STYLE_A), video_io.read_image(STYLE_B)]
    ref = VideoStylizer(model, r=8).stylize(frames, masks, styles)
    # PNG frames are the float frames rounded to 8 bits.
    assert np.abs(got.astype(np.float32) - ref * 255.0).max() <= 1.0 + 1e-3


def _long_clip(path: pathlib.Path, count: int = 300) -> pathlib.Path:
    """A `count`-frame 48x64 .avi (long enough that a run is still going when it is signalled)."""
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    with video_io.FrameWriter(path, fps=25) as writer:
        for t in range(count):
            writer.write(np.roll(base, t, axis=1))
    return path


def signal_after_progress(args, signum, env=None, timeout=600):
    """Starts `python args...`, waits until its progress bar shows a finished frame, sends `signum`,
    and returns (exit code, stderr). No race with the start-up: the signal is sent only once frames
    are being written, and the clip is far longer than the time the process needs to react."""
    proc = subprocess.Popen(
        [sys.executable, *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env=dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="2", **(env or {})),
        cwd=REPO,
    )  # fmt: skip
    stderr = b""
    deadline = time.time() + timeout
    try:
        while time.time() < deadline:
            ready, _, _ = select.select([proc.stderr], [], [], 1.0)
            if ready:
                chunk = os.read(proc.stderr.fileno(), 65536)
                if not chunk:
                    break
                stderr += chunk
                if re.search(rb"\| *[1-9]\d*/\d+ ", stderr):
                    proc.send_signal(signum)
                    break
        assert proc.poll() is None, "the run ended before it could be signalled"
        _, rest = proc.communicate(timeout=120)
        stderr += rest
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, stderr.decode(errors="replace")


@pytest.mark.slow
@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_mid_run_exits_cleanly(tiny, tmp_path, signum, code):
    _, workdir = tiny
    clip = _long_clip(tmp_path / "long.avi")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    returncode, stderr = signal_after_progress(
        [TOOL, f"--input={clip}", "--masks=threshold:gray:y<128", f"--styles={STYLES}",
         f"--workdir={workdir}", f"--output={out_dir / 'killed.mp4'}", "--preview"],
        signum,
    )  # fmt: skip
    name = signal.Signals(signum).name
    assert returncode == code, stderr[-2000:]
    last = [line for line in stderr.splitlines() if line.strip()][-1]
    assert last == f"stylize.py: interrupted by {name}; no output was written."
    assert "Traceback" not in stderr and "SystemError" not in stderr
    assert list(out_dir.iterdir()) == []
