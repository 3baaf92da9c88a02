"""Checkpoints under faults: a full disk during the save, and files from elsewhere (pickled
objects, edited fields) that must be refused without running anything."""

from __future__ import annotations

import contextlib
import errno
import json

import pytest
import torch

from qgmrn import cli
from qgmrn.engine import checkpoint as ckpt
from qgmrn.fileio import DiskFullError

from . import make_tiny_clevr
from .test_checkpoint import _save


class _FillingDisk:
    """A binary file that takes `room` bytes, then fails like a full disk (ENOSPC)."""

    def __init__(self, f, room: int) -> None:
        self.f, self.room = f, room

    def write(self, data) -> int:
        data = bytes(data)
        if len(data) > self.room:
            self.f.write(data[: self.room])  # the part that fitted reaches the file
            self.f.flush()
            self.room = 0
            raise OSError(errno.ENOSPC, "No space left on device")
        self.room -= len(data)
        return self.f.write(data)

    def __getattr__(self, name):
        return getattr(self.f, name)


def _fill_disk_on_save(monkeypatch, fail_on: int, room: int = 300) -> list[int]:
    """Make the `fail_on`-th checkpoint save (1-based) hit a full disk after `room` bytes."""
    real = ckpt.atomic_write
    calls: list[int] = []

    @contextlib.contextmanager
    def atomic_write(path, mode="w", **kw):
        calls.append(1)
        with real(path, mode, **kw) as f:
            yield _FillingDisk(f, room) if len(calls) == fail_on else f

    monkeypatch.setattr(ckpt, "atomic_write", atomic_write)
    return calls


def test_a_full_disk_during_a_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "run" / "checkpoint.pt"
    model = _save(path, step=3)
    before = path.read_bytes()
    _fill_disk_on_save(monkeypatch, fail_on=1)
    with pytest.raises(DiskFullError) as e:
        _save(path, step=4)
    msg = str(e.value)
    assert str(path) in msg and "the disk is full" in msg
    assert "previous checkpoint.pt" in msg and "loadable" in msg and "--resume" in msg
    assert e.value.errno == errno.ENOSPC and isinstance(e.value, OSError)
    assert path.read_bytes() == before
    assert [p.name for p in path.parent.iterdir()] == ["checkpoint.pt"]  # no partial file
    c = ckpt.read_checkpoint(path)
    assert c["step"] == 3 and torch.equal(c["model"]["weight"], model.weight)


def test_train_stops_on_a_full_disk_and_resumes_once_there_is_room(tmp_path, monkeypatch, capsys):
    """`qgmrn train`: the 2nd checkpoint write (step 4) meets a full disk; the command fails
    with a clear message, the step-2 checkpoint is intact, and --resume continues from it."""
    data = make_tiny_clevr(tmp_path / "clevr")
    out = tmp_path / "run"
    args = ["train", "--preset", "lstm", "--profile", "smoke", "--data-dir", str(data),
            "--out", str(out), "--epochs", "2", "--checkpoint-every-steps", "2",
            "--no-progress"]  # fmt: skip
    calls = _fill_disk_on_save(monkeypatch, fail_on=2)
    assert cli.main([*args, "--max-steps", "6"]) == 1
    printed = capsys.readouterr().err  # errors go to stderr
    assert f"cannot write {out / 'checkpoint.pt'}: the disk is full" in printed
    assert "--resume" in printed and "Traceback" not in printed
    assert len(calls) == 2
    assert ckpt.read_checkpoint(out / "checkpoint.pt")["step"] == 2
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]

    monkeypatch.undo()  # space freed
    assert cli.main([*args, "--max-steps", "6", "--resume"]) == 0
    assert json.loads(capsys.readouterr().out)["step"] == 6
    assert ckpt.read_checkpoint(out / "checkpoint.pt")["step"] == 6
    rows = [json.loads(r) for r in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "kind" not in r] == [1, 2, 3, 4, 5, 6]  # none twice


def _leave_marker(path: str) -> str:
    """What unpickling the planted object would call: it must never run."""
    with open(path, "w") as f:
        f.write("code ran")
    return "pwned"


class _Planted:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (_leave_marker, (self.marker,))


class _PlainObject:
    pass


@pytest.mark.parametrize("planted", ["code", "instance"])
def test_a_checkpoint_holding_pickled_objects_is_refused_unrun(tmp_path, planted):
    """A real checkpoint with one extra object added (in `extra`, as a tool might): refused,
    naming the file and the object, and the object's code never runs."""
    path = tmp_path / "checkpoint.pt"
    _save(path)
    c = torch.load(path, weights_only=True)
    marker = tmp_path / "marker"
    c["extra"]["note"] = _Planted(str(marker)) if planted == "code" else _PlainObject()
    torch.save(c, path)
    with pytest.raises(ckpt.CheckpointError) as e:
        ckpt.load_checkpoint(path)
    msg = str(e.value)
    name = "_leave_marker" if planted == "code" else "_PlainObject"
    assert str(path) in msg and "pickled Python objects" in msg and name in msg
    assert "written by `qgmrn train`" in msg and "\x1b[" not in msg
    assert not marker.exists()


@pytest.mark.parametrize(
    ("field", "value"),
    [("model", "weights"), ("model", {"w": [1.0, 2.0]}), ("step", "3"), ("step", True),
     ("config", None), ("rng", None)],
)  # fmt: skip
def test_a_checkpoint_with_edited_fields_is_refused(tmp_path, field, value):
    path = tmp_path / "c.pt"
    _save(path)
    c = torch.load(path, weights_only=True)
    c[field] = value
    torch.save(c, path)
    with pytest.raises(ckpt.CheckpointError, match=rf"c\.pt: checkpoint field '{field}'"):
        ckpt.read_checkpoint(path)
    del c[field]
    torch.save(c, path)
    with pytest.raises(ckpt.CheckpointError, match=rf"'{field}' is missing"):
        ckpt.read_checkpoint(path)


def test_a_truncated_checkpoint_says_what_to_do(tmp_path):
    _save(tmp_path / "good.pt")
    data = (tmp_path / "good.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 3])
    with pytest.raises(ckpt.CheckpointError, match=r"cut\.pt: not a readable .* truncated") as e:
        ckpt.read_checkpoint(tmp_path / "cut.pt")
    assert "qgmrn train" in str(e.value)
