"""Stop a training cleanly on SIGINT (Ctrl-C) or SIGTERM (`kill PID`): ours.

A run stopped at the end of a sitting continues with ``--resume`` in the next. Killed outright,
it loses the steps since its last checkpoint; asked with a signal, `qgmrn.engine.fit` finishes
the step under way (and a validation due at that step), writes checkpoint.pt at that exact step,
records the stop in history.jsonl and raises `TrainingInterrupted`, a KeyboardInterrupt: a
notebook cell or a script stops as it would on Ctrl-C, with nothing lost, and the command line
(`qgmrn train`, `qgmrn finetune`) exits with 128 + the signal's number (130, 143) saying how to
continue. No final evaluation: the run is not finished, and no eval.json says it is. A second
signal acts as it would without this (KeyboardInterrupt, or termination), for when the first
stop takes too long.

Only in the main thread of a single-process run, and not under torchrun (every rank would have
to agree on the step, and torchrun's agent forwards a Ctrl-C as SIGTERM): there the signals keep
their usual meaning. A signal the process ignores (a background job's SIGINT) stays ignored.
DataLoader workers ignore SIGINT and SIGTERM (`qgmrn.data.dataset.ignore_interrupts`), so that a
Ctrl-C to the whole process group, or a SIGTERM sent to every process of the run (`pkill -f`,
`kill -- -PGID`, a batch scheduler's preemption), does not kill them under the batch the main
process waits for: the main process stops with its checkpoint, then shuts them down (and a
worker whose main process is gone exits on its own, PyTorch's watchdog).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from types import FrameType
from typing import Any

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class TrainingInterrupted(KeyboardInterrupt):
    """Raised by `fit` after a stop request: checkpoint.pt holds `step`; `result` is what fit
    would have returned (stop reason "interrupted", no "eval"); `signal` the signal's number."""

    def __init__(self, result: dict[str, Any], signum: int) -> None:
        self.result, self.signal, self.step = result, signum, result.get("step")
        super().__init__(
            f"training interrupted ({signal.Signals(signum).name}) at step {self.step}; "
            f"checkpoint.pt saved in {result.get('out_dir')}: continue with --resume"
        )

    @property
    def exit_status(self) -> int:
        return 128 + int(self.signal)


class StopRequest:
    """A context in which SIGINT/SIGTERM set `requested` instead of stopping the process.

    ``with StopRequest() as stop: ... if stop.requested: ...``; the previous handlers are back on
    exit. `enabled=False` (or outside the main thread) installs nothing and never requests.
    """

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled and threading.current_thread() is threading.main_thread()
        self.signal: int | None = None
        self._pid = os.getpid()
        self._previous: dict[int, Any] = {}

    @property
    def requested(self) -> bool:
        return self.signal is not None

    def __enter__(self) -> StopRequest:
        if self.enabled:
            for sig in SIGNALS:
                if signal.getsignal(sig) is signal.SIG_IGN:  # ignored by whoever started us
                    continue
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        self._restore()

    def _restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if os.getpid() != self._pid:  # a forked child that inherited the handler
            return
        if self.signal is not None:  # the second: as without us
            self._restore()
            signal.raise_signal(signum)
            return
        self.signal = signum
        print(
            f"[qgmrn] {signal.Signals(signum).name}: stopping after this step and saving "
            "checkpoint.pt (resume with --resume; send it again to stop at once)",
            file=sys.stderr,
            flush=True,
        )
