"""Fault table of tools/stylize.py: every bad input and fault, one parametrised test.

Each case runs the tool in a subprocess (through a small launcher that points the shipped-model
folder at a tiny test model, can limit the size of files the process may write, and reports at exit
whether TensorFlow was imported) and asserts:
- error cases: the exit code, one readable last stderr line naming the flag or file (`expect`), no
  traceback, nothing changed in the case's folder (inputs and outputs alike), and for every argument
  error that TensorFlow was never imported (the error came before any work);
- "works" cases (bad inputs that must keep working, and the rules' good side): exit 0 and a
  complete, verified output.
Cases that load the model are marked slow.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import re
import shutil
import signal
import struct
import subprocess
from collections.abc import Callable

import cv2
import numpy as np
import pytest
from faults import (
    FSIZE_ENV,
    LAUNCHER,
    Outcome,
    assert_clean_error,
    assert_unchanged,
    run_tool,
    snapshot,
)
from test_stylize import (
    CLIP,
    CLIP_MASKS,
    CUP,
    STYLE_A,
    STYLE_B,
    STYLES,
    make_tiny_models,
    signal_after_progress,
)

from lvst_tf import video_io

REPO = pathlib.Path(__file__).resolve().parents[1]
TOOL = REPO / "tools" / "stylize.py"


@dataclasses.dataclass
class Shared:
    pretrained: pathlib.Path  # a PRETRAINED_DIR holding a tiny "demo"
    workdir: pathlib.Path


@dataclasses.dataclass
class Ctx:
    tmp: pathlib.Path
    shared: Shared

    def __truediv__(self, name):
        return self.tmp / name


@dataclasses.dataclass
class Case:
    name: str
    expect: str = ""  # regex on the last stderr line (error cases)
    flags: Callable[[Ctx], dict] = lambda c: {}  # overrides of the default flags; None drops one
    code: int = 1
    setup: Callable[[Ctx], None] | None = None
    env: Callable[[Ctx], dict] | None = None
    slow: bool = False  # loads the model
    works: Callable[[Ctx, object], None] | None = None  # a case that must succeed; checks it
    signum: int | None = None
    teardown: Callable[[Ctx], None] | None = None
    args: tuple = ()  # extra raw arguments


def default_flags(ctx: Ctx) -> dict:
    return {
        "input": CLIP,
        "masks": CLIP_MASKS,
        "styles": STYLES,
        "workdir": ctx.shared.workdir,
        "output": ctx / "out.mp4",
    }


def tool_args(case: Case, ctx: Ctx) -> list[str]:
    flags = default_flags(ctx)
    flags.update(case.flags(ctx))
    args = ["-c", LAUNCHER, str(ctx.shared.pretrained), str(TOOL)]
    for key, value in flags.items():
        if value is None:
            continue
        args.append(f"--{key}" if value is True else f"--{key}={value}")
    return args + list(case.args)


# ----------------------------------------------------------------------------------------------------
# Set-ups.


def _copy(src, dst):
    if pathlib.Path(src).is_dir():
        shutil.copytree(src, dst)
    else:
        shutil.copy(src, dst)
    return dst


def _mask_folder(ctx, name, values, dtype=np.uint8, count=20, size=(144, 176), channels=1):
    folder = ctx / name
    folder.mkdir()
    mask = np.zeros(size, dtype)
    mask[30:100, 40:120] = values
    if channels == 3:
        mask = np.repeat(mask[..., None], 3, -1)
    for t in range(count):
        cv2.imwrite(str(folder / f"{t:05d}.png"), mask)


def _zero_one_mask_video(ctx):
    mask = np.zeros((144, 176, 3), np.uint8)
    mask[30:100, 40:120] = 1
    with video_io.FrameWriter(ctx / "m01.avi", fps=10) as writer:
        for _ in range(20):
            writer.write(mask)


def _long_clip(ctx):
    """300 frames of 48x64: a run is still going long after its first progress update."""
    base = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    with video_io.FrameWriter(ctx / "long.avi", fps=25) as writer:
        for t in range(300):
            writer.write(np.roll(base, t, axis=1))


def _truncate(path, fraction=0.5):
    data = pathlib.Path(path).read_bytes()
    pathlib.Path(path).write_bytes(data[: int(len(data) * fraction)])


def _odd_clip(ctx):
    frames = list(video_io.read_frames(CLIP))
    with video_io.FrameWriter(ctx / "odd.avi", fps=10) as writer:
        for frame in frames[:6]:
            writer.write(frame[:143, :175])


def _audio_clip(ctx):
    """carphone.mp4 with an extra (empty) audio track box appended to its moov (which is last)."""

    def box(kind, body):
        return struct.pack(">I", 8 + len(body)) + kind + body

    data = bytearray(CLIP.read_bytes())
    pos = 0
    while pos < len(data):
        size, kind = struct.unpack(">I4s", data[pos : pos + 8])
        if kind == b"moov":
            break
        pos += size
    assert pos + size == len(data), "moov must be the last box"
    hdlr = box(b"hdlr", b"\0" * 8 + b"soun" + b"\0" * 12 + b"SoundHandler\0")
    trak = box(b"trak", box(b"mdia", hdlr))
    data[pos : pos + 4] = struct.pack(">I", size + len(trak))
    (ctx / "talk.mp4").write_bytes(bytes(data) + trak)


def _read_only_dir(ctx):
    folder = ctx / "ro"
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o555)
        return
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(folder)], capture_output=True
    )
    if proc.returncode != 0:
        pytest.skip(f"cannot make a read-only folder as root here: {proc.stderr!r}")


def _undo_read_only(ctx):
    folder = ctx / "ro"
    if os.geteuid() == 0:
        subprocess.run(["umount", str(folder)], capture_output=True)
    else:
        folder.chmod(0o755)


def _dead_pid() -> int:
    proc = subprocess.run(["python3", "-c", "import os; print(os.getpid())"], capture_output=True)
    return int(proc.stdout)


def _no_variables_saved_model(ctx):
    import tensorflow as tf

    module = tf.Module()
    module.v = tf.Variable(1.0)
    module.f = tf.function(lambda x: x * module.v, input_signature=[tf.TensorSpec([], tf.float32)])
    tf.saved_model.save(module, str(ctx / "saved"))
    shutil.rmtree(ctx / "saved" / "variables")


def _corrupt_saved_model(ctx):
    (ctx / "saved" / "variables").mkdir(parents=True)
    (ctx / "saved" / "saved_model.pb").write_bytes(b"\x08\x01garbage" * 10)


def _workdir_with_truncated_checkpoint(ctx):
    _copy(ctx.shared.workdir, ctx / "wd")
    for data in (ctx / "wd" / "checkpoints").glob("ckpt-*.data-*"):
        _truncate(data, 0.3)


# ----------------------------------------------------------------------------------------------------
# Checks of cases that must work.


def _video_ok(path, frames, size):
    reader = video_io.read_frames(path)
    assert (len(reader), reader.size) == (frames, size)
    assert len(list(reader)) == frames


def _works_odd_avi(ctx, outcome):
    _video_ok(ctx / "out.avi", 6, (143, 175))


def _works_overwrite_own_folder(ctx, outcome):
    assert len(video_io.read_frames(ctx / "frames")) == 20
    assert video_io.foreign_entries(ctx / "frames") == []


def _works_audio_warning(ctx, outcome):
    assert re.search(r"warning: input '.*talk.mp4' has an audio track; the output will have none",
                     outcome.stderr)  # fmt: skip
    _video_ok(ctx / "out.mp4", 20, (144, 176))


def _works_stale_cleaned(ctx, outcome):
    assert sorted(p.name for p in ctx.tmp.iterdir()) == ["out.mp4"]
    _video_ok(ctx / "out.mp4", 20, (144, 176))


def _works_default_model(ctx, outcome):
    assert "model: pretrained demo" in outcome.stderr
    _video_ok(ctx / "out.mp4", 20, (144, 176))


def _works_webp_tif(ctx, outcome):
    assert len(video_io.read_frames(ctx / "frames_out")) == 5


def _webp_tif_inputs(ctx):
    (ctx / "frames").mkdir()
    (ctx / "masks").mkdir()
    for t, frame in enumerate(video_io.read_frames(CUP)):
        if t == 5:
            break
        video_io.write_image(ctx / "frames" / f"{t:03d}.webp", frame)
        mask = (frame.mean(-1) < 110).astype(np.uint8) * 255
        cv2.imwrite(str(ctx / "masks" / f"{t:03d}.tif"), mask)


def _own_frame_folder(ctx):
    with video_io.FrameWriter(ctx / "frames") as writer:
        for frame in list(video_io.read_frames(CLIP))[:3]:
            writer.write(frame)


# ----------------------------------------------------------------------------------------------------
# The table.

E = "stylize.py: error: "
CASES = [
    # --- input
    Case("input_missing", E + r"input: '.*missing.mp4' does not exist",
         lambda c: {"input": c / "missing.mp4"}),
    Case("input_flag_missing", E + r"input: required", lambda c: {"input": None}),
    Case("input_not_a_video", E + r"input: '.*notes.txt' is neither a folder nor a video file",
         lambda c: {"input": c / "notes.txt"}, setup=lambda c: (c / "notes.txt").write_text("x")),
    Case("input_corrupt_video", E + r"input: cannot decode video '.*bad.mp4'",
         lambda c: {"input": c / "bad.mp4"}, setup=lambda c: (c / "bad.mp4").write_bytes(b"x" * 99)),
    Case("input_empty_folder", E + r"input: folder '.*empty' holds no images",
         lambda c: {"input": c / "empty"}, setup=lambda c: (c / "empty").mkdir()),
    Case("input_first_frame_truncated", E + r"input: '.*00000.jpg' is damaged: .*truncated",
         lambda c: {"input": c / "cup", "masks": "threshold:gray:y<60"},
         setup=lambda c: (_copy(CUP, c / "cup"), _truncate(c / "cup" / "00000.jpg"))),
    # --- masks
    Case("masks_flag_missing", E + r"masks: required", lambda c: {"masks": None}),
    Case("masks_count_mismatch", E + r"masks: '.*carphone_a' has 30 masks but the input has 20",
         lambda c: {"masks": REPO / "samples/davis/Annotations/480p/carphone_a"}),
    Case("masks_size_mismatch", E + r"masks: '.*small' masks are 50x40 but the input frames are 176x144",
         lambda c: {"masks": c / "small"},
         setup=lambda c: _mask_folder(c, "small", 255, size=(40, 50))),
    Case("masks_zero_one_png", E + r"masks: '.*00000.png' holds only the values 0 and 1",
         lambda c: {"masks": c / "m01"}, setup=lambda c: _mask_folder(c, "m01", 1)),
    Case("masks_zero_one_video", E + r"masks: mask video '.*m01.avi' frame 0 holds only values 0..1",
         lambda c: {"masks": c / "m01.avi"}, setup=_zero_one_mask_video),
    Case("masks_16bit_stopping_at_255", E + r"masks: '.*00000.png' is a 16-bit mask whose values stop at 255",
         lambda c: {"masks": c / "m16"},
         setup=lambda c: _mask_folder(c, "m16", 255, np.uint16, channels=3)),
    Case("masks_truncated_png", E + r"masks: '.*00000.png' is damaged: .*truncated",
         lambda c: {"masks": c / "mt"},
         setup=lambda c: (_mask_folder(c, "mt", 255), _truncate(c / "mt" / "00000.png"))),
    Case("masks_bad_threshold_spec", E + r"masks: 'threshold:xyz:a<1': spec: colour space",
         lambda c: {"masks": "threshold:xyz:a<1"}),
    Case("masks_auto_person_without_model", E + r"masks: auto-person needs the selfie segmentation model",
         lambda c: {"masks": "auto-person"}, env=lambda c: {"LVST_TF_HOME": str(c / "home")}),
    Case("auto_person_wrong_style_count", E + r"styles: 1 style image\(s\) for 1 mask source\(s\); expected 2",
         lambda c: {"masks": "auto-person", "styles": STYLE_A},
         setup=lambda c: ((c / "home/models").mkdir(parents=True),
                          (c / "home/models/selfie_segmentation.tflite").write_bytes(b"model")),
         env=lambda c: {"LVST_TF_HOME": str(c / "home")}),
    # --- styles and schedule
    Case("styles_flag_missing", E + r"styles: required", lambda c: {"styles": None}),
    Case("style_missing_file", E + r"styles: '.*nope.jpg' does not exist",
         lambda c: {"styles": f"{STYLE_A},{c / 'nope.jpg'}"}),
    Case("style_truncated_jpeg", E + r"styles: '.*half.jpg' is damaged: .*truncated",
         lambda c: {"styles": f"{STYLE_A},{c / 'half.jpg'}"},
         setup=lambda c: (_copy(STYLE_B, c / "half.jpg"), _truncate(c / "half.jpg"))),
    Case("style_not_an_image_type", E + r"styles: '.*style.gif' is not an accepted image type",
         lambda c: {"styles": f"{STYLE_A},{c / 'style.gif'}"},
         setup=lambda c: (c / "style.gif").write_bytes(b"GIF89a")),
    Case("style_undecodable", E + r"styles: cannot decode '.*junk.tif' as an image",
         lambda c: {"styles": f"{STYLE_A},{c / 'junk.tif'}"},
         setup=lambda c: (c / "junk.tif").write_bytes(b"II*\x00junk")),
    Case("style_wrong_count", E + r"styles: 1 style image\(s\) for 1 mask source\(s\); expected 2",
         lambda c: {"styles": STYLE_A}),
    Case("schedule_syntax", E + r"style_schedule: entry 'zero:a.jpg' must look like",
         lambda c: {"style_schedule": "zero:a.jpg"}),
    Case("schedule_not_increasing", E + r"style_schedule: frame 5 comes after frame 10",
         lambda c: {"style_schedule": f"10:{STYLES};5:{STYLES}"}),
    Case("schedule_past_the_end", E + r"style_schedule: frame 50 is past the last frame \(19\)",
         lambda c: {"style_schedule": f"50:{STYLES}"}),
    Case("schedule_wrong_count", E + r"style_schedule \(frame 10\): 1 style image",
         lambda c: {"style_schedule": f"10:{STYLE_A}"}),
    Case("schedule_and_styles_at_frame_0", E + r"style_schedule: has an entry at frame 0 and --styles",
         lambda c: {"style_schedule": f"0:{STYLES}"}),
    Case("style_masks_wrong_count", E + r"style_masks: 1 entries for 2 style images",
         lambda c: {"style_masks": "-"}),
    Case("style_masks_wrong_size", E + r"style_masks: '.*sm.png' is 176x144 but its style image",
         lambda c: {"style_masks": f"{c / 'sm.png'},-"},
         setup=lambda c: _copy(CLIP_MASKS / "00000.png", c / "sm.png")),
    Case("style_masks_zero_one", E + r"style_masks: '.*sm01.png' holds only the values 0 and 1",
         lambda c: {"style_masks": f"{c / 'sm01.png'},-"},
         setup=lambda c: cv2.imwrite(str(c / "sm01.png"), np.ones((400, 640), np.uint8))),
    Case("style_masks_without_styles", E + r"style_masks: belong to --styles, which is not given",
         lambda c: {"styles": None, "style_schedule": f"3:{STYLES}", "style_masks": "-,-"}),
    # --- other flags
    Case("r_zero", E + r"r: must be an integer >= 1", lambda c: {"r": 0}),
    Case("r_not_a_number", E + r"flag --r=abc", lambda c: {"r": "abc"}, code=2),
    Case("unknown_flag", E + r"Unknown command line flag 'colour'", lambda c: {"colour": "red"}, code=2),
    Case("positional_argument", E + r"unexpected arguments \['clip.mp4'\]", args=("clip.mp4",), code=2),
    Case("interpolation_unknown", E + r"flag --interpolation=cubic", lambda c: {"interpolation": "cubic"}, code=2),
    Case("fps_negative", E + r"fps: must be > 0", lambda c: {"fps": -5}),
    Case("max_frames_negative", E + r"max_frames: must be >= 0", lambda c: {"max_frames": -1}),
    Case(
        "render_strip_pixels_negative",
        E + r"render_strip_pixels: must be an integer >= 0",
        lambda c: {"render_strip_pixels": -2},
    ),
    Case("preview_frame_past_the_end", E + r"preview_frame: 50 is past the last frame \(19\)",
         lambda c: {"preview": True, "preview_frame": 50}),
    # --- model
    Case("saved_model_missing", E + r"saved_model: '.*nowhere' is not a SavedModel folder",
         lambda c: {"workdir": None, "saved_model": c / "nowhere"}),
    Case("workdir_not_a_workdir", E + r"workdir: '.*samples' is not a training workdir",
         lambda c: {"workdir": REPO / "samples"}),
    Case("two_model_flags", E + r"model: give at most one of saved_model, workdir or pretrained",
         lambda c: {"saved_model": c / "x"}),
    Case("checkpoint_without_workdir", E + r"checkpoint: only applies together with workdir",
         lambda c: {"workdir": None, "checkpoint": "5"}),
    Case("pretrained_unknown", E + r"pretrained: no shipped model 'nope'",
         lambda c: {"workdir": None, "pretrained": "nope"}),
    Case("saved_model_corrupt_pb", E + r"saved_model: cannot load the model from '.*saved'",
         lambda c: {"workdir": None, "saved_model": c / "saved"}, setup=_corrupt_saved_model,
         slow=True),
    Case("saved_model_without_variables", E + r"saved_model: cannot load the model from '.*saved'",
         lambda c: {"workdir": None, "saved_model": c / "saved"}, setup=_no_variables_saved_model,
         slow=True),
    Case("workdir_truncated_checkpoint", E + r"workdir: every checkpoint under '.*' is truncated",
         lambda c: {"workdir": c / "wd"}, setup=_workdir_with_truncated_checkpoint, slow=True),
    # --- outputs
    Case("output_flag_missing", E + r"output: required", lambda c: {"output": None}),
    Case("output_unknown_extension", E + r"output: '.*out.gif' has the extension '.gif'",
         lambda c: {"output": c / "out.gif"}),
    Case("output_read_only_type", E + r"output: '.*out.webm': .webm videos can be read but not written",
         lambda c: {"output": c / "out.webm"}),
    Case("output_exists", E + r"output: '.*out.mp4' exists; pass --overwrite to replace it",
         setup=lambda c: (c / "out.mp4").write_bytes(b"an earlier result")),
    Case("output_user_folder", E + r"output: refusing to replace folder '.*holiday'",
         lambda c: {"output": c / "holiday", "overwrite": True},
         setup=lambda c: ((c / "holiday").mkdir(), (c / "holiday/notes.txt").write_text("mine"))),
    Case("output_is_the_masks", E + r"output: '.*masks' is the masks source",
         lambda c: {"masks": c / "masks", "output": c / "masks", "overwrite": True},
         setup=lambda c: _copy(CLIP_MASKS, c / "masks")),
    Case("output_is_the_input", E + r"output: '.*clip.mp4' is the input",
         lambda c: {"input": c / "clip.mp4", "output": c / "clip.mp4", "overwrite": True},
         setup=lambda c: _copy(CLIP, c / "clip.mp4")),
    Case("output_is_the_workdir", E + r"output: '.*wd' is the workdir",
         lambda c: {"workdir": c / "wd", "output": c / "wd", "overwrite": True},
         setup=lambda c: _copy(c.shared.workdir, c / "wd")),
    Case("output_contains_a_style", E + r"output: '.*looks' contains the style '.*a.jpg'",
         lambda c: {"styles": f"{c / 'looks/a.jpg'},{STYLE_B}", "output": c / "looks",
                    "overwrite": True},
         setup=lambda c: ((c / "looks").mkdir(), _copy(STYLE_A, c / "looks/a.jpg"))),
    Case("output_is_a_folder_named_mp4", E + r"output: '.*out.mp4' is an existing folder",
         lambda c: {"overwrite": True}, setup=lambda c: (c / "out.mp4").mkdir()),
    Case("output_parent_is_a_file", E + r"output: cannot create '.*afile/out.mp4': '.*afile' is a file",
         lambda c: {"output": c / "afile/out.mp4"}, setup=lambda c: (c / "afile").write_text("x")),
    Case("output_read_only_folder", E + r"output: cannot write in '.*ro': (Read-only|Permission)",
         lambda c: {"output": c / "ro/out.mp4"}, setup=_read_only_dir, teardown=_undo_read_only),
    Case("output_odd_size_mp4", E + r"output: '.*out.mp4': OpenCV writes .mp4 videos only with an even",
         lambda c: {"input": c / "odd.avi", "masks": "threshold:gray:y<60"}, setup=_odd_clip),
    Case("preview_exists", E + r"output \(preview\): '.*out_preview.png' exists; pass --overwrite",
         lambda c: {"preview": True}, setup=lambda c: (c / "out_preview.png").write_bytes(b"old")),
    # --- faults while writing (model loaded)
    Case("disk_full_video", E + r"output: writing '.*out.mp4' failed: the written video (cannot be read back|holds \d+ of its 30 frames)",
         lambda c: {"input": CUP, "masks": "threshold:gray:y<60"},
         env=lambda c: {FSIZE_ENV: "40000"}, slow=True),
    Case("disk_full_frame_folder", E + r"output: cannot write '.*frames': File too large",
         lambda c: {"input": CUP, "masks": "threshold:gray:y<60", "output": c / "frames"},
         env=lambda c: {FSIZE_ENV: "40000"}, slow=True),
    Case("frame_truncated_mid_run", E + r"input: '.*00005.jpg' is damaged: .*truncated",
         lambda c: {"input": c / "cup", "masks": "threshold:gray:y<60"},
         setup=lambda c: (_copy(CUP, c / "cup"), _truncate(c / "cup" / "00005.jpg")), slow=True),
    Case("sigterm_mid_run", r"stylize.py: interrupted by SIGTERM; no output was written.",
         code=143, signum=signal.SIGTERM, slow=True, setup=_long_clip,
         flags=lambda c: {"input": c / "long.avi", "masks": "threshold:gray:y<128", "preview": True}),
    Case("sigint_mid_run", r"stylize.py: interrupted by SIGINT; no output was written.",
         code=130, signum=signal.SIGINT, slow=True, setup=_long_clip,
         flags=lambda c: {"input": c / "long.avi", "masks": "threshold:gray:y<128", "preview": True}),
    # --- must keep working
    Case("works_odd_size_avi_kept_exactly", code=0, works=_works_odd_avi, slow=True,
         flags=lambda c: {"input": c / "odd.avi", "masks": "threshold:gray:y<60",
                          "output": c / "out.avi"}, setup=_odd_clip),
    Case("works_overwrite_own_frame_folder", code=0, works=_works_overwrite_own_folder, slow=True,
         flags=lambda c: {"output": c / "frames", "overwrite": True}, setup=_own_frame_folder),
    Case("works_audio_warned", code=0, works=_works_audio_warning, slow=True,
         flags=lambda c: {"input": c / "talk.mp4"}, setup=_audio_clip),
    Case("works_stale_temporary_cleaned", code=0, works=_works_stale_cleaned, slow=True,
         setup=lambda c: (c / f".out.mp4.tmp-{_dead_pid()}-x.mp4").write_bytes(b"partial")),
    Case("works_default_shipped_model", code=0, works=_works_default_model, slow=True,
         flags=lambda c: {"workdir": None}),
    Case("works_webp_frames_tif_masks", code=0, works=_works_webp_tif, slow=True,
         flags=lambda c: {"input": c / "frames", "masks": c / "masks", "output": c / "frames_out"},
         setup=_webp_tif_inputs),
]  # fmt: skip


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    pretrained, workdir = make_tiny_models(tmp_path_factory.mktemp("fault_models"))
    return Shared(pretrained=pretrained, workdir=workdir)


def run_case(case: Case, ctx: Ctx):
    """Runs one case; returns (outcome, tensorflow imported or None if unknown)."""
    env = case.env(ctx) if case.env else {}
    if case.signum is not None:
        code, stderr = signal_after_progress(tool_args(case, ctx), case.signum, env=env)
        return Outcome(code, "", stderr), None
    outcome = run_tool(tool_args(case, ctx), env=env)
    match = re.search(r"tensorflow-imported: (True|False)", outcome.stdout)
    return outcome, (match.group(1) == "True") if match else None


@pytest.mark.parametrize(
    "case",
    [pytest.param(c, id=c.name, marks=[pytest.mark.slow] if c.slow else []) for c in CASES],
)
def test_fault(case, shared, tmp_path):
    ctx = Ctx(tmp=tmp_path / "case", shared=shared)
    ctx.tmp.mkdir()
    try:
        if case.setup:
            case.setup(ctx)
        before = snapshot(ctx.tmp)
        outcome, tf_imported = run_case(case, ctx)
        if case.works:
            assert outcome.returncode == 0, outcome.stderr[-3000:]
            assert "Traceback" not in outcome.stderr
            case.works(ctx, outcome)
            return
        assert_clean_error(outcome, re.compile(case.expect), case.code)
        assert_unchanged(before, ctx.tmp)
        if not case.slow:
            assert tf_imported is False, "the error came only after TensorFlow was imported"
    finally:
        if case.teardown:
            case.teardown(ctx)
