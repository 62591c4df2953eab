"""Installs lvst_tf: Real-time Localized Photorealistic Video Style Transfer in TF2/Keras 3.

A wheel is self-contained: besides the package (and the shipped models under `lvst_tf/pretrained/`),
`build_py` copies the repository's `gin/`, `samples/` and `tools/*.py` into the package as
`lvst_tf/gin`, `lvst_tf/samples` and `lvst_tf/tools`, so the configs, the sample media and the
console scripts work after a non-editable `pip install .` from any folder. An editable install uses
the repository's folders in place (`lvst_tf.resources` finds either).
"""

import pathlib
import re
import shutil

import setuptools
from setuptools.command.build_py import build_py

_ROOT = pathlib.Path(__file__).parent
_TF = "2.21.0"
# One version number: lvst_tf.__version__, read from the file (the package is not imported).
_VERSION = re.search(
    r'^__version__ = "([^"]+)"', (_ROOT / "lvst_tf" / "__init__.py").read_text(), re.M
).group(1)

# Repository folder -> the files of it that the wheel carries (keep in step with lvst_tf.resources).
_MIRRORED = {"gin": ("*.gin",), "samples": ("**/*",), "tools": ("*.py",)}

# Console scripts: each runs one binary of tools/ through lvst_tf.cli (same code as `python tools/X.py`).
_SCRIPTS = {
    "lvst-train": "train",
    "lvst-export": "export",
    "lvst-stylize": "stylize",
    "lvst-eval": "eval",
    "lvst-quickstart": "quickstart",
    "lvst-fetch-weights": "fetch_weights",
    "lvst-make-masks": "make_masks",
    "lvst-make-corpus": "make_corpus",
    "lvst-make-evalset": "make_evalset",
    "lvst-plot-curves": "plot_curves",
}


class BuildPyWithMirrors(build_py):
    """`build_py` that also copies the mirrored repository folders into the built package."""

    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            return  # an editable install reads the repository's folders in place
        package = pathlib.Path(self.build_lib) / "lvst_tf"
        for folder, patterns in _MIRRORED.items():
            source = _ROOT / folder
            if not source.is_dir():
                raise FileNotFoundError(f"setup.py: the repository folder {folder}/ is missing.")
            for pattern in patterns:
                for path in sorted(source.glob(pattern)):
                    if not path.is_file() or "__pycache__" in path.parts:
                        continue
                    target = package / folder / path.relative_to(source)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(path, target)


setuptools.setup(
    name="lvst_tf",
    version=_VERSION,
    description=(
        "TensorFlow 2 / Keras 3 reproduction of 'Real-time Localized Photorealistic "
        "Video Style Transfer' (Xia et al., WACV 2021)."
    ),
    long_description=(_ROOT / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="MIT",
    packages=setuptools.find_packages(include=["lvst_tf", "lvst_tf.*"]),
    # The shipped models (weights.npz, operative_config.gin, reference.npz, PROVENANCE.md, README.md).
    package_data={"lvst_tf": ["pretrained/*", "pretrained/*/*"]},
    cmdclass={"build_py": BuildPyWithMirrors},
    entry_points={
        "console_scripts": [
            f"{script} = lvst_tf.cli:main_{tool}" for script, tool in _SCRIPTS.items()
        ]
    },
    python_requires=">=3.10",
    # TensorFlow itself comes from an extra so users pick the build ([cpu] or [gpu]).
    install_requires=[
        "absl-py>=2.1",
        "gin-config==0.5.0",
        "h5py>=3.10",
        "keras>=3",
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
