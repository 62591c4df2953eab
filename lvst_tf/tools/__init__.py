"""The command-line binaries as modules: `lvst_tf.tools.train` is the repository's `tools/train.py`.

A wheel carries copies of `tools/*.py` in this folder (`setup.py` puts them here). In a checkout or an
editable install this folder holds only this file, and the repository's `tools/` is appended to the
package's search path, so `import lvst_tf.tools.train` loads `tools/train.py` itself: one copy of the
code, whichever way it is started (`python tools/train.py`, `python -m lvst_tf.tools.train`, or the
`lvst-train` console script of `lvst_tf.cli`).
"""

from lvst_tf import resources

_FOLDER = resources.tools_dir()
if _FOLDER.is_dir() and _FOLDER.resolve() != resources.PACKAGE_DIR / "tools":
    __path__.append(str(_FOLDER))  # noqa: F821 (`__path__` is defined for every package)
