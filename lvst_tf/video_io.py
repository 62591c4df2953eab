"""Streaming video / frame-folder reading and atomic writing (OpenCV only; no TensorFlow import).

Readers never hold more than one decoded frame: `FrameReader` yields `[H, W, 3]` uint8 RGB frames from
an mp4/avi/mov/mkv file (`cv2.VideoCapture`) or from a folder of images (sorted by file name), and
`MaskReader` yields `[H, W]` float32 masks in [0, 1] from a mask video or a folder of mask images.
Both validate their source when they are opened (path exists, first frame decodes, exact frame count)
so that a tool can report every bad input before it starts working.

`FrameWriter` writes a video file (mp4/mov: MPEG-4 Part 2 `mp4v`, avi: Motion-JPEG) or a folder of PNG
frames. It writes under a hidden temporary name in the destination's own folder and renames at
`close()`; used as a context manager, an exception (or Ctrl-C) removes the temporary and leaves
nothing under the final name. A process killed with SIGKILL leaves only the hidden temporary.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import tempfile
from collections.abc import Iterator

import cv2
import numpy as np

from lvst_tf.fileio import write_atomic

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".m4v")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")
# Frame folders carry no frame rate; this is what readers report for them.
DEFAULT_FOLDER_FPS = 30.0
_FOURCC = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".mkv": "MJPG"}


def is_video_path(path: str | os.PathLike) -> bool:
    """True if `path` names a video file by its extension (else it is treated as a frame folder)."""
    return pathlib.Path(path).suffix.lower() in VIDEO_EXTENSIONS


def list_frame_files(folder: str | os.PathLike) -> list[pathlib.Path]:
    """Image files directly inside `folder` (jpg/jpeg/png/bmp), sorted by file name."""
    folder = pathlib.Path(folder)
    return sorted(
        p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
    )


def _count_video_frames(capture: cv2.VideoCapture) -> int:
    # CAP_PROP_FRAME_COUNT is read from the container header and can be wrong (variable frame rate,
    # broken index); grabbing without decoding to RGB gives the exact count cheaply.
    count = 0
    while capture.grab():
        count += 1
    return count


class _Source:
    """Shared opening/validation for frame and mask sources."""

    kind_name = "video"

    def __init__(self, path: str | os.PathLike, argument: str = "input"):
        self.path = pathlib.Path(path)
        self.argument = argument
        if not self.path.exists():
            raise ValueError(
                f"{argument}: {str(self.path)!r} does not exist; expected a video file "
                f"({', '.join(VIDEO_EXTENSIONS)}) or a folder of jpg/png frames."
            )
        self.is_folder = self.path.is_dir()
        if self.is_folder:
            self._files = list_frame_files(self.path)
            if not self._files:
                raise ValueError(f"{argument}: folder {str(self.path)!r} holds no jpg/png frames.")
            first = self._read_file(self._files[0])
            self.num_frames = len(self._files)
            self.fps = DEFAULT_FOLDER_FPS
        else:
            if not is_video_path(self.path):
                raise ValueError(
                    f"{argument}: {str(self.path)!r} is neither a folder nor a video file "
                    f"with one of the extensions {', '.join(VIDEO_EXTENSIONS)}."
                )
            capture = cv2.VideoCapture(str(self.path))
            try:
                ok, first = capture.read() if capture.isOpened() else (False, None)
                if not ok or first is None:
                    raise ValueError(
                        f"{argument}: cannot decode video {str(self.path)!r} (unreadable "
                        "or not a video OpenCV can open)."
                    )
                self.num_frames = 1 + _count_video_frames(capture)
                fps = capture.get(cv2.CAP_PROP_FPS)
            finally:
                capture.release()
            self.fps = float(fps) if fps and np.isfinite(fps) and fps > 0 else DEFAULT_FOLDER_FPS
        self.height, self.width = int(first.shape[0]), int(first.shape[1])

    @property
    def size(self) -> tuple[int, int]:
        """`(height, width)` of every frame."""
        return self.height, self.width

    def __len__(self) -> int:
        return self.num_frames

    def _read_file(self, path: pathlib.Path) -> np.ndarray:
        raise NotImplementedError

    def _convert_video_frame(self, bgr: np.ndarray) -> np.ndarray:
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
        capture = cv2.VideoCapture(str(self.path))
        try:
            index = 0
            while True:
                ok, bgr = capture.read()
                if not ok:
                    break
                yield self._check_size(self._convert_video_frame(bgr), index, str(self.path))
                index += 1
        finally:
            capture.release()


class FrameReader(_Source):
    """Streams the frames of a video file or frame folder as `[H, W, 3]` uint8 RGB.

    Attributes: `path`, `fps` (the container's; `DEFAULT_FOLDER_FPS` for folders), `height`, `width`,
    `num_frames` (exact: counted when opened), `is_folder`. Iterating re-opens the source, so a reader
    can be iterated several times; at most one decoded frame is held.

    Raises:
      ValueError naming `argument` and the path if the source is missing or undecodable.
    """

    def _read_file(self, path: pathlib.Path) -> np.ndarray:
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise ValueError(f"{self.argument}: cannot decode image {str(path)!r}.")
        return np.ascontiguousarray(bgr[..., ::-1])

    def _convert_video_frame(self, bgr: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(bgr[..., ::-1])


class MaskReader(_Source):
    """Streams masks `[H, W]` float32 in [0, 1] from a mask video or a folder of mask images.

    Grey images/videos are divided by 255 (so 0/255 masks give 0/1 and soft masks stay soft); colour
    images (for example DAVIS palette annotations, which OpenCV decodes to colours) count every
    non-black pixel as inside the mask, which is the union of the annotated instances.
    """

    def _read_file(self, path: pathlib.Path) -> np.ndarray:
        image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if image is None:
            raise ValueError(f"{self.argument}: cannot decode mask image {str(path)!r}.")
        if image.ndim == 3 and image.shape[-1] == 1:
            image = image[..., 0]
        if image.ndim == 2:
            scale = 65535.0 if image.dtype == np.uint16 else 255.0
            return image.astype(np.float32) / scale
        colour = image[..., :3]
        if np.all(colour == colour[..., :1]):  # a grey image stored as RGB
            return colour[..., 0].astype(np.float32) / 255.0
        return np.any(colour > 0, axis=-1).astype(np.float32)

    def _convert_video_frame(self, bgr: np.ndarray) -> np.ndarray:
        # Lossy codecs smear 0/255 edges a little; the masks stay soft, which the model accepts.
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY).astype(np.float32) / 255.0


def to_uint8(frame: np.ndarray) -> np.ndarray:
    """`[..., 3]` or `[...]` uint8 unchanged; float in [0, 1] clipped, scaled by 255 and rounded."""
    frame = np.asarray(frame)
    if frame.dtype == np.uint8:
        return frame
    return np.clip(np.rint(np.asarray(frame, np.float64) * 255.0), 0, 255).astype(np.uint8)


class FrameWriter:
    """Writes frames to a video file or a PNG frame folder atomically (temporary name + rename).

    Args:
      path: destination. A name ending in .mp4/.mov/.m4v (codec mp4v), .avi/.mkv (MJPG) is a video
        file; anything else is a folder that receives `00000.png`, `00001.png`, ...
      fps: frame rate of a video file (ignored for folders).
      overwrite: if False, an existing destination is a ValueError (raised here, before any work).

    Frames are `[H, W, 3]` RGB, uint8 or float in [0, 1] (clipped, rounded), all one size; the size
    is taken from the first frame. mp4v needs even width and height: an odd size raises ValueError at
    the first frame (use a frame folder or .avi for odd sizes). Use as a context manager.
    """

    def __init__(
        self, path: str | os.PathLike, fps: float = DEFAULT_FOLDER_FPS, overwrite: bool = True
    ):
        self.path = pathlib.Path(path)
        if not fps or not np.isfinite(fps) or fps <= 0:
            raise ValueError(f"fps must be a positive number, got {fps!r}.")
        if self.path.exists() and not overwrite:
            raise ValueError(
                f"output {str(self.path)!r} exists (pass overwrite=True to replace it)."
            )
        self.fps = float(fps)
        self.is_video = is_video_path(self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._writer = None
        self._size = None
        self.num_frames = 0
        self._closed = False
        if self.is_video:
            suffix = self.path.suffix.lower()
            # The container is chosen from the extension, so the temporary keeps it.
            fd, tmp = tempfile.mkstemp(
                dir=self.path.parent, prefix=f".{self.path.stem}.tmp-", suffix=suffix
            )
            os.close(fd)
            self._tmp = pathlib.Path(tmp)
            self._fourcc = cv2.VideoWriter_fourcc(*_FOURCC[suffix])
        else:
            self._tmp = pathlib.Path(
                tempfile.mkdtemp(dir=self.path.parent, prefix=f".{self.path.name}.tmp-")
            )

    @property
    def temporary_path(self) -> pathlib.Path:
        """Where frames go until `close()` renames them to `path`."""
        return self._tmp

    def write(self, frame: np.ndarray) -> None:
        """Appends one `[H, W, 3]` RGB frame (uint8, or float in [0, 1])."""
        if self._closed:
            raise ValueError(f"write() on a closed FrameWriter ({str(self.path)!r}).")
        frame = to_uint8(frame)
        if frame.ndim != 3 or frame.shape[-1] != 3:
            raise ValueError(f"frame must be [H, W, 3] RGB, got shape {frame.shape}.")
        height, width = frame.shape[:2]
        if self._size is None:
            if (
                self.is_video
                and self.path.suffix.lower() in (".mp4", ".mov", ".m4v")
                and (height % 2 or width % 2)
            ):
                raise ValueError(
                    f"output {str(self.path)!r}: mp4v needs an even width and height, "
                    f"got {width}x{height}; write a frame folder or an .avi instead."
                )
            self._size = (height, width)
            if self.is_video:
                self._writer = cv2.VideoWriter(
                    str(self._tmp), self._fourcc, self.fps, (width, height)
                )
                if not self._writer.isOpened():
                    raise ValueError(f"OpenCV cannot open a video writer for {str(self.path)!r}.")
        elif (height, width) != self._size:
            raise ValueError(
                f"frame {self.num_frames} is {width}x{height}, earlier frames are "
                f"{self._size[1]}x{self._size[0]}."
            )
        bgr = np.ascontiguousarray(frame[..., ::-1])
        if self.is_video:
            self._writer.write(bgr)
        else:
            file = self._tmp / f"{self.num_frames:05d}.png"
            if not cv2.imwrite(str(file), bgr):
                raise OSError(f"cannot write frame {str(file)!r}.")
        self.num_frames += 1

    def close(self) -> pathlib.Path:
        """Finishes the file and renames it to `path` (replacing an old one). Returns `path`."""
        if self._closed:
            return self.path
        if self.num_frames == 0:
            self.abort()
            raise ValueError(f"no frame was written to {str(self.path)!r}.")
        if self._writer is not None:
            self._writer.release()
        self._closed = True
        if self.is_video or not self.path.exists():
            os.replace(self._tmp, self.path)
        else:
            # Directories cannot be replaced in one rename: move the old one aside first.
            old = pathlib.Path(
                tempfile.mkdtemp(dir=self.path.parent, prefix=f".{self.path.name}.old-")
            )
            os.replace(self.path, old / "x")
            os.replace(self._tmp, self.path)
            shutil.rmtree(old, ignore_errors=True)
        return self.path

    def abort(self) -> None:
        """Discards everything written; nothing appears under `path`."""
        if self._writer is not None:
            self._writer.release()
            self._writer = None
        self._closed = True
        if self._tmp.is_dir():
            shutil.rmtree(self._tmp, ignore_errors=True)
        elif self._tmp.exists():
            self._tmp.unlink()

    def __enter__(self) -> FrameWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def __del__(self):
        # A writer dropped without close() (e.g. a generator that never finished) must not leave
        # its temporary behind.
        try:
            if not self._closed:
                self.abort()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass


def read_frames(path: str | os.PathLike, argument: str = "input") -> FrameReader:
    """Opens a video file or frame folder for streaming; see `FrameReader`."""
    return FrameReader(path, argument)


def read_masks(path: str | os.PathLike, argument: str = "masks") -> MaskReader:
    """Opens a mask video or mask-image folder for streaming; see `MaskReader`."""
    return MaskReader(path, argument)


def read_image(path: str | os.PathLike, argument: str = "image") -> np.ndarray:
    """Reads an image file as `[H, W, 3]` uint8 RGB; ValueError naming `argument` and the path."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise ValueError(f"{argument}: {str(path)!r} is not a file; expected a jpg/png image.")
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError(f"{argument}: cannot decode {str(path)!r} as an image.")
    return np.ascontiguousarray(bgr[..., ::-1])


def write_image(path: str | os.PathLike, image: np.ndarray) -> pathlib.Path:
    """Writes `[H, W, 3]` RGB (uint8 or float in [0, 1]) to a png/jpg atomically; returns the path."""
    path = pathlib.Path(path)
    image = to_uint8(image)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"image must be [H, W, 3] RGB, got shape {image.shape}.")
    ok, encoded = cv2.imencode(
        path.suffix.lower() or ".png", np.ascontiguousarray(image[..., ::-1])
    )
    if not ok:
        raise ValueError(f"cannot encode an image for {str(path)!r}; use a .png or .jpg name.")
    write_atomic(path, encoded.tobytes())
    return path
