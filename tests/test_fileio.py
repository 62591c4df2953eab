"""lvst_tf.fileio: the one owner of the output-protection rules (fast, no TensorFlow)."""

import json
import os
import pathlib
import stat

import pytest
from faults import dead_pid

from lvst_tf import fileio

FOLDER = fileio.MarkedFolder(
    marker=".tool.json",
    tool="test tool",
    description="a test output",
    writer="tools/test.py",
    entries=lambda name: name.endswith(".txt"),
)


# ----------------------------------------------------------------------------------------------------
# Inputs and writability.


def test_check_not_input_names_the_relation_and_the_argument(tmp_path):
    data = tmp_path / "data"
    (data / "clip").mkdir(parents=True)
    video = tmp_path / "in.mp4"
    video.write_bytes(b"x")
    inputs = [("masks source", data), video]
    with pytest.raises(ValueError, match=r"^out: '.*data' is the masks source '.*data'; "):
        fileio.check_not_input(data, inputs, "out")
    with pytest.raises(ValueError, match=r"^output: '.*' contains the masks source"):
        fileio.check_not_input(tmp_path, inputs)
    with pytest.raises(ValueError, match=r"is inside the masks source"):
        fileio.check_not_input(data / "clip" / "x", inputs)
    fileio.check_not_input(data / "clip" / "x", inputs, inside=False)  # adds a file, replaces none
    with pytest.raises(ValueError, match=r"is the input '.*in.mp4'"):
        fileio.check_not_input(video, inputs)
    link = tmp_path / "link.mp4"
    os.link(video, link)  # a hard link is the same file
    with pytest.raises(ValueError, match=r"is the input"):
        fileio.check_not_input(link, inputs, advice="custom")
    fileio.check_not_input(tmp_path / "other", [*inputs, None, ""])


def test_check_writable(tmp_path):
    fileio.check_writable(tmp_path / "new" / "deeper" / "out.mp4", "output")
    assert list(tmp_path.iterdir()) == []  # the probe is gone, nothing was created
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match=r"^output: cannot create .*'.*file' is a file, not a"):
        fileio.check_writable(tmp_path / "file" / "out.mp4", "output")


def test_check_output_file(tmp_path):
    path = tmp_path / "out.png"
    fileio.check_output_file(path, argument="image")
    path.write_bytes(b"old")
    with pytest.raises(ValueError, match=r"^image: '.*out.png' exists; pass --overwrite"):
        fileio.check_output_file(path, argument="image")
    fileio.check_output_file(path, overwrite=True)
    with pytest.raises(ValueError, match=r"is an existing folder; expected a file name"):
        fileio.check_output_file(tmp_path, overwrite=True)


# ----------------------------------------------------------------------------------------------------
# Marked folders.


def test_marked_folder_check_output(tmp_path):
    out = tmp_path / "out"
    assert FOLDER.check_output(out) == out  # missing
    out.mkdir()
    FOLDER.check_output(out)  # empty
    (out / "notes.md").write_text("mine")
    with pytest.raises(ValueError, match=r"^output: refusing to replace folder .*no \.tool\.json"):
        FOLDER.check_output(out, overwrite=True)
    (out / ".tool.json").write_bytes(FOLDER.marker_bytes())
    with pytest.raises(ValueError, match=r"it also holds \['notes.md'\]"):
        FOLDER.check_output(out, overwrite=True)
    (out / "notes.md").unlink()
    (out / "a.txt").write_text("written by the tool")
    with pytest.raises(ValueError, match=r"already holds a test output; pass --overwrite"):
        FOLDER.check_output(out)
    FOLDER.check_output(out, overwrite=True)
    rebuilt = fileio.MarkedFolder(".tool.json", "test tool", "a test output", "tools/test.py",
                                  replace_without_overwrite=True)  # fmt: skip
    rebuilt.check_output(out)
    # Another tool's marker does not count.
    (out / ".tool.json").write_text(json.dumps({"tool": "another"}))
    assert not FOLDER.is_ours(out)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match=r"exists and is not a folder"):
        FOLDER.check_output(tmp_path / "file", overwrite=True)
    (tmp_path / "link").symlink_to(out)
    with pytest.raises(ValueError, match=r"exists and is not a folder"):
        FOLDER.check_output(tmp_path / "link", overwrite=True)


def test_building_writes_marker_modes_and_replaces_atomically(tmp_path):
    out = tmp_path / "new" / "out"
    old = os.umask(0o027)
    try:
        with FOLDER.building(out, version=2) as tmp:
            assert tmp.parent == out.parent and tmp.name.startswith(".out.tmp-")
            (tmp / "a.txt").write_text("first")
    finally:
        os.umask(old)
    assert json.loads((out / ".tool.json").read_text()) == {"tool": "test tool", "version": 2}
    assert stat.S_IMODE(out.stat().st_mode) == 0o750
    assert stat.S_IMODE((out / "a.txt").stat().st_mode) == 0o640
    with pytest.raises(ValueError, match="pass --overwrite"):
        with FOLDER.building(out):
            raise AssertionError("not reached: refused before the block")
    with FOLDER.building(out, overwrite=True) as tmp:
        (tmp / "b.txt").write_text("second")
    assert sorted(p.name for p in out.iterdir()) == [".tool.json", "b.txt"]
    assert sorted(p.name for p in out.parent.iterdir()) == ["out"]  # no temporaries left


def test_building_failure_leaves_nothing(tmp_path):
    out = tmp_path / "a" / "b" / "out"
    with pytest.raises(RuntimeError, match="boom"):
        with FOLDER.building(out) as tmp:
            (tmp / "a.txt").write_text("partial")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []  # the parents this call made are gone too


def test_building_refuses_an_input(tmp_path):
    source = tmp_path / "source"
    source.mkdir()
    with pytest.raises(
        ValueError, match=r"is inside the input .*; write a test output to a folder"
    ):
        with FOLDER.building(source / "out", inputs=[source]):
            pass
    assert list(source.iterdir()) == []


# ----------------------------------------------------------------------------------------------------
# Temporaries.


def test_clean_stale_temporaries_only_removes_dead_writers(tmp_path):
    dead, alive = dead_pid(), os.getpid()
    out = tmp_path / "out.mp4"
    stale_file = tmp_path / f".out.mp4.tmp-{dead}-abc.mp4"
    stale_folder = tmp_path / f".out.mp4.old-{dead}-abc"
    live = tmp_path / f".out.mp4.tmp-{alive}-abc.mp4"
    other = tmp_path / f".other.mp4.tmp-{dead}-abc.mp4"  # another output's
    for path in (stale_file, live, other):
        path.write_bytes(b"x")
    stale_folder.mkdir()
    (stale_folder / "00000.png").write_bytes(b"x")
    removed = fileio.clean_stale_temporaries(out)
    assert sorted(removed) == sorted([stale_file, stale_folder])
    assert live.exists() and other.exists()


def test_marked_folder_clean_stale_keeps_foreign_content(tmp_path):
    dead = dead_pid()
    out = tmp_path / "out"
    ours = tmp_path / f".out.tmp-{dead}-a"
    foreign = tmp_path / f".out.tmp-{dead}-b"
    for folder, name in ((ours, "a.txt"), (foreign, "thesis.tex")):
        folder.mkdir()
        (folder / name).write_text("x")
    assert FOLDER.clean_stale(out) == [ours]
    assert foreign.is_dir()


def test_write_atomic_mode_and_stale_sweep(tmp_path):
    stale = tmp_path / f".notes.md.tmp-{dead_pid()}-xyz"
    stale.write_text("left by a killed writer")
    old = os.umask(0o022)
    try:
        fileio.write_atomic(tmp_path / "sub" / "a.txt", "one")
        fileio.write_atomic(tmp_path / "b.txt", b"two")
    finally:
        os.umask(old)
    assert (tmp_path / "sub" / "a.txt").read_text() == "one"
    assert stat.S_IMODE((tmp_path / "b.txt").stat().st_mode) == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.txt", "sub"]


def test_commit_file_never_replaces_a_file_that_appeared(tmp_path):
    path = tmp_path / "out.png"
    tmp = fileio.make_temporary(path)
    tmp.write_bytes(b"new")
    path.write_bytes(b"appeared meanwhile")
    with pytest.raises(fileio.WriteError, match=r"^output: '.*out.png' appeared during the run"):
        fileio.commit_file(tmp, path)
    assert path.read_bytes() == b"appeared meanwhile"
    fileio.commit_file(tmp, path, overwrite=True)
    assert path.read_bytes() == b"new" and not tmp.exists()


def test_replace_folder_swaps_a_previous_output(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("old")
    new = fileio.make_temporary(out, folder=True)
    (new / "new.txt").write_text("new")
    fileio.replace_folder(new, out)
    assert [p.name for p in out.iterdir()] == ["new.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_paths_are_accepted_as_str(tmp_path):
    fileio.write_atomic(str(tmp_path / "x.txt"), "x")
    assert fileio.list_temporaries(str(tmp_path)) == []
    assert pathlib.Path(tmp_path, "x.txt").read_text() == "x"
