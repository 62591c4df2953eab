"""Sources of content clips: DAVIS 2017 folders, TFDS `davis`, and folders of users' videos.

Every source is a sequence collection with `names`, `len()`, iteration over :class:`Sequence` objects,
`num_frames(i)` and `load_clip(i, start, length)` (random access to a few frames, which is what the
training pipeline uses). Instance maps are uint8 `[T, H, W]`: 0 background, 1..n the instances.
Bad layouts raise ValueError when the source is built; image-level problems (unreadable file, frame
and mask size disagreeing) raise ValueError naming the file when it is read.
"""

from __future__ import annotations

import collections
import dataclasses
import os
import pathlib
import threading

import numpy as np

import gin
from lvst_tf import video_io
from lvst_tf.data import image_io

# The one list of accepted video types lives in `lvst_tf.video_io`.
VIDEO_EXTENSIONS = video_io.VIDEO_EXTENSIONS
DAVIS_DIR_ENV = "LVST_DAVIS_DIR"
_RESOLUTIONS = {
    "480p": "480p",
    "full-resolution": "Full-Resolution",
    "full_resolution": "Full-Resolution",
    "full": "Full-Resolution",
}


@dataclasses.dataclass
class Sequence:
    """One video with instance masks.

    Attributes:
      name: sequence name.
      frames: `[T, H, W, 3]` uint8 RGB.
      instances: `[T, H, W]` uint8 instance ids, 0 = background.
    """

    name: str
    frames: np.ndarray
    instances: np.ndarray


def check_clip(name: str, frames: np.ndarray, instances: np.ndarray, where: str = "") -> None:
    """ValueError unless frames `[T, H, W, 3]` and instances `[T, H, W]` agree in count and size."""
    if frames.shape[0] != instances.shape[0]:
        raise ValueError(
            f"Sequence {name!r}{where}: {frames.shape[0]} frames but {instances.shape[0]} masks."
        )
    if frames.shape[1:3] != instances.shape[1:3]:
        raise ValueError(
            f"Sequence {name!r}{where}: frames are {frames.shape[2]}x{frames.shape[1]} but masks are "
            f"{instances.shape[2]}x{instances.shape[1]} (width x height); they must match."
        )


def _stack_same_size(images, paths, kind):
    first = images[0].shape[:2]
    for image, path in zip(images, paths):
        if image.shape[:2] != first:
            raise ValueError(
                f"{kind} {str(path)!r} is {image.shape[1]}x{image.shape[0]}, but the sequence's first "
                f"one is {first[1]}x{first[0]}; all frames of a sequence must have one size."
            )
    return np.stack(images)


def relabel(labels: np.ndarray, name: str) -> np.ndarray:
    """Maps the distinct values of an integer label array to consecutive ids (0 stays 0), uint8."""
    values, inverse = np.unique(labels, return_inverse=True)
    if values[0] != 0:
        values = np.concatenate([[0], values])
        inverse = inverse + 1
    if len(values) > 256:
        raise ValueError(f"Sequence {name!r}: more than 255 distinct mask values.")
    return inverse.reshape(labels.shape).astype(np.uint8)


class ClipSource:
    """Base class: random access to sequences by index. Subclasses implement `_load`."""

    names: list[str]

    def __len__(self) -> int:
        return len(self.names)

    def __iter__(self):
        for index in range(len(self)):
            yield self[index]

    def __getitem__(self, index: int) -> Sequence:
        frames, instances = self.load_clip(index, 0, self.num_frames(index))
        return Sequence(self.names[index], frames, instances)

    def num_frames(self, index: int) -> int:
        raise NotImplementedError

    def load_clip(self, index: int, start: int, length: int) -> tuple[np.ndarray, np.ndarray]:
        """Frames `[length, H, W, 3]` uint8 and instances `[length, H, W]` uint8 from `start`."""
        count = self.num_frames(index)
        if not 0 <= start or start + length > count or length < 1:
            raise ValueError(
                f"Sequence {self.names[index]!r} has {count} frames; cannot load {length} from {start}."
            )
        frames, instances = self._load(index, start, length)
        check_clip(self.names[index], frames, instances)
        return frames, instances

    def _load(self, index, start, length):
        raise NotImplementedError

    def __repr__(self):
        return f"{type(self).__name__}({len(self)} sequences)"


def _resolve_resolution(resolution: str) -> str:
    key = str(resolution).lower()
    if key not in _RESOLUTIONS:
        raise ValueError(
            f"resolution must be '480p' or 'Full-Resolution' (or 'full_resolution'), got {resolution!r}."
        )
    return _RESOLUTIONS[key]


@gin.configurable
class DavisFolder(ClipSource):
    """A DAVIS 2017 folder in its official layout (docs/method.md#training).

    `root/JPEGImages/<res>/<seq>/%05d.jpg`, `root/Annotations/<res>/<seq>/%05d.png` (palette PNGs, the
    palette index is the instance id, 0 background), `root/ImageSets/2017/<split>.txt`.

    Args:
      root: the folder holding `JPEGImages/` (the unzipped `DAVIS/`); None reads `$LVST_DAVIS_DIR`.
      split: a split file name under `ImageSets/2017/` ("train", "val", ...).
      resolution: "480p" or "Full-Resolution".
      cache_bytes: decoded frames and masks are kept in memory up to this many bytes (LRU; the whole
        480p train split needs about 7 GB, the samples 15 MB); 0 disables the cache.
    """

    def __init__(
        self, root=None, split: str = "train", resolution: str = "480p", cache_bytes: int = 1 << 30
    ):
        if root is None:
            root = os.environ.get(DAVIS_DIR_ENV)
            if not root:
                raise ValueError(
                    f"root: give the DAVIS 2017 folder (holding JPEGImages/) or set ${DAVIS_DIR_ENV}."
                )
        self.root = pathlib.Path(root)
        self.split = split
        self.resolution = _resolve_resolution(resolution)
        if not (self.root / "JPEGImages").is_dir():
            raise ValueError(
                f"root: {str(self.root)!r} is not a DAVIS folder (expected JPEGImages/, Annotations/ "
                "and ImageSets/2017/ inside)."
            )
        split_file = self.root / "ImageSets" / "2017" / f"{split}.txt"
        if not split_file.is_file():
            available = sorted(p.stem for p in split_file.parent.glob("*.txt"))
            raise ValueError(
                f"split: split file {str(split_file)!r} is missing (available splits: {available})."
            )
        names = [line.strip() for line in split_file.read_text().splitlines() if line.strip()]
        if not names:
            raise ValueError(f"split: split file {str(split_file)!r} lists no sequences.")
        self.names = names
        self._frame_paths = []
        self._mask_paths = []
        for name in names:
            frame_dir = self.root / "JPEGImages" / self.resolution / name
            mask_dir = self.root / "Annotations" / self.resolution / name
            for folder in (frame_dir, mask_dir):
                if not folder.is_dir():
                    raise ValueError(
                        f"Sequence {name!r} of split {split!r}: missing folder {str(folder)!r}."
                    )
            frames = image_io.list_images(frame_dir)
            masks = sorted(mask_dir.glob("*.png"))
            if not frames:
                raise ValueError(f"Sequence {name!r}: no frames in {str(frame_dir)!r}.")
            if len(frames) != len(masks):
                raise ValueError(
                    f"Sequence {name!r}: {len(frames)} frames in {str(frame_dir)!r} but {len(masks)} "
                    f"masks in {str(mask_dir)!r}; DAVIS needs one annotation per frame."
                )
            self._frame_paths.append(frames)
            self._mask_paths.append(masks)
        self._cache = _LruCache(cache_bytes)

    def num_frames(self, index: int) -> int:
        return len(self._frame_paths[index])

    def _read_frame(self, index, t):
        frame_path, mask_path = self._frame_paths[index][t], self._mask_paths[index][t]
        frame = image_io.read_image(frame_path)
        label = image_io.read_label_map(mask_path)
        if label.shape != frame.shape[:2]:
            raise ValueError(
                f"Mask {str(mask_path)!r} is {label.shape[1]}x{label.shape[0]} but its frame is "
                f"{frame.shape[1]}x{frame.shape[0]}."
            )
        if label.max() > 255:
            raise ValueError(
                f"Mask {str(mask_path)!r}: instance ids must be palette indices 0..255."
            )
        return frame, label.astype(np.uint8)

    def _load(self, index, start, length):
        pairs = [
            self._cache.get((index, t), lambda t=t: self._read_frame(index, t))
            for t in range(start, start + length)
        ]
        frame_paths = self._frame_paths[index][start : start + length]
        frames = _stack_same_size([f for f, _ in pairs], frame_paths, "Frame")
        return frames, np.stack([m for _, m in pairs])


class _LruCache:
    """A thread-safe LRU cache of decoded sequences bounded by bytes."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self._items = collections.OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key, make):
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        value = make()
        size = sum(v.nbytes for v in value)
        with self._lock:
            if key not in self._items and size <= self.max_bytes:
                self._items[key] = value
                self._bytes += size
                while self._bytes > self.max_bytes:
                    _, old = self._items.popitem(last=False)
                    self._bytes -= sum(v.nbytes for v in old)
        return value


def iter_frames(path):
    """Streams the frames of a video file or a frame folder: `[H, W, 3]` uint8 RGB, in order
    (`video_io.FrameReader`; ValueError naming the path if it is missing or unreadable)."""
    yield from video_io.read_frames(path, argument="input")


def count_frames(path) -> int:
    """Exact frame count of a video file or frame folder (`video_io.FrameReader`)."""
    return len(video_io.read_frames(path, argument="input"))


def read_video(path) -> np.ndarray:
    """Decodes a whole video file (or frame folder) to `[T, H, W, 3]` uint8 RGB; ValueError naming
    the path."""
    return video_io.read_video(path, argument="input")


@gin.configurable
class VideoFolder(ClipSource):
    """Users' videos with mask folders beside them.

    Layout: `root/<name>.mp4` (or .avi/.mov/.mkv/.webm/.m4v) or `root/<name>/` (a folder of frame images
    in name order), each with `root/<name>_masks/` holding one mask image per frame in name order (e.g.
    `00000.png` as written by `tools/make_masks.py`). A mask may be 0/255 grey (one object), grey
    instance ids, a palette PNG (DAVIS style) or a colour PNG (one colour per instance); the distinct
    values of a sequence become instance ids 1..n in sorted order.

    Args:
      root: the folder.
      cache_bytes: decoded sequences are kept in memory up to this many bytes (LRU).
    """

    def __init__(self, root, cache_bytes: int = 1 << 30):
        self.root = pathlib.Path(root)
        if not self.root.is_dir():
            raise ValueError(f"root: {str(self.root)!r} is not a folder of videos / frame folders.")
        entries = []
        for path in sorted(self.root.iterdir()):
            if path.name.startswith(".") or path.name.endswith("_masks"):
                continue
            if path.is_file() and path.suffix.lower() in VIDEO_EXTENSIONS:
                entries.append((path.stem, path))
            elif path.is_dir() and image_io.list_images(path):
                entries.append((path.name, path))
        if not entries:
            raise ValueError(
                f"root: {str(self.root)!r} holds no videos ({', '.join(VIDEO_EXTENSIONS)}) or frame "
                "folders."
            )
        self.names = [name for name, _ in entries]
        self._paths = [path for _, path in entries]
        self._mask_paths = []
        self._counts = []
        for name, path in entries:
            mask_dir = self.root / f"{name}_masks"
            masks = image_io.list_images(mask_dir) if mask_dir.is_dir() else []
            if not masks:
                raise ValueError(
                    f"Sequence {name!r}: no masks; expected one mask image per frame in "
                    f"{str(mask_dir)!r} (tools/make_masks.py writes them)."
                )
            if path.is_dir():
                count = len(image_io.list_images(path))
            else:
                count = count_frames(path)  # exact (a container's frame count can be wrong)
            if count != len(masks):
                raise ValueError(
                    f"Sequence {name!r}: {count} frames in {str(path)!r} but {len(masks)} masks in "
                    f"{str(mask_dir)!r}."
                )
            self._mask_paths.append(masks)
            self._counts.append(count)
        self._cache = _LruCache(cache_bytes)

    def num_frames(self, index: int) -> int:
        return self._counts[index]

    def _decode(self, index):
        name, path = self.names[index], self._paths[index]
        if path.is_dir():
            frame_paths = image_io.list_images(path)
            frames = _stack_same_size(
                [image_io.read_image(p) for p in frame_paths], frame_paths, "Frame"
            )
        else:
            frames = read_video(path)
        mask_paths = self._mask_paths[index]
        labels = [image_io.read_label_map(p) for p in mask_paths]
        labels = _stack_same_size(labels, mask_paths, "Mask")
        check_clip(name, frames, labels, f" ({str(path)!r})")
        return frames, relabel(labels, name)

    def _load(self, index, start, length):
        frames, instances = self._cache.get(index, lambda: self._decode(index))
        return frames[start : start + length], instances[start : start + length]


@gin.configurable
class TfdsDavis(ClipSource):
    """TFDS `davis/480p` or `davis/full_resolution` (DAVIS 2017 train/validation).

    The dataset is read once with image decoding skipped, so memory holds the encoded JPEG/PNG bytes
    (about the size of the download); frames are decoded when a clip is drawn.

    Args:
      config: "480p" or "full_resolution".
      split: "train" or "val"/"validation".
      download: let TFDS download and prepare the dataset (needs internet; without it an unprepared
        dataset fails fast instead of retrying the network).
      data_dir: TFDS data folder (default: TFDS's own).
      name: the TFDS builder (a builder with the same features and configs may stand in).
    """

    def __init__(self, config="480p", split="train", download=False, data_dir=None, name="davis"):
        if config not in ("480p", "full_resolution"):
            raise ValueError(f"config must be '480p' or 'full_resolution', got {config!r}.")
        tfds_split = {"val": "validation"}.get(split, split)
        if tfds_split not in ("train", "validation"):
            raise ValueError(f"split must be 'train' or 'val' ('validation'), got {split!r}.")
        import tensorflow_datasets as tfds

        self.config, self.split = config, split
        skip = tfds.decode.SkipDecoding()
        try:
            dataset = tfds.load(
                f"{name}/{config}",
                split=tfds_split,
                download=download,
                data_dir=data_dir,
                decoders={"video": {"frames": skip, "segmentations": skip}},
            )
        except (AssertionError, FileNotFoundError, ValueError) as e:
            raise ValueError(
                f"TFDS {name}/{config} is not available offline ({type(e).__name__}: {e}). Pass "
                "download=True on a machine with internet, or use DavisFolder on an unzipped DAVIS 2017."
            ) from e
        self.names, self._frames, self._masks = [], [], []
        for example in dataset.as_numpy_iterator():
            name = example["metadata"]["video_name"]
            name = name.decode() if isinstance(name, bytes) else str(name)
            frames, masks = example["video"]["frames"], example["video"]["segmentations"]
            if len(frames) != len(masks):
                raise ValueError(f"Sequence {name!r}: {len(frames)} frames but {len(masks)} masks.")
            self.names.append(name)
            self._frames.append(list(frames))
            self._masks.append(list(masks))
        if not self.names:
            raise ValueError(f"split: TFDS {name}/{config} split {split!r} is empty.")

    def num_frames(self, index: int) -> int:
        return len(self._frames[index])

    def _load(self, index, start, length):
        name = self.names[index]
        frames, labels = [], []
        for t in range(start, start + length):
            frame, mask = self._frames[index][t], self._masks[index][t]
            where = f"{name}[{t}]"
            frames.append(
                image_io.decode_image(frame, where) if isinstance(frame, bytes) else frame
            )
            if isinstance(mask, bytes):
                mask = image_io.decode_label_map(mask, where)
            labels.append(np.asarray(mask).reshape(np.asarray(mask).shape[:2]))
        frames = _stack_same_size(
            frames, [f"{name}[{t}]" for t in range(start, start + length)], "Frame"
        )
        labels = np.stack(labels)
        return frames, labels.astype(np.uint8)
