"""The event log ``events.jsonl``: one JSON object per line, appended under the lock with one
``write`` per critical section (docs/format.md lists the events and their keys).

The log is derived from the directories (which are the truth): appends under the lock are not
fsynced, and ``evo fsck --repair`` restores what a crash of the machine lost.  Workers also read
it, to keep their view of ``alive/`` current (:mod:`evo.population.alive`).
"""

from __future__ import annotations

import os
import time
from typing import Sequence

from evo.base.files import append_to_fd, jsonl_bytes, read_jsonl
from evo.population.layout import EVENTS_FILE, CorruptFileWarning, warn
from evo.population.section import SectionFiles

__all__ = ["EventLog", "read_events"]


def read_events(root: str, *, warn: bool = True) -> list[dict]:
    """The events of ``events.jsonl``.  A torn last line is skipped silently (an append in
    progress or cut by a crash); an undecodable line in the middle is skipped with a warning."""
    report = _warn_corrupt if warn else None
    return read_jsonl(os.path.join(root, EVENTS_FILE), warn=report)


def _warn_corrupt(message: str) -> None:
    warn(message, CorruptFileWarning)


class EventLog:
    """Appends to the event log of the population at ``root``."""

    def __init__(self, root: str, section: SectionFiles) -> None:
        self.path = os.path.join(root, EVENTS_FILE)
        self.section = section
        #: (inode, size) known to end in a newline: the next append needs no check
        self.clean: tuple[int, int] | None = None

    def append(self, events: Sequence[dict]) -> None:
        """Append events (one write).  Never fatal: a failure is a warning and fsck reconstructs
        the missing events from the directories.  Appends under the lock (every selection step
        and commit) are not fsynced; the rarer appends outside it (control, fsck) are."""
        now = time.time()
        payload = jsonl_bytes({"t": now, **e} for e in events)
        in_section = self.section.active
        try:
            fd = self.section.fd(EVENTS_FILE) if in_section else \
                os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o666)
            try:
                self.clean = append_to_fd(fd, payload, self.clean)
                if not in_section:
                    os.fsync(fd)
            finally:
                if not in_section:
                    os.close(fd)
        except OSError as e:
            warn(f"could not append to {self.path}: {e}; `evo fsck --repair` will restore the missing events")

    def position(self) -> tuple[int, int] | None:
        """(inode, size) of the log now, or None if it cannot be read."""
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_ino, st.st_size)
