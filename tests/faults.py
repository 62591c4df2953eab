"""Shared checks of the fault tables (`tests/test_faults_*.py`): bad inputs and faults given to the
tools, each run in a subprocess, must end with a clear one-line error and leave the output alone.

A fault case runs a command and then asserts:
- the exit code (non-zero for an error; a documented code such as 143 for SIGTERM);
- stderr's last non-empty line is one readable line naming the flag, argument or file (`expect`);
- no Python traceback was printed;
- nothing changed at the protected paths (`snapshot` before, `assert_unchanged` after);
- a written output is absent or complete (the case's own check).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import pathlib
import re
import subprocess
import sys
import textwrap

REPO = pathlib.Path(__file__).resolve().parents[1]
TRACEBACK = "Traceback (most recent call last)"


@dataclasses.dataclass
class Outcome:
    returncode: int
    stdout: str
    stderr: str

    @property
    def last_line(self) -> str:
        lines = [line for line in self.stderr.splitlines() if line.strip()]
        return lines[-1] if lines else ""


def run_tool(args, cwd=None, env=None, timeout=600, stdin=None) -> Outcome:
    """Runs `python <args...>` (a tool path relative to the repository, then its flags)."""
    full_env = dict(os.environ)
    full_env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    full_env.update(env or {})
    proc = subprocess.run(
        [sys.executable, *[str(a) for a in args]],
        cwd=cwd or REPO,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=stdin,
    )
    return Outcome(proc.returncode, proc.stdout, proc.stderr)


# Runs a tool (argv[2]) with `lvst_tf.loading.PRETRAINED_DIR = argv[1]` and its flags (argv[3:]);
# with FSIZE_ENV set, writes past that many bytes fail (EFBIG, as on a full disk) instead of killing
# the process; prints whether TensorFlow was imported, at exit.
FSIZE_ENV = "LVST_TEST_FSIZE"
LAUNCHER = f"""
import atexit, os, pathlib, resource, runpy, signal, sys
limit = os.environ.get({FSIZE_ENV!r})
if limit:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (int(limit), int(limit)))
atexit.register(lambda: print("tensorflow-imported:", "tensorflow" in sys.modules, flush=True))
import lvst_tf.loading
lvst_tf.loading.PRETRAINED_DIR = pathlib.Path(sys.argv[1])
tool = sys.argv[2]
sys.argv = [tool, *sys.argv[3:]]
runpy.run_path(tool, run_name="__main__")
"""

# The first lines of a script run by `run_without_lvst_tf`: lvst_tf (an editable install or the
# checkout) is made unimportable, as on a machine that only serves an exported model.
_HIDE_LVST_TF = textwrap.dedent(
    """
    import os, sys
    sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in str(getattr(f, "__module__", ""))]
    # Drop the repository itself (not a virtualenv that may live inside it).
    sys.path[:] = [p for p in sys.path if p not in ("", ".") and os.path.realpath(p) != REPO]
    try:
        import lvst_tf  # noqa
        raise SystemExit("lvst_tf is importable in the child")
    except ModuleNotFoundError:
        pass
    """
)


def hidden_env() -> dict[str, str]:
    """The environment of a child process: no PYTHONPATH, quiet TensorFlow, no GPU."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(PYTHONPATH="", TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    return env


def run_without_lvst_tf(body: str, cwd, timeout: float = 600, **values):
    """Runs the Python `body` in a fresh interpreter (`cwd`, `hidden_env()`) in which lvst_tf cannot
    be imported; `values` become global variables of the script first (their reprs). Returns the
    `subprocess.CompletedProcess` (text output captured)."""
    header = f"REPO = {str(REPO)!r}\n" + "".join(f"{k} = {v!r}\n" for k, v in values.items())
    return subprocess.run(
        [sys.executable, "-c", header + _HIDE_LVST_TF + textwrap.dedent(body)],
        cwd=cwd,
        env=hidden_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def dead_pid() -> int:
    """The id of a process that has exited (for temporaries "left by a killed run")."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def assert_clean_error(outcome: Outcome, expect: str | re.Pattern, code: int | None = None):
    """A clear error: non-zero (or `code`), no traceback, last stderr line matches `expect`."""
    assert TRACEBACK not in outcome.stderr, outcome.stderr[-3000:]
    if code is None:
        assert outcome.returncode != 0, (outcome.returncode, outcome.stderr[-2000:])
    else:
        assert outcome.returncode == code, (outcome.returncode, outcome.stderr[-2000:])
    line = outcome.last_line
    pattern = expect if isinstance(expect, re.Pattern) else re.compile(re.escape(expect))
    assert pattern.search(line), f"last stderr line {line!r} does not match {pattern.pattern!r}"


def snapshot(*paths) -> dict[str, str | None]:
    """{path: digest} of every file under `paths` (None for an absent path); see `assert_unchanged`."""
    state: dict[str, str | None] = {}
    for root in paths:
        root = pathlib.Path(root)
        if not root.exists():
            state[str(root)] = None
            continue
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for path in files:
            state[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
        if root.is_dir() and not files:
            state[str(root)] = "<empty dir>"
    return state


def assert_unchanged(before: dict[str, str | None], *paths) -> None:
    """Nothing was created, removed or changed under `paths` since `before = snapshot(*paths)`."""
    after = snapshot(*paths)
    assert after == before, {
        k: (before.get(k), after.get(k))
        for k in set(before) | set(after)
        if before.get(k) != after.get(k)
    }
