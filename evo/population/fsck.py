"""``evo fsck``: check every invariant of the population directory (docs/format.md,
"Invariants": one method of :class:`_Fsck` each), and with ``--repair`` fix what can be fixed.

A repair never deletes a trained individual: what it cannot use goes to ``quarantine/``
(:mod:`evo.population.quarantine`), an individual whose record or weights are lost is retrained
from its DNA with its lineage kept, and a dead individual's lost record is rebuilt from its birth
event.  One repair converges: a second ``fsck`` exits 0 unless a problem needs a person, and then
its message says which file and why.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
import warnings
import zipfile
from dataclasses import dataclass, field
from typing import Any, Callable

from evo.base.files import atomic_write_json, is_tmp_name, listdir_quiet, parse_jsonl, read_bytes
from evo.base.files import rmtree_quiet, unlink_quiet
from evo.base.hashing import dna_hash
from evo.population.config import Control
from evo.population.counters import recount
from evo.population.layout import (
    ALIVE, CHECKPOINT_FILE, CONTROL_FILE, DEAD, DEATH_FILE, DNA_FILE, EVENTS_FILE, FITNESS_FILE, FORMAT_VERSION,
    IDS, INFLIGHT, NEXT_ID_FILE, PENDING, SOFT_LOCK_FILE, STATE_FILE, SUBDIRS, TASK_FILE, TMP, WORK_FILES,
    CorruptFileError, StoreWarning, is_num, load_json, load_json_or_none, shard,
)
from evo.population.locks import SoftLock
from evo.population.protocol import Population
from evo.population.quarantine import quarantine, quarantined
from evo.population.records import retrain_task, task_from_record
from evo.population.recovery import finished_record, run_post

__all__ = ["FsckReport", "Problem", "checkpoint_problem", "fsck"]

#: the end of a message about a problem that a repair cannot decide
PERSON = "needs a person: "


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
        """Nothing found at all, except info notes (such as what quarantine/ holds)."""
        return not any(p.severity != "info" for p in self.problems)

    def add(self, *a: Any, **k: Any) -> Problem:
        p = Problem(*a, **k)
        self.problems.append(p)
        return p

    def summary(self) -> str:
        head = (f"{self.root}: {'OK' if self.ok else 'PROBLEMS'} -- "
                + ", ".join(f"{k} {v}" for k, v in self.counts.items()))
        return "\n".join([head] + [str(p) for p in self.problems])

    __str__ = summary  # what `evo fsck` prints

    def to_dict(self) -> dict:
        return {"root": self.root, "ok": self.ok, "clean": self.clean, "counts": self.counts,
                "problems": [dataclasses.asdict(p) for p in self.problems]}


def fsck(root: str, repair: bool = False, *,
         check_checkpoint: Callable[[str, dict], Any] | None = None) -> FsckReport:
    """Check every invariant of the format; with ``repair=True`` fix what can be fixed.

    ``check_checkpoint(path, dna)``: also load each living individual's checkpoint and check that
    it fits its DNA (it raises to say it does not; this package has no torch, so without it a
    checkpoint is checked as a file: a zip container that is whole)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", StoreWarning)
        return _Fsck(os.path.abspath(root), repair, check_checkpoint).run()


def checkpoint_problem(path: str) -> str | None:
    """What is wrong with the checkpoint file ``path`` seen as a file (no torch): empty, or a zip
    container (what ``torch.save`` writes) that is cut short; None if nothing is."""
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError as e:
        return f"cannot be read ({e.strerror})"
    if size == 0:
        return "empty"
    if head != b"PK\x03\x04":
        return None  # another format (torch's legacy pickle): checked only with check_checkpoint
    try:
        with zipfile.ZipFile(path) as z:
            for info in z.infolist():
                if info.header_offset + 30 + len(info.filename) + info.compress_size > size:
                    return f"truncated: its member {info.filename} ends past the end of the file"
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
        return f"not a whole zip container ({e}): truncated or torn"
    return None


class _Fsck:
    """One run of fsck over the population at ``root``."""

    def __init__(self, root: str, repair: bool, check_checkpoint: Callable[[str, dict], Any] | None):
        self.root = root
        self.repair = repair
        self.check_checkpoint = check_checkpoint
        self.rep = FsckReport(root)
        self.pop = Population.open(root)
        self.cfg = self.pop.config
        self.now = time.time()
        self.places: dict[int, list[str]] = {}
        self.alive_ids: set[int] = set()
        self.dead_ids: set[int] = set()
        self.new_events: list[dict] = []
        self.births: dict[int, dict] = {}  # the last birth event of each id (to rebuild records)
        self.space: Any = None

    def run(self) -> FsckReport:
        """The invariants of docs/format.md (one method each; a stale lock is broken first)."""
        log = self.read_log()
        self.layout()
        self.leftovers()
        self.individuals()
        self.work()
        self.ids()
        self.events(log)
        if self.new_events:
            self.pop.log.append(self.new_events)
        self.counters()
        self.list_quarantine()
        self.rep.counts = {
            "alive": len(self.alive_ids), "dead": len(self.dead_ids),
            "pending": len(listdir_quiet(os.path.join(self.root, PENDING))),
            "inflight": len(listdir_quiet(os.path.join(self.root, INFLIGHT))),
            "trained": self.rep.counts.get("trained", 0), "quarantined": len(quarantined(self.root)),
        }
        return self.rep

    # ---------------------------------------------------------------------- helpers
    def _aside(self, path: str, reason: str, i: int | None = None) -> str:
        """Move ``path`` into quarantine/ (repair only), saying so in the event log."""
        entry = quarantine(self.root, path, reason, i=i)
        self.new_events.append({"event": "quarantine", "id": i, "path": os.path.relpath(entry, self.root),
                                "origin": os.path.relpath(path, self.root), "reason": reason, "repaired": True})
        return entry

    def _genome_problem(self, dna: dict) -> str | None:
        if self.space is None:
            try:
                from evo.genome import space_of

                self.space = space_of(self.cfg)
            except Exception as e:  # noqa: BLE001 -- a space this version does not know
                self.space = False
                self.rep.add("genome", os.path.join(self.root, "config.json"),
                             f"cannot check genomes: {e}", severity="warning")
        if not self.space:
            return None
        try:
            self.space.from_dict(dna)
        except Exception as e:  # noqa: BLE001 -- whatever the space's reader raises
            return f"{type(e).__name__}: {e}"
        return None

    def _retrain(self, d: str, i: int, parent_id: int | None, pr: Problem, what: str) -> None:
        """Send alive individual ``i`` back for training from its DNA (its lineage kept)."""
        dst = os.path.join(self.root, PENDING, str(i))
        if os.path.lexists(dst):
            pr.message += f"; {PERSON}{dst} exists too (keep one of the two)"
            return
        gen = self.pop.read_control().reset_generation
        atomic_write_json(os.path.join(d, TASK_FILE), retrain_task(i, parent_id, gen, self.now))
        os.rename(d, dst)
        self.alive_ids.discard(i)
        self.places[i] = [dst if p == d else p for p in self.places.get(i, [])]
        pr.message += f"; queued for retraining from its DNA ({what} quarantined)"
        pr.repaired = True

    # ---------------------------------------------------------------------- 1. layout
    def layout(self) -> None:
        """1. The directories of the format exist, ``control.json`` is readable, and the
        directories of individuals and work hold only what the format names."""
        self._directories()
        self._control()

    def _directories(self) -> None:
        for d in SUBDIRS:
            p = os.path.join(self.root, d)
            if not os.path.isdir(p):
                pr = self.rep.add("missing-dir", p, "a directory of the format is missing")
                if self.repair:
                    os.makedirs(p, exist_ok=True)
                    pr.repaired = True
        strays = []
        for sub in (ALIVE, PENDING):
            strays += [os.path.join(self.root, sub, n) for n in listdir_quiet(os.path.join(self.root, sub))
                       if not n.isdigit() and not is_tmp_name(n)]
        for n in listdir_quiet(os.path.join(self.root, INFLIGHT)):
            a, dot, tok = n.partition(".")
            if not (dot and a.isdigit() and tok and os.path.isdir(os.path.join(self.root, INFLIGHT, n))):
                strays.append(os.path.join(self.root, INFLIGHT, n))
        for s in listdir_quiet(os.path.join(self.root, DEAD)):
            sd = os.path.join(self.root, DEAD, s)
            if not s.isdigit():
                strays.append(sd)
                continue
            strays += [os.path.join(sd, n) for n in listdir_quiet(sd) if not n.isdigit() and not is_tmp_name(n)]
        for p in strays:
            pr = self.rep.add("stray", p, "an entry the format does not name (it upsets the counts of the "
                                          "population)")
            if self.repair:
                pr.message += f"; moved to {self._aside(p, 'an entry the format does not name')}"
                pr.repaired = True

    def _control(self) -> None:
        cpath = os.path.join(self.root, CONTROL_FILE)
        try:
            cd = load_json(cpath)
            if not isinstance(cd.get("mutations_per_child"), int):
                raise CorruptFileError("mutations_per_child missing")
        except (FileNotFoundError, CorruptFileError) as e:
            pr = self.rep.add("control", cpath, f"unreadable ({e})")
            if self.repair:
                gens = [ev.get("generation", 0) for ev in _events(self.root) if ev.get("event") == "reset"]
                ctl = Control(mutations_per_child=self.cfg.mutations_per_child,
                              reset_generation=max(gens, default=0), epoch=len(gens) + 1)
                if os.path.exists(cpath):
                    self._aside(cpath, "control.json was unreadable; rewritten from the event log")
                self.pop._write_control(ctl)
                pr.repaired = True

    # ---------------------------------------------------------------------- 2. individuals
    def individuals(self) -> None:
        """2. Every individual in alive/ and dead/ has a valid dna.json and fitness.json of its
        id; a living one a genome of the population's space, ``outcome: ok`` with a numeric
        fitness, and a checkpoint that loads (work files and temporaries inside individuals: 6)."""
        for n in sorted(listdir_quiet(os.path.join(self.root, ALIVE)), key=lambda x: (len(x), x)):
            if n.isdigit():
                self._alive(int(n), os.path.join(self.root, ALIVE, n))
        for s in sorted(listdir_quiet(os.path.join(self.root, DEAD))):
            if not s.isdigit():
                continue
            for n in sorted(listdir_quiet(os.path.join(self.root, DEAD, s))):
                if n.isdigit():
                    self._dead(int(n), os.path.join(self.root, DEAD, s, n), s)

    def _alive(self, i: int, d: str) -> None:
        self._work_files(d)
        dna_p, fit_p = os.path.join(d, DNA_FILE), os.path.join(d, FITNESS_FILE)
        try:
            dna = load_json(dna_p)
            bad_dna = self._genome_problem(dna)
        except (FileNotFoundError, CorruptFileError) as e:
            dna, bad_dna = None, f"no valid dna.json ({type(e).__name__})"
        rec = load_json_or_none(fit_p, warn=False)
        code = "dna"
        if not bad_dna and rec is not None and rec.get("id") != i:
            code, bad_dna = "fitness-id", f"record id {rec.get('id')} != directory id {i}"
        if bad_dna:
            pr = self.rep.add(code, dna_p if code == "dna" else fit_p, f"living individual {i} cannot be used: {bad_dna}")
            if self.repair:
                pr.message += f"; moved to {self._aside(d, f'alive individual {i}: {bad_dna}', i)}"
                pr.repaired = True
                return
            self.alive_ids.add(i)
            self.places.setdefault(i, []).append(d)
            return
        self.alive_ids.add(i)
        self.places.setdefault(i, []).append(d)
        if rec is None or rec.get("outcome") != "ok" or not is_num(rec.get("fitness")):
            what = "no valid fitness.json" if rec is None else \
                f"its record has outcome {rec.get('outcome')!r} and fitness {rec.get('fitness')!r}"
            pr = self.rep.add("fitness", fit_p, f"living individual {i}: {what}")
            if self.repair:
                parent = rec.get("parent_id") if rec is not None else self.births.get(i, {}).get("parent")
                if os.path.exists(fit_p):
                    self._aside(fit_p, f"the record of living individual {i}: {what}", i)
                self._retrain(d, i, parent, pr, "the record")
            return
        ck = os.path.join(d, CHECKPOINT_FILE)
        if os.path.exists(ck):
            bad = checkpoint_problem(ck)
            if bad is None and self.check_checkpoint is not None:
                try:
                    self.check_checkpoint(ck, dna)
                except Exception as e:  # noqa: BLE001 -- the checker's own error says why
                    bad = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            if bad:
                pr = self.rep.add("checkpoint", ck, f"living individual {i}'s weights cannot be used ({bad}); "
                                                    f"its children would start from fresh weights")
                if self.repair:
                    self._aside(ck, f"the weights of living individual {i}: {bad}", i)
                    self._retrain(d, i, rec.get("parent_id"), pr, "the file")

    def _dead(self, i: int, d: str, s: str) -> None:
        self._work_files(d)
        if shard(i) != s:
            right = os.path.join(self.root, DEAD, shard(i), str(i))
            pr = self.rep.add("shard", d, f"individual {i} belongs in {right}")
            if self.repair and not os.path.exists(right):
                os.makedirs(os.path.dirname(right), exist_ok=True)
                os.rename(d, right)
                d, pr.repaired = right, True
            elif self.repair:
                pr.message += f"; {PERSON}{right} exists too: keep one of the two"
        dna_p, fit_p = os.path.join(d, DNA_FILE), os.path.join(d, FITNESS_FILE)
        try:
            load_json(dna_p)
        except (FileNotFoundError, CorruptFileError) as e:
            pr = self.rep.add("dna", dna_p, f"dead individual {i} has no valid DNA ({type(e).__name__})")
            if self.repair:
                pr.message += f"; moved to {self._aside(d, f'dead individual {i} without a valid DNA', i)}"
                pr.repaired = True
                return
        self.dead_ids.add(i)
        self.places.setdefault(i, []).append(d)
        try:
            rec = load_json(fit_p)
            if not isinstance(rec.get("id"), int):
                raise CorruptFileError(f"{fit_p}: a record without its id")
        except (FileNotFoundError, CorruptFileError) as e:
            pr = self.rep.add("fitness", fit_p, f"dead individual {i} has no valid record ({type(e).__name__})")
            if self.repair:
                if os.path.exists(fit_p):
                    self._aside(fit_p, f"the torn record of dead individual {i}", i)
                atomic_write_json(fit_p, self._lost_record(i, d))
                pr.message += "; rebuilt from its birth event (outcome: lost), the torn one quarantined"
                pr.repaired = True
            return
        if rec.get("id") != i:
            what = f"record id {rec.get('id')} != directory id {i}"
            pr = self.rep.add("fitness-id", fit_p, what)
            if self.repair:
                self.dead_ids.discard(i)
                self.places[i].remove(d)
                pr.message += f"; moved to {self._aside(d, f'dead individual {i}: {what}', i)}"
                pr.repaired = True

    def _lost_record(self, i: int, d: str) -> dict:
        """The fitness record of dead individual ``i`` whose own was lost: what its birth event says."""
        ev = self.births.get(i, {})
        dna = load_json_or_none(os.path.join(d, DNA_FILE), warn=False)
        return {"format_version": FORMAT_VERSION, "id": i, "parent_id": ev.get("parent"), "kind": ev.get("kind"),
                "outcome": "lost", "fitness": None, "flops": float(ev.get("flops") or 0.0),
                "generation": ev.get("generation", 0), "reason": "the record was torn; rebuilt by evo fsck --repair "
                "from the birth event (the torn file is in quarantine/)", "mutations": [],
                "dna_hash": dna_hash(dna) if dna is not None else None, "task_uid": None, "rebuilt": True}

    def _work_files(self, d: str) -> None:
        """No temporaries and no work files are left in a committed individual."""
        self._tmp_files(d)
        for n in WORK_FILES:
            p = os.path.join(d, n)
            if os.path.exists(p):
                pr = self.rep.add("leftover", p, "work file left in a committed individual", severity="warning")
                if self.repair:
                    unlink_quiet(p)
                    pr.repaired = True

    def _tmp_files(self, d: str) -> None:
        for n in listdir_quiet(d):
            if is_tmp_name(n):
                p = os.path.join(d, n)
                pr = self.rep.add("orphan-tmp", p, "temporary file left by an interrupted write", severity="warning")
                if self.repair:
                    unlink_quiet(p)
                    pr.repaired = True

    # ---------------------------------------------------------------------- 3. work
    def work(self) -> None:
        """3. Every pending/ directory has a readable task.json (finished work: its fitness.json);
        no lease in inflight/ has expired."""
        for n in listdir_quiet(os.path.join(self.root, PENDING)):
            if not n.isdigit():
                continue
            i, p = int(n), os.path.join(self.root, PENDING, n)
            self._tmp_files(p)
            try:
                load_json(os.path.join(p, TASK_FILE))
            except (FileNotFoundError, CorruptFileError) as e:
                pr = self.rep.add("task", os.path.join(p, TASK_FILE),
                                  f"pending work {i} has no valid task ({type(e).__name__})")
                if self.repair:
                    rec = finished_record(p, None)
                    if rec is not None:  # finished: a worker commits it as it is
                        atomic_write_json(os.path.join(p, TASK_FILE), task_from_record(rec))
                        pr.message += "; rebuilt from its fitness record (it is finished)"
                    else:
                        pr.message += f"; moved to {self._aside(p, f'pending work {i} without a valid task', i)}"
                        pr.repaired = True
                        continue
                    pr.repaired = True
            if p not in self.places.setdefault(i, []):  # (an individual fsck sent back for retraining is there)
                self.places[i].append(p)
        for n in listdir_quiet(os.path.join(self.root, INFLIGHT)):
            a, dot, tok = n.partition(".")
            p = os.path.join(self.root, INFLIGHT, n)
            if not (dot and a.isdigit() and tok and os.path.isdir(p)):
                continue
            i = int(a)
            self.places.setdefault(i, []).append(p)
            exp = self.pop._lease_expiry(tok, p)
            if exp is None or self.now <= exp:
                continue
            pr = self.rep.add("expired-lease", p, f"lease expired {self.now - exp:.0f} s ago")
            if self.repair:
                post: list[Callable[[], None]] = []
                with self.pop.locked():
                    ok = self.pop._recover_one(i, tok, p, self.now - exp, post)
                run_post(post)
                if ok:
                    pr.repaired = True
                    self.places[i].remove(p)
                    for where in (self.pop.alive_path(i), self.pop.dead_path(i), os.path.join(self.root, PENDING, n)):
                        if os.path.isdir(where):
                            self.places[i].append(where)
                            (self.alive_ids if where == self.pop.alive_path(i) else
                             self.dead_ids if where == self.pop.dead_path(i) else set()).add(i)
                            break

    # ---------------------------------------------------------------------- 6. leftovers
    def leftovers(self) -> None:
        """6. No stale soft lock, no orphaned temporary (work files in individuals: see 2)."""
        self._locks()
        self._temporaries()

    def _locks(self) -> None:
        """No stale soft lock, and nothing left from breaking one."""
        soft = SoftLock(os.path.join(self.root, SOFT_LOCK_FILE), self.cfg.lock_ttl_s)
        if os.path.exists(soft.path) and soft.is_stale():
            pr = self.rep.add("stale-lock", soft.path, f"soft lock without heartbeat for > {self.cfg.lock_ttl_s} s "
                                                       f"(held by {soft.holder()})")
            if self.repair and soft.break_stale():
                pr.repaired = True
        for n in listdir_quiet(self.root):
            if n.startswith(SOFT_LOCK_FILE + ".broken-"):
                p = os.path.join(self.root, n)
                pr = self.rep.add("stale-lock", p, "left over from breaking a stale lock", severity="warning")
                if self.repair:
                    unlink_quiet(p)
                    pr.repaired = True

    def _temporaries(self) -> None:
        """No orphaned temporary: in tmp/ older than a lease (younger ones may be a running step's)."""
        for n in listdir_quiet(os.path.join(self.root, TMP)):
            p = os.path.join(self.root, TMP, n)
            try:
                age = self.now - os.lstat(p).st_mtime
            except OSError:
                continue
            if age > self.cfg.lease_ttl_s:
                pr = self.rep.add("orphan-tmp", p, f"temporary left by an interrupted step ({age:.0f} s old)",
                                  severity="warning")
                if self.repair:
                    rmtree_quiet(p) if os.path.isdir(p) else unlink_quiet(p)
                    pr.repaired = True
        self._tmp_files(self.root)

    # ---------------------------------------------------------------------- 4. ids
    def ids(self) -> None:
        """4. Ids are unique across alive/, dead/, pending/ and inflight/, and each has its claim."""
        for i, places in sorted(self.places.items()):
            if len(places) > 1:
                self.rep.add("duplicate-id", places[0], f"id {i} is at {len(places)} places: {places}; {PERSON}"
                             f"keep the one that is right and move the others into quarantine/")
            claim = os.path.join(self.root, IDS, shard(i), str(i))
            if not os.path.exists(claim):
                pr = self.rep.add("claim", claim, f"id {i} has no claim file", severity="warning")
                if self.repair:
                    os.makedirs(os.path.dirname(claim), exist_ok=True)
                    open(claim, "ab").close()
                    pr.repaired = True

    # ---------------------------------------------------------------------- 5. events
    def read_log(self) -> Any:
        try:
            parsed = parse_jsonl(read_bytes(os.path.join(self.root, EVENTS_FILE)))
        except FileNotFoundError:
            self.rep.add("events", os.path.join(self.root, EVENTS_FILE), "event log missing")
            return None
        for ev in parsed.records:
            if ev.get("event") == "birth" and isinstance(ev.get("id"), int):
                self.births[ev["id"]] = ev
        return parsed

    def events(self, parsed: Any) -> None:
        """5. The event log agrees with the directories: every individual has a birth event, every
        dead one a death event, no living one a death event."""
        epath = os.path.join(self.root, EVENTS_FILE)
        if parsed is None:
            return
        if parsed.torn_tail:
            pr = self.rep.add("events-torn-tail", epath, "last line is torn", severity="warning")
            if self.repair:
                pr.repaired = True  # the next append starts on a fresh line
        if parsed.bad_lines:
            self.rep.add("events-torn", epath, f"{len(parsed.bad_lines)} torn line(s) in the middle of the log "
                                               f"(skipped by readers)", severity="warning")
        deaths: dict[int, int] = {}
        for ev in parsed.records:
            if ev.get("event") == "death" and isinstance(ev.get("id"), int):
                deaths[ev["id"]] = deaths.get(ev["id"], 0) + 1
        for i, c in sorted(deaths.items()):
            if c > 1:
                self.rep.add("killed-twice", epath, f"individual {i} has {c} death events (the directories are "
                                                    f"the truth)", severity="warning")
            if i in self.alive_ids:
                self.rep.add("death-alive", self.pop.alive_path(i), f"individual {i} is alive but has a death "
                                                                     f"event (the directories are the truth)",
                             severity="warning")
        for i in sorted(self.dead_ids):
            if deaths.get(i, 0) == 0:
                pr = self.rep.add("events-missing", self.pop.dead_path(i), f"dead individual {i} has no death event",
                                  severity="warning")
                if self.repair:
                    death = load_json_or_none(os.path.join(self.pop.dead_path(i), DEATH_FILE), warn=False) or {}
                    self.new_events.append({"event": "death", "id": i, "cause": death.get("cause", "unknown"),
                                            "by": death.get("killed_by"), "repaired": True})
                    pr.repaired = True
        for i in sorted(self.alive_ids | self.dead_ids):
            if i not in self.births:
                p = self.pop.alive_path(i) if i in self.alive_ids else self.pop.dead_path(i)
                pr = self.rep.add("events-missing", p, f"individual {i} has no birth event", severity="warning")
                if self.repair:
                    rec = load_json_or_none(os.path.join(p, FITNESS_FILE), warn=False) or {}
                    self.new_events.append({"event": "birth", "id": i, "parent": rec.get("parent_id"),
                                            "kind": rec.get("kind"), "fitness": rec.get("fitness"),
                                            "outcome": rec.get("outcome"), "flops": rec.get("flops"),
                                            "repaired": True})
                    pr.repaired = True

    # ---------------------------------------------------------------------- 7. counters
    def counters(self) -> None:
        """7. ``state.json`` equals the counters recomputed from every fitness record; ``next_id``
        is above every id."""
        spath = os.path.join(self.root, STATE_FILE)
        want = recount(self.root, self.cfg)
        self.rep.counts["trained"] = want["trained"]
        have = load_json_or_none(spath, warn=False)
        state = {k: v for k, v in want.items() if k != "next_id"}
        if have is None:
            pr = self.rep.add("state", spath, "counters file missing or torn")
            if self.repair:
                atomic_write_json(spath, state)
                pr.repaired = True
        else:
            diffs = []
            if have.get("trained") != want["trained"]:
                diffs.append(f"trained {have.get('trained')} != {want['trained']}")
            if not math.isclose(float(have.get("flops") or 0.0), want["flops"], rel_tol=1e-9, abs_tol=1e-6):
                diffs.append(f"flops {have.get('flops')} != {want['flops']}")
            if self.cfg.keep_top and have.get("top") != want.get("top"):
                diffs.append("top-K list differs")
            if diffs:
                pr = self.rep.add("counters", spath, "; ".join(diffs) + " (lost updates or a crash mid-commit)",
                                  severity="warning")
                if self.repair:
                    atomic_write_json(spath, state)
                    pr.repaired = True
        hint = self.pop.read_next_id()
        if hint < want["next_id"]:
            pr = self.rep.add("next-id", os.path.join(self.root, NEXT_ID_FILE),
                              f"next id hint {hint} < {want['next_id']}", severity="warning")
            if self.repair:
                self.pop.ids.write_next(want["next_id"])
                pr.repaired = True

    # ---------------------------------------------------------------------- quarantine
    def list_quarantine(self) -> None:
        """What quarantine/ holds, with why (kept for a person; see docs/format.md)."""
        for path, why in quarantined(self.root):
            self.rep.add("quarantined", path, f"{why.get('origin', '?')}: {why.get('reason', 'no note')}",
                         severity="info")


def _events(root: str) -> list[dict]:
    try:
        return parse_jsonl(read_bytes(os.path.join(root, EVENTS_FILE))).records
    except OSError:
        return []
