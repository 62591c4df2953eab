"""DAVIS annotations (palette PNGs) and the training data's image I/O, over `lvst_tf.video_io`.

`lvst_tf.video_io` is the package's one image and video reader and writer (accepted types, truncation
checks, atomic writes); this module keeps the palette codec on top of it. OpenCV expands palette PNGs
to colours when it decodes them, and Pillow is not a dependency, so DAVIS annotations (palette PNGs
whose palette *index* is the instance id) are read by decoding the colours and mapping them back to
indices through the file's own `PLTE` chunk. Palette PNGs are written by a small zlib encoder
(:func:`write_palette_png`).
"""

from __future__ import annotations

import os
import pathlib
import struct
import zlib

import numpy as np

from lvst_tf import video_io
from lvst_tf.fileio import write_atomic

IMAGE_EXTENSIONS = video_io.IMAGE_EXTENSIONS
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def davis_palette() -> np.ndarray:
    """The PASCAL VOC / DAVIS colour map: `[256, 3]` uint8 RGB, index 0 black (background)."""
    palette = np.zeros((256, 3), np.uint8)
    for index in range(256):
        label, r, g, b = index, 0, 0, 0
        for bit in range(8):
            r |= ((label >> 0) & 1) << (7 - bit)
            g |= ((label >> 1) & 1) << (7 - bit)
            b |= ((label >> 2) & 1) << (7 - bit)
            label >>= 3
        palette[index] = (r, g, b)
    return palette


def decode_image(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """Decodes encoded image bytes to `[H, W, 3]` uint8 RGB; ValueError naming `name` if truncated,
    damaged or undecodable (`video_io.decode_image`)."""
    return video_io.decode_image(data, name, argument="image")


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Reads an image file as `[H, W, 3]` uint8 RGB; ValueError naming the path if unreadable."""
    return video_io.read_image(path, argument="image")


def _png_chunks(data: bytes):
    pos = len(_PNG_SIGNATURE)
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        yield kind, data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"IEND":
            return


def decode_label_map(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """Decodes an annotation image to an integer label map `[H, W]` (int32).

    Palette PNG: the palette index of every pixel (DAVIS: 0 background, k instance k). Grey PNG: the
    grey value. Colour image: the colour code `(r << 16) | (g << 8) | b`.
    """
    problem = video_io.image_problem(data)
    if problem:
        raise ValueError(f"annotation: {name!r} is damaged: {problem}.")
    colour_type = None
    if data[:8] == _PNG_SIGNATURE and len(data) > 26:
        colour_type = data[25]
    if colour_type == 3:
        palette = None
        for kind, body in _png_chunks(data):
            if kind == b"PLTE":
                palette = np.frombuffer(body, np.uint8).reshape(-1, 3).astype(np.int32)
                break
        if palette is None:
            raise ValueError(f"annotation: {name!r} is a palette PNG without a palette.")
        bgr = video_io.decode_image(data, name, argument="annotation")[..., ::-1]
        codes = (
            (bgr[..., 2].astype(np.int32) << 16) | (bgr[..., 1].astype(np.int32) << 8) | bgr[..., 0]
        )
        palette_codes = (palette[:, 0] << 16) | (palette[:, 1] << 8) | palette[:, 2]
        # Sorted unique palette colours with their first index (the first wins when a palette
        # repeats a colour); a binary search per pixel is much cheaper than np.unique on the image.
        sorted_codes, first_index = np.unique(palette_codes, return_index=True)
        position = np.minimum(np.searchsorted(sorted_codes, codes), len(sorted_codes) - 1)
        if not np.array_equal(sorted_codes[position], codes):
            raise ValueError(f"Annotation {name!r} holds a colour missing from its palette.")
        return first_index[position].astype(np.int32)
    decoded = video_io.decode_image_unchanged(data, name, argument="annotation")
    if decoded.ndim == 2:
        return decoded.astype(np.int32)
    if decoded.shape[-1] == 1:
        return decoded[..., 0].astype(np.int32)
    bgr = decoded[..., :3].astype(np.int32)
    return (bgr[..., 2] << 16) | (bgr[..., 1] << 8) | bgr[..., 0]


def read_label_map(path: str | os.PathLike) -> np.ndarray:
    """Reads an annotation file as an integer label map `[H, W]`; see :func:`decode_label_map`."""
    return decode_label_map(video_io.read_file_bytes(path, argument="annotation"), str(path))


def _chunk(kind: bytes, body: bytes) -> bytes:
    crc = zlib.crc32(kind + body) & 0xFFFFFFFF
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)


def encode_palette_png(ids: np.ndarray, palette: np.ndarray | None = None) -> bytes:
    """Encodes an instance-id map `[H, W]` (values 0..255) as an 8-bit palette PNG (DAVIS style)."""
    ids = np.asarray(ids)
    if ids.ndim != 2 or ids.size == 0:
        raise ValueError(f"ids must be a non-empty [H, W] array, got shape {ids.shape}.")
    if ids.min() < 0 or ids.max() > 255:
        raise ValueError("ids must hold values in [0, 255].")
    palette = davis_palette() if palette is None else np.asarray(palette, np.uint8)
    height, width = ids.shape
    rows = np.concatenate([np.zeros((height, 1), np.uint8), ids.astype(np.uint8)], axis=1)
    header = struct.pack(">IIBBBBB", width, height, 8, 3, 0, 0, 0)
    return (
        _PNG_SIGNATURE
        + _chunk(b"IHDR", header)
        + _chunk(b"PLTE", palette.reshape(-1).tobytes())
        + _chunk(b"IDAT", zlib.compress(rows.tobytes(), 9))
        + _chunk(b"IEND", b"")
    )


def write_palette_png(path: str | os.PathLike, ids: np.ndarray, palette=None) -> None:
    """Writes an instance-id map `[H, W]` as a palette PNG, atomically."""
    write_atomic(path, encode_palette_png(ids, palette))


def write_image(path: str | os.PathLike, image: np.ndarray, jpeg_quality: int = 90) -> None:
    """Writes `[H, W, 3]` uint8 RGB or `[H, W]` uint8 grey to `path` (format from the suffix), atomically."""
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim not in (2, 3):
        raise ValueError(
            f"image must be uint8 [H, W] or [H, W, 3], got {image.dtype} {image.shape}."
        )
    video_io.write_image(path, image, jpeg_quality=jpeg_quality)


def list_images(folder: str | os.PathLike) -> list[pathlib.Path]:
    """Image files directly in `folder` (`video_io.IMAGE_EXTENSIONS`, not hidden), sorted by name."""
    return video_io.list_frame_files(folder)
