"""Tests of lvst_tf.export and tools/export.py: workdir loading, SavedModel round trip in a fresh process.

The round trip runs `tf.saved_model.load` in a subprocess where `lvst_tf` cannot be imported (the
editable-install finder removed, the repository off sys.path, PYTHONPATH cleared, another working
directory) and compares its frames with the in-process `VideoStylizer` at two resolutions and for
uint8 / float32 / float64 inputs.
"""

import json
import os
import pathlib
import re
import stat
import subprocess
import sys
import textwrap

import faults
import numpy as np
import pytest
import tensorflow as tf

from lvst_tf import export, fileio, loading, models
from lvst_tf.inference import VideoStylizer

REPO = pathlib.Path(__file__).resolve().parents[1]
# Same float32 ops on the same machine; differences come only from op scheduling / batching
# (e.g. the style batch of K images vs one at a time), observed below 1e-6.
TOLERANCE = 1e-5


def make_workdir(path: pathlib.Path, low_res: int = 64) -> tf.keras.Model:
    """A training-like workdir without training: operative config + a checkpoint.

    The config says seed 3; the checkpoint holds a model built with seed 7 and then perturbed, so a
    loaded model only matches the saved one if the weights really came from the checkpoint.
    """
    path.mkdir(parents=True, exist_ok=True)
    (path / "operative_config.gin").write_text(
        "import lvst_tf.models\n\n"
        f"build_model.vgg_weights = None\nbuild_model.low_res = {low_res}\nbuild_model.seed = 3\n"
        "# Bindings of the package's other configurables are read and ignored.\n"
        "train.num_steps = 10\n"
    )
    model = models.build_model(vgg_weights=None, low_res=low_res, seed=7)
    loading.build_variables(model)
    rng = np.random.default_rng(0)
    for variable in model.trainable_weights:
        variable.assign(variable + 0.05 * rng.standard_normal(variable.shape).astype(np.float32))
    step = tf.Variable(5, dtype=tf.int64)
    tf.train.Checkpoint(model=model, step=step).save(str(path / "checkpoints" / "ckpt"))
    return model


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    path = tmp_path_factory.mktemp("workdir")
    return path, make_workdir(path)


def test_load_model_from_workdir_restores_weights(workdir):
    path, saved = workdir
    loaded = export.load_model_from_workdir(path)
    assert loaded.low_res == 64
    # Same architecture, so the weight lists line up (Keras paths carry per-process name suffixes).
    # The trained parts come from the checkpoint; the frozen encoder from its source (here the
    # config's seed 3, not the saved model's seed 7).
    want, got = loading.trained_weights(saved), loading.trained_weights(loaded)
    assert list(want) == list(got) and len(want) > 40
    for key in want:
        np.testing.assert_array_equal(got[key], want[key], err_msg=key)
    # A named checkpoint: a step number, a name in checkpoints/ or a prefix path.
    prefix = str(path / "checkpoints" / "ckpt-1")
    for name in (1, "ckpt-1", prefix, None):
        assert loading.resolve_checkpoint(path, name) == prefix


def test_load_model_errors(tmp_path, workdir):
    with pytest.raises(ValueError, match="not a folder"):
        export.load_model_from_workdir(tmp_path / "missing")
    with pytest.raises(ValueError, match="operative_config.gin"):
        export.load_model_from_workdir(tmp_path)
    (tmp_path / "operative_config.gin").write_text("build_model.low_res = 64\n")
    with pytest.raises(ValueError, match="no checkpoint"):
        export.load_model_from_workdir(tmp_path)
    with pytest.raises(ValueError, match="checkpoint: 'ckpt-99' not found"):
        export.load_model_from_workdir(workdir[0], checkpoint="ckpt-99")


def _clips():
    """Two resolutions; the second has K = 3 regions (dynamic K) and odd sizes."""
    rng = np.random.default_rng(1)
    out = []
    for (t, h, w, k), r in (((5, 40, 56, 2), 2), ((4, 45, 33, 3), 3)):
        frames = rng.integers(0, 256, (t, h, w, 3), dtype=np.uint8)
        yy, xx = np.mgrid[:h, :w]
        masks = (
            np.stack(
                [
                    ((xx - 5 * i - 4 * j) ** 2 + (yy - h / 2) ** 2 < (h / 3) ** 2)
                    for i in range(t)
                    for j in range(k - 1)
                ]
            )
            .reshape(t, k - 1, h, w)
            .transpose(0, 2, 3, 1)
        )
        masks = masks.astype(np.uint8) * 255
        styles = rng.integers(0, 256, (k, 24, 20, 3), dtype=np.uint8)
        out.append((frames, masks, styles, r))
    return out


# Runs in a fresh interpreter where lvst_tf is not importable (`faults.run_without_lvst_tf`).
_CHILD = textwrap.dedent(
    """
    import numpy as np
    import tensorflow as tf
    m = tf.saved_model.load(PATH)
    data = np.load(INPUTS)
    results = {}
    for c in range(2):
        frames, masks, styles, r = (data[f"{n}{c}"] for n in ("frames", "masks", "styles", "r"))
        r = int(r)
        results[f"uint8_{c}"] = m.stylize(frames=frames, masks=masks, styles=styles, r=r)["frames"]
        f32 = [x.astype(np.float32) / 255 for x in (frames, masks, styles)]
        results[f"float32_{c}"] = m.signatures["serving_default"](
            frames=tf.constant(f32[0]), masks=tf.constant(f32[1]), styles=tf.constant(f32[2]),
            r=tf.constant(r))["frames"]
        f64 = [x.astype(np.float64) / 255 for x in (frames, masks, styles)]
        results[f"float64_{c}"] = m.stylize(frames=f64[0], masks=f64[1], styles=f64[2], r=r)["frames"]
        results[f"sig_uint8_{c}"] = m.signatures["serving_uint8"](
            frames=tf.constant(frames), masks=tf.constant(masks), styles=tf.constant(styles),
            r=tf.constant(r))["frames"]
        # Streaming with the pieces (r = 1): state goes in and out explicitly.
        stats = m.signatures["encode_styles"](styles=tf.constant(f32[2]))
        state = {f"state_{i}": tf.zeros([0, 0, 0, 0, 0]) for i in range(6)}
        outs = []
        for t in range(len(frames)):
            pred = m.signatures["predict_grids"](
                frames=tf.constant(f32[0][t:t + 1]), masks=tf.constant(f32[1][t:t + 1]), **stats, **state)
            state = {k: v for k, v in pred.items() if k.startswith("state_")}
            rendered = m.signatures["render"](grids=pred["grids"], frames=tf.constant(f32[0][t:t + 1]))
            outs.append(np.clip(rendered["frames"].numpy()[0], 0, 1))
        results[f"stream_{c}"] = np.stack(outs)
    np.savez(OUTPUTS, **{k: np.asarray(v) for k, v in results.items()})
    print("CHILD OK")
    """
)


@pytest.fixture(scope="module")
def exported(workdir, tmp_path_factory):
    """The workdir exported by tools/export.py (a TF Serving version folder `1/`)."""
    path, _ = workdir
    out = tmp_path_factory.mktemp("export") / "saved" / "1"
    proc = subprocess.run(
        [sys.executable, str(REPO / "tools" / "export.py"), f"--workdir={path}", f"--output={out}"],
        capture_output=True, text=True, timeout=900, env=faults.hidden_env() | {"PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "SavedModel written" in proc.stdout
    return export.load_model_from_workdir(path), out


@pytest.mark.slow
def test_saved_model_round_trip_in_fresh_process(exported, tmp_path):
    model, saved = exported
    assert not [p for p in saved.parent.iterdir() if p.name.startswith(".")]  # no temporaries left
    # The default render is the XLA slice (compiled once per frame size where it is served).
    assert b"_XlaMustCompile" in (saved / "saved_model.pb").read_bytes()
    marker = export.read_marker(saved)
    assert marker["render_impl"] == "xla" and marker["soft_mask_mode"] == "normalized"
    assert "workdir" in marker["source"]
    clips = _clips()
    inputs = {}
    references = {}
    for c, (frames, masks, styles, r) in enumerate(clips):
        inputs.update({f"frames{c}": frames, f"masks{c}": masks, f"styles{c}": styles, f"r{c}": r})
        references[c] = VideoStylizer(model, r=r).stylize(frames, masks, list(styles))
        references[f"stream_{c}"] = VideoStylizer(model, r=1).stylize(frames, masks, list(styles))
    np.savez(tmp_path / "inputs.npz", **inputs)
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    proc = faults.run_without_lvst_tf(
        _CHILD, cwd=workdir, timeout=600, PATH=str(saved), INPUTS=str(tmp_path / "inputs.npz"),
        OUTPUTS=str(tmp_path / "outputs.npz"),
    )  # fmt: skip
    assert proc.returncode == 0 and "CHILD OK" in proc.stdout, proc.stderr[-3000:]
    results = np.load(tmp_path / "outputs.npz")
    for c in range(2):
        ref = references[c]
        for name in ("uint8", "float32", "float64", "sig_uint8"):
            got = results[f"{name}_{c}"]
            assert got.shape == ref.shape and got.dtype == np.float32
            np.testing.assert_allclose(got, ref, atol=TOLERANCE, err_msg=f"{name} clip {c}")
        np.testing.assert_allclose(
            results[f"stream_{c}"], references[f"stream_{c}"], atol=TOLERANCE
        )
    # The model is not trivial: outputs differ from the inputs.
    assert np.abs(references[0] - clips[0][0] / 255.0).max() > 1e-2


@pytest.mark.slow
def test_saved_model_cli_lists_signatures(exported):
    _, saved = exported
    proc = subprocess.run(
        _saved_model_cli() + ["show", "--dir", str(saved), "--all"], capture_output=True, text=True,
        timeout=300, env=faults.hidden_env(),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    for name in export.SIGNATURE_NAMES:
        assert f"signature_def['{name}']" in proc.stdout
    for name in ("frames", "masks", "styles", "r", "state_0", "mean_5", "grids"):
        assert f"['{name}'] tensor_info" in proc.stdout


def _saved_model_cli():
    cli = pathlib.Path(sys.executable).with_name("saved_model_cli")
    if cli.exists():
        return [str(cli)]
    return [sys.executable, "-m", "tensorflow.python.tools.saved_model_cli"]


@pytest.mark.slow
def test_saved_model_cli_run_matches_in_process(exported, tmp_path):
    """`saved_model_cli run` loads through the saver (like TF Serving and the C++ API): every
    variable must be found (Keras 3 variable wrappers are not saved) and the XLA render must run."""
    model, saved = exported
    frames, masks, styles, r = _clips()[0]
    f32 = [x.astype(np.float32) / 255 for x in (frames, masks, styles)]
    files = {}
    for name, value in zip(("frames", "masks", "styles", "r"), (*f32, np.array(r, np.int32))):
        files[name] = tmp_path / f"{name}.npy"
        np.save(files[name], value)
    proc = subprocess.run(
        _saved_model_cli() + [
            "run", "--dir", str(saved), "--tag_set", "serve", "--signature_def", "serving_default",
            "--inputs", ";".join(f"{k}={v}" for k, v in files.items()),
            "--outdir", str(tmp_path / "out"),
        ],
        capture_output=True, text=True, timeout=600, env=faults.hidden_env(),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = np.load(tmp_path / "out" / "frames.npy")
    want = VideoStylizer(model, r=r).stylize(frames, masks, list(styles))
    np.testing.assert_allclose(got, want, atol=TOLERANCE)


@pytest.mark.slow
def test_paper_mode_export_matches_in_process(tmp_path):
    """A model configured with the "paper" soft grid mask, exported without XLA ("tf" render), gives
    the in-process model's frames through `serving_default` and through the streaming pieces."""
    model = models.build_model(vgg_weights=None, low_res=64, seed=5, soft_mask_mode="paper")
    loading.build_variables(model)
    rng = np.random.default_rng(2)
    for variable in model.trainable_weights:
        variable.assign(variable + 0.05 * rng.standard_normal(variable.shape).astype(np.float32))
    saved = export.export_saved_model(model, tmp_path / "paper", render_impl="tf")
    assert b"_XlaMustCompile" not in (saved / "saved_model.pb").read_bytes()
    adapter = export.SavedModelAdapter.from_path(saved)
    assert adapter.soft_mask_mode == "paper" and adapter.render_impl == "tf"

    frames, masks, styles, r = _clips()[1]  # K = 3 regions, odd sizes
    want = VideoStylizer(model, r=r, soft_mask_mode="paper").stylize(frames, masks, list(styles))
    normalized = VideoStylizer(model, r=r, soft_mask_mode="normalized").stylize(
        frames, masks, list(styles)
    )
    assert np.abs(want - normalized).max() > 1e-4  # the mode matters for this clip
    got = adapter.loaded.stylize(frames=frames, masks=masks, styles=styles, r=r)["frames"].numpy()
    np.testing.assert_allclose(got, want, atol=TOLERANCE)
    streamed = VideoStylizer(adapter, r=r, soft_mask_mode="paper").stylize(
        frames, masks, list(styles)
    )
    np.testing.assert_allclose(streamed, want, atol=TOLERANCE)
    # None means the export's own mode; another mode cannot be honoured.
    stats = adapter.encode_styles(styles.astype(np.float32) / 255)
    one = (frames[:1].astype(np.float32) / 255, masks[:1].astype(np.float32) / 255)
    direct = adapter.predict_grids(*one, stats, soft_mask_mode=None)
    reference = model.predict_grids(*one, stats, soft_mask_mode="paper")
    np.testing.assert_allclose(direct["grids"], reference["grids"], atol=TOLERANCE)
    with pytest.raises(
        ValueError, match="soft_mask_mode: the SavedModel was exported with 'paper'"
    ):
        adapter.predict_grids(*one, stats, soft_mask_mode="normalized")


# ----------------------------------------------------------------------------------------------------
# Output rules (no TensorFlow work).


def _fake_export(path: pathlib.Path, **extra) -> pathlib.Path:
    """A folder that looks like a previous export (marker, saved_model.pb, variables/)."""
    path.mkdir(parents=True)
    (path / "saved_model.pb").write_bytes(b"old graph")
    (path / "variables").mkdir()
    (path / "variables" / "variables.index").write_bytes(b"old index")
    marker = {"format": export.MARKER_FORMAT, "version": 1, "created_unix": 0.0, **extra}
    (path / export.MARKER_FILE).write_text(json.dumps(marker))
    return path


def test_check_output_rules(tmp_path):
    workdir = tmp_path / "runs" / "a"
    workdir.mkdir(parents=True)
    ok = export.check_output(tmp_path / "new" / "deeper" / "1", inputs=[workdir])
    assert ok == tmp_path / "new" / "deeper" / "1" and not (tmp_path / "new").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert export.check_output(empty) == empty  # nothing to lose: used as is
    previous = _fake_export(tmp_path / "prev")
    assert export.check_output(previous, overwrite=True) == previous
    refusals = {
        "already holds an export; pass --overwrite": dict(output=previous),
        "is the input": dict(output=workdir, overwrite=True, inputs=[workdir]),
        "is inside the input": dict(output=workdir / "export", inputs=[workdir]),
        "contains the input": dict(output=tmp_path / "runs", overwrite=True, inputs=[workdir]),
        "required": dict(output=""),
    }
    user = tmp_path / "user"
    user.mkdir()
    (user / "notes.txt").write_text("mine")
    refusals["is not an export written by tools/export.py"] = dict(output=user, overwrite=True)
    mixed = _fake_export(tmp_path / "mixed")
    (mixed / "notes.txt").write_text("mine")
    refusals["also holds ['notes.txt']"] = dict(output=mixed, overwrite=True)
    a_file = tmp_path / "file"
    a_file.write_text("x")
    refusals["exists and is not a folder"] = dict(output=a_file, overwrite=True)
    refusals["is a file, not a folder"] = dict(output=a_file / "sub" / "1")
    link = tmp_path / "link"
    link.symlink_to(previous)
    refusals[" exists and is not a folder"] = dict(output=link, overwrite=True)
    for expected, kwargs in refusals.items():
        with pytest.raises(ValueError, match=re.escape(expected)):
            export.check_output(**kwargs)
    assert (user / "notes.txt").read_text() == "mine" and previous.is_dir()


def test_clean_stale_temporaries(tmp_path):
    out = tmp_path / "1"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    dead_pid = int(dead.stdout)
    stale = tmp_path / f".1.export-tmp-{dead_pid}-abc123"
    stale.mkdir()
    (stale / "saved_model.pb").write_bytes(b"partial")
    live = tmp_path / f".1.export-tmp-{os.getpid()}-def456"  # a running export: kept
    live.mkdir()
    foreign = tmp_path / f".1.export-tmp-{dead_pid}-ghi789"  # not only export files: kept
    foreign.mkdir()
    (foreign / "mine.txt").write_text("x")
    other = tmp_path / f".2.export-tmp-{dead_pid}-jkl012"  # another output's: kept
    other.mkdir()
    assert export.clean_stale_temporaries(out) == [stale]
    assert not stale.exists() and live.exists() and foreign.exists() and other.exists()


def test_commit_replaces_a_previous_export_atomically(tmp_path):
    previous = _fake_export(tmp_path / "1")
    new = _fake_export(tmp_path / ".1.export-tmp-1-x", source="new")
    fileio.replace_folder(new, previous)
    assert export.read_marker(previous)["source"] == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["1"]


def test_failed_write_leaves_nothing_and_keeps_the_previous_export(tmp_path, monkeypatch):
    """A write that fails half way (here a fake full disk: TensorFlow's own ENOSPC error after a
    partial file) gives a one-line OSError naming the folder; the previous export is untouched, the
    temporary and the parents this call created are removed."""
    model = models.build_model(vgg_weights=None, low_res=32, seed=1)
    loading.build_variables(model)
    monkeypatch.setattr(export.StylizerModule, "signatures", lambda self: {})

    def full_disk(obj, path, signatures=None):
        pathlib.Path(path, "variables").mkdir()
        pathlib.Path(path, "variables", "variables.data-00000-of-00001").write_bytes(b"partial")
        raise tf.errors.ResourceExhaustedError(
            None, None,
            "{{function_node __wrapped__SaveV2}} " + f"{path}/variables/x.tempstate1; No space "
            "left on device [Op:SaveV2]",
        )  # fmt: skip

    monkeypatch.setattr(tf.saved_model, "save", full_disk)
    previous = _fake_export(tmp_path / "prev")
    before = {p: p.read_bytes() for p in previous.rglob("*") if p.is_file()}
    with pytest.raises(OSError, match=r"output: writing the SavedModel under .* failed: No space "
                                      r"left on device \("):  # fmt: skip
        export.export_saved_model(model, previous, overwrite=True)
    assert {p: p.read_bytes() for p in previous.rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prev"]
    with pytest.raises(OSError, match="No space left on device"):
        export.export_saved_model(model, tmp_path / "a" / "b" / "1")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prev"]  # created parents removed too


def test_umask_is_applied(tmp_path):
    folder = tmp_path / "x"
    (folder / "variables").mkdir(parents=True)
    (folder / "variables" / "data").write_bytes(b"1")
    os.chmod(folder, 0o700)
    old = os.umask(0o002)
    try:
        fileio.apply_umask(folder)
    finally:
        os.umask(old)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o775
    assert stat.S_IMODE((folder / "variables").stat().st_mode) == 0o775
    assert stat.S_IMODE((folder / "variables" / "data").stat().st_mode) == 0o664


def test_export_tool_reports_bad_workdir(tmp_path):
    """Without TensorFlow work (the full table is tests/test_faults_export.py)."""
    proc = subprocess.run(
        [sys.executable, str(REPO / "tools" / "export.py"), f"--workdir={tmp_path / 'nope'}"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 1 and "is not a training workdir" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (REPO / "saved_models" / "nope").exists()


def test_signatures_are_documented():
    text = (REPO / "docs" / "serving.md").read_text()
    for name in export.SIGNATURE_NAMES:
        assert f"`{name}`" in text
