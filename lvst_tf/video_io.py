"""The package's one image and video reader and writer (OpenCV only; no TensorFlow import).

Accepted file types (one list for every module: training sources, the stylize tool, masks):
- images, read and written: `IMAGE_EXTENSIONS` (jpg/jpeg, png, bmp, webp, tif/tiff);
- videos, read: `VIDEO_EXTENSIONS` (mp4, avi, mov, mkv, webm, m4v, decoded by OpenCV's FFmpeg);
- videos, written: `WRITABLE_VIDEO_EXTENSIONS` (mp4/mov/m4v: MPEG-4 Part 2 `mp4v`; mkv: FFmpeg's
  Motion-JPEG; avi: OpenCV's own Motion-JPEG encoder). OpenCV's FFmpeg writer silently crops an odd
  width or height to the even size below, so those containers refuse odd sizes; `.avi` keeps any
  size exactly.

Reading:
- `read_image` decodes an image file to `[H, W, 3]` uint8 RGB. Truncated or damaged JPEG, PNG, WebP
  and BMP files are refused by checking their structure first (libjpeg otherwise decodes a cut JPEG
  with only a warning, filling the missing rows with grey).
- `FrameReader` streams `[H, W, 3]` uint8 RGB frames from a video file or a folder of images (sorted by
  file name, hidden files skipped); `MaskReader` streams `[H, W]` float32 masks in [0, 1]. Both
  validate their source when opened (exists, first frame decodes, exact frame count), so a tool can
  report every bad input before it starts working. At most one decoded frame is held.
- `has_audio` reads a video container's headers (mp4/mov, avi, mkv/webm) to tell whether it holds an
  audio track, which OpenCV neither reads nor writes.

Writing (`FrameWriter`, `write_image`): a hidden temporary in the destination's folder, renamed into
place only after the content is complete and verified (a written video is reopened and its frames
counted). An existing output is replaced only with `overwrite=True`, and a frame folder only if it is
recognisably one this module wrote (it holds `FRAME_FOLDER_MARKER` and nothing but `%05d.png`
frames). Temporaries carry the writer's process id, and a writer removes those of dead processes
for its destination first. Files and folders get the user's umask. These rules are
`lvst_tf.fileio`'s (`FRAME_FOLDER` is this module's marked output folder).
"""

from __future__ import annotations

import fractions
import os
import pathlib
import re
import struct
from collections.abc import Iterator

import cv2
import numpy as np

from lvst_tf import fileio
from lvst_tf.fileio import write_atomic

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")
# Extension -> (OpenCV backend, fourcc, whether the writer needs an even width and height).
_VIDEO_WRITERS = {
    ".mp4": (cv2.CAP_FFMPEG, "mp4v", True),
    ".mov": (cv2.CAP_FFMPEG, "mp4v", True),
    ".m4v": (cv2.CAP_FFMPEG, "mp4v", True),
    ".mkv": (cv2.CAP_FFMPEG, "MJPG", True),
    ".avi": (cv2.CAP_OPENCV_MJPEG, "MJPG", False),
}
WRITABLE_VIDEO_EXTENSIONS = tuple(_VIDEO_WRITERS)
# Motion-JPEG quality of .avi outputs (OpenCV's default is 75).
MJPEG_QUALITY = 95
# Frame folders carry no frame rate; this is what readers report for them.
DEFAULT_FOLDER_FPS = 30.0
# Written into every frame folder a FrameWriter creates; only such folders are ever replaced.
FRAME_FOLDER_MARKER = ".lvst_tf-frames"
_FRAME_FILE = re.compile(r"\d{5}\.png")
# A frame folder `FrameWriter` wrote: its marker, and nothing but `%05d.png` frames besides it.
FRAME_FOLDER = fileio.MarkedFolder(
    marker=FRAME_FOLDER_MARKER,
    tool="lvst_tf frame folder",
    description="a frame folder",
    writer="this tool",
    entries=lambda name: _FRAME_FILE.fullmatch(name) is not None,
    legacy_markers=(b"frames written by lvst_tf\n",),  # the marker of earlier versions
)


# Writing an output failed (full disk, I/O error, a video that does not read back): one line.
WriteError = fileio.WriteError


def _describe(extensions) -> str:
    return ", ".join(e.lstrip(".") for e in extensions)


def is_video_path(path: str | os.PathLike) -> bool:
    """True if `path` names a readable video file by its extension."""
    return pathlib.Path(path).suffix.lower() in VIDEO_EXTENSIONS


def is_image_path(path: str | os.PathLike) -> bool:
    """True if `path` names an image file of an accepted type by its extension."""
    return pathlib.Path(path).suffix.lower() in IMAGE_EXTENSIONS


def list_frame_files(folder: str | os.PathLike) -> list[pathlib.Path]:
    """Image files directly inside `folder` (`IMAGE_EXTENSIONS`, not hidden), sorted by file name."""
    folder = pathlib.Path(folder)
    return sorted(
        p
        for p in folder.iterdir()
        if p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".") and p.is_file()
    )


# ----------------------------------------------------------------------------------------------------
# Images.
# ----------------------------------------------------------------------------------------------------


def _jpeg_problem(data: bytes) -> str | None:
    """Walks the JPEG marker segments; a file that ends before its EOI marker is truncated."""
    n = len(data)
    pos = 2
    while True:
        if pos >= n:
            return "it ends before the JPEG end-of-image marker (truncated)"
        if data[pos] != 0xFF:
            return f"byte {pos} is not a JPEG marker (damaged)"
        while pos < n and data[pos] == 0xFF:  # fill bytes before a marker
            pos += 1
        if pos >= n:
            return "it ends before the JPEG end-of-image marker (truncated)"
        marker = data[pos]
        pos += 1
        if marker == 0xD9:  # EOI
            return None
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # markers without a length
            continue
        if pos + 2 > n:
            return "it ends inside a JPEG segment header (truncated)"
        length = int.from_bytes(data[pos : pos + 2], "big")
        if length < 2:
            return f"a JPEG segment at byte {pos} has length {length} (damaged)"
        pos += length
        if pos > n:
            return "it ends inside a JPEG segment (truncated)"
        if marker == 0xDA:
            # Entropy-coded data: 0xFF only appears stuffed (FF 00) or as a restart marker until the
            # next real marker.
            while True:
                pos = data.find(b"\xff", pos)
                if pos < 0 or pos + 1 >= n:
                    return "it ends inside the compressed JPEG data (truncated)"
                following = data[pos + 1]
                if following == 0x00 or 0xD0 <= following <= 0xD7:
                    pos += 2
                    continue
                break


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _png_problem(data: bytes) -> str | None:
    """Walks the PNG chunks; a file without a complete IEND chunk is truncated."""
    n = len(data)
    pos = len(_PNG_SIGNATURE)
    while pos + 12 <= n:
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        if pos + 12 + length > n:
            return f"it ends inside its {kind.decode('latin-1')!r} chunk (truncated)"
        if kind == b"IEND":
            return None
        pos += 12 + length
    return "it ends before the PNG IEND chunk (truncated)"


def image_problem(data: bytes) -> str | None:
    """Why encoded image bytes are truncated or damaged, or None if their structure is whole.

    Checks the container structure of JPEG (marker segments up to EOI), PNG (chunks up to IEND), WebP
    (RIFF length) and BMP (file-size field); other formats are left to the decoder.
    """
    if len(data) == 0:
        return "the file is empty"
    if data[:2] == b"\xff\xd8":
        return _jpeg_problem(data)
    if data[:8] == _PNG_SIGNATURE:
        return _png_problem(data)
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP" and len(data) >= 12:
        (size,) = struct.unpack("<I", data[4:8])
        if size + 8 > len(data):
            return f"it holds {len(data)} of its {size + 8} bytes (truncated)"
    if data[:2] == b"BM" and len(data) >= 6:
        (size,) = struct.unpack("<I", data[2:6])
        if size > len(data):
            return f"it holds {len(data)} of its {size} bytes (truncated)"
    return None


def read_file_bytes(path: str | os.PathLike, argument: str = "image") -> bytes:
    """The bytes of an image file, checked to be of an accepted type and structurally whole.

    Raises:
      ValueError naming `argument` and the path: missing, not a file, unreadable, an extension not in
        `IMAGE_EXTENSIONS`, or truncated / damaged (see `image_problem`).
    """
    path = pathlib.Path(path)
    if not path.is_file():
        what = "is a folder" if path.is_dir() else "does not exist"
        raise ValueError(
            f"{argument}: {str(path)!r} {what}; expected an image file "
            f"({_describe(IMAGE_EXTENSIONS)})."
        )
    if not is_image_path(path):
        raise ValueError(
            f"{argument}: {str(path)!r} is not an accepted image type; expected one of "
            f"{_describe(IMAGE_EXTENSIONS)}."
        )
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ValueError(f"{argument}: cannot read {str(path)!r}: {e.strerror or e}.") from None
    problem = image_problem(data)
    if problem:
        raise ValueError(f"{argument}: {str(path)!r} is damaged: {problem}.")
    return data


def decode_image(data: bytes, name: str = "<bytes>", argument: str = "image") -> np.ndarray:
    """Decodes encoded image bytes to `[H, W, 3]` uint8 RGB (16-bit images are scaled to 8 bits).

    Raises:
      ValueError naming `argument` and `name` if the bytes are truncated, damaged or undecodable.
    """
    bgr = _decode(data, name, argument, cv2.IMREAD_COLOR)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)  # faster than a reversed-channel copy


def decode_image_unchanged(data: bytes, name: str = "<bytes>", argument: str = "image"):
    """Decodes image bytes as stored: `[H, W]` or `[H, W, C]` (BGR order), uint8/uint16/float32."""
    return _decode(data, name, argument, cv2.IMREAD_UNCHANGED)


def _decode(data: bytes, name: str, argument: str, flags: int) -> np.ndarray:
    """`cv2.imdecode(data, flags)` after the damage check; ValueError naming `argument`, `name`."""
    problem = image_problem(data)
    if problem:
        raise ValueError(f"{argument}: {name!r} is damaged: {problem}.")
    image = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    if image is None:
        raise ValueError(f"{argument}: cannot decode {name!r} as an image.")
    return image


def read_image(path: str | os.PathLike, argument: str = "image") -> np.ndarray:
    """Reads an image file as `[H, W, 3]` uint8 RGB; ValueError naming `argument` and the path."""
    return decode_image(read_file_bytes(path, argument), str(path), argument)


def read_image_unchanged(path: str | os.PathLike, argument: str = "image") -> np.ndarray:
    """Reads an image file as stored (see `decode_image_unchanged`)."""
    return decode_image_unchanged(read_file_bytes(path, argument), str(path), argument)


def encode_image(image: np.ndarray, suffix: str = ".png", jpeg_quality: int = 95) -> bytes:
    """Encodes `[H, W, 3]` RGB or `[H, W]` grey (uint8, or float in [0, 1]) for a file `suffix`."""
    image = to_uint8(image)
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[-1] != 3) or image.size == 0:
        raise ValueError(f"image must be [H, W, 3] RGB or [H, W] grey, got shape {image.shape}.")
    suffix = suffix.lower()
    if suffix not in IMAGE_EXTENSIONS:
        raise ValueError(
            f"cannot write a {suffix or 'nameless'!r} image; use one of {_describe(IMAGE_EXTENSIONS)}."
        )
    if image.ndim == 3:
        image = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2BGR)
    params = [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)] if suffix in (".jpg", ".jpeg") else []
    ok, encoded = cv2.imencode(suffix, np.ascontiguousarray(image), params)
    if not ok:
        raise ValueError(f"OpenCV cannot encode a {suffix} image of shape {image.shape}.")
    return encoded.tobytes()


def write_image(path: str | os.PathLike, image: np.ndarray, jpeg_quality: int = 95) -> pathlib.Path:
    """Writes `[H, W, 3]` RGB or `[H, W]` grey (uint8 or float in [0, 1]) atomically; returns the path.

    The format comes from the suffix (`IMAGE_EXTENSIONS`). An existing file is replaced.
    """
    path = pathlib.Path(path)
    write_atomic(path, encode_image(image, path.suffix, jpeg_quality))
    return path


def to_uint8(frame: np.ndarray) -> np.ndarray:
    """uint8 unchanged; bool as 0/255; float in [0, 1] clipped, scaled by 255 and rounded."""
    frame = np.asarray(frame)
    if frame.dtype == np.uint8:
        return frame
    if frame.dtype == np.bool_:
        return frame.astype(np.uint8) * np.uint8(255)
    return np.clip(np.rint(np.asarray(frame, np.float64) * 255.0), 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------------------------------
# Masks.
# ----------------------------------------------------------------------------------------------------


def _refuse_low_range(value_max: float, full: int, name: str, argument: str) -> None:
    if value_max == 1:
        raise ValueError(
            f"{argument}: {name!r} holds only the values 0 and 1 ({'8' if full == 255 else '16'}-bit); "
            f"mask images must use 0 and {full} (soft values in between are fine): multiply the "
            f"masks by {full}."
        )


def mask_from_image(image: np.ndarray, name: str, argument: str = "masks") -> np.ndarray:
    """A decoded mask image (as stored, BGR order) -> `[H, W]` float32 in [0, 1].

    - grey (or grey stored as colour) 8-bit: value / 255; 16-bit: value / 65535; float: as is;
    - colour (for example DAVIS palette annotations, decoded to colours): every non-black pixel is
      inside (the union of the annotated objects).

    Refused with a ValueError naming the file: 0/1 masks stored as integers (they would read as
    almost empty), 16-bit masks whose values stop at 255 (a uint8 mask saved as 16 bits), float
    masks outside [0, 1], and other sample types.
    """
    if image.ndim == 3 and image.shape[-1] in (2, 4):
        image = image[..., : image.shape[-1] - 1]  # drop alpha
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    if image.ndim == 3:
        if not np.all(image == image[..., :1]):
            return np.any(image > 0, axis=-1).astype(np.float32)
        image = image[..., 0]
    if image.dtype == np.uint8 or image.dtype == np.uint16:
        full = 255 if image.dtype == np.uint8 else 65535
        value_max = int(image.max())
        _refuse_low_range(value_max, full, name, argument)
        if full == 65535 and 1 < value_max <= 255:
            raise ValueError(
                f"{argument}: {name!r} is a 16-bit mask whose values stop at {value_max}; 16-bit "
                "masks must use 0..65535 (save 8-bit 0/255 masks as 8-bit images)."
            )
        return image.astype(np.float32) / np.float32(full)
    if np.issubdtype(image.dtype, np.floating):
        lo, hi = float(np.min(image)), float(np.max(image))
        if not (np.isfinite(lo) and np.isfinite(hi) and lo >= 0.0 and hi <= 1.0):
            raise ValueError(
                f"{argument}: {name!r} is a floating-point mask with values in [{lo:.4g}, "
                f"{hi:.4g}]; expected values in [0, 1]."
            )
        return image.astype(np.float32)
    raise ValueError(
        f"{argument}: {name!r} has {image.dtype} samples; expected 8-bit (0/255) or 16-bit "
        "(0/65535) grey or colour masks."
    )


# ----------------------------------------------------------------------------------------------------
# Readers.
# ----------------------------------------------------------------------------------------------------


def _count_video_frames(capture: cv2.VideoCapture) -> int:
    # CAP_PROP_FRAME_COUNT is read from the container header and can be wrong (variable frame rate,
    # broken index); grabbing without converting to RGB gives the exact count cheaply.
    count = 0
    while capture.grab():
        count += 1
    return count


def probe_video(path: str | os.PathLike) -> tuple[int, int, int, float] | None:
    """`(frames, height, width, fps)` of a video file as OpenCV decodes it, or None if unreadable."""
    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            return None
        ok, first = capture.read()
        if not ok or first is None:
            return None
        count = 1 + _count_video_frames(capture)
        fps = capture.get(cv2.CAP_PROP_FPS)
    finally:
        capture.release()
    fps = float(fps) if fps and np.isfinite(fps) and fps > 0 else DEFAULT_FOLDER_FPS
    return count, int(first.shape[0]), int(first.shape[1]), fps


class _Source:
    """Shared opening/validation for frame and mask sources."""

    def __init__(self, path: str | os.PathLike, argument: str = "input"):
        self.path = pathlib.Path(path)
        self.argument = argument
        if not self.path.exists():
            raise ValueError(
                f"{argument}: {str(self.path)!r} does not exist; expected a video file "
                f"({_describe(VIDEO_EXTENSIONS)}) or a folder of images ({_describe(IMAGE_EXTENSIONS)})."
            )
        self.is_folder = self.path.is_dir()
        if self.is_folder:
            self._files = list_frame_files(self.path)
            if not self._files:
                raise ValueError(
                    f"{argument}: folder {str(self.path)!r} holds no images "
                    f"({_describe(IMAGE_EXTENSIONS)})."
                )
            first = self._read_file(self._files[0])
            self.num_frames = len(self._files)
            self.fps = DEFAULT_FOLDER_FPS
            self.height, self.width = int(first.shape[0]), int(first.shape[1])
        else:
            if not is_video_path(self.path):
                raise ValueError(
                    f"{argument}: {str(self.path)!r} is neither a folder nor a video file "
                    f"({_describe(VIDEO_EXTENSIONS)})."
                )
            probed = probe_video(self.path)
            if probed is None:
                raise ValueError(
                    f"{argument}: cannot decode video {str(self.path)!r} (damaged, empty, or not a "
                    "video OpenCV can open)."
                )
            self.num_frames, self.height, self.width, self.fps = probed

    @property
    def size(self) -> tuple[int, int]:
        """`(height, width)` of every frame."""
        return self.height, self.width

    @property
    def files(self) -> list[pathlib.Path]:
        """The image files of a folder source, in frame order (empty for a video)."""
        return list(self._files) if self.is_folder else []

    def __len__(self) -> int:
        return self.num_frames

    def _read_file(self, path: pathlib.Path) -> np.ndarray:
        raise NotImplementedError

    def _convert_video_frame(self, bgr: np.ndarray, index: int) -> np.ndarray:
        raise NotImplementedError

    def _check_size(self, frame: np.ndarray, index: int, name: str) -> np.ndarray:
        if frame.shape[:2] != self.size:
            raise ValueError(
                f"{self.argument}: frame {index} ({name}) is {frame.shape[1]}x"
                f"{frame.shape[0]}, the first frame is {self.width}x{self.height}."
            )
        return frame

    def __iter__(self) -> Iterator[np.ndarray]:
        if self.is_folder:
            for index, file in enumerate(self._files):
                yield self._check_size(self._read_file(file), index, str(file))
            return
        self._start_video()
        capture = cv2.VideoCapture(str(self.path))
        try:
            index = 0
            while True:
                ok, bgr = capture.read()
                if not ok:
                    break
                frame = self._convert_video_frame(bgr, index)
                yield self._check_size(frame, index, str(self.path))
                index += 1
        finally:
            capture.release()

    def _start_video(self) -> None:
        pass


class FrameReader(_Source):
    """Streams the frames of a video file or frame folder as `[H, W, 3]` uint8 RGB.

    Attributes: `path`, `fps` (the container's; `DEFAULT_FOLDER_FPS` for folders), `height`, `width`,
    `num_frames` (exact: counted when opened), `is_folder`. Iterating re-opens the source, so a reader
    can be iterated several times; at most one decoded frame is held.

    Raises:
      ValueError naming `argument` and the path if the source is missing, undecodable or damaged.
    """

    def _read_file(self, path: pathlib.Path) -> np.ndarray:
        return read_image(path, self.argument)

    def _convert_video_frame(self, bgr: np.ndarray, index: int) -> np.ndarray:
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    def has_audio(self) -> bool | None:
        """Whether the video holds an audio track (None: unknown container; False for folders)."""
        return False if self.is_folder else has_audio(self.path)


class MaskReader(_Source):
    """Streams masks `[H, W]` float32 in [0, 1] from a mask video or a folder of mask images.

    Mask images are converted by `mask_from_image` (grey / 255 or / 65535, colour = any non-black
    pixel), which refuses 0/1 integer masks naming the file. A mask video is read as grey / 255; a
    frame whose largest value is 1..3 is refused as a 0/1 mask (lossy codecs can lift a stored 1 a
    little) unless an earlier frame reached 128 (then it is a faint soft mask).
    """

    def _read_file(self, path: pathlib.Path) -> np.ndarray:
        return mask_from_image(read_image_unchanged(path, self.argument), str(path), self.argument)

    def _start_video(self) -> None:
        self._seen_bright = False

    def _convert_video_frame(self, bgr: np.ndarray, index: int) -> np.ndarray:
        grey = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
        value_max = int(grey.max())
        if value_max >= 128:
            self._seen_bright = True
        elif 1 <= value_max <= 3 and not self._seen_bright:
            raise ValueError(
                f"{self.argument}: mask video {str(self.path)!r} frame {index} holds only values "
                f"0..{value_max}; mask videos must use 0 for outside and 255 for inside (a 0/1 "
                "mask reads as empty)."
            )
        # Lossy codecs smear 0/255 edges a little; the masks stay soft, which the model accepts.
        return grey.astype(np.float32) / np.float32(255.0)

    def check_first(self) -> None:
        """Reads the first mask (a video's first frame) so a bad encoding fails before any work."""
        next(iter(self), None)


def read_frames(path: str | os.PathLike, argument: str = "input") -> FrameReader:
    """Opens a video file or frame folder for streaming; see `FrameReader`."""
    return FrameReader(path, argument)


def read_masks(path: str | os.PathLike, argument: str = "masks") -> MaskReader:
    """Opens a mask video or mask-image folder for streaming; see `MaskReader`."""
    reader = MaskReader(path, argument)
    reader.check_first()
    return reader


def read_video(path: str | os.PathLike, argument: str = "input") -> np.ndarray:
    """Decodes a whole video file or frame folder to `[T, H, W, 3]` uint8 RGB."""
    reader = read_frames(path, argument)
    out = np.empty((len(reader), reader.height, reader.width, 3), np.uint8)
    count = 0
    for t, frame in enumerate(reader):
        if t >= len(out):
            break
        out[t] = frame
        count += 1
    return out[:count]


# ----------------------------------------------------------------------------------------------------
# Audio tracks (OpenCV cannot see them): container headers read directly.
# ----------------------------------------------------------------------------------------------------


def _read_struct(f, pos: int, fmt: str) -> tuple | None:
    """`struct.unpack(fmt, ...)` of the bytes at `pos`, or None past the end of the file."""
    f.seek(pos)
    data = f.read(struct.calcsize(fmt))
    return struct.unpack(fmt, data) if len(data) == struct.calcsize(fmt) else None


def _iso_boxes(f, start: int, end: int):
    """(type, payload start, payload end) of the ISO-BMFF boxes between `start` and `end`."""
    pos = start
    while pos + 8 <= end and (head := _read_struct(f, pos, ">I4s")) is not None:
        size, kind = head
        header = 8
        if size == 1:  # a 64-bit size follows the type
            extended = _read_struct(f, pos + 8, ">Q")
            if extended is None:
                return
            size, header = extended[0], 16
        elif size == 0:  # the box runs to the end
            size = end - pos
        if size < header:
            return
        yield kind, pos + header, min(pos + size, end)
        pos += size


def _riff_chunks(f, start: int, end: int):
    """(id, payload start, payload end) of the RIFF chunks between `start` and `end`; a `LIST`
    chunk is named by its list type (`hdrl`, `strl`, ...) and its payload starts after it."""
    pos = start
    while pos + 8 <= end and (head := _read_struct(f, pos, "<4sI")) is not None:
        chunk_id, size = head
        payload, payload_end = pos + 8, min(pos + 8 + size, end)
        if chunk_id == b"LIST" and size >= 4:
            chunk_id, payload = f.read(4), payload + 4
        yield chunk_id, payload, payload_end
        pos += 8 + size + (size & 1)


def _walk(f, children, start: int, end: int, path: tuple):
    """(payload start, end) of every element reached from the range [start, end) by following
    `path`: each id in turn selects, among the `children(f, start, end)` of the elements reached so
    far, those with that id."""
    if not path:
        yield start, end
        return
    for kind, child_start, child_end in children(f, start, end):
        if kind == path[0]:
            yield from _walk(f, children, child_start, child_end, path[1:])


def _first(walk) -> tuple[int, int] | None:
    return next(iter(walk), None)


def _mp4_has_audio(f, file_size: int) -> bool | None:
    movie = _first(_walk(f, _iso_boxes, 0, file_size, (b"moov",)))
    if movie is None:
        return None
    handlers = _walk(f, _iso_boxes, *movie, (b"trak", b"mdia", b"hdlr"))
    # hdlr: version/flags and pre_defined (8 bytes), then the handler type.
    return any(_read_struct(f, start + 8, "4s") == (b"soun",) for start, _ in handlers)


def _set_avi_rate(path: pathlib.Path, fps: float) -> None:
    """Writes the exact frame rate into an AVI's headers (OpenCV's own MJPEG writer stores it rounded
    to an integer): `avih.dwMicroSecPerFrame` and the video stream's `strh.dwScale / dwRate`."""
    rate = fractions.Fraction(fps).limit_denominator(100000)
    with open(path, "r+b") as f:
        headers = _first(_walk(f, _riff_chunks, 12, os.fstat(f.fileno()).st_size, (b"hdrl",)))
        if headers is None:
            return
        for start, end in list(_walk(f, _riff_chunks, *headers, (b"avih",))):
            if end - start >= 4:
                f.seek(start)
                f.write(struct.pack("<I", round(1e6 / fps)))
        for start, end in list(_walk(f, _riff_chunks, *headers, (b"strl", b"strh"))):
            if end - start >= 28 and _read_struct(f, start, "4s") == (b"vids",):
                f.seek(start + 20)
                f.write(struct.pack("<II", rate.denominator, rate.numerator))


def _avi_has_audio(f, file_size: int) -> bool | None:
    headers = _first(_walk(f, _riff_chunks, 12, file_size, (b"hdrl",)))
    if headers is None:
        return None
    streams = _walk(f, _riff_chunks, *headers, (b"strl", b"strh"))
    return any(_read_struct(f, start, "4s") == (b"auds",) for start, _ in streams)


def _ebml_number(f, is_id: bool) -> tuple[int, int] | None:
    """(value, length) of an EBML element id (marker bits kept) or size (marker stripped)."""
    first = f.read(1)
    if not first:
        return None
    byte = first[0]
    length = 1
    while length <= 8 and not byte & (0x80 >> (length - 1)):
        length += 1
    if length > 8:
        return None
    rest = f.read(length - 1)
    if len(rest) < length - 1:
        return None
    value = byte if is_id else byte & (0xFF >> length)
    for b in rest:
        value = (value << 8) | b
    if not is_id and value == (1 << (7 * length)) - 1:
        value = -1  # unknown size
    return value, length


def _ebml_elements(f, start: int, end: int):
    pos = start
    while pos < end:
        f.seek(pos)
        element = _ebml_number(f, is_id=True)
        size = _ebml_number(f, is_id=False) if element else None
        if element is None or size is None:
            return
        data_start = pos + element[1] + size[1]
        data_end = end if size[0] < 0 else min(data_start + size[0], end)
        yield element[0], data_start, data_end
        if size[0] < 0:
            return
        pos = data_end


_MKV_SEGMENT, _MKV_CLUSTER, _MKV_TRACKS = 0x18538067, 0x1F43B675, 0x1654AE6B
_MKV_TRACK_ENTRY, _MKV_TRACK_TYPE, _MKV_AUDIO = 0xAE, 0x83, 2


def _mkv_has_audio(f, file_size: int) -> bool | None:
    for start, end in _walk(f, _ebml_elements, 0, file_size, (_MKV_SEGMENT,)):
        for child, c_start, c_end in _ebml_elements(f, start, end):
            if child == _MKV_CLUSTER:  # the tracks come before the first cluster
                return None
            if child == _MKV_TRACKS:
                types = _walk(
                    f, _ebml_elements, c_start, c_end, (_MKV_TRACK_ENTRY, _MKV_TRACK_TYPE)
                )
                for t_start, t_end in types:
                    f.seek(t_start)
                    if int.from_bytes(f.read(t_end - t_start), "big") == _MKV_AUDIO:
                        return True
                return False
    return None


def has_audio(path: str | os.PathLike) -> bool | None:
    """Whether a video file holds an audio track: True/False for mp4/mov/m4v, avi and mkv/webm
    containers (read from their headers), None if the container is not recognised or unreadable."""
    path = pathlib.Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(12)
            if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
                return _avi_has_audio(f, size)
            if head[:4] == b"\x1a\x45\xdf\xa3":
                return _mkv_has_audio(f, size)
            if head[4:8] in (b"ftyp", b"moov", b"mdat", b"wide", b"free", b"skip"):
                return _mp4_has_audio(f, size)
    except (OSError, struct.error, ValueError):
        return None
    return None


# ----------------------------------------------------------------------------------------------------
# Output rules.
# ----------------------------------------------------------------------------------------------------


def foreign_entries(folder: str | os.PathLike) -> list[str] | None:
    """What in `folder` a `FrameWriter` did not write: None if it is not a frame folder of this module
    (no marker), else the names that are neither the marker nor `%05d.png` frames (empty if clean)."""
    return FRAME_FOLDER.foreign_entries(folder)


def writer_kind(path: str | os.PathLike, argument: str = "output") -> str:
    """The kind of output `path` names: "video" (a writable video type) or "folder" (no extension).

    Raises:
      ValueError naming `argument` for an image name, a video type that cannot be written, or an
        unknown extension.
    """
    suffix = pathlib.Path(path).suffix.lower()
    if suffix in WRITABLE_VIDEO_EXTENSIONS:
        return "video"
    if suffix in VIDEO_EXTENSIONS:
        raise ValueError(
            f"{argument}: {str(path)!r}: {suffix} videos can be read but not written here; write "
            f"one of {_describe(WRITABLE_VIDEO_EXTENSIONS)} or a folder of PNG frames."
        )
    if suffix:
        raise ValueError(
            f"{argument}: {str(path)!r} has the extension {suffix!r}; expected a video name "
            f"({_describe(WRITABLE_VIDEO_EXTENSIONS)}) or a folder name without an extension "
            "(PNG frames)."
        )
    return "folder"


def check_frame_size(path: str | os.PathLike, height: int, width: int, argument="output") -> None:
    """ValueError unless a video of `path`'s type can hold `height` x `width` frames exactly."""
    suffix = pathlib.Path(path).suffix.lower()
    if suffix in _VIDEO_WRITERS and _VIDEO_WRITERS[suffix][2] and (height % 2 or width % 2):
        raise ValueError(
            f"{argument}: {str(path)!r}: OpenCV writes {suffix} videos only with an even width and "
            f"height (it would crop {width}x{height} to {width - width % 2}x{height - height % 2}); "
            "write an .avi or a folder of PNG frames, which keep the size exactly."
        )


def check_output_path(
    path: str | os.PathLike, overwrite: bool = False, argument: str = "output"
) -> str:
    """Checks that `path` may be written (without writing it); returns its kind ("video"/"folder").

    The rules are `lvst_tf.fileio`'s: a video file is not an existing folder and replaces an
    existing file only with `overwrite` (`fileio.check_output_file`); a frame folder replaces only
    a frame folder this module wrote (`FRAME_FOLDER`, nothing but `%05d.png` frames besides the
    marker), and only with `overwrite`. The destination folder must be writable.

    Raises:
      ValueError naming `argument` and the path.
    """
    path = pathlib.Path(path)
    kind = writer_kind(path, argument)
    if kind == "video":
        fileio.check_output_file(path, overwrite, argument)
    else:
        FRAME_FOLDER.check_output(path, overwrite, argument=argument)
    return kind


# ----------------------------------------------------------------------------------------------------
# Writers.
# ----------------------------------------------------------------------------------------------------


def check_image_output(
    path: str | os.PathLike, overwrite: bool = False, argument: str = "output"
) -> None:
    """Checks that an image file may be written at `path` (accepted type, not a folder, replaced
    only with `overwrite`, writable folder); ValueError naming `argument` and the path."""
    path = pathlib.Path(path)
    if not is_image_path(path):
        raise ValueError(
            f"{argument}: {str(path)!r} is not an image name; expected one of "
            f"{_describe(IMAGE_EXTENSIONS)}."
        )
    fileio.check_output_file(path, overwrite, argument)


class _PendingOutput:
    """An output written to a hidden temporary (`temporary_path`) and renamed into place by
    `commit()` (`finish()` first; so several outputs can be committed together once all of them are
    complete); `abort()`, an exception in a `with` block, or dropping it uncommitted removes the
    temporary. Subclasses write the temporary and may extend `finish`, `_commit` and `abort`."""

    def __init__(self, path: str | os.PathLike, overwrite: bool, argument: str):
        self.path = pathlib.Path(path)
        self.argument = argument
        self.overwrite = overwrite
        self._tmp = None
        self._closed = False

    @property
    def temporary_path(self) -> pathlib.Path | None:
        """Where the output goes until `commit()` renames it to `path`."""
        return self._tmp

    def finish(self) -> None:
        """Completes the temporary (ValueError if nothing was written)."""
        if self._tmp is None:
            raise ValueError(f"{self.argument}: nothing was written to {str(self.path)!r}.")

    def _commit(self) -> None:
        fileio.commit_file(self._tmp, self.path, self.overwrite, self.argument)

    def commit(self) -> pathlib.Path:
        """`finish()`, then renames the temporary to `path`; returns `path`."""
        self.finish()
        if self._closed:
            return self.path
        try:
            self._commit()
        except BaseException:
            self.abort()
            raise
        self._closed = True
        return self.path

    def close(self) -> pathlib.Path:
        """`finish()` then `commit()`; returns `path`."""
        return self.commit()

    def abort(self) -> None:
        """Discards everything written; nothing appears under `path`."""
        self._closed = True
        if self._tmp is not None:
            fileio.remove_path(self._tmp)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def __del__(self):
        # An output dropped without commit() (e.g. a generator that never finished) must not leave
        # its temporary behind.
        try:
            if not self._closed:
                self.abort()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass


class ImageWriter(_PendingOutput):
    """One image file written with `FrameWriter`'s rules: checked when created, encoded into a
    hidden temporary by `write`, renamed into place by `commit`."""

    def __init__(self, path: str | os.PathLike, overwrite: bool = False, argument: str = "output"):
        super().__init__(path, overwrite, argument)
        check_image_output(self.path, overwrite, argument)
        fileio.clean_stale_temporaries(self.path)

    def write(self, image: np.ndarray, jpeg_quality: int = 95) -> None:
        """Encodes `image` (see `encode_image`) into the temporary."""
        data = encode_image(image, self.path.suffix, jpeg_quality)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._tmp = fileio.make_temporary(self.path)
            with open(self._tmp, "wb") as f:
                f.write(data)
        except OSError as e:
            self.abort()
            raise WriteError(
                f"{self.argument}: cannot write {str(self.path)!r}: {e.strerror or e}."
            ) from None


class FrameWriter(_PendingOutput):
    """Writes frames to a video file or a PNG frame folder atomically, verified before the rename.

    Args:
      path: destination. A name ending in one of `WRITABLE_VIDEO_EXTENSIONS` is a video file; a name
        without an extension is a folder that receives `00000.png`, `00001.png`, ... and the marker
        `FRAME_FOLDER_MARKER`.
      fps: frame rate of a video file (ignored for folders).
      overwrite: replace an existing output (see `check_output_path`, applied here before anything is
        created; without it an existing output is a ValueError).
      frame_size: optional `(height, width)`, checked against the container now (see
        `check_frame_size`) and against every frame.
      argument: the name used in error messages (a flag such as "output").

    Frames are `[H, W, 3]` RGB, uint8 or float in [0, 1] (clipped, rounded), all one size. `close()`
    = `finish()` (complete and verify: a video is reopened and its frames counted) + `commit()`
    (rename into place). A failed write raises `WriteError` and leaves nothing at `path`. Use as a
    context manager: an exception removes the temporary.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        fps: float = DEFAULT_FOLDER_FPS,
        overwrite: bool = False,
        frame_size: tuple[int, int] | None = None,
        argument: str = "output",
    ):
        super().__init__(path, overwrite, argument)
        self._writer = None
        self._finished = False
        if not fps or not np.isfinite(fps) or fps <= 0:
            raise ValueError(f"{argument}: fps must be a positive number, got {fps!r}.")
        self.is_video = check_output_path(self.path, overwrite, argument) == "video"
        if frame_size is not None:
            check_frame_size(self.path, *frame_size, argument=argument)
        self.fps = float(fps)
        self._size = tuple(frame_size) if frame_size is not None else None
        self.num_frames = 0
        fileio.clean_stale_temporaries(self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # A video's container is chosen from the extension, so its temporary keeps it.
        suffix = self.path.suffix.lower() if self.is_video else ""
        self._tmp = fileio.make_temporary(self.path, folder=not self.is_video, suffix=suffix)
        if not self.is_video:
            try:
                self._write_bytes(self._tmp / FRAME_FOLDER_MARKER, FRAME_FOLDER.marker_bytes())
            except BaseException:
                self.abort()
                raise

    def _write_bytes(self, file: pathlib.Path, data: bytes) -> None:
        try:
            with open(file, "wb") as f:
                f.write(data)
        except OSError as e:
            raise WriteError(
                f"{self.argument}: cannot write {str(self.path)!r}: {e.strerror or e}."
            ) from None

    def _open_video(self, height: int, width: int) -> None:
        backend, fourcc, _ = _VIDEO_WRITERS[self.path.suffix.lower()]
        self._writer = cv2.VideoWriter(
            str(self._tmp), backend, cv2.VideoWriter_fourcc(*fourcc), self.fps, (width, height)
        )
        if not self._writer.isOpened():
            raise WriteError(
                f"{self.argument}: OpenCV cannot open a video writer for {str(self.path)!r}."
            )
        if backend == cv2.CAP_OPENCV_MJPEG:
            self._writer.set(cv2.VIDEOWRITER_PROP_QUALITY, MJPEG_QUALITY)

    def write(self, frame: np.ndarray) -> None:
        """Appends one `[H, W, 3]` RGB frame (uint8, or float in [0, 1])."""
        if self._finished:
            raise ValueError(f"write() on a finished FrameWriter ({str(self.path)!r}).")
        frame = to_uint8(frame)
        if frame.ndim != 3 or frame.shape[-1] != 3:
            raise ValueError(f"frame must be [H, W, 3] RGB, got shape {frame.shape}.")
        height, width = frame.shape[:2]
        if self._size is None:
            check_frame_size(self.path, height, width, self.argument)
            self._size = (height, width)
        elif (height, width) != self._size:
            raise ValueError(
                f"{self.argument}: frame {self.num_frames} is {width}x{height}, expected "
                f"{self._size[1]}x{self._size[0]}."
            )
        bgr = cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2BGR)
        if self.is_video:
            if self._writer is None:
                self._open_video(height, width)
            self._writer.write(bgr)
        else:
            ok, encoded = cv2.imencode(".png", bgr)
            if not ok:
                raise WriteError(f"{self.argument}: cannot encode frame {self.num_frames} as PNG.")
            self._write_bytes(self._tmp / f"{self.num_frames:05d}.png", encoded.tobytes())
        self.num_frames += 1

    def finish(self) -> None:
        """Completes the temporary and verifies it; WriteError (temporary removed) if incomplete."""
        if self._finished:
            return
        if self.num_frames == 0:
            self.abort()
            raise ValueError(f"{self.argument}: no frame was written to {str(self.path)!r}.")
        if self._writer is not None:
            self._writer.release()
            self._writer = None
        self._finished = True
        if self.is_video and _VIDEO_WRITERS[self.path.suffix.lower()][0] == cv2.CAP_OPENCV_MJPEG:
            try:
                _set_avi_rate(self._tmp, self.fps)
            except OSError as e:
                self.abort()
                raise WriteError(
                    f"{self.argument}: cannot write {str(self.path)!r}: {e.strerror or e}."
                ) from None
        if self.is_video:
            # OpenCV's writer reports no write errors (a full disk leaves a truncated file that will
            # not open): read the file back and count its frames.
            probed = probe_video(self._tmp)
            want = (self.num_frames, *self._size)
            if probed is None or probed[:3] != want:
                if probed is None:
                    got = "cannot be read back"
                elif probed[0] != self.num_frames:
                    got = f"holds {probed[0]} of its {self.num_frames} frames"
                else:
                    got = f"reads back at {probed[2]}x{probed[1]}, not {want[2]}x{want[1]}"
                self.abort()
                raise WriteError(
                    f"{self.argument}: writing {str(self.path)!r} failed: the written video {got} "
                    "(disk full or an I/O error?); nothing was written."
                )

    def _commit(self) -> None:
        if self.is_video:
            super()._commit()
            return
        if os.path.lexists(self.path):
            try:
                FRAME_FOLDER.check_output(self.path, self.overwrite, argument=self.argument)
            except ValueError:
                raise WriteError(
                    f"{self.argument}: {str(self.path)!r} changed during the run and is no longer "
                    "a frame folder this tool may replace; nothing was written."
                ) from None
        fileio.replace_folder(self._tmp, self.path)

    def abort(self) -> None:
        """Discards everything written; nothing appears under `path`."""
        if self._writer is not None:
            self._writer.release()
            self._writer = None
        self._finished = True
        super().abort()
