"""Tests of the training pipeline (lvst_tf.data.make_train_dataset / ClipSampler)."""

import numpy as np
import pytest

import gin
from lvst_tf import data


class ArraySource(data.ClipSource):
    """An in-memory clip source for tests: lists of (frames [T,H,W,3], instances [T,H,W])."""

    def __init__(self, sequences):
        self.names = [f"seq{i}" for i in range(len(sequences))]
        self.sequences = sequences

    def num_frames(self, index):
        return len(self.sequences[index][0])

    def _load(self, index, start, length):
        frames, instances = self.sequences[index]
        return frames[start : start + length], instances[start : start + length]


def _texture(rng, height, width):
    noise = rng.random((height // 4 + 1, width // 4 + 1, 3))
    # Blocky texture: every pixel distinct enough to identify shifts exactly.
    big = np.kron(noise, np.ones((4, 4, 1)))[:height, :width]
    return (big * 255).astype(np.uint8)


@pytest.fixture(scope="module")
def samples_train():
    return data.DavisFolder(data.sample_davis_dir(), split="train")


def test_element_fields_shapes_dtypes_ranges(samples_train):
    dataset = data.make_train_dataset(
        samples_train, batch_size=2, clip_length=3, crop_size=64, num_regions=3, seed=0
    )
    batch = next(iter(dataset))
    expected = {
        "frames": (2, 3, 64, 64, 3),
        "clean_masks": (2, 3, 64, 64, 2),
        "noisy_masks": (2, 3, 64, 64, 2),
        "styles": (2, 3, 64, 64, 3),
        "flow": (2, 2, 64, 64, 2),
        "flow_valid": (2, 2, 64, 64),
    }
    assert set(batch) == set(expected)
    for key, shape in expected.items():
        value = batch[key].numpy()
        assert value.shape == shape, key
        assert value.dtype == np.float32, key
        assert np.all(np.isfinite(value)), key
        if key != "flow":
            assert value.min() >= 0.0 and value.max() <= 1.0, key
    assert set(np.unique(batch["clean_masks"].numpy())) <= {0.0, 1.0}
    assert set(np.unique(batch["flow_valid"].numpy())) <= {0.0, 1.0}
    assert batch["clean_masks"].numpy().max() == 1.0  # the samples always show an object
    assert np.abs(batch["flow"].numpy()).max() < 64


def test_without_flow_has_no_flow_keys(samples_train):
    batch = next(iter(data.make_train_dataset(samples_train, 1, 2, 32, seed=0, with_flow=False)))
    assert set(batch) == {"frames", "clean_masks", "noisy_masks", "styles"}


def _take(dataset, count):
    return [{k: v.numpy() for k, v in batch.items()} for batch in dataset.take(count)]


def test_same_seed_same_batches_and_resume(samples_train):
    kwargs = dict(batch_size=2, clip_length=2, crop_size=32, seed=7, num_parallel_calls=2)
    first = _take(data.make_train_dataset(samples_train, **kwargs), 2)
    again = _take(data.make_train_dataset(samples_train, **kwargs), 2)
    for a, b in zip(first, again):
        for key in a:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    other = _take(data.make_train_dataset(samples_train, **{**kwargs, "seed": 8}), 1)
    assert not np.array_equal(first[0]["frames"], other[0]["frames"])
    # A resumed run (start_step=1) continues with the batch an uninterrupted run sees second.
    resumed = _take(data.make_train_dataset(samples_train, **kwargs, start_step=1), 1)
    for key in resumed[0]:
        np.testing.assert_array_equal(resumed[0][key], first[1][key], err_msg=key)


def test_all_frames_share_the_crop():
    rng = np.random.default_rng(0)
    big = _texture(rng, 160, 200)
    shift = 3
    # Frame t shows the scene moved left by `shift` pixels per frame: frame_t(x) = big(x + shift t).
    frames = np.stack([big[20:120, 10 + shift * t : 130 + shift * t] for t in range(4)])
    instances = np.zeros(frames.shape[:3], np.uint8)
    instances[:, 30:70, 30:80] = 1
    sampler = data.ClipSampler(
        ArraySource([(frames, instances)]),
        clip_length=4,
        crop_size=48,
        seed=1,
        with_flow=False,
        scale_range=(1.0, 1.0),
    )
    flips = set()
    for index in range(6):
        crops = sampler.element(index)["frames"]
        for t in range(1, 4):
            if np.array_equal(crops[t][:, :-shift], crops[t - 1][:, shift:]):
                flips.add(False)
            else:
                # A flipped clip moves the other way.
                np.testing.assert_array_equal(crops[t][:, shift:], crops[t - 1][:, :-shift])
                flips.add(True)
    assert flips == {False, True}


def test_small_frames_are_resized_up(samples_train):
    # carphone is 176x144: a 160 crop needs an up-scaling.
    sampler = data.ClipSampler(samples_train, clip_length=2, crop_size=160, seed=0, with_flow=False)
    element = sampler.element(0)
    assert element["frames"].shape == (2, 160, 160, 3)


def _iou(a, b):
    a, b = a > 0.5, b > 0.5
    return (a & b).sum() / max(1, (a | b).sum())


def test_noisy_masks_close_but_different(samples_train):
    sampler = data.ClipSampler(samples_train, clip_length=5, crop_size=128, seed=3, with_flow=False)
    ious = []
    for index in range(8):
        element = sampler.element(index)
        clean, noisy = element["clean_masks"], element["noisy_masks"]
        assert not np.array_equal(clean, noisy)
        for t in range(clean.shape[0]):
            if clean[t].sum() > 200:
                ious.append(_iou(clean[t], noisy[t]))
    assert 0.5 < np.mean(ious) < 0.99, np.mean(ious)


def test_foreground_union_and_subset():
    rng = np.random.default_rng(0)
    frames = np.stack([_texture(rng, 64, 64)] * 3)
    instances = np.zeros((3, 64, 64), np.uint8)
    instances[:, 5:30, 5:30] = 1
    instances[:, 35:60, 35:60] = 2
    source = ArraySource([(frames, instances)])
    kwargs = dict(clip_length=2, crop_size=64, with_flow=False, scale_range=(1.0, 1.0))
    union = data.ClipSampler(source, seed=0, foreground="union", **kwargs)
    for index in range(4):
        clean = union.element(index)["clean_masks"][..., 0]
        assert clean.sum() == 2 * 2 * 25 * 25
    subset = data.ClipSampler(source, seed=0, foreground="subset", **kwargs)
    areas = {int(subset.element(index)["clean_masks"].sum()) for index in range(12)}
    assert areas == {2 * 25 * 25, 2 * 2 * 25 * 25}
    # K = 3: two instances dealt over two masks, each mask one instance.
    three = data.ClipSampler(source, seed=0, num_regions=3, foreground="union", **kwargs)
    clean = three.element(0)["clean_masks"]
    assert clean[..., 0].sum() == clean[..., 1].sum() == 2 * 25 * 25
    assert np.max(clean[..., 0] + clean[..., 1]) == 1.0


def test_default_styles_come_from_other_sequences():
    shape = (3, 40, 40)
    red = np.zeros(shape + (3,), np.uint8)
    red[..., 0] = 255
    blue = np.zeros(shape + (3,), np.uint8)
    blue[..., 2] = 255
    instances = np.ones(shape, np.uint8)
    source = ArraySource([(red, instances), (blue, instances)])
    sampler = data.ClipSampler(source, clip_length=2, crop_size=32, seed=0, with_flow=False)
    for index in range(6):
        element = sampler.element(index)
        content_red = element["frames"][0, 0, 0, 0] > 0.5
        styles_red = element["styles"][:, 0, 0, 0] > 0.5
        assert np.all(styles_red != content_red)


def test_style_folder_source(samples_train):
    styles_dir = data.samples_root() / "styles"
    for style_source in (str(styles_dir), data.ImageFolderStyles(styles_dir)):
        sampler = data.ClipSampler(
            samples_train,
            clip_length=2,
            crop_size=48,
            style_source=style_source,
            seed=0,
            with_flow=False,
        )
        styles = sampler.element(0)["styles"]
        assert styles.shape == (2, 48, 48, 3) and styles.dtype == np.float32


def test_gin_bindings_reach_the_noise_and_pipeline(samples_train):
    with gin.unlock_config():
        gin.parse_config(["MaskNoise.kernel_range = (3, 5)", "MaskNoise.identity_prob = 1.0"])
    try:
        noise = data.MaskNoise()
        assert noise.kernel_range == (3, 5) and noise.identity_prob == 1.0
    finally:
        gin.clear_config()
    assert data.MaskNoise().kernel_range == (3, 15)
    # The whole pipeline from bindings alone, as the trainer configures it.
    bindings = [
        f"DavisFolder.root = '{data.sample_davis_dir().as_posix()}'",
        "DavisFolder.split = 'val'",
        "make_train_dataset.source = @DavisFolder()",
        "make_train_dataset.style_source = @ImageFolderStyles()",
        f"ImageFolderStyles.root = '{(data.samples_root() / 'styles').as_posix()}'",
        "make_train_dataset.crop_size = 32",
        "make_train_dataset.clip_length = 2",
        "make_train_dataset.with_flow = False",
        "make_train_dataset.seed = 1",
    ]
    with gin.unlock_config():
        gin.parse_config(bindings)
    try:
        batch = next(iter(data.make_train_dataset()))
    finally:
        gin.clear_config()
    assert batch["frames"].shape == (2, 2, 32, 32, 3) and "flow" not in batch


def test_mask_noise_reference_cases():
    rng = np.random.default_rng(0)
    mask = np.zeros((1, 40, 40, 1), np.float32)
    mask[0, 10:30, 10:30, 0] = 1
    off = dict(
        identity_prob=0.0,
        blur_prob=0.0,
        hole_prob=0.0,
        shift_prob=0.0,
        empty_prob=0.0,
        full_prob=0.0,
    )
    noisy = data.MaskNoise(kernel_range=(5, 5), **off)(mask, rng)
    area = noisy.sum()
    # 5x5 elliptic kernel: erosion leaves 16x16, dilation gives the 24x24 square minus rounded corners.
    assert area == 16 * 16 or 24 * 24 - 4 * 3 <= area < 24 * 24
    empty = data.MaskNoise(**{**off, "empty_prob": 1.0})(mask, rng)
    assert empty.sum() == 0
    full = data.MaskNoise(**{**off, "full_prob": 1.0})(mask, rng)
    assert full.min() == 1.0


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(batch_size=0), "batch_size"),
        (dict(num_regions=1), "num_regions"),
        (dict(clip_length=500), "clip_length=500"),
        (dict(clip_length=1), "clip_length"),
        (dict(crop_size=4), "crop_size"),
        (dict(foreground="all"), "foreground"),
        (dict(scale_range=(0.0, 1.0)), "scale_range"),
        (dict(seed=-1), "seed"),
        (dict(start_step=-1), "start_step"),
        (dict(style_source=3), "style_source"),
        (dict(flow_preset="slow"), "flow_preset"),
    ],
)
def test_bad_arguments(samples_train, kwargs, message):
    with pytest.raises(ValueError, match=message):
        data.make_train_dataset(samples_train, **kwargs)


def test_bad_noise_parameters():
    with pytest.raises(ValueError, match="kernel_range"):
        data.MaskNoise(kernel_range=(4, 4))
    with pytest.raises(ValueError, match="blur_prob"):
        data.MaskNoise(blur_prob=1.5)
    with pytest.raises(ValueError, match="source"):
        data.make_train_dataset(object())


def test_combined_style_sources_draw_from_each(tmp_path):
    from lvst_tf.data import styles as styles_lib

    folder = tmp_path / "styles"
    folder.mkdir()
    image = np.zeros((40, 50, 3), np.uint8)
    image[..., 0] = 255  # pure red: distinguishable from every sample frame
    data.image_io.write_image(folder / "red.png", image)
    source = data.DavisFolder(str(data.samples_root() / "davis"), split="train")
    combined = styles_lib.make_style_source([str(folder), "sequences"], source)
    assert isinstance(combined, styles_lib.CombinedStyles) and len(combined) == 1 + len(source)
    rng = np.random.default_rng(0)
    red = [bool(np.all(combined.sample(rng, 16, exclude=0)[..., 0] == 255)) for _ in range(40)]
    assert 5 < sum(red) < 35  # both sources are used, about half each
