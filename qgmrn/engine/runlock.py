"""One training per run folder: a lock file, ``RUN_DIR/run.lock``.

`acquire(run_dir)` creates the lock file with ``O_CREAT | O_EXCL`` (atomic: of two processes
only one creates it) and writes into it, as JSON, who holds it: the PID, the host, the start
time, the command line, and what tells a live process from a dead one whose PID was reused (the
kernel's boot id and the process's start time in ``/proc``). `RunLock.release` (or leaving the
``with`` block, or the interpreter exiting normally) deletes it.

A second `acquire` on the same folder raises `RunLockedError`, whose message names the holder (PID,
host, start time, command) and what to do. A lock left by a process that died without releasing
it (SIGKILL, power loss) is *stale* and is taken over silently when its holder was on this host
and that process no longer runs (dead PID, PID reused by another process, or the machine
rebooted since). A lock from another host cannot be checked from here and is never taken over:
the message says to delete the file if no training runs there.

Pure standard library (no torch): a command can take the lock before its heavy imports.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import secrets
import socket
import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["LOCK_NAME", "RunLock", "RunLockedError", "acquire", "holder_alive", "read_lock"]

LOCK_NAME = "run.lock"
# A lock file that is still empty or cut short this long after it was created belongs to a
# process killed between creating and writing it (the write follows the create at once).
_UNWRITTEN_GRACE_S = 1.0
_POLL_S = 0.05


class RunLockedError(RuntimeError):
    """The run folder is in use by another live process; the message names it."""

    def __init__(self, message: str, holder: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.holder = holder or {}


def _boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def _proc_start(pid: int) -> int | None:
    """The start time of process `pid` in clock ticks since boot (Linux), or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    try:  # the command name (field 2) may hold spaces and parentheses: split after the last ')'
        return int(stat.rsplit(")", 1)[1].split()[19])
    except (IndexError, ValueError):
        return None


def _pid_runs(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    except OSError:
        return True  # cannot tell: assume it runs
    return True


def holder_alive(info: dict[str, Any]) -> bool | None:
    """Whether the process a lock names still runs: True, False, or None when it cannot be
    told from here (another host)."""
    if info.get("host") != socket.gethostname():
        return None
    pid = info.get("pid")
    if not isinstance(pid, int):
        return False
    boot = _boot_id()
    if info.get("boot_id") and boot and info["boot_id"] != boot:
        return False  # the machine restarted since: every process of then is gone
    if not _pid_runs(pid):
        return False
    start = _proc_start(pid)
    if info.get("proc_start") is not None and start is not None and start != info["proc_start"]:
        return False  # the PID now belongs to another process
    return True


def read_lock(run_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The holder recorded in `run_dir`'s lock file; None if there is none or it is unreadable."""
    try:
        info = json.loads((Path(run_dir) / LOCK_NAME).read_text())
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def _describe(info: dict[str, Any]) -> str:
    here = info.get("host") == socket.gethostname()
    who = f"PID {info.get('pid')}" + ("" if here else f" on host {info.get('host')!r}")
    return f"{who}, started {info.get('started', '?')} ({info.get('command', '?')})"


class RunLock:
    """A held lock on a run folder; `release` it (or use it as a context manager)."""

    def __init__(self, path: Path, info: dict[str, Any]) -> None:
        self.path = path
        self.info = info
        self.held = True
        atexit.register(self.release)  # a normal exit releases it even without release()

    def release(self) -> None:
        """Delete the lock file if it is still this lock's (idempotent)."""
        if not self.held:
            return
        self.held = False
        atexit.unregister(self.release)
        current = read_lock(self.path.parent)
        if current is not None and current.get("token") == self.info["token"]:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"RunLock({str(self.path)!r}, held={self.held})"


def _my_info(purpose: str) -> dict[str, Any]:
    now = time.time()
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": time.strftime("%Y-%m-%d %H:%M:%S %z", time.localtime(now)),
        "started_unix": now,
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]) if sys.argv else "?",
        "purpose": purpose,
        "boot_id": _boot_id(),
        "proc_start": _proc_start(os.getpid()),
        "token": secrets.token_hex(8),
    }


def _try_create(path: Path, info: dict[str, Any]) -> bool:
    """Create `path` holding `info`; False if it exists already."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return False
    try:
        os.write(fd, (json.dumps(info, indent=1) + "\n").encode())
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        raise
    os.close(fd)
    return True


def _break_stale(path: Path, stale: dict[str, Any] | None) -> None:
    """Remove the stale lock `path` (holding `stale`, None: unreadable), unless another process
    replaced it meanwhile: it is renamed aside first and put back if it is not the one judged."""
    aside = path.with_name(f"{path.name}.stale-{os.getpid()}-{secrets.token_hex(4)}")
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return  # someone else broke it: try to create ours again
    try:
        moved = json.loads(aside.read_text())
    except (OSError, ValueError):
        moved = None
    same = (moved is None and stale is None) or (
        isinstance(moved, dict) and stale is not None and moved.get("token") == stale.get("token")
    )
    if not same:  # a live lock taken meanwhile by another process: give it back
        with contextlib.suppress(FileExistsError):
            os.link(aside, path)
    aside.unlink(missing_ok=True)


def acquire(
    run_dir: str | os.PathLike, *, purpose: str = "training", attempts: int = 50
) -> RunLock:
    """Take the lock of `run_dir` (created if missing) for this process.

    Raises `RunLockedError` naming the holder (PID, host, start time, command) when a live
    process holds it, or when a process on another host does (it cannot be checked from here).
    A stale lock (its process is gone) is taken over.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK_NAME
    mine = _my_info(purpose)
    for _ in range(max(attempts, 1)):
        if _try_create(path, mine):
            return RunLock(path, mine)
        info = read_lock(run_dir)
        if info is None:  # being written this instant, or left unwritten by a killed process
            try:
                age = time.time() - path.stat().st_mtime
            except FileNotFoundError:
                continue
            if age < _UNWRITTEN_GRACE_S:
                time.sleep(_POLL_S)
                continue
            _break_stale(path, None)
            continue
        alive = holder_alive(info)
        if alive is False:
            _break_stale(path, info)
            continue
        if alive is None:
            raise RunLockedError(
                f"run folder {run_dir} is locked by {_describe(info)}, a process on another "
                f"host that cannot be checked from here. Wait for that {info.get('purpose', 'run')}"
                f" to finish, or use another folder; if nothing runs there any more, delete "
                f"{path} and try again.",
                info,
            )
        me = " (this very process)" if info.get("pid") == os.getpid() else ""
        raise RunLockedError(
            f"run folder {run_dir} is in use by another {info.get('purpose', 'run')}: "
            f"{_describe(info)}{me}. Two trainings writing one folder would corrupt each other's "
            f"checkpoints and logs: wait for it to finish, stop it (kill {info.get('pid')}), or "
            f"choose another --out folder. (The lock file is {path}.)",
            info,
        )
    raise RunLockedError(
        f"could not take the lock {path}: it kept changing or stayed unreadable (several "
        "processes starting on this folder at once?); try again, and if no training runs in "
        f"{run_dir}, delete {path}",
        read_lock(run_dir),
    )
