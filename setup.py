"""Installs lvst_tf: Real-time Localized Photorealistic Video Style Transfer in TF2/Keras 3."""

import pathlib

import setuptools

_ROOT = pathlib.Path(__file__).parent
_TF = "2.21.0"

setuptools.setup(
    name="lvst_tf",
    version="0.1.0",
    description=(
        "TensorFlow 2 / Keras 3 reproduction of 'Real-time Localized Photorealistic "
        "Video Style Transfer' (Xia et al., WACV 2021)."
    ),
    long_description=(_ROOT / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="MIT",
    packages=setuptools.find_packages(include=["lvst_tf", "lvst_tf.*"]),
    python_requires=">=3.10",
    # TensorFlow itself comes from an extra so users pick the build ([cpu] or [gpu]).
    install_requires=[
        "absl-py>=2.1",
        "gin-config==0.5.0",
        "h5py>=3.10",
        "numpy>=1.26",
        "opencv-python-headless>=4.9",
        "tensorflow-datasets>=4.9.6",
        "tqdm>=4.66",
    ],
    extras_require={
        "cpu": [f"tensorflow-cpu=={_TF}"],
        "gpu": [f"tensorflow[and-cuda]=={_TF}"],
        "dev": ["pytest>=8", "ruff>=0.6"],
        # Only needed to view runs; training writes its events with core TensorFlow.
        "tb": ["tensorboard==2.21.0"],
    },
    classifiers=[
        "Programming Language :: Python :: 3.11",
        "Topic :: Scientific/Engineering :: Image Processing",
    ],
)
