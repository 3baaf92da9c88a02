"""qgmrn.engine.runlock: one training per run folder (a lock file naming its holder; stale locks of
dead processes are taken over, live ones and those of other hosts refuse)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

import qgmrn
from qgmrn.engine import runlock
from qgmrn.engine.runlock import LOCK_NAME, RunLockedError, acquire, read_lock

ENV = {**os.environ, "PYTHONPATH": str(Path(qgmrn.__file__).resolve().parents[1])}
HOLD = """
import sys
from qgmrn.engine.runlock import acquire
lock = acquire(sys.argv[1])
print("held", flush=True)
sys.stdin.read()  # hold until the test closes stdin (or kills us)
lock.release()
"""
RACE = """
import sys, time
from qgmrn.engine.runlock import RunLockedError, acquire
while time.time() < float(sys.argv[2]):  # start together
    pass
try:
    lock = acquire(sys.argv[1])
    print("won", flush=True)
    sys.stdin.read()  # hold it until every process has tried
    lock.release()
except RunLockedError:
    print("refused", flush=True)
"""


def _dead_pid() -> int:
    """The PID of a process that has exited and been reaped."""
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def _write_lock(run_dir: Path, **fields) -> Path:
    info = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": "2020-01-01 00:00:00 +0000",
        "command": "qgmrn train --preset x",
        "purpose": "training",
        "boot_id": runlock._boot_id(),
        "proc_start": runlock._proc_start(os.getpid()),
        "token": "0123456789abcdef",
        **fields,
    }
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / LOCK_NAME).write_text(json.dumps(info))
    return run_dir / LOCK_NAME


def test_acquire_writes_who_holds_it_and_release_removes_it(tmp_path):
    run = tmp_path / "run"  # created by acquire
    with acquire(run) as lock:
        info = read_lock(run)
        assert info["pid"] == os.getpid() and info["host"] == socket.gethostname()
        assert info["started"] and info["token"] == lock.info["token"]
        assert runlock.holder_alive(info) is True
    assert not (run / LOCK_NAME).exists()
    lock.release()  # idempotent
    acquire(run).release()  # free again


def test_a_second_acquire_is_refused_naming_the_holder(tmp_path):
    lock = acquire(tmp_path)
    with pytest.raises(RunLockedError) as e:
        acquire(tmp_path)
    msg = str(e.value)
    assert f"PID {os.getpid()}" in msg and f"started {lock.info['started']}" in msg
    assert str(tmp_path / LOCK_NAME) in msg and "another --out folder" in msg
    assert e.value.holder["token"] == lock.info["token"]
    assert read_lock(tmp_path)["token"] == lock.info["token"]  # the refusal left it alone
    lock.release()


def test_a_live_process_holds_it_and_its_lock_goes_stale_when_it_is_killed(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(tmp_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunLockedError, match=rf"PID {holder.pid}, started \d{{4}}-"):
            acquire(tmp_path)
    finally:
        holder.send_signal(signal.SIGKILL)  # no chance to release
        holder.wait()
    assert read_lock(tmp_path)["pid"] == holder.pid  # left behind: stale now
    with acquire(tmp_path) as lock:
        assert read_lock(tmp_path)["token"] == lock.info["token"]


@pytest.mark.parametrize(
    "stale",
    [
        {"pid": "dead"},
        {"proc_start": -1},  # our PID, but started at another time: the PID was reused
        {"boot_id": "another-boot"},  # written before the machine restarted
    ],
)
def test_stale_locks_are_taken_over(tmp_path, stale):
    if stale.get("pid") == "dead":
        stale = {"pid": _dead_pid()}
    elif "proc_start" in stale and runlock._proc_start(os.getpid()) is None:
        pytest.skip("no /proc: process start times unknown")
    elif "boot_id" in stale and runlock._boot_id() is None:
        pytest.skip("no boot id on this system")
    _write_lock(tmp_path, **stale)
    with acquire(tmp_path) as lock:
        assert read_lock(tmp_path)["token"] == lock.info["token"]
    assert os.listdir(tmp_path) == []  # nothing left aside


def test_a_lock_of_another_host_is_refused_with_what_to_do(tmp_path):
    path = _write_lock(tmp_path, host="elsewhere.example", pid=4242)
    with pytest.raises(RunLockedError) as e:
        acquire(tmp_path)
    msg = str(e.value)
    assert "PID 4242 on host 'elsewhere.example'" in msg and "started 2020-01-01" in msg
    assert f"delete {path}" in msg
    assert path.exists()


def test_an_unwritten_lock_of_a_killed_process_is_taken_over_once_old(tmp_path):
    path = tmp_path / LOCK_NAME
    path.write_text("")  # killed between creating the file and writing it
    old = time.time() - 60
    os.utime(path, (old, old))
    with acquire(tmp_path) as lock:
        assert read_lock(tmp_path)["token"] == lock.info["token"]


def test_release_leaves_a_lock_that_is_no_longer_its_own(tmp_path):
    lock = acquire(tmp_path)
    _write_lock(tmp_path, token="someone-else")  # e.g. broken as stale and taken meanwhile
    lock.release()
    assert read_lock(tmp_path)["token"] == "someone-else"


@pytest.mark.parametrize("with_stale_lock", [False, True])
def test_of_processes_starting_together_exactly_one_gets_it(tmp_path, with_stale_lock):
    if with_stale_lock:
        _write_lock(tmp_path, pid=_dead_pid())
    start = time.time() + 0.5
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", RACE, str(tmp_path), str(start)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=ENV,
        )
        for _ in range(4)
    ]
    outcomes = sorted(p.stdout.readline().strip() for p in procs)
    for p in procs:
        p.communicate(timeout=60)  # closes stdin: the winner releases
    assert outcomes == ["refused", "refused", "refused", "won"]
    assert not (tmp_path / LOCK_NAME).exists()  # the winner released it
    assert os.listdir(tmp_path) == []
