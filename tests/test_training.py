"""Training loop pieces that run fast: summaries, checkpoints helpers, argument checks."""

import glob
import os

import numpy as np
import pytest
import tensorflow as tf

import gin
from lvst_tf import training
from lvst_tf.fileio import write_atomic
from lvst_tf.training import checkpoints, summaries


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
