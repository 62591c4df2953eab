"""Fault table of tools/export.py, and the in-graph input validation of the exported signatures.

Every case runs the tool in a subprocess and asserts: the exit code, one readable last stderr line
naming the flag or file, no traceback, and nothing changed in the case's folder (the output, its
parent, the user's files, the workdir copy). Read-only and full disks are real: a tmpfs mounted in a
private mount namespace (`unshare -m`, root only; those cases are skipped elsewhere). The shipped-model
cases run the tool through a small driver that points `loading.PRETRAINED_DIR` at a tiny model saved
with `loading.save_trained_weights`.

The signature tests call a SavedModel of that tiny model in a fresh interpreter where `lvst_tf` cannot
be imported (as a server would), with bad inputs, and check the error names the argument.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable

import faults
import numpy as np
import pytest
from faults import REPO, Outcome, assert_clean_error, assert_unchanged, snapshot

TOOL = str(REPO / "tools" / "export.py")
# Only `tools/export.py` is run: `lvst_tf` must never import TensorFlow for the cheap checks.
ENV = {"TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": "", "LVST_TF_TRACEBACK": ""}

DRIVER = textwrap.dedent(
    """
    # Runs tools/export.py with the shipped models read from another folder (and, on request,
    # without the free-space pre-check, so that a small disk fills up while writing).
    import os, pathlib, runpy, sys
    sys.path.insert(0, os.environ["LVST_REPO"])
    from lvst_tf import export, loading
    loading.PRETRAINED_DIR = pathlib.Path(os.environ["LVST_PRETRAINED"])
    if os.environ.get("LVST_NO_SPACE_CHECK"):
        export.FREE_SPACE_MARGIN_BYTES = -(1 << 50)
    sys.argv = [os.path.join(os.environ["LVST_REPO"], "tools", "export.py"), *sys.argv[1:]]
    runpy.run_path(sys.argv[0], run_name="__main__")
    """
)


@functools.cache
def can_mount() -> bool:
    """Whether a tmpfs can be mounted in a private mount namespace (root with unshare)."""
    if not shutil.which("unshare"):
        return False
    point = tempfile.mkdtemp()
    try:
        proc = subprocess.run(
            ["unshare", "-m", "sh", "-c", f"mount -t tmpfs -o size=64k tmpfs {point}"],
            capture_output=True, timeout=30,
        )  # fmt: skip
        return proc.returncode == 0
    finally:
        os.rmdir(point)


# ----------------------------------------------------------------------------------------------------
# Shared inputs: a workdir and a shipped-model folder of one tiny model.


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """{workdir, pretrained_root, driver}: a training workdir and a 'tiny' shipped model."""
    from test_export import make_workdir

    from lvst_tf import loading

    root = tmp_path_factory.mktemp("sources")
    workdir = root / "workdir"
    model = make_workdir(workdir)
    tiny = root / "pretrained" / "tiny"
    tiny.mkdir(parents=True)
    shutil.copy(workdir / loading.CONFIG_FILE, tiny / loading.CONFIG_FILE)
    loading.save_trained_weights(model, tiny / loading.WEIGHTS_FILE)
    driver = root / "driver.py"
    driver.write_text(DRIVER)
    return dict(workdir=workdir, pretrained_root=root / "pretrained", driver=driver)


@dataclasses.dataclass
class Ctx:
    tmp: pathlib.Path  # the case's own folder: everything in it must stay as it was
    workdir: pathlib.Path  # a copy of the shared workdir inside `tmp`
    out: pathlib.Path  # the default output, `tmp/out/1`
    mnt: pathlib.Path  # mount point for the tmpfs cases
    sources: dict


@dataclasses.dataclass
class Case:
    name: str
    args: Callable[[Ctx], list]
    expect: str
    code: int = 1
    setup: Callable[[Ctx], None] | None = None
    mount: str | None = None  # tmpfs options: the output lives on it
    send: int | None = None  # a signal sent once the export's temporary folder exists
    driver: bool = False  # run through the shipped-model driver
    env: dict = dataclasses.field(default_factory=dict)
    slow: bool = False


def _fake_export(path: pathlib.Path) -> None:
    path.mkdir(parents=True)
    (path / "saved_model.pb").write_bytes(b"previous graph")
    (path / "variables").mkdir()
    (path / "variables" / "variables.index").write_bytes(b"previous index")
    (path / "lvst_export.json").write_text(
        json.dumps({"format": "lvst_tf SavedModel export", "version": 1})
    )


def _user_folder(path: pathlib.Path) -> None:
    path.mkdir(parents=True)
    (path / "holiday.jpg").write_bytes(b"\xff\xd8 not ours")
    (path / "notes").mkdir()
    (path / "notes" / "todo.txt").write_text("keep me")


def _truncate_checkpoint(ctx: Ctx) -> None:
    data = next((ctx.workdir / "checkpoints").glob("ckpt-1.data-*"))
    data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])


def _workdir_in_runs(ctx: Ctx) -> None:
    runs = ctx.tmp / "runs"
    runs.mkdir()
    shutil.move(ctx.workdir, runs / "wd")
    ctx.workdir = runs / "wd"


def _export_with_notes(ctx: Ctx) -> None:
    _fake_export(ctx.out)
    (ctx.out / "notes.txt").write_text("mine")


def _symlink_to_export(ctx: Ctx) -> None:
    _fake_export(ctx.tmp / "real")
    ctx.out.parent.mkdir()
    ctx.out.symlink_to(ctx.tmp / "real")


def _file(path: pathlib.Path, text: str = "not a folder") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def wd(ctx: Ctx) -> str:
    return f"--workdir={ctx.workdir}"


def out(ctx: Ctx) -> str:
    return f"--output={ctx.out}"


CASES = [
    # -- the model source ---------------------------------------------------------------------------
    Case("missing workdir", lambda c: [f"--workdir={c.tmp / 'nope'}", out(c)],
         "nope' is not a training workdir"),
    Case("workdir without config", lambda c: [f"--workdir={c.tmp / 'empty'}", out(c)],
         "(no operative_config.gin)", setup=lambda c: (c.tmp / "empty").mkdir()),
    Case("checkpoint not found", lambda c: [wd(c), "--checkpoint=ckpt-99", out(c)],
         "checkpoint: 'ckpt-99' not found"),
    Case("checkpoint without workdir", lambda c: ["--checkpoint=3", out(c)],
         "checkpoint: only applies together with workdir"),
    Case("two model sources", lambda c: [wd(c), "--pretrained=tiny", out(c)],
         "model: give at most one of"),
    Case("unknown shipped model", lambda c: ["--pretrained=nope", out(c)],
         "pretrained: no shipped model 'nope'", driver=True),
    Case("named checkpoint truncated", lambda c: [wd(c), "--checkpoint=ckpt-1", out(c)],
         "is truncated or unreadable", setup=_truncate_checkpoint),
    Case("every checkpoint truncated", lambda c: [wd(c), out(c)],
         "workdir: every checkpoint under", setup=_truncate_checkpoint),
    # -- the output: never replace what the tool did not write ---------------------------------------
    Case("output holds an export, no --overwrite", lambda c: [wd(c), out(c)],
         "already holds an export; pass --overwrite", setup=lambda c: _fake_export(c.out)),
    Case("output is a user folder (--overwrite)", lambda c: [wd(c), out(c), "--overwrite"],
         "is not an export written by tools/export.py", setup=lambda c: _user_folder(c.out)),
    Case("export plus user files (--overwrite)", lambda c: [wd(c), out(c), "--overwrite"],
         "also holds ['notes.txt']", setup=_export_with_notes),
    Case("output is the workdir (--overwrite)",
         lambda c: [wd(c), f"--output={c.workdir}", "--overwrite"], "is the input"),
    Case("output inside the workdir",
         lambda c: [wd(c), f"--output={c.workdir / 'export'}"], "is inside the input"),
    Case("output contains the workdir (--overwrite)",
         lambda c: [wd(c), f"--output={c.tmp / 'runs'}", "--overwrite"], "contains the input",
         setup=_workdir_in_runs),
    Case("output inside the shipped model",
         lambda c: ["--pretrained=tiny", f"--output={c.sources['pretrained_root'] / 'tiny' / 'x'}"],
         "is inside the input", driver=True),
    Case("output is a file (--overwrite)", lambda c: [wd(c), out(c), "--overwrite"],
         "exists and is not a folder", setup=lambda c: _file(c.out)),
    Case("output parent is a file", lambda c: [wd(c), out(c)],
         "is a file, not a folder", setup=lambda c: _file(c.out.parent)),
    Case("output is a symlink (--overwrite)", lambda c: [wd(c), out(c), "--overwrite"],
         "exists and is not a folder", setup=_symlink_to_export),
    Case("read-only output", lambda c: [wd(c), f"--output={c.mnt / 'a' / '1'}"],
         "Read-only file system", mount="size=1m,ro"),
    Case("disk too small (checked before tracing)", lambda c: [wd(c), f"--output={c.mnt / 'a' / '1'}"],
         "MB free under", mount="size=1m", slow=True),
    Case("disk full while writing", lambda c: ["--pretrained=tiny", f"--output={c.mnt / 'a' / '1'}"],
         "No space left on device", mount="size=8m", driver=True,
         env={"LVST_NO_SPACE_CHECK": "1"}, slow=True),
    # -- the command line ----------------------------------------------------------------------------
    Case("unknown flag", lambda c: [wd(c), "--outptu=x"], "Unknown command line flag 'outptu'",
         code=2),
    Case("bad --render_impl", lambda c: [wd(c), out(c), "--render_impl=fast"],
         "flag --render_impl=fast", code=2),
    Case("stray argument", lambda c: [wd(c), out(c), "now"], "unexpected arguments ['now']",
         code=2),
    # -- interruptions -------------------------------------------------------------------------------
    Case("SIGTERM during the export", lambda c: [wd(c), out(c)],
         "terminated (SIGTERM); nothing written at", code=143, send=signal.SIGTERM, slow=True),
    Case("Ctrl-C during the export", lambda c: [wd(c), out(c)],
         "interrupted (Ctrl-C); nothing written at", code=130, send=signal.SIGINT, slow=True),
]  # fmt: skip


def _tree(root: pathlib.Path) -> list[str]:
    """Every path under `root`, folders included (so an empty leftover folder shows too)."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def _run(case: Case, ctx: Ctx) -> Outcome:
    program = [str(ctx.sources["driver"])] if case.driver else [TOOL]
    command = [sys.executable, *program, *[str(a) for a in case.args(ctx)]]
    if case.mount:
        # A private tmpfs at ctx.mnt for this process only; after the tool, report what is left on
        # it (stdout), since the mount disappears with the process.
        script = (
            f'mount -t tmpfs -o {case.mount} tmpfs "$0" || exit 99; "$@"; rc=$?; '
            'echo "LEFT ON DISK: $(ls -A "$0")"; exit $rc'
        )
        command = ["unshare", "-m", "sh", "-c", script, str(ctx.mnt), *command]
    env = dict(os.environ) | ENV | case.env
    env |= {"LVST_REPO": str(REPO), "LVST_PRETRAINED": str(ctx.sources["pretrained_root"])}
    if case.send is None:
        proc = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True,
                              timeout=900)  # fmt: skip
        return Outcome(proc.returncode, proc.stdout, proc.stderr)
    proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    deadline = time.time() + 600
    temporary = f".{ctx.out.name}.export-tmp-"
    while time.time() < deadline and proc.poll() is None:
        if ctx.out.parent.is_dir() and any(
            p.name.startswith(temporary) for p in ctx.out.parent.iterdir()
        ):
            break
        time.sleep(0.1)
    assert proc.poll() is None, "the export finished or failed before the signal could be sent"
    time.sleep(1.0)  # inside the tracing
    proc.send_signal(case.send)
    sent = time.time()
    stdout, stderr = proc.communicate(timeout=300)
    assert time.time() - sent < 60, "did not exit promptly after the signal"
    return Outcome(proc.returncode, stdout, stderr)


@pytest.mark.parametrize(
    "case",
    [pytest.param(c, id=c.name, marks=[pytest.mark.slow] if c.slow else []) for c in CASES],
)
def test_export_fault(case, sources, tmp_path):
    if case.mount and not can_mount():
        pytest.skip("needs a private tmpfs mount (root and unshare)")
    workdir = tmp_path / "wd"
    shutil.copytree(sources["workdir"], workdir)
    ctx = Ctx(tmp=tmp_path, workdir=workdir, out=tmp_path / "out" / "1", mnt=tmp_path / "mnt",
              sources=sources)  # fmt: skip
    ctx.mnt.mkdir()
    if case.setup:
        case.setup(ctx)
    shipped = sources["pretrained_root"]
    before, tree = snapshot(tmp_path, shipped), _tree(tmp_path)
    outcome = _run(case, ctx)
    if case.send is not None and "after the export was written to" in outcome.stderr:
        # The documented other outcome of a stop: the signal came while the finished export was
        # put in place (signals are held for the rename), or a TensorFlow finaliser swallowed the
        # exception. The exit code still says stopped, and the export is complete.
        assert_clean_error(outcome, "after the export was written to", case.code)
        assert (ctx.out / "saved_model.pb").is_file()
        assert not [p for p in ctx.out.parent.iterdir() if p.name.startswith(".")]
        return
    assert_clean_error(outcome, case.expect, case.code)
    assert_unchanged(before, tmp_path, shipped)
    assert _tree(tmp_path) == tree  # no leftover folder either
    if case.mount:
        assert outcome.stdout.rstrip().endswith("LEFT ON DISK:"), outcome.stdout[-500:]


def test_fault_table_names_every_case():
    names = [c.name for c in CASES]
    assert len(names) == len(set(names))
    assert len(CASES) >= 25


# ----------------------------------------------------------------------------------------------------
# The exported signatures validate their inputs in the graph (a server cannot see Python).


@pytest.fixture(scope="module")
def shipped_export(sources, tmp_path_factory):
    """The tiny shipped model exported by the tool (`--pretrained=tiny`), with a stale temporary of a
    killed earlier run beside the output (it must be gone afterwards)."""
    root = tmp_path_factory.mktemp("shipped_export")
    output = root / "lvst" / "1"
    output.parent.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    stale = output.parent / f".1.export-tmp-{int(dead.stdout)}-killed"
    stale.mkdir()
    (stale / "saved_model.pb").write_bytes(b"half written")
    env = dict(os.environ) | ENV
    env |= {"LVST_REPO": str(REPO), "LVST_PRETRAINED": str(sources["pretrained_root"])}
    proc = subprocess.run(
        [sys.executable, str(sources["driver"]), "--pretrained=tiny", f"--output={output}"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(p.name for p in output.parent.iterdir()) == ["1"]  # stale temporary removed
    return output


# name, signature or function, inputs (built in the child from `base`), expected text
_CHILD = textwrap.dedent(
    """
    import json
    import numpy as np
    import tensorflow as tf

    m = tf.saved_model.load(PATH)
    rng = np.random.default_rng(0)
    T, H, W = 3, 20, 28
    frames = rng.random((T, H, W, 3), dtype=np.float32)
    masks = (rng.random((T, H, W, 1)) > 0.5).astype(np.float32)
    styles = rng.random((2, 16, 12, 3), dtype=np.float32)
    c = tf.constant
    sd, su8 = m.signatures["serving_default"], m.signatures["serving_uint8"]
    stats = m.signatures["encode_styles"](styles=c(styles))
    empty = {f"state_{i}": tf.zeros([0, 0, 0, 0, 0]) for i in range(6)}
    pred = m.signatures["predict_grids"](frames=c(frames[:1]), masks=c(masks[:1]), **stats, **empty)
    nan_frames = frames.copy(); nan_frames[1, 5, 7, 2] = np.nan
    bad_grids = pred["grids"].numpy(); bad_grids[0, 0, 0, 0, 0] = np.inf
    u8 = lambda x: c((x * 255).round().astype(np.uint8))
    calls = {
        "valid": lambda: sd(frames=c(frames), masks=c(masks), styles=c(styles), r=c(2)),
        "frames 0..255 floats": lambda: sd(frames=c(frames * 255), masks=c(masks), styles=c(styles), r=c(2)),
        "one NaN pixel": lambda: sd(frames=c(nan_frames), masks=c(masks), styles=c(styles), r=c(2)),
        "masks 0/255 floats": lambda: sd(frames=c(frames), masks=c(masks * 255), styles=c(styles), r=c(2)),
        "uint8 masks 0/1": lambda: su8(frames=u8(frames), masks=c(masks.astype(np.uint8)), styles=u8(styles), r=c(2)),
        "styles 0..255 floats": lambda: sd(frames=c(frames), masks=c(masks), styles=c(styles * 255), r=c(2)),
        "r = 0": lambda: sd(frames=c(frames), masks=c(masks), styles=c(styles), r=c(0)),
        "one style for two regions": lambda: sd(frames=c(frames), masks=c(masks), styles=c(styles[:1]), r=c(2)),
        "masks of another length": lambda: sd(frames=c(frames), masks=c(masks[:2]), styles=c(styles), r=c(2)),
        "frames of rank 3": lambda: sd(frames=c(frames[0]), masks=c(masks), styles=c(styles), r=c(2)),
        "frames with 4 channels": lambda: sd(frames=c(np.concatenate([frames, frames[..., :1]], -1)), masks=c(masks), styles=c(styles), r=c(2)),
        "scalar r given as a vector": lambda: sd(frames=c(frames), masks=c(masks), styles=c(styles), r=c([2])),
        "no frames": lambda: sd(frames=c(frames[:0]), masks=c(masks[:0]), styles=c(styles), r=c(2)),
        "uint8 frames to the float32 signature": lambda: sd(frames=u8(frames), masks=c(masks), styles=c(styles), r=c(2)),
        "int32 frames to the function": lambda: m.stylize(frames=frames.astype(np.int32), masks=masks, styles=styles, r=2),
        "render: inf in the grids": lambda: m.signatures["render"](grids=c(bad_grids), frames=c(frames[:1])),
        "render: batch differs": lambda: m.signatures["render"](grids=pred["grids"], frames=c(frames[:2])),
        "predict_grids: statistics of 3 styles": lambda: m.signatures["predict_grids"](
            frames=c(frames[:1]), masks=c(masks[:1]),
            **m.signatures["encode_styles"](styles=c(np.concatenate([styles, styles[:1]]))), **empty),
        "encode_styles: 0..255 floats": lambda: m.signatures["encode_styles"](styles=c(styles * 255)),
    }
    results = {}
    for name, call in calls.items():
        try:
            value = call()
            results[name] = {"ok": True}
            if name == "valid":
                np.save(OUTPUT, value["frames"].numpy())
        except Exception as e:  # noqa: BLE001
            results[name] = {"ok": False, "type": type(e).__name__, "message": str(e)}
    print(json.dumps(results))
    """
)

# What a caller sees: the error type and a text of one line in the message. Errors from the
# validation inside the graph start with the argument's name.
EXPECTED = {
    "frames 0..255 floats": ("InvalidArgumentError", "frames: float frames must be finite and in [0, 1]"),
    "one NaN pixel": ("InvalidArgumentError", "[non-finite values:] [1]"),
    "masks 0/255 floats": ("InvalidArgumentError", "masks: float masks must be finite and in [0, 1]"),
    "uint8 masks 0/1": ("InvalidArgumentError", "masks: uint8 masks must use 0/255"),
    "styles 0..255 floats": ("InvalidArgumentError", "styles: float styles must be finite and in [0, 1]"),
    "r = 0": ("InvalidArgumentError", "r: expected an int32 >= 1"),
    "one style for two regions": ("InvalidArgumentError", "styles: expected [K, h, w, 3] with K = (K-1 of masks) + 1"),
    "masks of another length": ("InvalidArgumentError", "masks: expected [T, H, W, K-1] with the T, H, W of frames"),
    "frames of rank 3": ("InvalidArgumentError", "Shape of tensor frames [20,28,3] is not compatible with expected shape [?,?,?,3]"),
    "frames with 4 channels": ("InvalidArgumentError", "Shape of tensor frames [3,20,28,4] is not compatible with expected shape [?,?,?,3]"),
    "scalar r given as a vector": ("InvalidArgumentError", "Shape of tensor r [1] is not compatible with expected shape []"),
    "no frames": ("InvalidArgumentError", "frames: expected [T, H, W, 3] with T, H, W >= 1"),
    # Raised by TensorFlow's signature machinery before the graph runs (documented in serving.md).
    "uint8 frames to the float32 signature": ("InvalidArgumentError", "was expected to be a float tensor but is a uint8 tensor"),
    "int32 frames to the function": ("ValueError", "Could not find matching concrete function"),
    "render: inf in the grids": ("InvalidArgumentError", "grids: must be finite"),
    "render: batch differs": ("InvalidArgumentError", "frames: expected [B, H, W, 3] with H, W >= 1 and the B of grids"),
    "predict_grids: statistics of 3 styles": ("InvalidArgumentError", "mean_0..std_5: the style statistics need K"),
    "encode_styles: 0..255 floats": ("InvalidArgumentError", "styles: float styles must be finite"),
}  # fmt: skip


@pytest.mark.slow
def test_signatures_validate_inputs_in_a_fresh_process(
    shipped_export, sources, tmp_path, monkeypatch
):
    from lvst_tf import loading
    from lvst_tf.inference import VideoStylizer

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    proc = faults.run_without_lvst_tf(
        _CHILD, cwd=elsewhere, timeout=900, PATH=str(shipped_export),
        OUTPUT=str(tmp_path / "valid.npy"),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    assert results.pop("valid") == {"ok": True}
    assert set(results) == set(EXPECTED)
    for name, (kind, text) in EXPECTED.items():
        got = results[name]
        assert not got["ok"], f"{name}: accepted"
        assert got["type"] == kind, (name, got)
        assert any(text in line for line in got["message"].splitlines()), (name, got["message"])
    # The valid call gives the in-process model's frames (the shipped model loads bit for bit).
    rng = np.random.default_rng(0)
    frames = rng.random((3, 20, 28, 3), dtype=np.float32)
    masks = (rng.random((3, 20, 28, 1)) > 0.5).astype(np.float32)
    styles = rng.random((2, 16, 12, 3), dtype=np.float32)
    monkeypatch.setattr(loading, "PRETRAINED_DIR", sources["pretrained_root"])
    model = loading.load_pretrained("tiny")
    want = VideoStylizer(model, r=2).stylize(frames, masks, list(styles))
    np.testing.assert_allclose(np.load(tmp_path / "valid.npy"), want, atol=1e-5)
