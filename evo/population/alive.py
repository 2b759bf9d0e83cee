"""A worker's view of ``alive/``: the selectable living individuals, kept current without
listing the directory at every step.

The event log says every birth (with its fitness) and death; the new lines since the last step
(a few per step of every other worker) are applied to the cached records.  The result is checked
against ``alive/``'s link count (each member is a subdirectory, so ``st_nlink == 2 + members`` on
ext4, xfs, Lustre, ...): any disagreement -- a lost append, a run without mutual exclusion, fsck
moving things, a file system that does not count subdirectories -- and the view is rebuilt by
listing ``alive/``.  It is rebuilt every ``REBUILD_S`` seconds anyway, so that two errors that
cancel out cannot hide a member for long.  A stale member costs nothing worse than a failed
rename, after which the step is retried with a listing.
"""

from __future__ import annotations

import json
import os
import random
import time

from evo.base.files import listdir_quiet
from evo.population.config import Control
from evo.population.events import EventLog
from evo.population.layout import ALIVE, EVENTS_FILE, FITNESS_FILE, CorruptFileError, CorruptFileWarning, is_num, load_json, warn
from evo.population.section import SectionFiles
from evo.population.strategies import Candidate

__all__ = ["AliveView"]


class AliveView:
    """The selectable living individuals of one population, as one worker sees them."""

    REBUILD_S = 30.0

    def __init__(self, root: str, log: EventLog, section: SectionFiles, *, trust_nlink: bool) -> None:
        self.path = os.path.join(root, ALIVE)
        self.log = log
        self.section = section
        #: st_nlink of directories is trusted only where attributes are coherent (not NFS & co.)
        self.trust_nlink = trust_nlink
        self.nlink_ok = False
        self.cache: dict[str, Candidate] = {}
        self._key: tuple[int, int] | None = None
        self.offset: tuple[int, int] | None = None  # (inode, offset) of the event log read so far
        self._rebuild_at = 0.0
        self._scan_entries = 0
        self._unselectable = 0
        self._rng = random.Random()

    # -- membership changes known to this worker --------------------------------------------
    def add(self, i: int, fitness: float) -> None:
        self.cache[str(i)] = Candidate(i, float(fitness), i)

    def drop(self, i: int) -> None:
        self.cache.pop(str(i), None)

    def fitness_of(self, i: int) -> float | None:
        r = self.cache.get(str(i))
        return r.fitness if r is not None else None

    # -- the view ----------------------------------------------------------------------------
    def candidates(self, ctl: Control) -> list[Candidate]:
        """The selectable living individuals, current as of now."""
        key = (ctl.epoch, ctl.reset_generation)
        now = time.monotonic()
        if (key != self._key or not self.nlink_ok or self.offset is None
                or now >= self._rebuild_at or not self.tail()):
            return self.rebuild(ctl, now)
        try:
            nlink = os.stat(self.path).st_nlink
        except OSError:
            return self.rebuild(ctl, now)
        if nlink != 2 + len(self.cache) + self._unselectable:
            return self.rebuild(ctl, now)
        return list(self.cache.values())

    def subdirs(self, d: str) -> int | None:
        """Subdirectories of ``d`` from its link count, where that is known to be exact."""
        if not self.nlink_ok:
            return None
        try:
            n = os.stat(d).st_nlink - 2
        except OSError:
            return None
        return n if n >= 0 else None

    def listing(self, ctl: Control) -> list[Candidate]:
        """The selectable living individuals from a listing of ``alive/`` (names only) and set
        differences against the cache: only the fitness files of members not seen before are
        read.  Ids are never reused and a retrain changes the epoch (which clears the cache),
        so a name always stands for the same record."""
        key = (ctl.epoch, ctl.reset_generation)
        if key != self._key:
            self.cache.clear()
            self._key = key
        cache = self.cache
        names = listdir_quiet(self.path)  # (a missing alive/ is recreated by the next commit)
        self._scan_entries = len(names)
        listed = set(names)
        for name in cache.keys() - listed:  # died or moved away
            del cache[name]
        for name in sorted(listed.difference(cache), key=lambda n: (len(n), n)):
            if not name.isdigit():
                continue
            i = int(name)
            fpath = os.path.join(self.path, name, FITNESS_FILE)
            try:
                rec = load_json(fpath)
            except (FileNotFoundError, NotADirectoryError):
                continue  # killed meanwhile, or not a complete individual
            except CorruptFileError as err:
                warn(str(err), CorruptFileWarning)
                continue
            f = rec.get("fitness")
            if not is_num(f):
                warn(f"{fpath}: alive individual without a numeric fitness; not selectable")
                continue
            cache[name] = Candidate(i, float(f), i)
        return list(cache.values())

    def rebuild(self, ctl: Control, now: float) -> list[Candidate]:
        self.offset = None
        start = self.log.position()  # before the listing: later events are replayed
        try:
            st0 = os.stat(self.path)
            recs = self.listing(ctl)
            st1 = os.stat(self.path)
        except OSError:
            return self.listing(ctl)
        self._rebuild_at = now + self.REBUILD_S * (0.75 + 0.5 * self._rng.random())
        if (st0.st_mtime_ns, st0.st_nlink) == (st1.st_mtime_ns, st1.st_nlink):
            # does this file system count subdirectories in st_nlink?  (btrfs and some
            # network file systems do not: then every step lists alive/, as it must)
            self.nlink_ok = self.trust_nlink and st1.st_nlink == 2 + self._scan_entries
            self._unselectable = self._scan_entries - len(recs)  # torn or without fitness
        if self.nlink_ok and start is not None:
            self.offset = start
            self.tail()
            recs = list(self.cache.values())
        return recs

    def tail(self) -> bool:
        """Apply the event log's new complete lines to the cache.  False if the log was replaced
        or shortened (then the caller rebuilds from a listing)."""
        ino, off = self.offset  # type: ignore[misc]
        in_section = self.section.active
        try:
            fd = self.section.fd(EVENTS_FILE) if in_section else os.open(self.log.path, os.O_RDONLY)
        except OSError:
            return False
        try:
            st = os.fstat(fd)
            if st.st_ino != ino or st.st_size < off:
                return False
            if st.st_size == off:
                return True
            data = os.pread(fd, st.st_size - off, off)
        except OSError:
            return False
        finally:
            if not in_section:
                os.close(fd)
        end = data.rfind(b"\n") + 1  # complete lines only; a partial one is read next time
        self.log.clean = (ino, off + len(data)) if end == len(data) else None
        if not end:
            return True
        self.offset = (ino, off + end)
        for line in data[:end].split(b"\n"):
            if b'"birth"' in line:
                try:
                    ev = json.loads(line)
                except ValueError:
                    continue
                if ev.get("event") == "birth" and ev.get("outcome", "ok") == "ok" and is_num(ev.get("fitness")):
                    i = ev.get("id")
                    if isinstance(i, int):
                        self.add(i, ev["fitness"])
            elif b'"death"' in line or b'"quarantine"' in line:
                try:
                    ev = json.loads(line)
                except ValueError:
                    continue
                if ev.get("event") in ("death", "quarantine"):
                    self.cache.pop(str(ev.get("id")), None)
            elif b'"reset"' in line:
                return False
        return True
