"""qgmrn.fileio: atomic writes (temporary file beside the target, then os.replace)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import pytest

from qgmrn import fileio
from qgmrn.fileio import atomic_write, atomic_write_bytes, atomic_write_json, atomic_write_text


def _listing(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_text_and_bytes_writes(tmp_path):
    assert atomic_write_text(tmp_path / "a.txt", "héllo\n") == tmp_path / "a.txt"
    assert (tmp_path / "a.txt").read_bytes() == "héllo\n".encode()
    assert atomic_write_bytes(str(tmp_path / "b.bin"), b"\x00\xff") == tmp_path / "b.bin"
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\xff"
    with atomic_write(tmp_path / "c.txt") as f:
        f.write("one\n")
        f.write("two\n")
    assert (tmp_path / "c.txt").read_text() == "one\ntwo\n"
    assert _listing(tmp_path) == ["a.txt", "b.bin", "c.txt"]  # no temporary files left


def test_overwrites_an_existing_file(tmp_path):
    target = tmp_path / "f.txt"
    target.write_text("old")
    atomic_write_text(target, "new")
    assert target.read_text() == "new"
    assert _listing(tmp_path) == ["f.txt"]


def test_nothing_visible_until_the_block_ends(tmp_path):
    target = tmp_path / "f.txt"
    target.write_text("old")
    with atomic_write(target) as f:
        f.write("new")
        f.flush()
        assert target.read_text() == "old"
        (tmp,) = [p for p in tmp_path.iterdir() if p.name != "f.txt"]
        assert tmp.name.startswith(".f.txt.") and tmp.name.endswith(".tmp")
    assert target.read_text() == "new"


@pytest.mark.parametrize("exc", [RuntimeError, KeyboardInterrupt])
def test_exception_keeps_the_old_file_and_removes_the_temporary(tmp_path, exc):
    target = tmp_path / "f.bin"
    target.write_bytes(b"old")
    with pytest.raises(exc):
        with atomic_write(target, "wb") as f:
            f.write(b"half of the new")
            raise exc()
    assert target.read_bytes() == b"old"
    assert _listing(tmp_path) == ["f.bin"]


def test_exception_on_a_new_file_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError):
        with atomic_write(tmp_path / "new.txt") as f:
            f.write("x")
            raise RuntimeError
    assert _listing(tmp_path) == []


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
@pytest.mark.parametrize("umask", [0o022, 0o027, 0o077])
def test_mode_follows_the_umask_like_open(tmp_path, umask):
    old = os.umask(umask)
    try:
        atomic_write_text(tmp_path / "atomic.txt", "x")
        with open(tmp_path / "plain.txt", "w") as f:
            f.write("x")
    finally:
        os.umask(old)
    got = stat.S_IMODE((tmp_path / "atomic.txt").stat().st_mode)
    assert got == 0o666 & ~umask  # not mkstemp's 0o600
    assert got == stat.S_IMODE((tmp_path / "plain.txt").stat().st_mode)


def test_json_helper(tmp_path):
    doc = {"b": [1, 2.5, None], "a": "é"}
    path = atomic_write_json(tmp_path / "d.json", doc)
    assert path.read_text(encoding="utf-8") == json.dumps(doc)
    atomic_write_json(path, doc, indent=1, ensure_ascii=False, trailing_newline=True)
    assert path.read_text(encoding="utf-8") == json.dumps(doc, indent=1, ensure_ascii=False) + "\n"


def test_json_error_writes_nothing(tmp_path):
    path = tmp_path / "d.json"
    path.write_text("{}")
    with pytest.raises(ValueError):
        atomic_write_json(path, {"x": float("nan")}, allow_nan=False)
    with pytest.raises(TypeError):
        atomic_write_json(path, {"x": object()})
    assert path.read_text() == "{}"
    assert _listing(tmp_path) == ["d.json"]


def test_creates_parent_directories(tmp_path):
    target = tmp_path / "a" / "b" / "c.json"
    atomic_write_json(target, [1])
    assert json.loads(target.read_text()) == [1]


def test_bad_mode_is_refused_before_creating_anything(tmp_path):
    for mode in ("a", "r", "w+", "x"):
        with pytest.raises(ValueError, match="mode"):
            with atomic_write(tmp_path / "f", mode):
                pass
    assert _listing(tmp_path) == []


@pytest.mark.parametrize("fsync", [True, False])
def test_fsync_flag(tmp_path, monkeypatch, fsync):
    calls = []
    real = os.fsync
    monkeypatch.setattr(fileio.os, "fsync", lambda fd: (calls.append(fd), real(fd)))
    atomic_write_text(tmp_path / "f.txt", "x", fsync=fsync)
    # the file before the rename, and (where the platform allows) the directory after it
    assert (len(calls) >= 1) if fsync else (calls == [])
    assert (tmp_path / "f.txt").read_text() == "x"


def test_import_is_free_of_torch_and_numpy():
    code = "import sys, qgmrn.fileio; print('torch' in sys.modules or 'numpy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_portable_path_is_relative_inside_the_project_and_absolute_outside(tmp_path, monkeypatch):
    root = fileio.project_root()
    assert fileio.portable_path(root / "data" / "mini-clevr") == os.path.join("data", "mini-clevr")
    monkeypatch.chdir(root / "notebooks")  # a notebook's relative path, from notebooks/
    assert fileio.portable_path("../data/mini-clevr") == os.path.join("data", "mini-clevr")
    monkeypatch.chdir(tmp_path)
    assert fileio.portable_path("elsewhere") == str(tmp_path.resolve() / "elsewhere")


def test_locate_reads_a_recorded_relative_path_from_the_project_root(tmp_path, monkeypatch):
    root = fileio.project_root()
    monkeypatch.chdir(tmp_path)  # e.g. notebooks/: "qgmrn" is not here but under the root
    assert fileio.locate("qgmrn") == root / "qgmrn"
    (tmp_path / "qgmrn").mkdir()  # a folder of that name here wins: the path as given
    assert fileio.locate("qgmrn") == fileio.Path("qgmrn")
    assert fileio.locate("no/such/folder") == fileio.Path("no/such/folder")
    assert fileio.locate(tmp_path / "x") == tmp_path / "x"


def test_portable_path_keeps_a_symlinked_data_folder_inside_the_project(tmp_path):
    """data/clevr -> /mnt/...: recorded by its name in the project, not the link's target."""
    link = fileio.project_root() / "results" / f".test-link-{os.getpid()}"
    link.symlink_to(tmp_path, target_is_directory=True)
    try:
        assert fileio.portable_path(link / "clevr") == os.path.join("results", link.name, "clevr")
    finally:
        link.unlink()
