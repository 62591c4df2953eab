"""Console scripts: `lvst-train`, `lvst-export`, `lvst-stylize`, `lvst-eval`, ... (see setup.py).

Each script runs one binary of the repository's `tools/`, imported as `lvst_tf.tools.<name>` (the
file `tools/<name>.py` itself in a checkout or an editable install, its copy inside the package in a
wheel), so `lvst-train` and `python tools/train.py` run the same code.

The contract with a binary: its whole command-line behaviour (flag parsing, signal handlers, exit
codes) is a function `cli_main()`, and its `if __name__ == "__main__":` block is just `cli_main()`;
the console script imports the binary and calls `cli_main()`. `flags_parser(prog)` is the binaries'
shared absl flag parser (a bad command line is one line on stderr and exit code 2).

    lvst-train --gin_file=gin/quickstart.gin --workdir=runs/quickstart
    python -m lvst_tf.cli train --gin_file=...      # the same, without the script on PATH
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import signal
import sys

EXIT_USAGE = 2  # a command line that does not parse

# The binaries (tools/<name>.py) that have console scripts; setup.py names them `lvst-<name>`, and
# `lvst_tf.cli.main_<name>` (made by `__getattr__` below) is each script's entry point.
TOOLS = (
    "train",
    "export",
    "stylize",
    "eval",
    "quickstart",
    "fetch_weights",
    "make_masks",
    "make_corpus",
    "make_evalset",
    "plot_curves",
)


class Terminated(BaseException):
    """SIGTERM, raised in the main thread (as KeyboardInterrupt is for SIGINT) so every `finally`
    and cleanup runs."""


# The stop signals received, in order. Python runs a handler at the next bytecode of the main
# thread, which may fall inside a TensorFlow callback (the exception then comes back rebuilt as
# another type, e.g. pybind11's "RuntimeError ... REPLACED BY KeyboardInterrupt") or a finaliser
# (where it is printed and dropped); the record lets a binary still see the stop.
SIGNALLED: list[int] = []


def _raise_stop(signum, frame):
    del frame
    SIGNALLED.append(signum)
    raise KeyboardInterrupt() if signum == signal.SIGINT else Terminated()


def raise_on_stop_signals() -> None:
    """SIGINT raises KeyboardInterrupt and SIGTERM raises `Terminated`; both are recorded."""
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _raise_stop)


def stop_signal(error: BaseException) -> int | None:
    """The stop signal `error` stands for (SIGINT / SIGTERM), or None for a real error. Any
    exception raised after a recorded signal counts as that stop (see `SIGNALLED`)."""
    if isinstance(error, KeyboardInterrupt):
        return signal.SIGINT
    if isinstance(error, Terminated):
        return signal.SIGTERM
    if SIGNALLED and isinstance(error, Exception):
        return SIGNALLED[0]
    return None


def _docstring(name: str) -> str | None:
    """The docstring of a binary, read without running it."""
    spec = importlib.util.find_spec(f"lvst_tf.tools.{name}")
    if spec is None or not spec.origin:
        raise ValueError(
            f"tool: no binary {name!r} in {list(importlib.import_module('lvst_tf.tools').__path__)}."
        )
    with open(spec.origin, encoding="utf-8") as f:
        return ast.get_docstring(ast.parse(f.read(), filename=spec.origin), clean=False)


def run_tool(name: str) -> None:
    """Runs the binary `name` with `sys.argv` (program name = the console script's).

    Args:
      name: one of `TOOLS`.

    Raises:
      ValueError: for an unknown name (before anything is imported).
    """
    if name not in TOOLS:
        raise ValueError(f"tool: expected one of {sorted(TOOLS)}, got {name!r}.")
    # absl's --help prints `__main__`'s docstring: show the binary's own usage text.
    sys.modules["__main__"].__doc__ = _docstring(name)
    from absl import flags  # noqa: PLC0415

    module = importlib.import_module(f"lvst_tf.tools.{name}")
    # Imported, the binary is not `__main__`: make its flags the program's key flags for --help.
    for flag in flags.FLAGS.get_key_flags_for_module(module.__name__):
        flags.FLAGS.register_key_flag_for_module(sys.argv[0], flag)
    module.cli_main()


def flags_parser(prog: str):
    """An absl `flags_parser` for `app.run(main, flags_parser=...)`: a command line that does not
    parse ends with one line `PROG: error: ...` on stderr and exit code 2, not absl's usage dump."""

    def parse(argv):
        from absl import flags  # noqa: PLC0415

        try:
            return flags.FLAGS(argv)
        except flags.Error as e:
            sys.stderr.write(f"{prog}: error: {e}\n")
            sys.stderr.flush()
            sys.exit(EXIT_USAGE)

    return parse


def __getattr__(attribute: str):
    """`main_<tool>` for each of `TOOLS`: the console script `lvst-<tool>` (setup.py)."""
    tool = attribute.removeprefix("main_")
    if attribute.startswith("main_") and tool in TOOLS:

        def main() -> None:
            run_tool(tool)

        main.__name__ = main.__qualname__ = attribute
        main.__doc__ = f"`lvst-{tool.replace('_', '-')}`: tools/{tool}.py."
        return main
    raise AttributeError(f"module {__name__!r} has no attribute {attribute!r}")


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
