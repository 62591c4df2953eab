"""Tests of the clip sources (DAVIS folder, TFDS davis, video folders) and label-map I/O."""

import os

import cv2
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from lvst_tf import data
from lvst_tf.data import image_io


def _make_davis(root, sequences, splits=None, resolution="480p"):
    """Writes a DAVIS-layout folder: sequences = {name: (frames [T,H,W,3], ids [T,H,W])}."""
    for name, (frames, ids) in sequences.items():
        for t, frame in enumerate(frames):
            image_io.write_image(root / "JPEGImages" / resolution / name / f"{t:05d}.jpg", frame)
        for t, mask in enumerate(ids):
            image_io.write_palette_png(
                root / "Annotations" / resolution / name / f"{t:05d}.png", mask
            )
    splits = splits if splits is not None else {"train": list(sequences)}
    for split, names in splits.items():
        path = root / "ImageSets" / "2017" / f"{split}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(f"{n}\n" for n in names))
    return root


def _clip(count=3, height=24, width=32, value=100):
    frames = np.full((count, height, width, 3), value, np.uint8)
    ids = np.zeros((count, height, width), np.uint8)
    ids[:, 4:12, 4:12] = 1
    ids[:, 14:20, 20:30] = 2
    return frames, ids


def test_shipped_samples_read_as_davis():
    root = data.sample_davis_dir()
    train = data.DavisFolder(root, split="train")
    val = data.DavisFolder(root, split="val", resolution="480p")
    assert train.names == ["carphone_a", "cup_a"]
    assert val.names == ["carphone_b", "cup_b"]
    for source in (train, val):
        assert len(source) == 2
        for sequence in source:
            assert sequence.frames.dtype == np.uint8 and sequence.instances.dtype == np.uint8
            assert sequence.frames.shape[:3] == sequence.instances.shape
            assert sequence.frames.shape[0] == 30
            ids = set(np.unique(sequence.instances).tolist())
            if sequence.name.startswith("carphone"):
                assert sequence.frames.shape[1:3] == (144, 176) and ids == {0, 1}
            else:
                assert sequence.frames.shape[1:3] == (240, 320) and ids == {0, 1, 2}
            # Objects cover a sensible part of every frame (masks are not empty or full).
            cover = (sequence.instances > 0).mean(axis=(1, 2))
            assert np.all(cover > 0.05) and np.all(cover < 0.8)
    styles = data.sample_style_paths()
    assert 3 <= len(styles) <= 5
    for path in styles:
        assert max(image_io.read_image(path).shape[:2]) <= 640


def test_davis_folder_reads_what_was_written(tmp_path):
    frames, ids = _clip()
    root = _make_davis(tmp_path, {"a": (frames, ids), "b": (frames + 50, ids)})
    source = data.DavisFolder(root)
    assert source.names == ["a", "b"] and source.num_frames(1) == 3
    sequence = source[1]
    np.testing.assert_array_equal(sequence.instances, ids)
    assert np.abs(sequence.frames.astype(int) - 150).max() <= 2  # JPEG
    clip_frames, clip_ids = source.load_clip(0, 1, 2)
    assert clip_frames.shape == (2, 24, 32, 3)
    np.testing.assert_array_equal(clip_ids, ids[1:3])


def test_davis_dir_from_environment(tmp_path, monkeypatch):
    root = _make_davis(tmp_path, {"a": _clip()})
    monkeypatch.setenv(data.DAVIS_DIR_ENV, str(root))
    assert data.DavisFolder().names == ["a"]
    monkeypatch.delenv(data.DAVIS_DIR_ENV)
    with pytest.raises(ValueError, match="LVST_DAVIS_DIR"):
        data.DavisFolder()


def test_palette_png_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 7, (13, 17)).astype(np.uint8)
    path = tmp_path / "m.png"
    image_io.write_palette_png(path, ids)
    assert path.read_bytes()[25] == 3  # colour type 3: palette
    np.testing.assert_array_equal(image_io.read_label_map(path), ids)
    # A grey PNG reads as its values.
    image_io.write_image(tmp_path / "g.png", ids * 30)
    np.testing.assert_array_equal(image_io.read_label_map(tmp_path / "g.png"), ids * 30)


def test_davis_bad_inputs(tmp_path):
    frames, ids = _clip()
    with pytest.raises(ValueError, match="not a DAVIS folder"):
        data.DavisFolder(tmp_path)
    root = _make_davis(tmp_path / "d", {"a": (frames, ids)}, splits={"train": ["a"], "val": []})
    with pytest.raises(ValueError, match="split file .*test.txt.* is missing"):
        data.DavisFolder(root, split="test")
    with pytest.raises(ValueError, match="lists no sequences"):
        data.DavisFolder(root, split="val")
    with pytest.raises(ValueError, match="resolution"):
        data.DavisFolder(root, resolution="720p")
    (root / "ImageSets" / "2017" / "train.txt").write_text("a\nmissing\n")
    with pytest.raises(ValueError, match="missing folder"):
        data.DavisFolder(root)
    # Frame / mask count mismatch.
    root = _make_davis(tmp_path / "c", {"a": (frames, ids[:2])})
    with pytest.raises(ValueError, match="3 frames .* but 2 masks"):
        data.DavisFolder(root)
    # Frame / mask size mismatch, found when the clip is read.
    root = _make_davis(tmp_path / "s", {"a": (frames, ids[:, :20])})
    source = data.DavisFolder(root)
    with pytest.raises(ValueError, match="00000.png.* is 32x20 but its frame is 32x24"):
        source.load_clip(0, 0, 2)
    # An unreadable image is named by its path.
    root = _make_davis(tmp_path / "u", {"a": (frames, ids)})
    broken = root / "JPEGImages" / "480p" / "a" / "00001.jpg"
    broken.write_bytes(b"not a jpeg")
    source = data.DavisFolder(root)
    with pytest.raises(ValueError, match="cannot decode .*00001.jpg"):
        source.load_clip(0, 0, 3)
    with pytest.raises(ValueError, match="cannot load"):
        source.load_clip(0, 2, 3)


def test_video_folder_on_samples_and_frame_folders(tmp_path):
    source = data.VideoFolder(data.samples_root() / "videos")
    assert source.names == ["carphone"]
    sequence = source[0]
    assert sequence.frames.shape == (20, 144, 176, 3)
    assert set(np.unique(sequence.instances).tolist()) == {0, 1}
    # A frame folder with 0/255 masks beside it.
    frames, ids = _clip()
    for t in range(3):
        image_io.write_image(tmp_path / "clip" / f"f{t:03d}.png", frames[t])
        image_io.write_image(
            tmp_path / "clip_masks" / f"{t:05d}.png", (ids[t] > 0).astype(np.uint8) * 255
        )
    source = data.VideoFolder(tmp_path)
    np.testing.assert_array_equal(source[0].instances, (ids > 0).astype(np.uint8))
    np.testing.assert_array_equal(source[0].frames, frames)


def test_video_folder_bad_inputs(tmp_path):
    with pytest.raises(ValueError, match="holds no videos"):
        data.VideoFolder(tmp_path)
    frames, ids = _clip()
    for t in range(3):
        image_io.write_image(tmp_path / "clip" / f"{t:05d}.png", frames[t])
    with pytest.raises(ValueError, match="no masks"):
        data.VideoFolder(tmp_path)
    for t in range(2):
        image_io.write_image(tmp_path / "clip_masks" / f"{t:05d}.png", ids[t])
    with pytest.raises(ValueError, match="3 frames .* but 2 masks"):
        data.VideoFolder(tmp_path)
    image_io.write_image(tmp_path / "clip_masks" / "00002.png", ids[2, :10])
    with pytest.raises(ValueError, match="00002.png.* is 32x10"):
        data.VideoFolder(tmp_path)[0]


def _fake_davis_examples(count):
    """Aligned TFDS `davis` examples: frame colour k*60 + 30 where the instance mask is k."""
    for k in range(count):
        ids = np.zeros((4, 40, 48), np.uint8)
        ids[:, 10:30, 8 + 4 * k : 28 + 4 * k] = 1
        frames = np.where(ids[..., None] > 0, 255, 0).astype(np.uint8).repeat(3, -1)
        yield {
            "video": {
                "frames": [cv2.imencode(".png", f)[1].tobytes() for f in frames],
                "segmentations": [cv2.imencode(".png", m[..., None])[1].tobytes() for m in ids],
            },
            "metadata": {"num_frames": 4, "video_name": f"video{k}"},
        }


def _as_dataset(self, split, decoders=None, **kwargs):
    del kwargs
    assert self.name == "davis" and decoders is not None
    count = 3 if split == "train" else 1
    signature = {
        "video": {
            "frames": tf.TensorSpec([None], tf.string),
            "segmentations": tf.TensorSpec([None], tf.string),
        },
        "metadata": {
            "num_frames": tf.TensorSpec([], tf.int64),
            "video_name": tf.TensorSpec([], tf.string),
        },
    }
    return tf.data.Dataset.from_generator(
        lambda: _fake_davis_examples(count), output_signature=signature
    )


def test_tfds_davis_under_mock_data():
    with tfds.testing.mock_data(as_dataset_fn=_as_dataset):
        train = data.TfdsDavis(config="480p", split="train")
        val = data.TfdsDavis(config="full_resolution", split="val")
    assert train.names == ["video0", "video1", "video2"] and val.names == ["video0"]
    sequence = train[1]
    assert sequence.frames.shape == (4, 40, 48, 3) and sequence.instances.shape == (4, 40, 48)
    np.testing.assert_array_equal(sequence.frames[..., 0] == 255, sequence.instances == 1)
    # Through the pipeline (crop, zoom, flip) the masks still sit on the bright object: they may
    # disagree only on edge pixels that are half covered.
    batch = next(iter(data.make_train_dataset(train, 2, 3, 32, seed=0, with_flow=False)))
    frames, masks = batch["frames"].numpy()[..., 0], batch["clean_masks"].numpy()[..., 0]
    disagree = (frames > 0.5) != (masks > 0.5)
    assert np.all(np.abs(frames[disagree] - 0.5) < 0.2)
    assert masks.sum() > 0


class LvstFakeDavis(tfds.core.GeneratorBasedBuilder):
    """A prepared-on-disk stand-in with the features and configs of TFDS `davis` (2.1.0)."""

    VERSION = tfds.core.Version("2.1.0")
    BUILDER_CONFIGS = [tfds.core.BuilderConfig(name="480p")]

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self,
            features=tfds.features.FeaturesDict(
                {
                    "video": tfds.features.Sequence(
                        {
                            "frames": tfds.features.Image(shape=(None, None, 3)),
                            "segmentations": tfds.features.Image(
                                shape=(None, None, 1), use_colormap=True
                            ),
                        }
                    ),
                    "metadata": {"num_frames": np.int64, "video_name": np.str_},
                }
            ),
        )

    def _split_generators(self, dl_manager):
        del dl_manager
        return {"train": self._generate_examples(2), "validation": self._generate_examples(1)}

    def _generate_examples(self, count):
        for k in range(count):
            ids = np.zeros((3, 20, 30, 1), np.uint8)
            ids[:, 5:12, 5 + k : 15 + k] = k + 1
            frames = np.where(ids > 0, 250, 10).astype(np.uint8).repeat(3, -1)
            video = {"frames": list(frames), "segmentations": list(ids)}
            yield k, {"video": video, "metadata": {"num_frames": 3, "video_name": f"v{k}"}}


def test_tfds_davis_reads_a_prepared_dataset(tmp_path):
    # The real read path (no mock): encoded images kept, decoded per clip, ids from the PNGs.
    LvstFakeDavis(config="480p", data_dir=os.fspath(tmp_path)).download_and_prepare()
    source = data.TfdsDavis(split="train", data_dir=os.fspath(tmp_path), name="lvst_fake_davis")
    assert sorted(source.names) == ["v0", "v1"]
    sequence = source[source.names.index("v1")]
    assert sequence.frames.shape == (3, 20, 30, 3)
    assert set(np.unique(sequence.instances).tolist()) == {0, 2}
    np.testing.assert_array_equal(sequence.frames[..., 0] > 128, sequence.instances > 0)
    val = data.TfdsDavis(split="val", data_dir=os.fspath(tmp_path), name="lvst_fake_davis")
    assert val.names == ["v0"]


def test_tfds_bad_inputs(tmp_path):
    with pytest.raises(ValueError, match="config"):
        data.TfdsDavis(config="720p")
    with pytest.raises(ValueError, match="split"):
        data.TfdsDavis(split="test")
    # Not prepared and no download: a fast, clear error instead of network retries.
    with pytest.raises(ValueError, match="download=True"):
        data.TfdsDavis(data_dir=os.fspath(tmp_path))


def test_tfds_image_styles_under_mock_data():
    def as_dataset(self, split, **kwargs):
        del self, split, kwargs
        images = np.random.default_rng(0).integers(0, 255, (3, 50, 70, 3)).astype(np.uint8)
        return tf.data.Dataset.from_tensor_slices({"image": images, "label": np.arange(3)})

    with tfds.testing.mock_data(as_dataset_fn=as_dataset):
        styles = data.TfdsImageStyles("oxford_flowers102", max_images=2)
        with pytest.raises(ValueError, match="image_key"):
            data.TfdsImageStyles("oxford_flowers102", image_key="picture")
    assert len(styles) == 2
    sample = styles.sample(np.random.default_rng(0), 32)
    assert sample.shape == (32, 32, 3) and sample.dtype == np.uint8
