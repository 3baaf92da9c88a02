"""qgmrn.fileio under faults: a full disk mid-write, and the temporary files a killed writer
leaves (swept by `remove_temp_files` before a rerun)."""

from __future__ import annotations

import errno
import pickle

import pytest

from qgmrn.fileio import (
    DiskFullError,
    atomic_write,
    atomic_write_bytes,
    atomic_write_text,
    remove_temp_files,
)


@pytest.mark.parametrize("wrapped", [False, True])
def test_a_full_disk_keeps_the_old_file_and_says_so(tmp_path, wrapped):
    """ENOSPC after part of the new content is written: the old file stays, no temporary file
    remains, and the error names the file and the fault. `wrapped`: the writer reports the
    failed write as its own error (torch.save raises RuntimeError with the OSError as context)."""
    target = tmp_path / "state.bin"
    atomic_write_bytes(target, b"old content")
    with pytest.raises(DiskFullError) as e:
        with atomic_write(target, "wb") as f:
            f.write(b"half of the new ")
            f.flush()
            try:
                raise OSError(errno.ENOSPC, "No space left on device")
            except OSError:
                if wrapped:
                    # as torch does: no explicit cause, the OSError is only the context
                    raise RuntimeError("[enforce fail] unexpected pos")  # noqa: B904
                raise
    assert isinstance(e.value, OSError) and e.value.errno == errno.ENOSPC
    msg = str(e.value)
    assert str(target) in msg and "disk is full" in msg and "left as it was" in msg
    assert "free some space" in msg
    assert target.read_bytes() == b"old content"
    assert [p.name for p in tmp_path.iterdir()] == ["state.bin"]
    again = pickle.loads(pickle.dumps(e.value))  # crosses process pools intact
    assert str(again) == msg and again.errno == errno.ENOSPC


def test_a_full_quota_and_a_failed_create_are_reported_too(tmp_path, monkeypatch):
    from qgmrn import fileio

    with pytest.raises(DiskFullError, match="disk quota is exhausted"):
        with atomic_write(tmp_path / "q.txt") as f:
            f.write("x")
            raise OSError(errno.EDQUOT, "Disk quota exceeded")

    def no_room(path):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(fileio, "_create_temp", no_room)
    with pytest.raises(DiskFullError, match=r"cannot write .*new\.txt: the disk is full"):
        atomic_write_text(tmp_path / "new.txt", "x")
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_other_errors_and_interrupts_are_not_called_a_full_disk(tmp_path):
    with pytest.raises(PermissionError):
        with atomic_write(tmp_path / "a.txt") as f:
            f.write("x")
            raise PermissionError(errno.EACCES, "denied")
    with pytest.raises(KeyboardInterrupt):  # even if a full disk is in its context
        with atomic_write(tmp_path / "b.txt") as f:
            try:
                raise OSError(errno.ENOSPC, "No space left on device")
            except OSError:
                raise KeyboardInterrupt from None
    assert list(tmp_path.iterdir()) == []


def test_remove_temp_files_takes_only_what_atomic_write_leaves(tmp_path):
    keep = [".hidden", "a.json", ".a.json.tmp", ".a.json.xyz12345.tmp", "b.0123abcd.tmp"]
    for name in keep:
        (tmp_path / name).write_text("keep")
    left = [".a.json.0123abcd.tmp", ".summary.json.deadbeef.tmp", ".x.npz.00000000.tmp"]
    for name in left:
        (tmp_path / name).write_text("half")
    removed = remove_temp_files(tmp_path, targets=["a.json"])
    assert [p.name for p in removed] == [".a.json.0123abcd.tmp"]
    assert sorted(p.name for p in remove_temp_files(tmp_path)) == sorted(left[1:])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(keep)
    assert remove_temp_files(tmp_path / "missing") == []
