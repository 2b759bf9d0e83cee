"""The running counters ``state.json``: trainings committed, their FLOPs, the K best ever.

Updated at each commit under the lock, rewritten in place with one ``pwrite`` (padded with
spaces to the old length, so that it never shrinks): replacing it would create and free a file
on every commit.  Not fsynced: the counters are derived data; the directories, which are
fsynced, are the truth, and :func:`recount` rebuilds the counters from them (``evo fsck
--repair``, or a reader that finds the file torn).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from typing import Callable, Iterator

from evo.base.files import atomic_write_json, listdir_quiet, padded, pwrite_all
from evo.population.config import Config, default_state
from evo.population.layout import (
    ALIVE,
    DEAD,
    FITNESS_FILE,
    IDS,
    INFLIGHT,
    PENDING,
    QUARANTINE,
    STATE_FILE,
    TASK_FILE,
    dumps,
    is_num,
    load_json_or_none,
    warn,
)

__all__ = ["Counters", "recount"]


class Counters:
    """``state.json`` of the population at ``root``."""

    def __init__(self, root: str, config: Config) -> None:
        self.root = root
        self.config = config
        self.path = os.path.join(root, STATE_FILE)

    def read(self) -> dict:
        """The running counters: trained (trainings committed), flops, top (K best ever)."""
        d = load_json_or_none(self.path, warn=False)
        if d is None:  # read while being rewritten in place (a reader without the lock): again
            time.sleep(0.001)
            d = load_json_or_none(self.path)
        if d is None or not isinstance(d.get("trained"), int):
            warn(f"{self.path} is missing or unreadable; rebuilding the counters by a full scan (slow, once)")
            d = recount(self.root, self.config)
            d.pop("next_id", None)
            with contextlib.suppress(OSError):
                atomic_write_json(self.path, d)
        return d

    def update(self, change: Callable[[dict], None]) -> None:
        """Under the lock: read state.json, apply ``change``, rewrite it in place, through one
        descriptor.  Never fatal: a write that fails leaves counters that ``evo fsck --repair``
        recounts."""
        try:
            fd = os.open(self.path, os.O_RDWR)
        except OSError:
            fd = -1
        try:
            st = None
            if fd >= 0:
                raw = b""
                while True:
                    chunk = os.pread(fd, 1 << 16, len(raw))
                    raw += chunk
                    if len(chunk) < 1 << 16:
                        break
                with contextlib.suppress(ValueError):
                    st = json.loads(raw)
            if not isinstance(st, dict) or not isinstance(st.get("trained"), int):
                # missing, torn or foreign: the careful path (warns, recounts, replaces the file)
                st = self.read()
                change(st)
                self.write(st)
                return
            change(st)
            st["updated_at"] = time.time()
            pwrite_all(fd, padded(dumps(st), len(raw)))
        except OSError:
            pass
        finally:
            if fd >= 0:
                os.close(fd)

    def count_training(self, cid: int, rec: dict) -> list[int]:
        """Under the lock: count the training of ``cid`` (its fitness record ``rec``); returns the
        ids pushed out of the top K by it (their checkpoints may go)."""
        pushed: list[int] = []
        K = self.config.keep_top
        ok = rec.get("outcome") == "ok" and is_num(rec.get("fitness"))

        def count(st: dict) -> None:
            st["trained"] = st.get("trained", 0) + 1
            st["flops"] = float(st.get("flops", 0.0)) + float(rec.get("flops") or 0.0)
            if K and ok:
                top = [e for e in st.get("top", []) if e[1] != cid]
                top.append([float(rec["fitness"]), cid])
                top.sort(key=lambda e: (-e[0], e[1]))
                pushed[:] = [e[1] for e in top[K:]]
                st["top"] = top[:K]

        self.update(count)
        return pushed

    def write(self, st: dict) -> None:
        """Rewrite state.json in place (one ``pwrite``, padded to the old length)."""
        st["updated_at"] = time.time()
        data = dumps(st)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o666)
        try:
            pwrite_all(fd, padded(data, os.fstat(fd).st_size))
        finally:
            os.close(fd)

    def top(self) -> list:
        """The K best (fitness, id) ever (``keep_checkpoints = "top:K"``)."""
        return (load_json_or_none(self.path, warn=False) or {}).get("top", [])


def records_in(d: str, current_uid: str | None) -> Iterator[dict]:
    """Fitness records of past trainings stored in an individual / work directory."""
    for n in listdir_quiet(d):
        if n == FITNESS_FILE or (n.startswith("fitness.g") and n.endswith(".json")):
            rec = load_json_or_none(os.path.join(d, n), warn=False)
            if rec is None:
                continue
            if current_uid is not None and n == FITNESS_FILE and rec.get("task_uid") == current_uid:
                continue  # completed but not yet finalized: not counted yet
            yield rec


def _quarantined_records(root: str) -> Iterator[dict]:
    """The readable fitness records inside quarantine/ (an individual's directory, or a record
    moved aside alone)."""
    qdir = os.path.join(root, QUARANTINE)
    for entry in listdir_quiet(qdir):
        e = os.path.join(qdir, entry)
        yield from records_in(e, None)
        for n in listdir_quiet(e):
            if n.isdigit() and os.path.isdir(os.path.join(e, n)):
                yield from records_in(os.path.join(e, n), None)


def recount(root: str, config: Config) -> dict:
    """The counters (and the next id) recomputed from every fitness record and id claim."""
    st = default_state()
    trained = 0
    flops = 0.0
    top: list[list] = []
    max_id = 0
    dirs: list[tuple[str, str | None]] = []
    for n in listdir_quiet(os.path.join(root, ALIVE)):
        if n.isdigit():
            dirs.append((os.path.join(root, ALIVE, n), None))
            max_id = max(max_id, int(n))
    for s in listdir_quiet(os.path.join(root, DEAD)):
        for n in listdir_quiet(os.path.join(root, DEAD, s)):
            if n.isdigit():
                dirs.append((os.path.join(root, DEAD, s, n), None))
                max_id = max(max_id, int(n))
    for sub in (PENDING, INFLIGHT):
        for n in listdir_quiet(os.path.join(root, sub)):
            a = n.partition(".")[0]
            if a.isdigit():
                d = os.path.join(root, sub, n)
                tj = load_json_or_none(os.path.join(d, TASK_FILE), warn=False) or {}
                dirs.append((d, tj.get("task_uid") or "?"))
                max_id = max(max_id, int(a))
    for s in listdir_quiet(os.path.join(root, IDS)):
        for n in listdir_quiet(os.path.join(root, IDS, s)):
            if n.isdigit():
                max_id = max(max_id, int(n))
    for d, uid in dirs:
        for rec in records_in(d, uid):
            trained += 1
            flops += float(rec.get("flops") or 0.0)
            if rec.get("outcome") == "ok" and is_num(rec.get("fitness")) and os.path.basename(d).isdigit() \
                    and os.path.dirname(os.path.dirname(d)) != os.path.join(root, PENDING):
                top.append([float(rec["fitness"]), int(os.path.basename(d))])
    for rec in _quarantined_records(root):  # trainings set aside still were trainings
        trained += 1
        flops += float(rec.get("flops") or 0.0)
    st.update(next_id=max_id + 1, trained=trained, flops=flops)
    K = config.keep_top
    if K:
        best: dict[int, float] = {}
        for f, i in top:
            best[i] = max(f, best.get(i, -math.inf))
        st["top"] = sorted(([f, i] for i, f in best.items()), key=lambda e: (-e[0], e[1]))[:K]
    return st
