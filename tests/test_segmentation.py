"""Tests of lvst_tf.segmentation: threshold specs and the selfie segmentation model."""

import cv2
import numpy as np
import pytest
from faults import dead_pid

from lvst_tf import data, segmentation
from lvst_tf.data import image_io


def test_parse_threshold_spec():
    spec = segmentation.parse_threshold_spec(
        "hsv:v<110|s>70&h<=20,open=7,close=5,min_area=2000,keep=2"
    )
    assert spec.space == "hsv"
    assert spec.terms == (((2, "<", 110.0),), ((1, ">", 70.0), (0, "<=", 20.0)))
    assert (spec.open, spec.close, spec.min_area, spec.keep) == (7, 5, 2000, 2)


@pytest.mark.parametrize(
    "spec, message",
    [
        ("v<110", "SPACE:RULE"),
        ("xyz:v<110", "colour space"),
        ("hsv:r<110", "channel 'r'"),
        ("hsv:v=110", "bad condition"),
        ("hsv:v<abc", "bad condition"),
        ("hsv:v<110,open", "NAME=INTEGER"),
        ("hsv:v<110,dilate=3", "NAME=INTEGER"),
        ("hsv:v<110,open=-3", "NAME=INTEGER"),
    ],
)
def test_bad_threshold_specs(spec, message):
    with pytest.raises(ValueError, match=message):
        segmentation.parse_threshold_spec(spec)


def test_threshold_rule_matches_numpy_reference():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (30, 40, 3)).astype(np.uint8)
    mask = segmentation.threshold_mask(image, "rgb:r>128&g<100|b>=200")
    r, g, b = (image[..., i].astype(int) for i in range(3))
    expected = ((r > 128) & (g < 100)) | (b >= 200)
    np.testing.assert_array_equal(mask, expected.astype(np.float32))
    assert mask.dtype == np.float32 and mask.shape == (30, 40)
    grey = segmentation.threshold_mask(image, "gray:y<100")
    expected = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) < 100
    np.testing.assert_array_equal(grey, expected.astype(np.float32))


def test_threshold_morphology_and_components():
    image = np.full((100, 100, 3), 240, np.uint8)
    image[10:50, 10:50] = 20  # a big dark square
    image[70:80, 70:80] = 20  # a small one (100 px)
    image[30, 70] = 20  # a speck
    labels = segmentation.threshold_labels(image, "hsv:v<110")
    assert labels.max() == 3 and (labels == 1).sum() == 1600
    mask = segmentation.threshold_mask(image, "hsv:v<110,open=3,close=3,min_area=200")
    # The small square and the speck are gone; the big one stays (the 3x3 ellipse is a cross, so
    # opening rounds off its 4 corner pixels).
    assert mask.sum() == 1600 - 4 and mask[10:50, 10:50].sum() == 1600 - 4
    keep = segmentation.threshold_mask(image, "hsv:v<110,keep=2")
    assert keep.sum() == 1600 + 100
    with pytest.raises(ValueError, match="frame"):
        segmentation.threshold_mask(image[..., 0], "hsv:v<110")


def test_selfie_segmenter_missing_model(tmp_path):
    with pytest.raises(ValueError, match="fetch_selfie_model.py"):
        segmentation.SelfieSegmenter(tmp_path / "none.tflite")


_MODEL = segmentation.default_model_path()


@pytest.mark.skipif(
    not _MODEL.is_file(),
    reason=f"selfie model absent at {_MODEL}; run `python tools/fetch_selfie_model.py` (CI does)",
)
def test_selfie_segmenter_on_the_carphone_sample():
    segmenter = segmentation.SelfieSegmenter()
    root = data.sample_davis_dir()
    for t in (0, 29):
        frame = image_io.read_image(root / "JPEGImages" / "480p" / "carphone_a" / f"{t:05d}.jpg")
        truth = image_io.read_label_map(
            root / "Annotations" / "480p" / "carphone_a" / f"{t:05d}.png"
        )
        mask = segmenter(frame)
        assert mask.shape == (144, 176) and mask.dtype == np.float32
        assert 0.0 <= mask.min() and mask.max() <= 1.0
        # The shipped masks came from the same model on the undecoded frames: near identical.
        person, expected = mask > 0.5, truth > 0
        assert (person & expected).sum() / (person | expected).sum() > 0.95
        # Float input in [0, 1] gives the same answer.
        np.testing.assert_allclose(segmenter(frame / 255.0), mask, atol=1e-3)
    # A frame without people (a plain wall) gets (almost) no person pixels.
    wall = np.full((120, 160, 3), 225, np.uint8)
    assert segmenter(wall).mean() < 0.05


def test_mask_folder_never_lands_on_other_files(tmp_path):
    frames = tmp_path / "clip"
    for t in range(3):
        image_io.write_image(frames / f"{t:05d}.png", np.full((16, 24, 3), 40 * t, np.uint8))
    # The input itself, a folder holding it, a file, a folder of other files: refused, untouched.
    for output, message in [
        (frames, "is \\(or contains\\) the input"),
        (tmp_path, "is \\(or contains\\) the input"),
    ]:
        with pytest.raises(ValueError, match=message):
            segmentation.write_mask_folder(frames, output, lambda f: f[..., 0] > 50, progress=False)
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("mine")
    with pytest.raises(ValueError, match="holds files that are not masks .*todo.txt"):
        segmentation.write_mask_folder(frames, tmp_path / "notes", lambda f: f[..., 0] > 50)
    assert sorted(p.name for p in (tmp_path / "notes").iterdir()) == ["todo.txt"]
    # A mask folder of its own is written, then resumed (existing masks kept).
    out = tmp_path / "clip_masks"
    assert segmentation.write_mask_folder(
        frames, out, lambda f: f[..., 0] > 50, progress=False
    ) == (3, 0)
    assert segmentation.write_mask_folder(
        frames, out, lambda f: f[..., 0] > 50, progress=False
    ) == (0, 3)
    masks = [image_io.read_label_map(out / f"{t:05d}.png") for t in range(3)]
    assert [int(m.max()) for m in masks] == [0, 0, 255]  # frame values 0, 40, 80
    # A run killed while writing a mask left its temporary: the next run removes it and resumes.
    (out / f".00002.png.tmp-{dead_pid()}-abc").write_bytes(b"partial")
    assert segmentation.write_mask_folder(
        frames, out, lambda f: f[..., 0] > 50, progress=False
    ) == (0, 3)
    assert sorted(p.name for p in out.iterdir()) == ["00000.png", "00001.png", "00002.png"]
