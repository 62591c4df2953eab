"""Console scripts: `lvst-train`, `lvst-export`, `lvst-stylize`, `lvst-eval`, ... (see setup.py).

Each script runs one binary of the repository's `tools/`, imported as `lvst_tf.tools.<name>` (the
file `tools/<name>.py` itself in a checkout or an editable install, its copy inside the package in a
wheel), so `lvst-train` and `python tools/train.py` run the same code.

The contract with a binary: its whole command-line behaviour (flag parsing, signal handlers, exit
codes) is a function `cli_main()`, and its `if __name__ == "__main__":` block is just `cli_main()`;
the console script imports the binary and calls `cli_main()`. A binary that does not define
`cli_main()` yet is executed as `__main__` instead (what `python -m` does), so its own block runs
unchanged.

    lvst-train --gin_file=gin/quickstart.gin --workdir=runs/quickstart
    python -m lvst_tf.cli train --gin_file=...      # the same, without the script on PATH
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import runpy
import sys

# The binaries (tools/<name>.py) that have console scripts; setup.py names them `lvst-<name>`.
TOOLS = (
    "train",
    "export",
    "stylize",
    "eval",
    "quickstart",
    "fetch_weights",
    "make_masks",
    "make_corpus",
)


def _source_facts(name: str) -> tuple[str | None, bool]:
    """(docstring, whether a top-level `def cli_main` exists) of a binary, read without running it."""
    spec = importlib.util.find_spec(f"lvst_tf.tools.{name}")
    if spec is None or not spec.origin:
        raise ValueError(
            f"tool: no binary {name!r} in {list(importlib.import_module('lvst_tf.tools').__path__)}."
        )
    with open(spec.origin, encoding="utf-8") as f:
        tree = ast.parse(f.read(), filename=spec.origin)
    has_cli_main = any(isinstance(n, ast.FunctionDef) and n.name == "cli_main" for n in tree.body)
    return ast.get_docstring(tree, clean=False), has_cli_main


def run_tool(name: str) -> None:
    """Runs the binary `name` with `sys.argv` (program name = the console script's).

    Args:
      name: one of `TOOLS`.

    Raises:
      ValueError: for an unknown name (before anything is imported).
    """
    if name not in TOOLS:
        raise ValueError(f"tool: expected one of {sorted(TOOLS)}, got {name!r}.")
    doc, has_cli_main = _source_facts(name)
    # absl's --help prints `__main__`'s docstring: show the binary's own usage text.
    sys.modules["__main__"].__doc__ = doc
    if not has_cli_main:
        # Interim: the binary's own `__main__` block, unchanged (its flags register under argv[0]).
        runpy.run_module(f"lvst_tf.tools.{name}", run_name="__main__", alter_sys=False)
        return
    from absl import flags  # noqa: PLC0415

    module = importlib.import_module(f"lvst_tf.tools.{name}")
    # Imported, the binary is not `__main__`: make its flags the program's key flags for --help.
    for flag in flags.FLAGS.get_key_flags_for_module(module.__name__):
        flags.FLAGS.register_key_flag_for_module(sys.argv[0], flag)
    module.cli_main()


def main_train() -> None:
    """`lvst-train`: tools/train.py."""
    run_tool("train")


def main_export() -> None:
    """`lvst-export`: tools/export.py."""
    run_tool("export")


def main_stylize() -> None:
    """`lvst-stylize`: tools/stylize.py."""
    run_tool("stylize")


def main_eval() -> None:
    """`lvst-eval`: tools/eval.py."""
    run_tool("eval")


def main_quickstart() -> None:
    """`lvst-quickstart`: tools/quickstart.py."""
    run_tool("quickstart")


def main_fetch_weights() -> None:
    """`lvst-fetch-weights`: tools/fetch_weights.py."""
    run_tool("fetch_weights")


def main_make_masks() -> None:
    """`lvst-make-masks`: tools/make_masks.py."""
    run_tool("make_masks")


def main_make_corpus() -> None:
    """`lvst-make-corpus`: tools/make_corpus.py."""
    run_tool("make_corpus")


def _module_main() -> None:
    """`python -m lvst_tf.cli <tool> [flags]`."""
    if len(sys.argv) < 2 or sys.argv[1] not in TOOLS:
        given = repr(sys.argv[1]) if len(sys.argv) > 1 else "nothing"
        sys.exit(f"usage: python -m lvst_tf.cli {{{','.join(TOOLS)}}} [flags]; got {given}.")
    name = sys.argv.pop(1)
    sys.argv[0] = f"lvst-{name.replace('_', '-')}"
    run_tool(name)


if __name__ == "__main__":
    _module_main()
