"""`qgmrn.interrupt.StopRequest`: the first SIGINT/SIGTERM is a request, the second acts as
usual, and the handlers before it are back afterwards."""

from __future__ import annotations

import os
import signal

import pytest

from qgmrn.interrupt import StopRequest


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
