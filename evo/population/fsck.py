"""``evo fsck``: check every invariant of the population directory (docs/format.md,
"Invariants"), and with ``--repair`` fix what can be fixed without ever deleting a completed
individual."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

from evo.base.files import atomic_write_json, is_tmp_name, listdir_quiet, read_bytes, rmtree_quiet, unlink_quiet
from evo.population.config import Control
from evo.population.counters import recount
from evo.population.events import read_events
from evo.population.layout import (
    ALIVE, CONTROL_FILE, DEAD, DEATH_FILE, DNA_FILE, EVENTS_FILE, FITNESS_FILE, FORMAT_VERSION, IDS, INFLIGHT,
    LEASE_FILE, NEXT_ID_FILE, PARENT_CHECKPOINT_FILE, PENDING, QUARANTINE, RESUME_FILE, SOFT_LOCK_FILE, STATE_FILE,
    SUBDIRS, TASK_FILE, TMP, CorruptFileError, StoreWarning, is_num, load_json, load_json_or_none, new_token, shard,
)
from evo.population.locks import SoftLock
from evo.population.protocol import Population

__all__ = ["FsckReport", "Problem", "fsck"]


@dataclass
class Problem:
    code: str
    path: str
    message: str
    severity: str = "error"  # error | warning | info
    repaired: bool = False

    def __str__(self) -> str:
        tag = "repaired" if self.repaired else self.severity
        return f"[{tag}] {self.code}: {self.path}: {self.message}"


@dataclass
class FsckReport:
    root: str
    problems: list[Problem] = field(default_factory=list)
    counts: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """No unrepaired error (warnings and info may remain)."""
        return not any(p.severity == "error" and not p.repaired for p in self.problems)

    @property
    def clean(self) -> bool:
        """Nothing found at all, except info notes."""
        return not any(p.severity != "info" for p in self.problems)

    def add(self, *a: Any, **k: Any) -> Problem:
        p = Problem(*a, **k)
        self.problems.append(p)
        return p

    def summary(self) -> str:
        lines = [str(p) for p in self.problems if p.severity != "info" or p.repaired]
        head = (f"{self.root}: {'OK' if self.ok else 'PROBLEMS'} -- "
                + ", ".join(f"{k} {v}" for k, v in self.counts.items()))
        return "\n".join([head] + lines)

    __str__ = summary  # what `evo fsck` prints

    def to_dict(self) -> dict:
        return {"root": self.root, "ok": self.ok, "clean": self.clean, "counts": self.counts,
                "problems": [dataclasses.asdict(p) for p in self.problems]}


def fsck(root: str, repair: bool = False) -> FsckReport:
    """Check every invariant of the format; with ``repair=True`` fix what can be fixed (stale
    locks, expired leases, orphaned temporaries, torn files quarantined, missing events and
    claims, counters) without ever deleting a completed individual."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", StoreWarning)
        return _fsck(root, repair)


def _quarantine(root: str, path: str) -> str:
    rel = os.path.relpath(path, root).replace(os.sep, "__")
    q = os.path.join(root, QUARANTINE, f"{int(time.time())}-{new_token()}-{rel}")
    os.makedirs(os.path.dirname(q), exist_ok=True)
    os.rename(path, q)
    return q


def _fsck(root: str, repair: bool) -> FsckReport:
    root = os.path.abspath(root)
    rep = FsckReport(root)
    pop = Population.open(root)
    cfg = pop.config
    now = time.time()
    pop_events: list[dict] = []

    for d in SUBDIRS:
        p = os.path.join(root, d)
        if not os.path.isdir(p):
            pr = rep.add("missing-dir", p, "directory of the format is missing")
            if repair:
                os.makedirs(p, exist_ok=True)
                pr.repaired = True

    # control.json
    cpath = os.path.join(root, CONTROL_FILE)
    try:
        cd = load_json(cpath)
        if not isinstance(cd.get("mutations_per_child"), int):
            raise CorruptFileError("mutations_per_child missing")
    except (FileNotFoundError, CorruptFileError) as e:
        pr = rep.add("control", cpath, f"unreadable ({e})")
        if repair:
            gens = [ev.get("generation", 0) for ev in read_events(root, warn=False) if ev.get("event") == "reset"]
            ctl = Control(mutations_per_child=cfg.mutations_per_child,
                          reset_generation=max(gens, default=0), epoch=len(gens) + 1)
            if os.path.exists(cpath):
                _quarantine(root, cpath)
            pop._write_control(ctl)
            pr.repaired = True

    # locks
    soft = SoftLock(os.path.join(root, SOFT_LOCK_FILE), cfg.lock_ttl_s)
    if os.path.exists(soft.path) and soft.is_stale():
        pr = rep.add("stale-lock", soft.path, f"soft lock without heartbeat for > {cfg.lock_ttl_s} s "
                                              f"(held by {soft.holder()})")
        if repair and soft.break_stale():
            pr.repaired = True
    for n in listdir_quiet(root):
        if n.startswith(SOFT_LOCK_FILE + ".broken-"):
            p = os.path.join(root, n)
            pr = rep.add("stale-lock", p, "left over from breaking a stale lock", severity="warning")
            if repair:
                unlink_quiet(p)
                pr.repaired = True
        elif n.startswith(".") and ".creating-" in n:
            pass

    # individuals
    ids: dict[int, list[str]] = {}
    alive_ids: set[int] = set()
    dead_ids: set[int] = set()

    def check_tmp_files(d: str) -> None:
        for n in listdir_quiet(d):
            if is_tmp_name(n):
                p = os.path.join(d, n)
                pr = rep.add("orphan-tmp", p, "temporary file left by an interrupted write", severity="warning")
                if repair:
                    unlink_quiet(p)
                    pr.repaired = True

    def check_individual(d: str, i: int, where: str) -> bool:
        """True if the individual is complete."""
        check_tmp_files(d)
        good = True
        dna_p = os.path.join(d, DNA_FILE)
        fit_p = os.path.join(d, FITNESS_FILE)
        dna_ok = True
        try:
            load_json(dna_p)
        except (FileNotFoundError, CorruptFileError) as e:
            dna_ok = good = False
            pr = rep.add("dna", dna_p, f"{where} individual {i} has no valid DNA ({type(e).__name__})")
            if repair and os.path.exists(dna_p):
                _quarantine(root, dna_p)
                pr.message += "; torn file quarantined"
        try:
            rec = load_json(fit_p)
            if rec.get("id") != i:
                good = False
                rep.add("fitness-id", fit_p, f"record id {rec.get('id')} != directory id {i}")
            elif where == "alive" and not (rec.get("outcome") == "ok" and is_num(rec.get("fitness"))):
                good = False
                rep.add("fitness", fit_p, "alive individual without outcome ok and a numeric fitness")
        except (FileNotFoundError, CorruptFileError) as e:
            good = False
            pr = rep.add("fitness", fit_p, f"{where} individual {i} has no valid fitness ({type(e).__name__})")
            if repair:
                if os.path.exists(fit_p):
                    _quarantine(root, fit_p)
                if where == "alive" and dna_ok:
                    # not a completed individual: retrain it from its DNA
                    atomic_write_json(os.path.join(d, TASK_FILE), {
                        "format_version": FORMAT_VERSION, "kind": "retrain", "id": i, "parent_id": None,
                        "task_uid": new_token(), "mutations": 0, "dna": None, "parent_dna": None,
                        "generation": pop.read_control().reset_generation, "born_at": now,
                        "attempts": 0, "failures": 0})
                    os.rename(d, os.path.join(root, PENDING, str(i)))
                    pr.message += "; queued for retraining from its DNA"
                    pr.repaired = True
                    return False
                pr.message += "; torn file quarantined (the record cannot be rebuilt)"
        if where == "alive" and not dna_ok and repair:
            q = _quarantine(root, d)
            rep.add("quarantined", q, f"alive individual {i} without DNA moved to quarantine",
                    severity="warning", repaired=True)
            return False
        for n in (LEASE_FILE, TASK_FILE, PARENT_CHECKPOINT_FILE, RESUME_FILE):
            p = os.path.join(d, n)
            if os.path.exists(p):
                pr = rep.add("leftover", p, "work file left in a committed individual", severity="warning")
                if repair:
                    unlink_quiet(p)
                    pr.repaired = True
        return good

    for n in listdir_quiet(os.path.join(root, ALIVE)):
        p = os.path.join(root, ALIVE, n)
        if not n.isdigit():
            if is_tmp_name(n):
                continue
            rep.add("stray", p, "unexpected entry in alive/", severity="warning")
            continue
        i = int(n)
        if check_individual(p, i, "alive") or not repair or os.path.isdir(p):
            if os.path.isdir(p):
                ids.setdefault(i, []).append(p)
                alive_ids.add(i)
    for s in listdir_quiet(os.path.join(root, DEAD)):
        sd = os.path.join(root, DEAD, s)
        if not s.isdigit():
            rep.add("stray", sd, "unexpected entry in dead/", severity="warning")
            continue
        for n in listdir_quiet(sd):
            p = os.path.join(sd, n)
            if not n.isdigit():
                if not is_tmp_name(n):
                    rep.add("stray", p, "unexpected entry in a dead shard", severity="warning")
                continue
            i = int(n)
            if shard(i) != s:
                rep.add("shard", p, f"individual {i} belongs in shard {shard(i)}")
            check_individual(p, i, "dead")
            ids.setdefault(i, []).append(p)
            dead_ids.add(i)

    # pending
    for n in listdir_quiet(os.path.join(root, PENDING)):
        p = os.path.join(root, PENDING, n)
        if not n.isdigit():
            rep.add("stray", p, "unexpected entry in pending/", severity="warning")
            continue
        i = int(n)
        check_tmp_files(p)
        try:
            load_json(os.path.join(p, TASK_FILE))
        except (FileNotFoundError, CorruptFileError) as e:
            pr = rep.add("task", os.path.join(p, TASK_FILE), f"pending work {i} has no valid task ({type(e).__name__})")
            if repair:
                if load_json_or_none(os.path.join(p, DNA_FILE), warn=False) is not None:
                    atomic_write_json(os.path.join(p, TASK_FILE), {
                        "format_version": FORMAT_VERSION, "kind": "retrain", "id": i, "parent_id": None,
                        "task_uid": new_token(), "mutations": 0, "dna": None, "parent_dna": None,
                        "generation": pop.read_control().reset_generation, "born_at": now,
                        "attempts": 0, "failures": 0})
                    pr.message += "; rewritten as a retrain of its DNA"
                else:
                    q = _quarantine(root, p)
                    pr.message += f"; moved to {q}"
                    pr.repaired = True
                    continue
                pr.repaired = True
        ids.setdefault(i, []).append(p)

    # inflight
    for n in listdir_quiet(os.path.join(root, INFLIGHT)):
        p = os.path.join(root, INFLIGHT, n)
        a, dot, tok = n.partition(".")
        if not (dot and a.isdigit() and tok):
            rep.add("stray", p, "unexpected entry in inflight/", severity="warning")
            continue
        i = int(a)
        ids.setdefault(i, []).append(p)
        exp = pop._lease_expiry(tok, p)
        if exp is not None and now > exp:
            pr = rep.add("expired-lease", p, f"lease expired {now - exp:.0f} s ago")
            if repair:
                post: list[Callable[[], None]] = []
                with pop.locked():
                    ok = pop._recover_one(i, tok, p, now - exp, post)
                for fn in post:
                    with contextlib.suppress(OSError):
                        fn()
                if ok:
                    pr.repaired = True
                    ids[i].remove(p)
                    for where in (pop.alive_path(i), pop.dead_path(i), os.path.join(root, PENDING, str(i))):
                        if os.path.isdir(where):
                            ids[i].append(where)
                            if where == pop.alive_path(i):
                                alive_ids.add(i)
                            elif where == pop.dead_path(i):
                                dead_ids.add(i)
                            break

    # tmp/
    ttl = cfg.lease_ttl_s
    for n in listdir_quiet(os.path.join(root, TMP)):
        p = os.path.join(root, TMP, n)
        try:
            age = now - os.lstat(p).st_mtime
        except OSError:
            continue
        if age > ttl:
            pr = rep.add("orphan-tmp", p, f"temporary left by an interrupted step ({age:.0f} s old)",
                         severity="warning")
            if repair:
                if os.path.isdir(p):
                    rmtree_quiet(p)
                else:
                    unlink_quiet(p)
                pr.repaired = True
    check_tmp_files(root)

    # id uniqueness and claims
    for i, places in sorted(ids.items()):
        if len(places) > 1:
            rep.add("duplicate-id", places[0], f"id {i} appears {len(places)} times: {places}")
        claim = os.path.join(root, IDS, shard(i), str(i))
        if not os.path.exists(claim):
            pr = rep.add("claim", claim, f"id {i} has no claim file", severity="warning")
            if repair:
                os.makedirs(os.path.dirname(claim), exist_ok=True)
                open(claim, "ab").close()
                pr.repaired = True

    # event log
    epath = os.path.join(root, EVENTS_FILE)
    deaths: dict[int, int] = {}
    births: dict[int, int] = {}
    torn_middle = 0
    try:
        raw = read_bytes(epath)
    except FileNotFoundError:
        raw = b""
        rep.add("events", epath, "event log missing")
    lines = raw.split(b"\n")
    lastn = len(lines) - 1
    while lastn >= 0 and not lines[lastn].strip():
        lastn -= 1
    for k, line in enumerate(lines[: lastn + 1]):
        if not line.strip():
            continue
        try:
            ev = json.loads(line)
            if not isinstance(ev, dict):
                raise ValueError
        except (ValueError, UnicodeDecodeError):
            if k == lastn:
                pr = rep.add("events-torn-tail", epath, "last line is torn", severity="warning")
                if repair:
                    pr.repaired = True  # the next append starts on a fresh line
            else:
                torn_middle += 1
            continue
        i = ev.get("id")
        if isinstance(i, int):
            if ev.get("event") == "death":
                deaths[i] = deaths.get(i, 0) + 1
            elif ev.get("event") == "birth":
                births[i] = births.get(i, 0) + 1
    if torn_middle:
        rep.add("events-torn", epath, f"{torn_middle} torn line(s) in the middle of the log (skipped by readers)",
                severity="warning")
    for i, c in sorted(deaths.items()):
        if c > 1:
            rep.add("killed-twice", epath, f"individual {i} has {c} death events")
        if i in alive_ids:
            rep.add("death-alive", pop.alive_path(i), f"individual {i} is alive but has a death event")
    for i in sorted(dead_ids):
        if deaths.get(i, 0) == 0:
            pr = rep.add("events-missing", pop.dead_path(i), f"dead individual {i} has no death event",
                         severity="warning")
            if repair:
                death = load_json_or_none(os.path.join(pop.dead_path(i), DEATH_FILE), warn=False) or {}
                pop_events.append({"event": "death", "id": i, "cause": death.get("cause", "unknown"),
                                   "by": death.get("killed_by"), "repaired": True})
                pr.repaired = True
    for i in sorted(alive_ids | dead_ids):
        if births.get(i, 0) == 0:
            p = pop.alive_path(i) if i in alive_ids else pop.dead_path(i)
            pr = rep.add("events-missing", p, f"individual {i} has no birth event", severity="warning")
            if repair:
                rec = load_json_or_none(os.path.join(p, FITNESS_FILE), warn=False) or {}
                pop_events.append({"event": "birth", "id": i, "parent": rec.get("parent_id"),
                                   "kind": rec.get("kind"), "fitness": rec.get("fitness"),
                                   "outcome": rec.get("outcome"), "flops": rec.get("flops"),
                                   "repaired": True})
                pr.repaired = True
    if pop_events:
        pop.log.append(pop_events)

    # counters
    spath = os.path.join(root, STATE_FILE)
    want = recount(root, cfg)
    have = load_json_or_none(spath, warn=False)
    if have is None:
        pr = rep.add("state", spath, "counters file missing or torn")
        if repair:
            atomic_write_json(spath, {k: v for k, v in want.items() if k != "next_id"})
            pr.repaired = True
    else:
        diffs = []
        if have.get("trained") != want["trained"]:
            diffs.append(f"trained {have.get('trained')} != {want['trained']}")
        if not math.isclose(float(have.get("flops") or 0.0), want["flops"], rel_tol=1e-9, abs_tol=1e-6):
            diffs.append(f"flops {have.get('flops')} != {want['flops']}")
        if cfg.keep_top and have.get("top") != want.get("top"):
            diffs.append("top-K list differs")
        if diffs:
            pr = rep.add("counters", spath, "; ".join(diffs) + " (lost updates or a crash mid-commit)",
                         severity="warning")
            if repair:
                atomic_write_json(spath, {k: v for k, v in want.items() if k != "next_id"})
                pr.repaired = True
    if pop.read_next_id() < want["next_id"]:
        pr = rep.add("next-id", os.path.join(root, NEXT_ID_FILE),
                     f"next id hint {pop.read_next_id()} < {want['next_id']}", severity="warning")
        if repair:
            pop.ids.write_next(want["next_id"])
            pr.repaired = True

    rep.counts = {
        "alive": len(alive_ids), "dead": len(dead_ids),
        "pending": len(listdir_quiet(os.path.join(root, PENDING))),
        "inflight": len(listdir_quiet(os.path.join(root, INFLIGHT))),
        "trained": want["trained"],
    }
    return rep
