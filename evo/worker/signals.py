"""Stop requests by signal for a worker process (pure: no torch, no population).

Slurm warns a job before its time limit (SIGUSR2, sent by ``slurm/worker.sbatch``), ``scancel``
and preemption send SIGTERM, a user at a terminal sends SIGINT.  All three are *requests*: the
handler only records them, and the worker acts at its next check (finish the step, checkpoint,
hand the child back, exit 3).

Two windows need care in a process that imports torch:

* start-up: the handlers go in before torch is imported (seconds), so a warning that arrives
  then is kept, and the worker exits 3 without taking any work;
* shut-down: once the worker has decided how to exit, a late SIGTERM or SIGUSR2 has nothing
  left to interrupt.  Python puts back the default action (terminate) for its own handlers
  while the interpreter finalises, so such a signal would turn a clean exit 0 into a death by
  signal (exit 140 or 143) that the batch script must read as a failure.  ``ignore_from_now``
  switches them to SIG_IGN, which finalisation keeps.
"""

from __future__ import annotations

import signal
import threading
from typing import Any

__all__ = ["STOP_SIGNALS", "StopRequest"]

STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR2, signal.SIGINT)


class StopRequest:
    """A request to stop, set by a signal, by a time limit or by the caller; ``reason`` says which."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.reason = ""

    def request(self, reason: str) -> None:
        """Ask the worker to stop; the first reason is kept."""
        if not self.event.is_set():
            self.reason = reason
            self.event.set()

    def is_set(self) -> bool:
        return self.event.is_set()

    def install(self) -> None:
        """Turn SIGTERM, SIGUSR2 and SIGINT into requests (main thread only)."""

        def handler(signum: int, frame: Any) -> None:
            self.request(signal.Signals(signum).name)

        for sig in STOP_SIGNALS:
            signal.signal(sig, handler)

    @staticmethod
    def ignore_from_now() -> None:
        """After the worker's last decision: late SIGTERM / SIGUSR2 are ignored (SIGINT is left
        as it is, so that Ctrl-C still ends a shut-down that hangs)."""
        for sig in (signal.SIGTERM, signal.SIGUSR2):
            signal.signal(sig, signal.SIG_IGN)
