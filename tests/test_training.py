"""Training loop pieces that run fast: summaries, checkpoints helpers, argument checks."""

import glob
import os
import pathlib
import signal

import numpy as np
import pytest
import tensorflow as tf
from faults import dead_pid

import gin
from lvst_tf import training
from lvst_tf.fileio import write_atomic
from lvst_tf.training import checkpoints, resume, summaries


def read_events(folder):
    """{tag: [(step, plugin_name, tensor_proto), ...]} of every event file under `folder`."""
    out = {}
    for path in sorted(glob.glob(os.path.join(folder, "events.out.tfevents.*"))):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                plugin = value.metadata.plugin_data.plugin_name
                out.setdefault(value.tag, []).append((event.step, plugin, value.tensor))
    return out


def test_summaries_are_written_without_tensorboard(tmp_path):
    writer = tf.summary.create_file_writer(str(tmp_path))
    summaries.write_scalars(writer, 7, {"loss/style": 1.5})
    with writer.as_default(step=7):
        summaries.image("images/x", np.full((2, 4, 5, 3), 0.5, np.float32))
        summaries.text("gin/config", "a = 1")
    writer.flush()
    events = read_events(str(tmp_path))
    step, plugin, tensor = events["loss/style"][0]
    assert (step, plugin) == (7, "scalars")
    assert tf.make_ndarray(tensor) == pytest.approx(1.5)
    step, plugin, tensor = events["images/x"][0]
    strings = tf.make_ndarray(tensor)
    assert plugin == "images" and strings[0] == b"5" and strings[1] == b"4" and len(strings) == 4
    decoded = tf.io.decode_png(strings[2]).numpy()
    assert decoded.shape == (4, 5, 3) and np.all(np.abs(decoded.astype(int) - 128) <= 1)
    assert events["gin/config"][0][1] == "text"
    with pytest.raises(ValueError, match="images"):
        summaries.image("bad", np.zeros((4, 5, 3)))


def test_progress_line_and_durations():
    line = summaries.progress_line(10, 110, {"total": 1.25, "style": 0.5}, 2.0)
    assert line.startswith("step 10/110 | total 1.25 style 0.5 | 2.00 steps/s | ETA 50s")
    assert summaries.format_duration(3725) == "1h02m05s"
    assert summaries.format_duration(float("inf")) == "?"


def test_gin_markdown_indents_code():
    md = summaries.gin_config_markdown("# Parameters\ntrain.num_steps = 3")
    assert md.splitlines() == ["Parameters", "    train.num_steps = 3"]


def test_resolve_checkpoint(tmp_path):
    with pytest.raises(ValueError, match="no checkpoint"):
        checkpoints.resolve_checkpoint(str(tmp_path))
    step = tf.Variable(5, dtype=tf.int64)
    ckpt = tf.train.Checkpoint(step=step)
    manager = checkpoints.make_manager(ckpt, checkpoints.checkpoint_dir(tmp_path))
    prefix = manager.save(checkpoint_number=5)
    assert checkpoints.resolve_checkpoint(str(tmp_path)) == prefix
    assert checkpoints.resolve_checkpoint(checkpoints.checkpoint_dir(tmp_path)) == prefix
    assert checkpoints.resolve_checkpoint(prefix) == prefix
    assert checkpoints.latest_step(tmp_path) == 5


def test_atomic_text_write(tmp_path):
    path = tmp_path / "sub" / "a.gin"
    write_atomic(path, "x = 1\n")
    write_atomic(path, "x = 2\n")
    assert path.read_text() == "x = 2\n"
    assert sorted(p.name for p in path.parent.iterdir()) == ["a.gin"]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_steps": -1}, "num_steps"),
        ({"num_steps": 3, "trainable": "vgg"}, "trainable"),
        ({"num_steps": 3, "checkpoint_every": 0}, "checkpoint_every"),
        ({"num_steps": 3, "eval_every": -1}, "eval_every"),
        ({"num_steps": 3, "clip_norm": 0.0}, "clip_norm"),
    ],
)
def test_train_rejects_bad_arguments_before_work(tmp_path, kwargs, match):
    gin.clear_config()
    with pytest.raises(ValueError, match=match):
        training.train(str(tmp_path / "run"), **kwargs)
    assert not (tmp_path / "run").exists()


def test_train_phases_rejects_a_string():
    gin.clear_config()
    with pytest.raises(ValueError, match="phases"):
        training.train_phases("unused", phases="end2end")


def test_train_rejects_a_missing_dataset_before_work(tmp_path):
    gin.clear_config()
    with pytest.raises(ValueError, match="root"):
        training.train(str(tmp_path / "run"), num_steps=3, data_root=str(tmp_path / "no_davis"))
    assert not (tmp_path / "run").exists()


# ------------------------------------------------------------------------------------------------
# TrainConfig, data source rule, resume check, checkpoint store.


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"learning_rate": float("inf")}, "learning_rate"),
        ({"beta_1": 1.0}, "beta_1"),
        ({"seed": -1}, "seed"),
        ({"max_checkpoints": 0}, "max_checkpoints"),
        ({"init_scope": "encoder"}, "init_scope"),
        ({"run_eagerly": "yes"}, "run_eagerly"),
        ({"num_steps": True}, "num_steps"),
    ],
)
def test_train_config_names_the_bad_binding(kwargs, match):
    with pytest.raises(ValueError, match=f"train.{match}"):
        training.TrainConfig.with_defaults(**{"num_steps": 3, **kwargs})


def test_train_config_defaults_are_trains_own():
    config = training.TrainConfig.with_defaults(num_steps=7)
    import inspect

    params = inspect.signature(training.train).parameters
    for name, value in config.arguments().items():
        assert value == (7 if name == "num_steps" else params[name].default), name


def test_select_variables_checks_the_choice_once():
    with pytest.raises(ValueError, match="train.trainable must be one of"):
        training.select_variables(None, "vgg")


def test_loss_needs_flow_follows_compute_losses():
    from lvst_tf import losses

    gin.clear_config()
    try:
        # compute_losses' own defaults: the flow temporal term with weight 10.
        assert losses.loss_needs_flow()
        gin.parse_config("s/compute_losses.temporal_weight = 0.0")
        with gin.config_scope("s"):
            assert not losses.loss_needs_flow()
        gin.parse_config("compute_losses.temporal_mode = 'frame_difference'")
        assert not losses.loss_needs_flow()
    finally:
        gin.clear_config()


def test_make_source_keywords_folders_and_the_davis_root_binding(tmp_path, monkeypatch):
    from lvst_tf import data

    samples = str(data.sample_davis_dir())
    gin.clear_config()
    try:
        assert training.make_source("samples", "val").root == data.sample_davis_dir()
        assert training.make_source(samples, "train").split == "train"
        monkeypatch.setenv(data.DAVIS_DIR_ENV, samples)
        assert str(training.make_source(None, "train").root) == samples  # $LVST_DAVIS_DIR
        monkeypatch.delenv(data.DAVIS_DIR_ENV)
        with pytest.raises(ValueError, match="train.data_root = None"):
            training.make_source(None, "train")
        # A DavisFolder.root binding is used with data_root None, refused beside another one.
        gin.parse_config(f"DavisFolder.root = '{samples}'\nDavisFolder.cache_bytes = 0")
        source = training.make_source(None, "val")
        assert str(source.root) == samples and source._cache.max_bytes == 0
        with pytest.raises(ValueError, match="both choose the training data"):
            training.make_source("samples", "train")
        gin.clear_config()
        gin.parse_config("DavisFolder.split = 'val'")
        with pytest.raises(ValueError, match="train.train_split"):
            training.make_source("samples", "train")
        gin.clear_config()
        monkeypatch.setenv("LVST_TF_HOME", str(tmp_path / "home"))
        with pytest.raises(ValueError, match="make_corpus"):
            training.make_source("corpus", "train")
        with pytest.raises(ValueError, match="train.data_root must be one of"):
            training.make_source(3, "train")
    finally:
        gin.clear_config()


_RECORDED = """
build_model.low_res = 32
build_model.grid_depth = 8
mask_pretrain/compute_losses.style_weight = 0.0
mask_pretrain/train.num_steps = 100
mask_pretrain/train.learning_rate = 0.0001
mask_pretrain/train.trainable = 'mask_net'
mask_pretrain/make_train_dataset.scale_range = (0.6, 1.0)
mask_pretrain/make_train_dataset.start_step = 0
train_phases.phases = ['mask_pretrain', 'end2end']
"""


def _check(tmp_path, bindings, **train_args):
    (tmp_path / "operative_config.gin").write_text(_RECORDED)
    gin.clear_config()
    gin.parse_config(
        "build_model.low_res = 32\nmask_pretrain/compute_losses.style_weight = 0.0\n"
        "train_phases.phases = ['mask_pretrain', 'end2end']\n" + bindings
    )
    args = {"num_steps": 100, "learning_rate": 1e-4, "trainable": "mask_net", **train_args}
    return resume.config_changes(tmp_path / "operative_config.gin", args, scope="mask_pretrain")


def test_resume_check_sorts_changes(tmp_path):
    from lvst_tf.training import resume as resume_lib

    try:
        assert _check(tmp_path, "") == []  # defaults, lists vs tuples, trainer-passed start_step
        changes = {c.name: c for c in _check(tmp_path, "build_model.low_res = 64")}
        assert changes["build_model.low_res"].kind == "structural"
        assert (changes["build_model.low_res"].before, changes["build_model.low_res"].after) == (
            32,
            64,
        )
        changes = _check(tmp_path, "mask_pretrain/compute_losses.style_weight = 1.0", num_steps=200)
        kinds = {c.name: c.kind for c in changes}
        assert kinds == {"compute_losses.style_weight": "setting", "train.num_steps": "free"}
        # An unscoped binding reaches the phase unless the phase overrides it.
        changes = _check(tmp_path, "compute_losses.content_weight = 0.0")
        assert [c.name for c in changes] == ["compute_losses.content_weight"]
        assert [c.kind for c in _check(tmp_path, "", trainable="all")] == ["structural"]
        # Same variables, used differently: a setting (resumable with --allow_config_change).
        changes = _check(tmp_path, "build_model.conv_padding = 'reflect'")
        assert [(c.name, c.kind) for c in changes] == [("build_model.conv_padding", "setting")]
        changes = _check(tmp_path, "build_model.vgg_padding = 'reflect'")
        assert [(c.name, c.kind) for c in changes] == [("build_model.vgg_padding", "setting")]
        with pytest.raises(ValueError, match=r"build_model.low_res 32 -> 64"):
            _check(tmp_path, "build_model.low_res = 64")  # parse for the next call
            resume_lib.check_resume(
                tmp_path, {"num_steps": 100, "learning_rate": 1e-4, "trainable": "mask_net"},
                "mask_pretrain", allow_config_change=True,
            )  # fmt: skip
        _check(tmp_path, "train.learning_rate = 1e-3")
        args = {"num_steps": 100, "learning_rate": 1e-3, "trainable": "mask_net"}
        with pytest.raises(ValueError, match="--allow_config_change"):
            resume_lib.check_resume(tmp_path, args, "mask_pretrain")
        accepted = resume_lib.check_resume(tmp_path, args, "mask_pretrain", True)
        assert [c.name for c in accepted] == ["train.learning_rate"]
    finally:
        gin.clear_config()


def _store(tmp_path, keep):
    value = tf.Variable(0.0)
    ckpt = tf.train.Checkpoint(value=value)
    return checkpoints.CheckpointStore(ckpt, tmp_path / "checkpoints", keep), value


def test_store_keeps_the_previous_checkpoint_until_the_new_one_reads_back(tmp_path, monkeypatch):
    store, value = _store(tmp_path, keep=1)
    for step in (1, 2):
        value.assign(float(step))
        store.save(step)
    assert store.steps() == [2] and checkpoints.latest_step is not None
    assert tf.train.latest_checkpoint(store.directory).endswith("ckpt-2")
    # A write that does not read back: ckpt-2 (the previous one) stays, the state keeps pointing at it.
    monkeypatch.setattr(checkpoints, "_intact", lambda prefix: not prefix.endswith("ckpt-3"))
    value.assign(3.0)
    with pytest.raises(OSError, match="cannot be read back"):
        store.save(3)
    assert 2 in store.steps()
    assert tf.train.latest_checkpoint(store.directory).endswith("ckpt-2")


def test_store_restores_the_newest_intact_checkpoint(tmp_path):
    store, value = _store(tmp_path, keep=3)
    for step in (1, 2, 3):
        value.assign(float(step))
        store.save(step)
    data = next(pathlib.Path(store.directory).glob("ckpt-3.data-*"))
    data.write_bytes(data.read_bytes()[:10])
    assert store.find_resumable() == (2, [3])
    fresh, restored_value = _store(tmp_path, keep=3)
    assert fresh.restore() == 2 and float(restored_value.numpy()) == 2.0
    assert (pathlib.Path(store.directory) / "unreadable" / data.name).is_file()
    assert tf.train.latest_checkpoint(store.directory).endswith("ckpt-2")
    for step in (1, 2):  # every remaining one unreadable: an error, nothing moved
        path = next(pathlib.Path(store.directory).glob(f"ckpt-{step}.data-*"))
        path.write_bytes(b"")
    with pytest.raises(ValueError, match="every checkpoint"):
        _store(tmp_path, keep=3)[0].restore()
    assert sorted(p.name for p in pathlib.Path(store.directory).glob("ckpt-*.index")) == [
        "ckpt-1.index",
        "ckpt-2.index",
    ]


def test_stale_temp_files_are_found_and_removed(tmp_path):
    dead = dead_pid()
    stale = [
        tmp_path / "checkpoints" / "ckpt-9_temp" / "part-00000-of-00001.index",
        tmp_path / "checkpoints" / "checkpoint.tmp5e1f",
        tmp_path / ".operative_config.gin.abc.tmp",  # write_atomic's earlier naming
        tmp_path / f".operative_config.gin.tmp-{dead}-abc",  # a killed writer's
    ]
    keep = [
        tmp_path / "checkpoints" / "ckpt-9.index",
        tmp_path / "operative_config.gin",
        tmp_path / f".quality.csv.tmp-{os.getpid()}-abc",  # a writer that still runs
    ]
    for path in stale + keep:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x")
    removed = checkpoints.clean_stale_temp_files(tmp_path)
    assert len(removed) == 4
    assert not any(p.exists() for p in stale) and all(p.exists() for p in keep)
    assert not (tmp_path / "checkpoints" / "ckpt-9_temp").exists()


def test_stop_signal_owns_its_stop_even_when_tensorflow_rebuilt_it():
    """A signal delivered inside a TensorFlow callback can come back as a RuntimeError
    (pybind11 "... REPLACED BY _Interrupted"): once the stop was raised, the trainer treats the
    exception as the stop (and saves), before that as a real error."""
    from lvst_tf.training import loop  # noqa: PLC0415

    rebuilt = RuntimeError("MISMATCH ... REPLACED BY _Interrupted")
    with loop._StopSignal() as stop:
        assert stop.owns(loop._Interrupted("SIGTERM"))
        assert not stop.owns(rebuilt)
        with pytest.raises(loop._Interrupted):
            signal.raise_signal(signal.SIGTERM)
        assert stop.received == "SIGTERM"
        assert stop.owns(rebuilt)
        assert not stop.owns(SystemExit(1))
