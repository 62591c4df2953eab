"""Fast offline tests of lvst_tf.data.corpus (the builder behind tools/make_corpus.py): synthetic
camera motion and its exact flow, mask helpers, the DAVIS-layout writer, splits and the output guard.
Nothing here downloads anything."""

import json

import cv2
import numpy as np
import pytest

from lvst_tf import data
from lvst_tf.data import corpus, image_io

SIZE = (192, 144)  # output (width, height) of the test clips


def _photo_with_objects(height=240, width=320):
    """A photo whose colours encode its instance map: grey background, a red box (1), a blue disc (2)."""
    ids = np.zeros((height, width), np.uint8)
    ids[60:170, 40:150] = 1
    cv2.circle(ids, (230, 130), 55, 2, -1)
    colours = np.array([[128, 128, 128], [220, 30, 30], [30, 30, 220]], np.uint8)
    return colours[ids], ids, colours


def _path(seed, source_size, num_frames=30):
    rng = np.random.default_rng(seed)
    return corpus.camera_path(source_size, SIZE, corpus.random_motion(rng, num_frames))


def _textured(height=240, width=320, seed=0):
    rng = np.random.default_rng(seed)
    noise = rng.uniform(0, 255, (height, width, 3)).astype(np.float32)
    return np.clip(cv2.GaussianBlur(noise, (0, 0), 3) * 4 - 384, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_photo_and_mask_get_the_same_warp(seed):
    photo, ids, colours = _photo_with_objects()
    path = _path(seed, (photo.shape[1], photo.shape[0]))
    frames, masks = corpus.photo_clip(photo, ids, path, SIZE)
    assert frames.shape == (len(path), SIZE[1], SIZE[0], 3) and masks.shape == frames.shape[:3]
    assert masks.dtype == np.uint8 and set(np.unique(masks)) <= {0, 1, 2}
    for frame, mask in zip(frames, masks):
        # The id a pixel's colour says (nearest of the three colours) must be the warped mask's id,
        # except in a thin band along the outlines where bilinear colours mix.
        distance = np.linalg.norm(frame[:, :, None].astype(float) - colours[None, None], axis=-1)
        from_colour = np.argmin(distance, axis=-1)
        outline = cv2.morphologyEx(mask, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)) > 0
        assert np.array_equal(from_colour[~outline], mask[~outline])
        assert outline.mean() < 0.1


@pytest.mark.parametrize("seed", range(6))
def test_camera_motion_is_smooth_bounded_and_inside_the_photo(seed):
    source_size = (320, 240)
    path = _path(seed, source_size, num_frames=24 + 3 * seed)
    assert path.shape == (24 + 3 * seed, 3, 3)
    steps = []
    corners = np.array([[0, 0], [SIZE[0] - 1, 0], [0, SIZE[1] - 1], [SIZE[0] - 1, SIZE[1] - 1]])
    for a, b in zip(path[:-1], path[1:]):
        moved = corpus.apply_homography(np.linalg.inv(a) @ b, corners)
        steps.append(moved - corners)
    steps = np.stack(steps)  # [T-1, 4, 2] per-frame displacement of the corners
    largest = np.linalg.norm(steps, axis=-1).max()
    assert 0.2 < largest <= corpus.MAX_STEP + 1e-6  # it moves, a few pixels per frame at most
    assert corpus.max_displacement(path, SIZE) <= corpus.MAX_STEP + 1e-6
    # Smooth in time: the per-frame displacement changes by a small fraction of a pixel per frame.
    assert np.abs(np.diff(steps, axis=0)).max() < 0.5
    # Every frame shows only photo pixels (no border fill).
    for h in path:
        mapped = corpus.apply_homography(h, corners)
        assert mapped.min() >= -1e-6
        assert (mapped[:, 0] <= source_size[0] - 1 + 1e-6).all()
        assert (mapped[:, 1] <= source_size[1] - 1 + 1e-6).all()


def test_camera_path_is_deterministic():
    a = _path(7, (320, 240))
    b = _path(7, (320, 240))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, _path(8, (320, 240)))


def test_backward_flow_of_a_pure_translation():
    h0 = corpus.similarity((100.0, 80.0), 1.0, 0.0, SIZE)
    h1 = corpus.similarity((103.0, 78.5), 1.0, 0.0, SIZE)
    flow, valid = corpus.backward_flow(h0, h1, SIZE)
    assert flow.shape == (SIZE[1], SIZE[0], 2) and flow.dtype == np.float32
    # Frame 1 sees the photo 3 px further right and 1.5 px higher: p in frame 1 is p + (3, -1.5) in 0.
    np.testing.assert_allclose(flow[..., 0], 3.0, atol=1e-5)
    np.testing.assert_allclose(flow[..., 1], -1.5, atol=1e-5)
    ys, xs = np.mgrid[0 : SIZE[1], 0 : SIZE[0]]
    np.testing.assert_array_equal(valid, (xs + 3 <= SIZE[0] - 1) & (ys - 1.5 >= 0))


@pytest.mark.parametrize("seed", [0, 3])
def test_backward_flow_warps_frame_t_onto_frame_t_plus_1(seed):
    photo = _textured(seed=seed)
    path = _path(seed, (photo.shape[1], photo.shape[0]))
    xs, ys = np.meshgrid(np.arange(SIZE[0], dtype=np.float32), np.arange(SIZE[1], dtype=np.float32))
    errors = []
    for t in range(0, len(path) - 1, 5):
        frame_t = corpus.warp_photo(photo, path[t], SIZE).astype(np.float32)
        frame_next = corpus.warp_photo(photo, path[t + 1], SIZE).astype(np.float32)
        flow, valid = corpus.backward_flow(path[t], path[t + 1], SIZE)
        # The project's convention (ops.warp): out(p) = frame_t(p + flow(p)), bilinear.
        warped = cv2.remap(frame_t, xs + flow[..., 0], ys + flow[..., 1], cv2.INTER_LINEAR)
        inner = cv2.erode(valid.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
        assert inner.mean() > 0.8
        errors.append(np.abs(warped - frame_next)[inner].mean())
        # A wrong flow (none) is much worse, so the check has teeth.
        assert np.abs(frame_t - frame_next)[inner].mean() > 3 * errors[-1]
    assert max(errors) < 2.0  # two bilinear resamplings of a smooth texture (uint8 levels)


def test_mask_helpers():
    mask = np.zeros((40, 60), bool)
    mask[5:25, 5:25] = True
    mask[10:15, 10:15] = False  # a hole
    mask[30:35, 40:45] = True  # a small second component
    filled = corpus.fill_holes(mask)
    assert filled[12, 12] and filled.sum() == 20 * 20 + 25
    assert corpus.largest_components(filled, keep=1).sum() == 400
    assert corpus.largest_components(filled, keep=2).sum() == 425
    assert corpus.largest_components(filled, keep=2, min_area=100).sum() == 400
    top = np.zeros((40, 60), bool)
    top[0:10, :] = True
    top[30:40, 0:10] = True
    assert corpus.touching_border(top, "top").sum() == 600
    assert corpus.touching_border(top, "top,bottom").sum() == 700
    assert corpus.band((10, 4), 0.2, 0.5).sum() == 3 * 4
    ids = corpus.compose_instances([filled, top])
    assert ids.dtype == np.uint8 and ids[0, 0] == 2 and ids[20, 20] == 1 and ids[39, 59] == 0
    shares = corpus.coverage(ids)
    assert set(shares) == {1, 2} and abs(sum(shares.values()) - (ids > 0).mean()) < 1e-9
    assert corpus.has_object(ids)
    assert not corpus.has_object(np.zeros((4, 4), np.uint8))
    assert not corpus.has_object(np.ones((4, 4), np.uint8))  # the whole frame is no object
    small = corpus.resize_instances(ids, (30, 20))
    assert small.shape == (20, 30) and set(np.unique(small)) == {0, 1, 2}
    assert corpus.split_evenly(120) == [(0, 60), (60, 60)]
    assert corpus.split_evenly(217) == [(0, 54), (54, 54), (108, 55), (163, 54)]
    assert corpus.split_evenly(5) == [(0, 5)]


def test_sky_mask_keeps_the_sky_connected_to_the_top():
    image = np.zeros((120, 160, 3), np.uint8)
    image[:60] = (90, 150, 230)  # blue sky ...
    cv2.circle(image, (80, 30), 12, (250, 250, 250), -1)  # ... with a white cloud inside
    image[60:] = (40, 110, 40)  # green land ...
    image[95:, 20:140] = (90, 150, 230)  # ... and a blue lake that does not touch the top
    sky = corpus.sky_mask(image, "hsv:h>=95&h<=130&s>=60", close_size=5)
    assert sky[:55, 5:155].all()  # the cloud is part of the sky
    assert not sky[65:].any()
    assert 0.45 < sky.mean() < 0.55


def test_grabcut_mask_is_deterministic_and_finds_the_object():
    image = np.full((90, 120, 3), (200, 200, 190), np.uint8)
    cv2.ellipse(image, (60, 45), (30, 20), 0, 0, 360, (170, 40, 30), -1)
    rng = np.random.default_rng(0)
    image = np.clip(image + rng.normal(0, 6, image.shape), 0, 255).astype(np.uint8)
    a = corpus.grabcut_mask(image, (0.15, 0.15, 0.85, 0.85))
    b = corpus.grabcut_mask(image, (0.15, 0.15, 0.85, 0.85))
    np.testing.assert_array_equal(a, b)
    truth = np.zeros((90, 120), np.uint8)
    cv2.ellipse(truth, (60, 45), (30, 20), 0, 0, 360, 1, -1)
    iou = (a & (truth > 0)).sum() / (a | (truth > 0)).sum()
    assert iou > 0.85


def _clip(name, source, frames=6, size=(48, 32)):
    seed = sum(name.encode())
    images = np.stack([_textured(size[1], size[0], seed + t) for t in range(frames)])
    ids = np.zeros((frames, size[1], size[0]), np.uint8)
    ids[:, 5:20, 10:30] = 1
    ids[:, 22:30, 2:12] = 2
    return corpus.Clip(name, source, "test", ("a", "b"), images, ids)


def test_davis_writer_round_trips_through_davis_folder(tmp_path):
    clips = [_clip("cup_00", "cup"), _clip("cup_01", "cup"), _clip("cup_02", "cup")]
    clips += [_clip("chelsea_a", "chelsea"), _clip("chelsea_b", "chelsea")]
    for clip in clips:
        corpus.write_sequence(tmp_path, clip.name, clip.frames, clip.instances)
    val = corpus.choose_val(clips, fraction=0.3)
    train = [c.name for c in clips if c.name not in val]
    corpus.write_splits(tmp_path, {"train": train, "val": val})
    assert val == ["cup_02", "chelsea_a", "chelsea_b"]  # last video chunk, then a whole photo
    source = data.DavisFolder(tmp_path, split="train")
    assert source.names == train == ["cup_00", "cup_01"]
    held_out = data.DavisFolder(tmp_path, split="val")
    assert held_out.names == val
    by_name = {c.name: c for c in clips}
    for sequence in list(source) + list(held_out):
        clip = by_name[sequence.name]
        np.testing.assert_array_equal(sequence.instances, clip.instances)  # palette PNGs: exact
        assert sequence.frames.shape == clip.frames.shape
        # JPEG quality 90: close, not exact.
        assert np.abs(sequence.frames.astype(int) - clip.frames).mean() < 6
    png = tmp_path / "Annotations" / "480p" / "cup_00" / "00000.png"
    assert png.read_bytes()[25] == 3  # a palette PNG
    assert image_io.read_label_map(png).max() == 2


def test_choose_val_is_deterministic_and_holds_out_whole_photos():
    clips = [_clip(f"box_{i:02d}", "box", frames=1) for i in range(8)]
    clips += [_clip(f"carphone_{i:02d}", "carphone", frames=1) for i in range(2)]
    for name in ("astronaut", "kite", "path", "coffee", "rocket"):
        clips += [_clip(f"{name}_a", name, frames=1), _clip(f"{name}_b", name, frames=1)]
    val = corpus.choose_val(clips)
    assert val == corpus.choose_val(list(clips))
    assert "box_07" in val and not any(v.startswith("carphone") for v in val)
    assert len(val) >= 0.1 * len(clips)
    photos = {v.rsplit("_", 1)[0] for v in val if not v.startswith("box")}
    for photo in photos:  # both clips of a held-out photo, so no train clip shows it
        assert {f"{photo}_a", f"{photo}_b"} <= set(val)


def test_output_guard(tmp_path):
    corpus.check_output(tmp_path / "missing")
    empty = tmp_path / "empty"
    empty.mkdir()
    corpus.check_output(empty)
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not a corpus"):
        corpus.check_output(other)
    (other / corpus.MARKER).write_text(json.dumps({"tool": "something else"}))
    with pytest.raises(ValueError, match="not a corpus"):
        corpus.check_output(other)
    ours = tmp_path / "ours"
    ours.mkdir()
    (ours / "README.md").write_text("old corpus")
    (ours / corpus.MARKER).write_text(json.dumps({"tool": corpus.MARKER_TOOL, "format": 1}))
    corpus.check_output(ours)
    assert corpus.is_corpus(ours) and not corpus.is_corpus(other)
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(ValueError, match="not a folder"):
        corpus.check_output(a_file)


def test_default_output_follows_lvst_tf_home(monkeypatch, tmp_path):
    monkeypatch.setenv("LVST_TF_HOME", str(tmp_path))
    assert corpus.default_output() == tmp_path / "corpus"


def test_contact_sheet_and_readme():
    clips = [_clip("cup_00", "cup"), _clip("chelsea_a", "chelsea"), _clip("chelsea_b", "chelsea")]
    sheet = corpus.contact_sheet(clips, columns=2, cell=(64, 48))
    assert sheet.shape == (2 * (48 + 12), 2 * 64, 3)
    png = corpus.encode_contact_sheet(sheet, colours=16)
    assert png == corpus.encode_contact_sheet(sheet, colours=16)  # deterministic
    assert image_io.decode_image(png).shape == sheet.shape
    summary = corpus.summarize(clips, ["chelsea.jpg"], ["cup_00"], ["chelsea_a", "chelsea_b"])
    assert summary["sequences"] == 3 and summary["frames"] == 18 and summary["styles"] == 1
    assert summary["per_source"] == {
        "opencv-doc": {"sequences": 1, "frames": 6},
        "scikit-image": {"sequences": 2, "frames": 12},
    }
    text = corpus.readme(clips, ["chelsea.jpg"], ["cup_00"], ["chelsea_a", "chelsea_b"], summary)
    assert "| chelsea_a | val | chelsea | 6 | 48x32 |" in text
    assert "LGPL-3" in text and "CC0" in text and "gnome-backgrounds" in text


def test_allow_lists_are_consistent():
    names = [p.name for p in corpus.PHOTOS]
    assert len(names) == len(set(names))
    for photo in corpus.PHOTOS:
        if photo.clips:
            assert photo.name in corpus.PHOTO_MASKS and photo.objects
        if photo.package == "scikit-image":
            assert photo.member.startswith("skimage/data/")
        else:
            assert photo.package == "plasma-workspace-wallpapers"
            assert photo.member.startswith("usr/share/wallpapers/") and "LGPL-3" in photo.licence
