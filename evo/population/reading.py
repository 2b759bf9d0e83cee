"""Reading a population without the lock: counts and knobs (``evo status``), leases, and the
committed individuals (cheap and safe on a live population)."""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from typing import Iterator

from evo.base.files import listdir_quiet
from evo.population.directory import PopulationDir
from evo.population.quarantine import quarantined
from evo.population.layout import (
    CHECKPOINT_FILE,
    DEATH_FILE,
    DNA_FILE,
    FITNESS_FILE,
    LEASE_FILE,
    RESUME_FILE,
    TASK_FILE,
    is_num,
    list_ids,
    load_json,
    load_json_or_none,
)

__all__ = ["Individual", "Reading"]


@dataclass
class Individual:
    """A committed individual: ``record`` is its fitness record (``fitness.json``, None when it
    could not be read) and :attr:`fitness` its validation accuracy."""

    id: int
    status: str  # alive | dead
    path: str
    record: dict | None

    @property
    def fitness(self) -> float | None:
        """The validation accuracy, or None (a failed training, or no readable record)."""
        f = (self.record or {}).get("fitness")
        return float(f) if is_num(f) else None

    def dna(self) -> dict:
        return load_json(os.path.join(self.path, DNA_FILE))

    @property
    def checkpoint(self) -> str | None:
        p = os.path.join(self.path, CHECKPOINT_FILE)
        return p if os.path.exists(p) else None

    @property
    def death(self) -> dict | None:
        return load_json_or_none(os.path.join(self.path, DEATH_FILE), warn=False)


class Reading(PopulationDir):
    """The lock-free reading API of a population."""

    def status(self) -> dict:
        """Counts and knobs; lock-free and cheap (dead individuals are counted by listing)."""
        st = load_json_or_none(self.counters.path) or {}
        alive = list_ids(self._alive)
        dead = 0
        with contextlib.suppress(FileNotFoundError):
            for s in os.listdir(self._dead):
                with contextlib.suppress(OSError):
                    dead += sum(1 for n in os.listdir(os.path.join(self._dead, s)) if n.isdigit())
        leases = self.leases()
        best = None
        for i in alive:
            rec = load_json_or_none(os.path.join(self.alive_path(i), FITNESS_FILE), warn=False)
            if rec and is_num(rec.get("fitness")) and (best is None or rec["fitness"] > best["fitness"]):
                best = {"id": i, "fitness": rec["fitness"]}
        c = self.config
        return {
            "root": self.root, "format_version": c.format_version, "strategy": c.strategy,
            "population_size": c.population_size, "alive": len(alive), "dead": dead,
            "pending": len(list_ids(self._pending)), "inflight": len(leases),
            "expired_leases": sum(1 for x in leases if x["expired"]),
            "trained": st.get("trained"), "flops": st.get("flops"), "next_id": self.read_next_id(),
            "budget": {"max_individuals": c.max_individuals, "max_flops": c.max_flops},
            "control": self.read_control().to_dict(), "lock": self.lock_kind,
            "lock_reason": self.lock_reason, "best_alive": best,
            "quarantined": len(quarantined(self.root)),
        }

    def leases(self) -> list[dict]:
        """Active leases (in-flight children), with ``expired`` flags."""
        now = time.time()
        out = []
        for cid, tok, d in sorted(self._list_inflight()):
            lease = load_json_or_none(os.path.join(d, LEASE_FILE), warn=False) or {}
            tj = load_json_or_none(os.path.join(d, TASK_FILE), warn=False) or {}
            exp = self._lease_expiry(tok, d)
            w = lease.get("worker") or tj.get("worker") or {}
            out.append({
                "id": cid, "token": tok, "path": d, "kind": tj.get("kind"), "parent_id": tj.get("parent_id"),
                "attempt": tj.get("attempts", 0), "worker": w.get("id"), "host": w.get("host"),
                "pid": w.get("pid"), "slurm_job_id": w.get("slurm_job_id"),
                "slurm_array_job_id": w.get("slurm_array_job_id"),
                "slurm_array_task_id": w.get("slurm_array_task_id"),
                "heartbeat_at": lease.get("heartbeat_at"), "expires_at": exp,
                "expired": exp is not None and now > exp,
                "has_checkpoint": os.path.exists(os.path.join(d, RESUME_FILE)),
            })
        return out

    def _lease_expiry(self, tok: str, d: str) -> float | None:
        """When the lease of in-flight directory ``d`` (token ``tok``) expires: its lease.json's
        expiry, else the directory's change time plus ``lease_ttl_s``."""
        lease = load_json_or_none(os.path.join(d, LEASE_FILE))
        if lease is not None and lease.get("token") == tok and is_num(lease.get("expires_at")):
            return float(lease["expires_at"])
        try:
            st = os.stat(d)
        except OSError:
            return None
        return max(st.st_mtime, st.st_ctime) + self.config.lease_ttl_s

    def individuals(self, *, alive: bool = True, dead: bool = True,
                    with_fitness: bool = True) -> Iterator[Individual]:
        """Every committed individual (alive first, then dead by id).  Torn records are skipped
        with a warning."""
        if alive:
            for i in sorted(list_ids(self._alive)):
                p = self.alive_path(i)
                rec = load_json_or_none(os.path.join(p, FITNESS_FILE)) if with_fitness else None
                if with_fitness and rec is None:
                    continue
                yield Individual(i, "alive", p, rec)
        if dead:
            shards = sorted(int(s) for s in listdir_quiet(self._dead) if s.isdigit())
            for s in shards:
                sd = os.path.join(self._dead, str(s))
                for i in sorted(list_ids(sd)):
                    p = os.path.join(sd, str(i))
                    rec = load_json_or_none(os.path.join(p, FITNESS_FILE)) if with_fitness else None
                    if with_fitness and rec is None:
                        continue
                    yield Individual(i, "dead", p, rec)

    def individual(self, i: int) -> Individual | None:
        for status, p in (("alive", self.alive_path(i)), ("dead", self.dead_path(i))):
            if os.path.isdir(p):
                return Individual(i, status, p, load_json_or_none(os.path.join(p, FITNESS_FILE)))
        return None
