"""A population directory as an object: its config, its lock and the parts of its state that the
protocol's steps use (docs/format.md).  :class:`PopulationDir` is the base of
:class:`~evo.population.protocol.Population`; the run-control, reading and recovery parts
(:mod:`evo.population.control`, :mod:`~evo.population.reading`, :mod:`~evo.population.recovery`)
extend it."""

from __future__ import annotations

import contextlib
import os
import random
import time
from typing import Any, Iterator

from evo.base.files import atomic_write_json
from evo.population import locks
from evo.population.alive import AliveView
from evo.population.config import LOCK_MODES, Config, Control, read_config
from evo.population.counters import Counters
from evo.population.create import create_population, make_config
from evo.population.events import EventLog, read_events
from evo.population.ids import IdClaims
from evo.population.layout import (
    ALIVE, CONTROL_FILE, DEAD, INFLIGHT, PENDING, TMP, ConfigError, inflight_entries, list_ids,
    load_json_or_none, shard, warn,
)
from evo.population.section import SectionFiles

__all__ = ["PopulationDir"]


class PopulationDir:
    """A population directory and the parts the protocol is made of: the lock, the files of a
    critical section, the event log, this worker's view of alive/, the id claims, the counters.
    :class:`~evo.population.protocol.Population` adds the protocol's steps."""

    def __init__(self, root: str, config: Config, *, lock: str | None = None):
        self.root = os.path.abspath(root)
        self.config = config
        self._alive = os.path.join(self.root, ALIVE)
        self._dead = os.path.join(self.root, DEAD)
        self._pending = os.path.join(self.root, PENDING)
        self._inflight = os.path.join(self.root, INFLIGHT)
        self._tmp = os.path.join(self.root, TMP)
        self._lock, self.lock_reason = locks.open_lock(self.root, lock or config.lock, lock_ttl_s=config.lock_ttl_s,
                                                       detected=config.lock_detected)
        self.lock_kind = self._lock.kind
        self.section = SectionFiles(self.root, self._lock)
        self.log = EventLog(self.root, self.section)
        fstype = locks.filesystem_of(self.root)[0]
        self.alive = AliveView(self.root, self.log, self.section,
                               trust_nlink=not (fstype in locks.SOFT_FS or fstype.startswith(("nfs", "fuse"))))
        self.ids = IdClaims(self.root, self.section)
        self.counters = Counters(self.root, config)
        self._state_snapshot: dict | None = None
        self._known_shards: set[str] = set()
        self._next_recovery = 0.0
        self._rng = random.Random()
        #: Per-process timings (seconds) for benchmarks: lock_wait, lock_held, next_task, commit,
        #: and lock_at (time.monotonic() at each acquisition, to merge the lock's timeline).
        self.stats: dict[str, list[float]] = {"lock_wait": [], "lock_held": [], "lock_at": [],
                                              "next_task": [], "commit": []}
        self.keep_stats = False

    # ---------------------------------------------------------------------- create / open
    @classmethod
    def create(cls, root: str, config: Config | dict | None = None, **overrides: Any) -> "PopulationDir":
        """Create a new population at ``root`` (which must not exist, or be an empty directory),
        with ``population_size`` seed individuals planned as pending work."""
        root = os.path.abspath(root)
        return cls(root, create_population(root, make_config(config, overrides)))

    @classmethod
    def open(cls, root: str, *, lock: str | None = None) -> "PopulationDir":
        """Open an existing population.  ``lock`` overrides the config's lock mode (tools)."""
        root = os.path.abspath(root)
        config = read_config(root)
        if lock is not None and lock not in LOCK_MODES:
            raise ConfigError(f"lock override {lock!r}: must be one of {', '.join(LOCK_MODES)}")
        return cls(root, config, lock=lock)

    def _recreate(self, d: str) -> bool:
        """Recreate ``d``, a directory of the format that someone deleted (with a warning); False
        if it cannot be (a read-only population: readers go on without it)."""
        try:
            os.makedirs(d, exist_ok=True)
        except OSError as e:
            warn(f"{d}: the population's directory is missing and cannot be recreated ({e.strerror})")
            return False
        warn(f"{d}: the population's directory was missing; recreated it")
        return True

    def _rename_into(self, src: str, dst: str) -> None:
        """``os.rename(src, dst)``, recreating ``dst``'s directory of the format when it is missing
        (FileNotFoundError then means only that ``src`` is gone).  The directories are recreated
        where the protocol needs them, not when a population is opened: readers never write."""
        try:
            os.rename(src, dst)
        except FileNotFoundError:
            parent = os.path.dirname(dst)
            if not os.path.lexists(src) or os.path.isdir(parent) or os.path.dirname(parent) not in (
                    self.root, self._dead) or not self._recreate(parent):
                raise
            os.rename(src, dst)

    # ---------------------------------------------------------------------- lock
    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the population lock (re-entrant within this object)."""
        if self._lock.is_locked:
            self._lock.acquire()
            try:
                yield
            finally:
                self._lock.release()
            return
        t0 = time.monotonic()
        self._lock.acquire(self.config.lock_timeout_s)
        t1 = time.monotonic()
        try:
            yield
        finally:
            self.section.close()
            t2 = time.monotonic()  # before the release: recorded intervals never overlap
            self._lock.release()
            if self.keep_stats:
                self.stats["lock_wait"].append(t1 - t0)
                self.stats["lock_held"].append(t2 - t1)
                self.stats["lock_at"].append(t1)  # system-wide clock: merged across processes

    # ---------------------------------------------------------------------- small files
    def read_state(self) -> dict:
        """The running counters: trained (trainings committed), flops, top (K best ever)."""
        return self.counters.read()

    def read_next_id(self) -> int:
        """The next id hint (claims in ids/ make allocation safe even when it is stale)."""
        return self.ids.read_next()

    def events(self) -> list[dict]:
        return read_events(self.root)

    def read_control(self) -> Control:
        """The run-control knobs; defaults (with a warning) if control.json is unreadable."""
        d = load_json_or_none(os.path.join(self.root, CONTROL_FILE))
        if d is None:
            return Control(mutations_per_child=self.config.mutations_per_child)
        return Control.from_dict(d)

    def _write_control(self, ctl: Control) -> None:
        ctl.updated_at = time.time()
        atomic_write_json(os.path.join(self.root, CONTROL_FILE), ctl.to_dict())

    # ---------------------------------------------------------------------- paths
    def alive_path(self, i: int) -> str:
        return os.path.join(self._alive, str(i))

    def dead_path(self, i: int) -> str:
        return os.path.join(self._dead, shard(i), str(i))

    def _list_pending(self) -> list[int]:
        return list_ids(self._pending)

    def _list_inflight(self) -> list[tuple[int, str, str]]:
        return inflight_entries(self._inflight)

    def _ensure_shard(self, base: str, i: int) -> str:
        s = shard(i)
        d = os.path.join(base, s)
        key = base + "/" + s
        if key not in self._known_shards:
            os.makedirs(d, exist_ok=True)
            self._known_shards.add(key)
        return d
