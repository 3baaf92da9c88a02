"""`qgmrn.engine.interrupt.StopRequest`: the first SIGINT/SIGTERM is a request, the second acts as
usual, and the handlers before it are back afterwards."""

from __future__ import annotations

import os
import signal

import pytest

from qgmrn.engine.interrupt import StopRequest


def test_first_signal_requests_the_second_acts_as_usual():
    before = signal.getsignal(signal.SIGINT)
    with StopRequest() as stop:
        assert not stop.requested
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.requested and stop.signal == signal.SIGINT
        with pytest.raises(KeyboardInterrupt):  # Python's own SIGINT handler again
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is before


def test_disabled_installs_nothing():
    before = signal.getsignal(signal.SIGTERM)
    with StopRequest(enabled=False) as stop:
        assert signal.getsignal(signal.SIGTERM) is before and not stop.requested


def test_an_ignored_signal_stays_ignored():
    """A background job (`cmd &` in a script) starts with SIGINT ignored: it stays so."""
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with StopRequest():
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
            assert signal.getsignal(signal.SIGTERM) is not signal.SIG_IGN  # this one is taken
    finally:
        signal.signal(signal.SIGINT, before)


def test_data_workers_ignore_the_signals_the_main_process_decides_on():
    """A worker (`ignore_interrupts`) survives SIGINT and SIGTERM sent to every process of the
    run; the main process stops with its checkpoint and shuts the workers down."""
    import subprocess
    import sys

    code = (
        "import os, signal\n"
        "from qgmrn.data.dataset import ignore_interrupts\n"
        "ignore_interrupts()\n"
        "os.kill(os.getpid(), signal.SIGTERM)\n"
        "os.kill(os.getpid(), signal.SIGINT)\n"
        "print('alive')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "alive", done.stderr
