"""Stop a training cleanly on SIGINT (Ctrl-C) or SIGTERM (`kill PID`): ours.

A run stopped at the end of a sitting continues with ``--resume`` in the next. Killed outright,
it loses the steps since its last checkpoint; asked with a signal, `qgmrn.train.fit` finishes
the step under way, writes checkpoint.pt at that exact step and returns with stop reason
``"interrupted"`` (no final evaluation: the run is not finished, and no eval.json says it is).
A second signal acts as it would without this (KeyboardInterrupt, or termination), for when the
first stop takes too long.

Only in the main thread of a single-process run: under torchrun every rank would have to agree
on the step, so there the signals keep their usual meaning.
"""

from __future__ import annotations

import signal
import sys
import threading
from types import FrameType

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequest:
    """A context in which SIGINT/SIGTERM set `requested` instead of stopping the process.

    ``with StopRequest() as stop: ... if stop.requested: ...``; the previous handlers are back on
    exit. `enabled=False` (or outside the main thread) installs nothing and never requests.
    """

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled and threading.current_thread() is threading.main_thread()
        self.signal: int | None = None
        self._previous: dict[int, object] = {}

    @property
    def requested(self) -> bool:
        return self.signal is not None

    def __enter__(self) -> StopRequest:
        if self.enabled:
            for sig in SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        self._restore()

    def _restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
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
