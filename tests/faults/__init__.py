"""Fault tests at the command line: `qgmrn` commands run as subprocesses, killed with SIGKILL
at seeded moments, then rerun or resumed and compared with an uninterrupted run.

The helpers start each command in its own session (process group), so a kill takes its worker
processes too, with one thread per process (``OMP_NUM_THREADS=1``) and the package of this
checkout on ``PYTHONPATH``. `start(..., warm=True)` imports torch and the package first and
runs the command only on `go`: the next run's imports (seconds) overlap the current one's work.
`start(..., preamble=CODE)` runs CODE first, e.g. `pace(module, function, seconds)` to slow a
command too quick for a poll to catch it mid-work (the pacing changes when it writes, not what).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

import qgmrn

ENV = {
    **os.environ,
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "PYTHONPATH": str(Path(qgmrn.__file__).resolve().parents[1]),
}


def qgmrn_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "qgmrn.cli", *args]


# imports what `qgmrn train` needs and waits for a line on stdin
_WARM = """
import qgmrn.cli, qgmrn.commands.train, qgmrn.data, qgmrn.engine.trainer, qgmrn.model
sys.stdin.readline()
sys.stdin.close()
"""
# then runs `qgmrn ARGV...` as `python -m qgmrn.cli` would
_MAIN = """
import qgmrn.cli
sys.argv = ["qgmrn", *sys.argv[1:]]
sys.exit(qgmrn.cli.main(sys.argv[1:]))
"""


def pace(module: str, function: str, seconds: float) -> str:
    """A `start` preamble that sleeps `seconds` before each call of `module.function` in the
    started command, so a poll catches it mid-work on any machine (when it writes, not what)."""
    return (
        f"import time\nimport {module} as _paced\n_real = _paced.{function}\n"
        f"_paced.{function} = lambda *a, **k: (time.sleep({seconds}), _real(*a, **k))[1]\n"
    )


def start(
    args: list[str], log: Path, *, warm: bool = False, preamble: str = ""
) -> subprocess.Popen:
    """`qgmrn ARGS` in the background, in a new session, its output appended to `log`; with
    `warm`, only its imports until `go(proc)`; `preamble`: Python code run first."""
    if warm or preamble:
        code = "import sys\n" + preamble + (_WARM if warm else "") + _MAIN
        cmd = [sys.executable, "-c", code, *args]
    else:
        cmd = qgmrn_cmd(*args)
    with open(log, "ab") as out:
        return subprocess.Popen(
            cmd,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.PIPE if warm else subprocess.DEVNULL,
            env=ENV,
            start_new_session=True,
        )


def go(proc: subprocess.Popen) -> None:
    """Let a `start(..., warm=True)` process run its command."""
    proc.stdin.write(b"\n")
    proc.stdin.close()


def kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL `proc` and the processes of its group (it leads its own session)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def kill_when(
    proc: subprocess.Popen, ready: Callable[[], bool], *, delay: float, timeout: float = 180.0
) -> int:
    """Poll `ready()` (every millisecond) until it holds, wait `delay` seconds more, then SIGKILL
    the process group. Returns the exit status (``-SIGKILL`` when the kill landed)."""
    deadline = time.monotonic() + timeout
    while proc.poll() is None:
        try:
            hit = ready()
        except (OSError, ValueError, EOFError):  # a file caught mid-write
            hit = False
        if hit:
            time.sleep(delay)
            break
        if time.monotonic() > deadline:
            kill_group(proc)
            raise AssertionError(f"the kill condition was never met in {timeout} s")
        time.sleep(0.001)
    if proc.poll() is None:
        kill_group(proc)
    return proc.wait()


def files(root: Path) -> dict[str, Path]:
    """Every file under `root` (hidden ones too), by path relative to `root`."""
    return {p.relative_to(root).as_posix(): p for p in sorted(root.rglob("*")) if p.is_file()}


def assert_same_files(got: Path, want: Path, exclude: tuple[str, ...] = ()) -> None:
    """The same file names under both roots, each with the same bytes (`exclude`: relative
    paths compared by name only)."""
    a, b = files(got), files(want)
    extra, missing = sorted(set(a) - set(b)), sorted(set(b) - set(a))
    assert not extra and not missing, f"files differ: extra {extra}, missing {missing}"
    differ = [n for n in a if n not in exclude and a[n].read_bytes() != b[n].read_bytes()]
    assert not differ, f"bytes differ: {differ}"


def write_random_images(root: Path, counts: dict[str, int], size_wh=(48, 32), seed=0) -> Path:
    """`root/images/{split}/CLEVR_{split}_NNNNNN.png`: seeded random opaque RGBA images."""
    rng = np.random.default_rng(seed)
    for split, n in counts.items():
        folder = root / "images" / split
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            rgba = rng.integers(0, 256, (size_wh[1], size_wh[0], 4), np.uint8)
            rgba[..., 3] = 255
            Image.fromarray(rgba, "RGBA").save(folder / f"CLEVR_{split}_{i:06d}.png")
    return root
