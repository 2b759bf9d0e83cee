"""Files opened once per critical section: the event log and ``next_id``.

Under the lock a selection step and a commit read and write the same few files; each is opened
once per critical section and closed before the lock is released, so that the next holder's
``open`` sees what was written, also over NFS (close-to-open consistency).
"""

from __future__ import annotations

import contextlib
import os

from evo.population.layout import EVENTS_FILE
from evo.population.locks import BaseLock

__all__ = ["SectionFiles"]


class SectionFiles:
    """The open files of the current critical section of ``lock`` (the event log in append mode)."""

    def __init__(self, root: str, lock: BaseLock) -> None:
        self.root = root
        self.lock = lock
        self._fds: dict[str, int] = {}

    @property
    def active(self) -> bool:
        """Whether this process is inside a critical section (holds the lock)."""
        return self.lock.is_locked

    def fd(self, name: str) -> int:
        """The descriptor of the population file ``name``, opened for this critical section."""
        fd = self._fds.get(name)
        if fd is None:
            flags = os.O_RDWR | os.O_CREAT | (os.O_APPEND if name == EVENTS_FILE else 0)
            fd = self._fds[name] = os.open(os.path.join(self.root, name), flags, 0o666)
        return fd

    def close(self) -> None:
        """Close every file of the section (before the lock is released)."""
        fds, self._fds = self._fds, {}
        for fd in fds.values():
            with contextlib.suppress(OSError):
                os.close(fd)
