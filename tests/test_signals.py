"""Stop requests by signal: recorded, never acted on in the handler; ignored once the exit is decided."""

from __future__ import annotations

import os
import signal

from evo.worker.signals import STOP_SIGNALS, StopRequest


def test_a_request_keeps_its_first_reason():
    stop = StopRequest()
    assert not stop.is_set() and stop.reason == ""
    stop.request("time limit")
    stop.request("SIGTERM")
    assert stop.is_set() and stop.reason == "time limit"


def test_each_stop_signal_becomes_a_request():
    for sig in STOP_SIGNALS:
        stop = StopRequest()
        stop.install()
        os.kill(os.getpid(), sig)        # handlers run in the main thread, before the next bytecode
        assert stop.is_set() and stop.reason == signal.Signals(sig).name


def test_once_the_exit_is_decided_term_and_usr2_are_ignored_but_not_ctrl_c():
    """SIG_IGN is what interpreter shut-down keeps (tests/test_worker.py sends signals through a
    real worker's shut-down); SIGINT keeps its handler so that Ctrl-C still ends a hung exit."""
    stop = StopRequest()
    stop.install()
    stop.ignore_from_now()
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN
    assert signal.getsignal(signal.SIGUSR2) is signal.SIG_IGN
    assert callable(signal.getsignal(signal.SIGINT))
    os.kill(os.getpid(), signal.SIGUSR2)     # would end this process if it were not ignored
    os.kill(os.getpid(), signal.SIGTERM)
    assert not stop.is_set()
