"""Style-image sources for training (docs/method.md#training, decision: default = frames of other
sequences).

A style source draws one `[S, S, 3]` uint8 RGB image per call of `sample(rng, size, exclude)`: the
image is resized so its short side is `size` and cropped at a random square (styles enter the model
only through feature statistics, so a crop keeps what matters).
"""

from __future__ import annotations

import pathlib
import threading

import cv2
import numpy as np

import gin
from lvst_tf.data import image_io


def random_square(image: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """Resizes `image [H, W, 3]` to short side `size` and crops a random `[size, size, 3]` square."""
    height, width = image.shape[:2]
    scale = size / min(height, width)
    new_w, new_h = max(size, round(width * scale)), max(size, round(height * scale))
    if (new_w, new_h) != (width, height):
        interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        image = cv2.resize(image, (new_w, new_h), interpolation=interp)
    y0 = int(rng.integers(0, new_h - size + 1))
    x0 = int(rng.integers(0, new_w - size + 1))
    return np.ascontiguousarray(image[y0 : y0 + size, x0 : x0 + size])


class StyleSource:
    """Base class of style sources."""

    def __len__(self) -> int:
        raise NotImplementedError

    def sample(self, rng: np.random.Generator, size: int, exclude: int | None = None) -> np.ndarray:
        """One style image `[size, size, 3]` uint8; `exclude` is the content sequence's index."""
        raise NotImplementedError


@gin.configurable
class ImageFolderStyles(StyleSource):
    """Style photographs from a folder (jpg/png/...; not recursive). Decoded images are cached.

    Args:
      root: the folder.
      max_side: images are downscaled to at most this long side when first read (memory).
    """

    def __init__(self, root, max_side: int = 1024):
        self.root = pathlib.Path(root)
        if not self.root.is_dir():
            raise ValueError(f"root: style folder {str(self.root)!r} does not exist.")
        self.paths = image_io.list_images(self.root)
        if not self.paths:
            raise ValueError(f"root: style folder {str(self.root)!r} holds no images.")
        self.max_side = max_side
        self._cache = {}
        self._lock = threading.Lock()

    def __len__(self):
        return len(self.paths)

    def _image(self, index):
        with self._lock:
            if index in self._cache:
                return self._cache[index]
        image = image_io.read_image(self.paths[index])
        scale = self.max_side / max(image.shape[:2])
        if scale < 1:
            size = (round(image.shape[1] * scale), round(image.shape[0] * scale))
            image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        with self._lock:
            self._cache[index] = image
        return image

    def sample(self, rng, size, exclude=None):
        return random_square(self._image(int(rng.integers(len(self)))), size, rng)


@gin.configurable
class TfdsImageStyles(StyleSource):
    """Style images from a TFDS image dataset (e.g. "coco/2017", "places365_small").

    The first `max_images` images of the split are decoded once and kept (downscaled to `max_side`).

    Args:
      name: TFDS dataset name (with config, e.g. "oxford_flowers102").
      split: split to read.
      image_key: feature holding the image.
      download: allow TFDS to download (needs internet).
      data_dir: TFDS data folder.
      max_images, max_side: memory bounds.
    """

    def __init__(
        self,
        name,
        split="train",
        image_key="image",
        download=False,
        data_dir=None,
        max_images: int = 1000,
        max_side: int = 512,
    ):
        import tensorflow_datasets as tfds

        try:
            dataset = tfds.load(name, split=split, download=download, data_dir=data_dir)
        except (AssertionError, FileNotFoundError, ValueError) as e:
            raise ValueError(
                f"name: TFDS dataset {name!r} split {split!r} is not available ({type(e).__name__}: "
                f"{e}); pass download=True on a machine with internet."
            ) from e
        self.images = []
        for example in dataset.take(max_images).as_numpy_iterator():
            if image_key not in example:
                raise ValueError(
                    f"image_key: {image_key!r} is not a feature of {name!r} (features: {sorted(example)})."
                )
            image = np.asarray(example[image_key])
            if image.ndim != 3 or image.shape[-1] not in (1, 3):
                raise ValueError(f"image_key: {image_key!r} of {name!r} is not an [H, W, 3] image.")
            if image.shape[-1] == 1:
                image = np.repeat(image, 3, axis=-1)
            scale = max_side / max(image.shape[:2])
            if scale < 1:
                size = (round(image.shape[1] * scale), round(image.shape[0] * scale))
                image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
            self.images.append(np.ascontiguousarray(image.astype(np.uint8)))
        if not self.images:
            raise ValueError(f"name: TFDS dataset {name!r} split {split!r} is empty.")

    def __len__(self):
        return len(self.images)

    def sample(self, rng, size, exclude=None):
        return random_square(self.images[int(rng.integers(len(self)))], size, rng)


@gin.configurable
class SequenceFrameStyles(StyleSource):
    """Default style source: a random frame of another sequence of the content source
    (docs/method.md#training).

    With a single sequence, its own frames are used.
    """

    def __init__(self, source):
        if len(source) == 0:
            raise ValueError("source: the content source holds no sequences.")
        self.source = source

    def __len__(self):
        return len(self.source)

    def sample(self, rng, size, exclude=None):
        count = len(self.source)
        if exclude is not None and count > 1:
            index = int(rng.integers(count - 1))
            index += index >= exclude
        else:
            index = int(rng.integers(count))
        t = int(rng.integers(self.source.num_frames(index)))
        frames, _ = self.source.load_clip(index, t, 1)
        return random_square(frames[0], size, rng)


class CombinedStyles(StyleSource):
    """Draws each style from one of several sources, chosen uniformly (not by their sizes).

    E.g. a folder of photographs plus frames of the content sequences: more distinct colour
    statistics than either alone.
    """

    def __init__(self, sources):
        if not sources:
            raise ValueError("sources: CombinedStyles needs at least one style source.")
        self.sources = list(sources)

    def __len__(self):
        return sum(len(s) for s in self.sources)

    def sample(self, rng, size, exclude=None):
        source = self.sources[int(rng.integers(len(self.sources)))]
        return source.sample(rng, size, exclude)


SEQUENCE_STYLES = "sequences"
CORPUS_STYLES = "corpus"


def make_style_source(style_source, content_source) -> StyleSource:
    """Resolves the `style_source` argument of the pipeline.

    None or "sequences" -> :class:`SequenceFrameStyles` of the content; "corpus" -> the photographs
    of the offline training corpus (`corpus_root()/styles`); a path ->
    :class:`ImageFolderStyles`; "tfds:NAME[:SPLIT]" -> :class:`TfdsImageStyles`; a
    :class:`StyleSource` -> itself; a list of these -> :class:`CombinedStyles` (each draw picks one
    of them uniformly).
    """
    if isinstance(style_source, (list, tuple)):
        return CombinedStyles([make_style_source(s, content_source) for s in style_source])
    if style_source is None or style_source == SEQUENCE_STYLES:
        return SequenceFrameStyles(content_source)
    if style_source == CORPUS_STYLES:
        from lvst_tf.data import samples  # noqa: PLC0415

        return ImageFolderStyles(samples.corpus_root() / "styles")
    if isinstance(style_source, StyleSource):
        return style_source
    if isinstance(style_source, str) and style_source.startswith("tfds:"):
        parts = style_source[len("tfds:") :].split(":")
        return TfdsImageStyles(parts[0], split=parts[1] if len(parts) > 1 else "train")
    if isinstance(style_source, (str, pathlib.Path)):
        return ImageFolderStyles(style_source)
    raise ValueError(
        "style_source must be None or 'sequences' (frames of other sequences), a folder path, "
        f"'tfds:NAME[:SPLIT]', a StyleSource, or a list of these, got {type(style_source).__name__}."
    )
