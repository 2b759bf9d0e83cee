"""The records of the format: a trained child's fitness record and the task records of work
(``task.json``: seeds, retrains, and a task rebuilt from a finished child's fitness record)."""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING

from evo.base.hashing import dna_hash
from evo.population.layout import FORMAT_VERSION, TASK_FILE, is_num, load_json_or_none, new_token

if TYPE_CHECKING:
    from evo.population.config import Config
    from evo.population.leases import Task

__all__ = ["fitness_record", "retrain_task", "seed_task", "task_from_record"]


def seed_task(i: int, config: "Config", now: float) -> dict:
    """The ``task.json`` of seed ``i``."""
    return {"format_version": FORMAT_VERSION, "kind": "seed", "id": i, "parent_id": None,
            "task_uid": new_token(), "mutations": 0, "dna": config.seed_dna, "parent_dna": None,
            "generation": 0, "born_at": now, "attempts": 0, "failures": 0}


def retrain_task(i: int, parent_id: int | None, generation: int, now: float) -> dict:
    """The ``task.json`` that sends individual ``i`` back for training from scratch with its own DNA
    (a weight reset, or an individual whose record or weights were lost)."""
    return {"format_version": FORMAT_VERSION, "kind": "retrain", "id": i, "parent_id": parent_id,
            "task_uid": new_token(), "mutations": 0, "dna": None, "parent_dna": None,
            "generation": generation, "born_at": now, "attempts": 0, "failures": 0}


def task_from_record(rec: dict) -> dict:
    """The task record of a finished child, rebuilt from its fitness record (its task record was
    lost): same unit of work (``task_uid``), kind, parent, mutations and generation."""
    mutations = list(rec.get("mutations") or [])
    return {"format_version": FORMAT_VERSION, "kind": rec.get("kind") or "child", "id": rec.get("id"),
            "parent_id": rec.get("parent_id"), "task_uid": rec.get("task_uid"), "mutations": len(mutations),
            "dna": None, "parent_dna": None, "generation": rec.get("generation", 0),
            "born_at": rec.get("born_at"), "attempts": max(0, int(rec.get("attempts") or 1) - 1),
            "failures": 0, "mutations_applied": mutations, "rebuilt_from": "fitness.json"}


def fitness_record(task: "Task", dna: dict, fitness: dict | float) -> dict:
    """The fitness record of a trained child: what the worker measured (``fitness``: the record,
    or the accuracy alone) plus ids, times, worker, Slurm ids, DNA hash and generation."""
    if is_num(fitness):
        fitness = {"fitness": float(fitness)}  # type: ignore[arg-type]
    if not isinstance(fitness, dict):
        raise TypeError("fitness must be a dict (the fitness record) or a number")
    rec = dict(fitness)
    outcome = rec.get("outcome") or "ok"
    f = rec.get("fitness")
    if outcome == "ok" and not is_num(f):
        raise ValueError(f"outcome 'ok' needs a finite numeric 'fitness', got {f!r}; "
                         f"commit a failed training with outcome='nan_loss' (or another reason)")
    if outcome != "ok" and f is not None and not is_num(f):
        rec["fitness"] = None
    for k in ("flops", "params", "steps_trained"):
        if k in rec and rec[k] is not None and not is_num(rec[k]):
            raise ValueError(f"fitness record field {k!r} must be a number, got {rec[k]!r}")
    tj = load_json_or_none(os.path.join(task.lease.path, TASK_FILE), warn=False) or {}
    w = task.lease.worker
    rec.update({
        "format_version": FORMAT_VERSION,
        "id": task.child_id,
        "parent_id": task.parent_id,
        "kind": task.base_kind,
        "outcome": outcome,
        "fitness": float(rec["fitness"]) if is_num(rec.get("fitness")) else None,
        "reason": rec.get("reason"),
        "steps_trained": rec.get("steps_trained"),
        "flops": float(rec.get("flops") or 0.0),
        "params": rec.get("params"),
        "mutations": list(rec.get("mutations") or task.mutations_applied
                          or tj.get("mutations_applied") or []),
        "born_at": task.born_at,
        "finished_at": time.time(),
        "worker": w.id,
        "host": w.host,
        "pid": w.pid,
        "slurm_job_id": w.slurm_job_id,
        "slurm_array_job_id": w.slurm_array_job_id,
        "slurm_array_task_id": w.slurm_array_task_id,
        "dna_hash": dna_hash(dna),
        "generation": task.generation,
        "attempts": task.attempt + 1,
        "task_uid": task.task_uid,
    })
    return rec
