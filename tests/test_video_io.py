"""Tests of lvst_tf.video_io: streaming readers, atomic writers, mask readers."""

import cv2
import numpy as np
import pytest

from lvst_tf import video_io


def _frames(num=6, height=48, width=64):
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    # Smooth content survives mp4v compression well enough to compare means.
    base = cv2.GaussianBlur(base, (0, 0), 5)
    return [np.roll(base, 3 * i, axis=1) for i in range(num)]


def test_folder_round_trip_is_exact(tmp_path):
    frames = _frames()
    out = tmp_path / "frames"
    with video_io.FrameWriter(out) as writer:
        for frame in frames:
            writer.write(frame)
    reader = video_io.read_frames(out)
    assert reader.is_folder and len(reader) == 6 and reader.size == (48, 64)
    np.testing.assert_array_equal(np.stack(list(reader)), np.stack(frames))
    # Float frames in [0, 1] are rounded to uint8; a second write replaces the folder.
    with video_io.FrameWriter(out) as writer:
        writer.write(frames[0].astype(np.float32) / 255.0)
    assert [p.name for p in video_io.list_frame_files(out)] == ["00000.png"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("suffix", [".mp4", ".avi"])
def test_video_round_trip_keeps_fps_size_count(tmp_path, suffix):
    frames = _frames()
    out = tmp_path / f"clip{suffix}"
    with video_io.FrameWriter(out, fps=12.5) as writer:
        for frame in frames:
            writer.write(frame)
    reader = video_io.read_frames(out)
    assert (len(reader), reader.size, reader.fps) == (6, (48, 64), 12.5)
    decoded = list(reader)
    assert len(decoded) == 6 and decoded[0].dtype == np.uint8
    # Lossy codec: means agree, and the channel order (RGB) is preserved.
    for got, want in zip(decoded, frames):
        np.testing.assert_allclose(got.mean((0, 1)), want.mean((0, 1)), atol=4)


def test_exception_leaves_nothing(tmp_path):
    for name in ("clip.mp4", "frames"):
        with pytest.raises(RuntimeError):
            with video_io.FrameWriter(tmp_path / name, fps=10) as writer:
                writer.write(_frames(1)[0])
                assert writer.temporary_path.exists()
                raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []


def test_odd_size_mp4_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="even width and height"):
        with video_io.FrameWriter(tmp_path / "odd.mp4") as writer:
            writer.write(np.zeros((47, 65, 3), np.uint8))
    assert list(tmp_path.iterdir()) == []


def test_unreadable_inputs_name_the_path(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        video_io.read_frames(tmp_path / "missing.mp4")
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video")
    with pytest.raises(ValueError, match="bad.mp4"):
        video_io.read_frames(bad)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no jpg/png"):
        video_io.read_frames(tmp_path / "empty")
    (tmp_path / "bad.txt").write_text("x")
    with pytest.raises(ValueError, match="neither a folder nor a video"):
        video_io.read_frames(tmp_path / "bad.txt")


def test_mask_reader_folder_and_video(tmp_path):
    folder = tmp_path / "masks"
    folder.mkdir()
    masks = []
    for i in range(4):
        mask = np.zeros((32, 48), np.uint8)
        mask[4:20, 5 + i : 30 + i] = 255
        masks.append(mask)
        cv2.imwrite(str(folder / f"{i:05d}.png"), mask)
    reader = video_io.read_masks(folder)
    got = np.stack(list(reader))
    assert got.dtype == np.float32 and len(reader) == 4
    np.testing.assert_array_equal(got, np.stack(masks) / 255.0)
    # Colour (palette-like) annotations: any non-black pixel is inside.
    colour = np.zeros((32, 48, 3), np.uint8)
    colour[2:5, 2:5] = (0, 0, 128)
    cv2.imwrite(str(folder / "00004.png"), colour)
    last = list(video_io.read_masks(folder))[-1]
    assert last.sum() == 9 and last.max() == 1.0
    # Mask video: grey, close to the 0/1 masks away from edges.
    with video_io.FrameWriter(tmp_path / "m.mp4", fps=5) as writer:
        for mask in masks:
            writer.write(np.repeat(mask[..., None], 3, -1))
    decoded = np.stack(list(video_io.read_masks(tmp_path / "m.mp4")))
    assert decoded.shape == (4, 32, 48)
    assert decoded[:, 10, 15].min() > 0.9 and decoded[:, 28, 45].max() < 0.1
