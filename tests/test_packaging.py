"""The package installs completely: console scripts, gin configs, samples, binaries, shipped models.

Checkout-side checks are fast (setup.py, lvst_tf.cli and tools/ agree; the gin search works from
any folder). `test_installed_package` builds a wheel from a copy of the sources, installs it with
`--target` and checks it from a folder outside the checkout; with `$LVST_TF_INSTALLED_PYTHON` set
(`.ci/run` does, after a non-editable `pip install .` into a fresh virtualenv) it checks that
interpreter's installation instead, console scripts from its `bin/` included.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys

import pytest

import gin
from lvst_tf import cli, resources
from lvst_tf.training import config

REPO = pathlib.Path(__file__).resolve().parents[1]
INSTALLED_PYTHON_ENV = "LVST_TF_INSTALLED_PYTHON"


def _setup_literal(name):
    """The value of the top-level assignment `name = <literal>` in setup.py."""
    tree = ast.parse((REPO / "setup.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == name for t in node.targets
        ):
            return ast.literal_eval(node.value)
    raise AssertionError(f"setup.py has no top-level {name} = ...")


def _main_block(path):
    """The source of the body of `if __name__ == "__main__":` in a file (statements joined)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.If) and ast.unparse(node.test) in (
            "__name__ == '__main__'",
            "'__main__' == __name__",
        ):
            return "\n".join(ast.unparse(statement) for statement in node.body)
    raise AssertionError(f"{path} has no `if __name__ == '__main__':` block")


def _files_under(folder):
    """Relative paths of the files below `folder` (caches excluded), sorted."""
    return sorted(
        p.relative_to(folder).as_posix()
        for p in folder.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    )


# ------------------------------------------------------------------------------------------------
# The checkout: setup.py, lvst_tf.cli, lvst_tf.resources and tools/ agree.


def test_console_scripts_name_the_tools():
    scripts = _setup_literal("_SCRIPTS")
    assert sorted(scripts.values()) == sorted(cli.TOOLS)
    for script, tool in scripts.items():
        assert script == "lvst-" + tool.replace("_", "-")
        assert callable(getattr(cli, f"main_{tool}")), tool
        assert (REPO / "tools" / f"{tool}.py").is_file(), tool
    for required in ("lvst-train", "lvst-export", "lvst-stylize", "lvst-eval"):
        assert required in scripts


@pytest.mark.parametrize("tool", sorted(p.stem for p in (REPO / "tools").glob("*.py")))
def test_tool_follows_the_cli_main_contract(tool):
    """Every binary has `def cli_main()` (lvst_tf.cli calls it for those with a console script),
    and its `__main__` block is just `cli_main()`."""
    path = REPO / "tools" / f"{tool}.py"
    tree = ast.parse(path.read_text(encoding="utf-8"))
    assert any(isinstance(n, ast.FunctionDef) and n.name == "cli_main" for n in tree.body), tool
    assert _main_block(path) == "cli_main()", f"{path.name}: the __main__ block must be cli_main()"


def test_tools_do_not_touch_the_import_path():
    """The package is installed (editable in a checkout): no binary edits `sys.path` to find it."""
    for path in sorted((REPO / "tools").glob("*.py")):
        assert "sys.path" not in path.read_text(encoding="utf-8"), path.name


def test_mirrored_folders_are_declared_everywhere():
    mirrored = _setup_literal("_MIRRORED")
    assert tuple(mirrored) == resources.MIRRORED_FOLDERS
    manifest = (REPO / "MANIFEST.in").read_text(encoding="utf-8").splitlines()
    for folder in resources.MIRRORED_FOLDERS:
        assert f"graft {folder}" in manifest
    assert "recursive-include lvst_tf/pretrained *" in manifest


def test_checkout_uses_the_repository_folders():
    if not (REPO / "lvst_tf" / "__init__.py").samefile(resources.PACKAGE_DIR / "__init__.py"):
        pytest.skip("lvst_tf is imported from an installation, not from this checkout")
    assert resources.gin_dir() == REPO / "gin"
    assert resources.samples_dir() == REPO / "samples"
    assert resources.tools_dir() == REPO / "tools"
    assert config.GIN_DIR == REPO / "gin"
    spec = importlib.util.find_spec("lvst_tf.tools.train")
    assert pathlib.Path(spec.origin) == REPO / "tools" / "train.py"


def test_shipped_folder_rejects_other_names():
    with pytest.raises(ValueError, match="name: expected one of"):
        resources.shipped_folder("docs")


def test_stop_signals_are_recorded_and_recognised_after_conversion(monkeypatch):
    """A stop raised inside a TensorFlow callback can come back as another exception type
    (pybind11: "RuntimeError ... REPLACED BY KeyboardInterrupt"); the record still names it."""
    monkeypatch.setattr(cli, "SIGNALLED", [])
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        cli.raise_on_stop_signals()
        converted = RuntimeError("MISMATCH ... REPLACED BY KeyboardInterrupt")
        assert cli.stop_signal(converted) is None  # no signal yet: a real error
        assert cli.stop_signal(SystemExit(1)) is None
        for signum, raised in (
            (signal.SIGTERM, cli.Terminated),
            (signal.SIGINT, KeyboardInterrupt),
        ):
            with pytest.raises(raised):
                signal.raise_signal(signum)
            assert cli.stop_signal(raised()) == signum
        assert cli.SIGNALLED == [signal.SIGTERM, signal.SIGINT]
        assert cli.stop_signal(converted) == signal.SIGTERM  # the first stop is the one reported
        assert cli.stop_signal(SystemExit(1)) is None
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def test_unknown_tool_is_refused():
    with pytest.raises(ValueError, match="tool: expected one of"):
        cli.run_tool("nope")
    proc = subprocess.run(
        [sys.executable, "-m", "lvst_tf.cli", "nope"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        f"usage: python -m lvst_tf.cli {{{','.join(cli.TOOLS)}}} [flags]; got 'nope'."
    ]


_FAKE_TOOL = '''"""Fake binary: prints its flag and program name."""
from absl import app, flags

from lvst_tf import cli

_X = flags.DEFINE_integer("x", 0, "A number to print.")


def main(argv):
    print(f"x={_X.value} prog={argv[0]}")


def cli_main():
    app.run(main, flags_parser=cli.flags_parser("fake.py"))


if __name__ == "__main__":
    cli_main()
'''


def test_run_tool_starts_a_binary(tmp_path):
    """lvst_tf.cli imports a binary and calls its `cli_main()`: flags, program name, --helpshort
    with the binary's docstring and flags, a bad flag as one line with exit code 2."""
    (tmp_path / "fake_tool.py").write_text(_FAKE_TOOL)
    driver = (
        "import sys, lvst_tf.tools, lvst_tf.cli as cli; "
        f"lvst_tf.tools.__path__.append({str(tmp_path)!r}); "
        "cli.TOOLS += ('fake_tool',); sys.argv[0] = 'lvst-fake'; cli.main_fake_tool()"
    )
    outputs = []
    for flag in ("--x=3", "--helpshort", "--x=three"):
        proc = subprocess.run(
            [sys.executable, "-c", driver, flag], capture_output=True, text=True, timeout=120
        )
        outputs.append((proc.returncode, proc.stdout + proc.stderr))
    assert outputs[0] == (0, "x=3 prog=lvst-fake\n")
    code, text = outputs[1]
    assert "Fake binary: prints its flag and program name." in text
    assert "--x: A number to print." in text
    code, text = outputs[2]
    assert code == 2 and text.strip().splitlines() == [
        "fake.py: error: flag --x=three: invalid literal for int() with base 10: 'three'"
    ]


@pytest.mark.parametrize("tool", ["export", "stylize"])
def test_console_entry_prints_the_tools_own_help(tool):
    """`python -m lvst_tf.cli X --helpshort` == `python tools/X.py --helpshort`, program name aside."""
    script = "lvst-" + tool.replace("_", "-")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    outputs = []
    for command, program in (
        ([sys.executable, "-m", "lvst_tf.cli", tool], script),
        ([sys.executable, f"tools/{tool}.py"], f"tools/{tool}.py"),
    ):
        proc = subprocess.run(
            [*command, "--helpshort"],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        text = (proc.stdout + proc.stderr).replace(f"tools/{tool}.py", "PROG")
        outputs.append((proc.returncode, text.replace(program, "PROG")))
    assert outputs[0] == outputs[1]
    assert "--" in outputs[0][1]  # the binary's own flags are listed


@pytest.fixture
def _clean_gin():
    gin.clear_config()
    yield
    gin.clear_config()


@pytest.mark.usefixtures("_clean_gin")
@pytest.mark.parametrize("name", ["smoke.gin", "gin/smoke.gin"])
def test_gin_file_is_found_from_any_folder(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config.parse_gin_config([name])
    assert gin.query_parameter("train.num_steps") == 3


@pytest.mark.usefixtures("_clean_gin")
def test_missing_gin_file_names_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match=r"gin file 'gin/nope\.gin' not found"):
        config.parse_gin_config(["gin/nope.gin"])


def test_method_doc_anchors_exist():
    """Every anchor of docs/method.md that code, configs or docs cite exists in that page."""
    text = (REPO / "docs" / "method.md").read_text(encoding="utf-8")
    anchors = set(re.findall(r'<a id="([a-z0-9-]+)"></a>', text))
    assert {"overview", "data-flow", "network", "st-adain", "slicing", "soft-mask"} <= anchors
    assert {"subsampling", "losses", "training", "evaluation"} <= anchors
    cited = {}
    files = [REPO / "README.md", REPO / "WORKSPACE.md"]
    for folder, pattern in (
        ("lvst_tf", "*.py"),
        ("tools", "*.py"),
        ("tests", "*.py"),
        ("docs", "*.md"),
        ("gin", "*.gin"),
    ):
        files += sorted((REPO / folder).rglob(pattern))
    for path in files:
        for name in re.findall(r"method\.md#([a-z0-9-]+)", path.read_text(encoding="utf-8")):
            cited.setdefault(name, path.relative_to(REPO).as_posix())
    missing = {name: where for name, where in cited.items() if name not in anchors}
    assert not missing, f"anchors cited but absent from docs/method.md: {missing}"


# ------------------------------------------------------------------------------------------------
# An installed (non-editable) package, used from a folder outside the checkout.

# Runs in the installed interpreter; prints what it found as JSON.
_PROBE = r"""
import json, os, pathlib, sys
import gin
import lvst_tf
from lvst_tf import loading, resources
from lvst_tf.data import samples_root
from lvst_tf.training import config

config.parse_gin_config(["gin/smoke.gin"])
pretrained = resources.pretrained_root()
print(json.dumps({
    "package": str(resources.PACKAGE_DIR),
    "gin": str(resources.gin_dir()),
    "samples": str(samples_root()),
    "tools": str(resources.tools_dir()),
    "pretrained": str(pretrained),
    "pretrained_models": sorted(p.name for p in pretrained.glob("*/") if p.is_dir()),
    "smoke_steps": gin.query_parameter("train.num_steps"),
}))
"""


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(python, scripts folder, env) of a non-editable installation and an empty working folder."""
    work = tmp_path_factory.mktemp("outside")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    env.pop("PYTHONPATH", None)
    python = os.environ.get(INSTALLED_PYTHON_ENV)
    if python:
        return pathlib.Path(python), pathlib.Path(python).parent, env, work
    if importlib.util.find_spec("setuptools") is None:
        pytest.skip("building the wheel offline needs setuptools in this environment")
    # Build from a copy of the sources, as a wheel from an sdist would (the repository is not touched).
    source = tmp_path_factory.mktemp("source")
    for name in ("setup.py", "pyproject.toml", "MANIFEST.in", "README.md", "LICENSE"):
        shutil.copy2(REPO / name, source / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for folder in ("lvst_tf", *resources.MIRRORED_FOLDERS):
        shutil.copytree(REPO / folder, source / folder, ignore=ignore)
    wheels = tmp_path_factory.mktemp("wheels")
    target = tmp_path_factory.mktemp("site")
    pip = [sys.executable, "-m", "pip", "-q", "--disable-pip-version-check"]
    subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(source)],
        check=True,
        cwd=work,
        timeout=600,
    )
    (wheel,) = wheels.glob("lvst_tf-*.whl")
    subprocess.run(
        [*pip, "install", "--no-deps", "--no-index", "--target", str(target), str(wheel)],
        check=True,
        cwd=work,
        timeout=600,
    )
    env["PYTHONPATH"] = str(target)
    return pathlib.Path(sys.executable), target / "bin", env, work


@pytest.mark.slow
def test_installed_package(installed):
    python, scripts, env, work = installed
    proc = subprocess.run(
        [str(python), "-c", _PROBE], cwd=work, env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    found = json.loads(proc.stdout.strip().splitlines()[-1])
    package = pathlib.Path(found["package"])
    assert not package.is_relative_to(REPO), package  # not the checkout
    for key in ("gin", "samples", "tools"):
        assert pathlib.Path(found[key]) == package / key
    # Every file of the repository's folders is installed, byte for byte.
    for folder, installed_folder in (
        ("gin", found["gin"]),
        ("samples", found["samples"]),
        ("lvst_tf/pretrained", found["pretrained"]),
    ):
        expected = _files_under(REPO / folder) if (REPO / folder).is_dir() else []
        assert _files_under(pathlib.Path(installed_folder)) == expected, folder
        for name in expected:
            data = (pathlib.Path(installed_folder) / name).read_bytes()
            assert data == (REPO / folder / name).read_bytes(), name
    tools = sorted(p.name for p in (REPO / "tools").glob("*.py"))
    assert sorted(p.name for p in pathlib.Path(found["tools"]).glob("*.py")) == sorted(
        [*tools, "__init__.py"]
    )
    assert found["smoke_steps"] == 3
    # Every console script starts its installed binary.
    for script, tool in _setup_literal("_SCRIPTS").items():
        proc = subprocess.run(
            [str(scripts / script), "--helpshort"],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        first_line = ast.get_docstring(
            ast.parse((REPO / "tools" / f"{tool}.py").read_text(encoding="utf-8"))
        ).splitlines()[0]
        assert first_line in proc.stdout + proc.stderr, (script, proc.stderr[-2000:])
        assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
