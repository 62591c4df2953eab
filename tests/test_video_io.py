"""Tests of lvst_tf.video_io: the one image/video reader and writer, its output rules and checks."""

import os
import pathlib
import struct
import subprocess
import sys

import cv2
import numpy as np
import pytest

from lvst_tf import video_io


def _frames(num=6, height=48, width=64):
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    # Smooth content survives lossy codecs well enough to compare means.
    base = cv2.GaussianBlur(base, (0, 0), 5)
    return [np.roll(base, 3 * i, axis=1) for i in range(num)]


def _write(path, frames, fps=10.0, **kwargs):
    with video_io.FrameWriter(path, fps=fps, **kwargs) as writer:
        for frame in frames:
            writer.write(frame)
    return path


# ----------------------------------------------------------------------------------------------------
# Accepted types: one list, and each listed type really reads (and writes).


@pytest.mark.parametrize("suffix", video_io.IMAGE_EXTENSIONS)
def test_every_listed_image_type_round_trips(tmp_path, suffix):
    image = _frames(1, 31, 47)[0]  # odd size on purpose
    path = video_io.write_image(tmp_path / f"x{suffix}", image)
    back = video_io.read_image(path)
    assert back.shape == image.shape and back.dtype == np.uint8
    tolerance = 6 if suffix in (".jpg", ".jpeg") else 0
    assert np.abs(back.astype(int) - image).mean() <= tolerance
    assert video_io.list_frame_files(tmp_path) == [path]


@pytest.mark.parametrize("suffix", video_io.WRITABLE_VIDEO_EXTENSIONS)
def test_every_writable_video_type_round_trips(tmp_path, suffix):
    frames = _frames()
    out = _write(tmp_path / f"clip{suffix}", frames, fps=12.5)
    reader = video_io.read_frames(out)
    assert (len(reader), reader.size, reader.fps) == (6, (48, 64), 12.5)
    decoded = list(reader)
    assert len(decoded) == 6 and decoded[0].dtype == np.uint8
    # Lossy codec: means agree, and the channel order (RGB) is preserved.
    for got, want in zip(decoded, frames):
        np.testing.assert_allclose(got.mean((0, 1)), want.mean((0, 1)), atol=4)


def test_webm_is_read(tmp_path):
    """webm is in the read list (training accepted it): OpenCV's FFmpeg decodes VP8."""
    path = str(tmp_path / "clip.webm")
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"VP80"), 10, (64, 48))
    for frame in _frames():
        writer.write(frame)
    writer.release()
    reader = video_io.read_frames(path)
    assert len(reader) == 6 and reader.size == (48, 64)
    with pytest.raises(ValueError, match="can be read but not written"):
        video_io.FrameWriter(tmp_path / "out.webm")


def test_odd_sizes_avi_exact_and_others_refused(tmp_path):
    frames = _frames(3, 143, 177)
    out = _write(tmp_path / "odd.avi", frames)
    reader = video_io.read_frames(out)
    assert reader.size == (143, 177) and len(reader) == 3
    for got, want in zip(reader, frames):
        assert np.abs(got.astype(int) - want).mean() < 3
    for suffix in (".mp4", ".mov", ".mkv"):
        with pytest.raises(ValueError, match="even width and height .* crop 177x143 to 176x142"):
            _write(tmp_path / f"odd{suffix}", frames)
    with pytest.raises(ValueError, match="even width"):
        video_io.FrameWriter(tmp_path / "odd.mp4", frame_size=(143, 177))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["odd.avi"]


# ----------------------------------------------------------------------------------------------------
# Writers: atomic, verified, never replacing what they did not write.


def test_folder_round_trip_is_exact_and_marked(tmp_path):
    frames = _frames()
    out = _write(tmp_path / "frames", frames)
    reader = video_io.read_frames(out)
    assert reader.is_folder and len(reader) == 6 and reader.size == (48, 64)
    np.testing.assert_array_equal(np.stack(list(reader)), np.stack(frames))
    assert (out / video_io.FRAME_FOLDER_MARKER).is_file()
    assert video_io.foreign_entries(out) == []
    # Without overwrite an earlier output stays; with it, the folder is replaced as a whole.
    with pytest.raises(ValueError, match="already holds a frame folder; pass --overwrite"):
        video_io.FrameWriter(out)
    _write(out, [frames[0].astype(np.float32) / 255.0], overwrite=True)
    assert [p.name for p in video_io.list_frame_files(out)] == ["00000.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frames"]


def test_user_folders_and_files_are_never_replaced(tmp_path):
    user = tmp_path / "holiday"
    user.mkdir()
    (user / "notes.txt").write_text("mine")
    for overwrite in (False, True):
        with pytest.raises(ValueError, match="holiday"):
            video_io.FrameWriter(user, overwrite=overwrite)
    # A folder that was written by a FrameWriter but then received a user file is not replaced.
    ours = _write(tmp_path / "ours", _frames(1))
    (ours / "keep.txt").write_text("added later")
    with pytest.raises(ValueError, match=r"not a frame folder written by this tool .*keep.txt"):
        video_io.FrameWriter(ours, overwrite=True)
    video_file = tmp_path / "clip.mp4"
    video_file.write_bytes(b"precious")
    with pytest.raises(ValueError, match="exists; pass --overwrite"):
        video_io.FrameWriter(video_file)
    (tmp_path / "dir.mp4").mkdir()
    with pytest.raises(ValueError, match="is an existing folder"):
        video_io.FrameWriter(tmp_path / "dir.mp4", overwrite=True)
    (tmp_path / "afile").write_text("x")
    with pytest.raises(ValueError, match="exists and is not a folder"):
        video_io.FrameWriter(tmp_path / "afile", overwrite=True)
    with pytest.raises(ValueError, match="is a file, not a folder"):
        video_io.FrameWriter(tmp_path / "afile" / "out.mp4")
    assert (user / "notes.txt").read_text() == "mine" and video_file.read_bytes() == b"precious"
    assert (ours / "keep.txt").exists() and len(video_io.list_frame_files(ours)) == 1


def test_empty_folder_is_filled_without_overwrite(tmp_path):
    (tmp_path / "empty").mkdir()
    _write(tmp_path / "empty", _frames(2))
    assert len(video_io.read_frames(tmp_path / "empty")) == 2


def test_exception_leaves_nothing(tmp_path):
    for name in ("clip.mp4", "clip.avi", "frames"):
        with pytest.raises(RuntimeError):
            with video_io.FrameWriter(tmp_path / name, fps=10) as writer:
                writer.write(_frames(1)[0])
                assert writer.temporary_path.exists()
                raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []


def test_stale_temporaries_of_dead_processes_are_cleaned(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], check=True,
                          capture_output=True, text=True)  # fmt: skip
    dead_pid = int(dead.stdout)
    stale_file = tmp_path / f".out.mp4.tmp-{dead_pid}-abc.mp4"
    stale_dir = tmp_path / f".out.mp4.old-{dead_pid}-abc"
    live = tmp_path / f".out.mp4.tmp-{os.getpid()}-xyz.mp4"  # a live writer (this process)
    other = tmp_path / f".other.mp4.tmp-{dead_pid}-abc.mp4"  # another output's
    for path in (stale_file, live, other):
        path.write_bytes(b"partial")
    stale_dir.mkdir()
    _write(tmp_path / "out.mp4", _frames(2))
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == sorted(["out.mp4", live.name, other.name])


def test_outputs_get_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        video = _write(tmp_path / "v.avi", _frames(2))
        folder = _write(tmp_path / "f", _frames(2))
        image = video_io.write_image(tmp_path / "i.png", _frames(1)[0])
        writer = video_io.ImageWriter(tmp_path / "j.png")
        writer.write(_frames(1)[0])
        writer.commit()
    finally:
        os.umask(old)
    assert video.stat().st_mode & 0o777 == 0o640
    assert image.stat().st_mode & 0o777 == 0o640
    assert (tmp_path / "j.png").stat().st_mode & 0o777 == 0o640
    assert folder.stat().st_mode & 0o777 == 0o750
    assert (folder / "00000.png").stat().st_mode & 0o777 == 0o640


def test_video_that_does_not_read_back_is_not_committed(tmp_path, monkeypatch):
    """The write check itself (the end-to-end full-disk case is in test_faults_stylize.py)."""
    writer = video_io.FrameWriter(tmp_path / "v.mp4", fps=5)
    for frame in _frames(4):
        writer.write(frame)
    real = video_io.probe_video
    monkeypatch.setattr(video_io, "probe_video", lambda p: (3, *real(p)[1:]))
    with pytest.raises(video_io.WriteError, match="holds 3 of its 4 frames"):
        writer.close()
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------------------------------
# Readers.


def test_unreadable_inputs_name_the_path(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        video_io.read_frames(tmp_path / "missing.mp4")
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video")
    with pytest.raises(ValueError, match="cannot decode video .*bad.mp4"):
        video_io.read_frames(bad)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no images"):
        video_io.read_frames(tmp_path / "empty")
    (tmp_path / "bad.txt").write_text("x")
    with pytest.raises(ValueError, match="neither a folder nor a video"):
        video_io.read_frames(tmp_path / "bad.txt")
    with pytest.raises(ValueError, match="not an accepted image type"):
        video_io.read_image(tmp_path / "bad.txt")


def _jpeg(image, **params):
    flags = []
    for key, value in params.items():
        flags += [getattr(cv2, key), value]
    return cv2.imencode(".jpg", image, flags)[1].tobytes()


def test_truncated_and_damaged_images_are_refused(tmp_path):
    image = _frames(1, 120, 160)[0]
    samples = {
        "plain.jpg": _jpeg(image),
        "progressive.jpg": _jpeg(image, IMWRITE_JPEG_PROGRESSIVE=1),
        "restarts.jpg": _jpeg(image, IMWRITE_JPEG_RST_INTERVAL=2),
        "x.png": cv2.imencode(".png", image)[1].tobytes(),
        "x.webp": cv2.imencode(".webp", image)[1].tobytes(),
        "x.bmp": cv2.imencode(".bmp", image)[1].tobytes(),
    }
    for name, data in samples.items():
        whole = tmp_path / name
        whole.write_bytes(data)
        assert video_io.read_image(whole).shape == (120, 160, 3)
        for cut in (len(data) // 2, len(data) - 1):
            broken = tmp_path / f"cut_{cut}_{name}"
            broken.write_bytes(data[:cut])
            with pytest.raises(ValueError, match=rf"style: '.*{broken.name}' is damaged: .*"):
                video_io.read_image(broken, argument="style")
    # Bytes after the JPEG end marker (some cameras append data) are fine.
    trailing = tmp_path / "trailing.jpg"
    trailing.write_bytes(samples["plain.jpg"] + b"appended by a camera")
    assert video_io.read_image(trailing).shape == (120, 160, 3)
    # The cut JPEG that libjpeg would decode with grey rows (only a warning) really is refused.
    style = pathlib.Path(__file__).resolve().parents[1] / "samples" / "styles" / "EveningGlow.jpg"
    cut = style.read_bytes()[: style.stat().st_size // 2]
    (tmp_path / "cut.jpg").write_bytes(cut)
    assert cv2.imread(str(tmp_path / "cut.jpg")) is not None
    assert "truncated" in video_io.image_problem(cut)


def test_frame_folder_with_a_truncated_frame_names_it(tmp_path):
    folder = _write(tmp_path / "frames", _frames(3))
    data = (folder / "00002.png").read_bytes()
    (folder / "00002.png").write_bytes(data[:100])
    reader = video_io.read_frames(folder)  # the first frame is fine
    with pytest.raises(ValueError, match="input: '.*00002.png' is damaged"):
        list(reader)


# ----------------------------------------------------------------------------------------------------
# Masks.


def test_mask_reader_folder_and_video(tmp_path):
    folder = tmp_path / "masks"
    folder.mkdir()
    masks = []
    for i in range(4):
        mask = np.zeros((32, 48), np.uint8)
        mask[4:20, 5 + i : 30 + i] = 255
        mask[25, 40] = 128  # a soft value stays soft
        masks.append(mask)
        cv2.imwrite(str(folder / f"{i:05d}.png"), mask)
    reader = video_io.read_masks(folder)
    got = np.stack(list(reader))
    assert got.dtype == np.float32 and len(reader) == 4
    np.testing.assert_array_equal(got, np.stack(masks) / np.float32(255.0))
    # Colour (palette-like) annotations: any non-black pixel is inside.
    colour = np.zeros((32, 48, 3), np.uint8)
    colour[2:5, 2:5] = (0, 0, 128)
    cv2.imwrite(str(folder / "00004.png"), colour)
    last = list(video_io.read_masks(folder))[-1]
    assert last.sum() == 9 and last.max() == 1.0
    # Mask video: grey, close to the 0/1 masks away from edges.
    _write(tmp_path / "m.avi", [np.repeat(m[..., None], 3, -1) for m in masks], fps=5)
    decoded = np.stack(list(video_io.read_masks(tmp_path / "m.avi")))
    assert decoded.shape == (4, 32, 48)
    assert decoded[:, 10, 15].min() > 0.9 and decoded[:, 28, 45].max() < 0.1


def test_zero_one_masks_are_refused_naming_the_file(tmp_path):
    folder = tmp_path / "masks"
    folder.mkdir()
    mask = np.zeros((32, 48), np.uint8)
    mask[5:20, 5:30] = 1
    cv2.imwrite(str(folder / "00000.png"), mask)
    with pytest.raises(ValueError, match=r"masks: '.*00000.png' holds only the values 0 and 1"):
        video_io.read_masks(folder)
    # The same as a video (lossy: values 0..few) is refused when opened.
    _write(tmp_path / "m.avi", [np.repeat(mask[..., None], 3, -1)] * 3)
    with pytest.raises(ValueError, match="mask video .*m.avi.* frame 0 holds only values 0..1"):
        video_io.read_masks(tmp_path / "m.avi")
    # A later 0/1 frame in a folder is refused when it is read, naming that file.
    good = tmp_path / "later"
    good.mkdir()
    cv2.imwrite(str(good / "00000.png"), mask * 255)
    cv2.imwrite(str(good / "00001.png"), mask)
    with pytest.raises(ValueError, match="00001.png' holds only the values 0 and 1"):
        list(video_io.read_masks(good))


def test_sixteen_bit_and_float_masks(tmp_path):
    inside = np.zeros((20, 30), bool)
    inside[3:12, 4:20] = True
    grey16 = inside.astype(np.uint16) * 65535
    grey16[15, 25] = 32768  # soft
    cv2.imwrite(str(tmp_path / "g.png"), grey16)
    rgb16 = np.repeat(grey16[..., None], 3, -1)
    cv2.imwrite(str(tmp_path / "c.png"), rgb16)
    want = grey16.astype(np.float32) / 65535.0
    for name in ("g.png", "c.png"):
        image = video_io.read_image_unchanged(tmp_path / name)
        assert image.dtype == np.uint16
        np.testing.assert_allclose(video_io.mask_from_image(image, name), want, atol=1e-6)
    # A uint8 0/255 mask saved as 16 bits would read as ~0.004: refused.
    low = np.repeat((inside.astype(np.uint16) * 255)[..., None], 3, -1)
    cv2.imwrite(str(tmp_path / "low.png"), low)
    with pytest.raises(ValueError, match="low.png' is a 16-bit mask whose values stop at 255"):
        video_io.mask_from_image(video_io.read_image_unchanged(tmp_path / "low.png"), "low.png")
    # Float TIFF masks in [0, 1] are taken as they are; outside [0, 1] refused.
    soft = np.linspace(0, 1, 600, dtype=np.float32).reshape(20, 30)
    cv2.imwrite(str(tmp_path / "f.tif"), soft)
    got = video_io.mask_from_image(video_io.read_image_unchanged(tmp_path / "f.tif"), "f.tif")
    np.testing.assert_array_equal(got, soft)
    with pytest.raises(ValueError, match="values in \\[0, 2\\]"):
        video_io.mask_from_image(soft * 2, "f2.tif")


# ----------------------------------------------------------------------------------------------------
# Audio tracks, from hand-built container headers (OpenCV cannot write audio).


def _box(kind, body):
    return struct.pack(">I", 8 + len(body)) + kind + body


def _mp4(handlers):
    traks = b"".join(
        _box(b"trak", _box(b"mdia", _box(b"hdlr", b"\0" * 8 + h + b"\0" * 12 + b"name\0")))
        for h in handlers
    )
    return _box(b"ftyp", b"isom\0\0\0\0") + _box(b"mdat", b"\0" * 16) + _box(b"moov", traks)


def _riff(chunk_id, body):
    return struct.pack("<4sI", chunk_id, len(body)) + body + b"\0" * (len(body) & 1)


def _avi(types):
    strls = b"".join(_riff(b"LIST", b"strl" + _riff(b"strh", t + b"\0" * 52)) for t in types)
    hdrl = _riff(b"LIST", b"hdrl" + _riff(b"avih", b"\0" * 56) + strls)
    return _riff(b"RIFF", b"AVI " + hdrl + _riff(b"LIST", b"movi"))


def _ebml(element_id, body):
    id_bytes = element_id.to_bytes((element_id.bit_length() + 7) // 8, "big")
    return (
        id_bytes + bytes([0x80 | len(body)]) + body
        if len(body) < 127
        else (id_bytes + (0x4000 | len(body)).to_bytes(2, "big") + body)
    )


def _mkv(track_types):
    entries = b"".join(_ebml(0xAE, _ebml(0x83, bytes([t]))) for t in track_types)
    segment = _ebml(0x1549A966, b"") + _ebml(0x1654AE6B, entries) + _ebml(0x1F43B675, b"")
    return _ebml(0x1A45DFA3, _ebml(0x4282, b"webm")) + _ebml(0x18538067, segment)


@pytest.mark.parametrize(
    "name, data, expected",
    [
        ("a.mp4", _mp4([b"vide", b"soun"]), True),
        ("b.mov", _mp4([b"vide"]), False),
        ("c.avi", _avi([b"vids", b"auds"]), True),
        ("d.avi", _avi([b"vids"]), False),
        ("e.mkv", _mkv([1, 2]), True),
        ("f.webm", _mkv([1]), False),
        ("g.mp4", b"garbage", None),
    ],
)
def test_audio_tracks_from_container_headers(tmp_path, name, data, expected):
    (tmp_path / name).write_bytes(data)
    assert video_io.has_audio(tmp_path / name) is expected


def test_opencv_outputs_have_no_audio(tmp_path):
    for suffix in (".mp4", ".avi", ".mkv"):
        assert video_io.has_audio(_write(tmp_path / f"v{suffix}", _frames(2))) is False
    carphone = pathlib.Path(__file__).resolve().parents[1] / "samples" / "videos" / "carphone.mp4"
    assert video_io.has_audio(carphone) is False
