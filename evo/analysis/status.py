"""What ``evo status`` reports: the state of a run, its counts and rates, its workers, its warnings.

Read-only and lock-free, like the rest of :mod:`evo.analysis`: the run state (running, paused,
stopped, finished, idle) and the budgets come from control.json, state.json and the history; the
workers from the leases of the children in flight (with the Slurm job each runs in); the warnings
from what a user should act on: expired leases, a stale soft lock, torn files, stalled progress, a
population directory (or its ``logs/``) that workers cannot write into.
"""

from __future__ import annotations

import os
import time
import warnings
from typing import Any

from evo.analysis.history import History, listdir
from evo.analysis.loading import history_of
from evo.analysis.records import integer, number
from evo.base.slurm import slurm_job_id
from evo.population import Population
from evo.population.grow import grow_progress
from evo.population.layout import SOFT_LOCK_FILE
from evo.population.quarantine import quarantined

__all__ = ["status", "format_duration"]


def _over(p: Any) -> bool:
    """Whether the population says its run is over (Population.finished), warnings silenced."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return p.finished() is not None
        except OSError:
            return False


def status(pop: str | os.PathLike | History, now: float | None = None) -> dict[str, Any]:
    """Everything ``evo status`` prints, as a JSON-ready dict.

    Counts (alive, in flight, pending, dead, trained), births per hour (``last_hour``: the
    individuals committed in the last hour; ``overall``: the mean rate since the start), the
    best individual, FLOPs spent, budgets, the workers that hold a lease (with Slurm job ids
    and last heartbeat), strategy, knobs and control, the state of the run (``running``,
    ``paused``, ``stopped``, ``finished``, ``idle``) and warnings: expired leases, a stale
    soft lock, torn files, stalled progress, a population directory workers cannot write.
    """
    h = history_of(pop)
    now = time.time() if now is None else now
    cfg = h.config
    root = h.root
    out_warn: list[str] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p = Population.open(root, lock="none")
        leases = p.leases()
    workers = []
    for ls in leases:
        job = slurm_job_id(ls.get("slurm_job_id"), ls.get("slurm_array_job_id"), ls.get("slurm_array_task_id"))
        hb = ls.get("heartbeat_at")
        workers.append({
            "worker": ls.get("worker"), "host": ls.get("host"), "pid": ls.get("pid"), "slurm_job": job,
            "child": ls.get("id"), "kind": ls.get("kind"), "parent": ls.get("parent_id"),
            "attempt": ls.get("attempt"), "heartbeat_at": hb,
            "heartbeat_age_s": None if not number(hb) else max(0.0, now - hb),
            "expired": bool(ls.get("expired")),
        })
        if ls.get("expired"):
            exp = ls.get("expires_at")
            ago = f" {now - exp:.0f} s ago" if number(exp) else ""
            out_warn.append(f"stale lease: child {ls.get('id')} of worker {ls.get('worker')} expired{ago} "
                            f"(the worker died; any worker recovers it, or run `evo fsck --repair {root}`)")
    # locks
    soft = os.path.join(root, SOFT_LOCK_FILE)
    try:
        age = now - os.stat(soft).st_mtime
        if age > cfg.lock_ttl_s:
            out_warn.append(f"stale lock: {soft} has had no heartbeat for {age:.0f} s "
                            f"(> lock_ttl_s {cfg.lock_ttl_s:g}); workers will break it, or run `evo fsck --repair`")
    except OSError:
        pass
    for n in listdir(root):
        if n.startswith(SOFT_LOCK_FILE + ".broken-"):
            out_warn.append(f"leftover of a broken lock: {os.path.join(root, n)} (`evo fsck --repair` removes it)")
    # a directory the workers cannot write into (read-only mount, permissions)
    logs = os.path.join(root, "logs")
    if not os.access(root, os.W_OK):
        out_warn.append(f"{root} is not writable from here (read-only or no permission): workers cannot run "
                        f"in it; mount it read-write on every node")
    elif os.path.isdir(logs) and not os.access(logs, os.W_OK):
        out_warn.append(f"{logs} is not writable from here: a Slurm job whose output file (-o) is there never "
                        f"starts (JobLaunchFailure, exit code 0:53, no output anywhere); make it writable")
    # what the population set aside (kept in quarantine/, with why)
    aside = quarantined(root)
    if aside:
        first = "; ".join(f"{why.get('origin', '?')}: {why.get('reason', 'no note')}" for _, why in aside[:3])
        out_warn.append(f"{len(aside)} in quarantine/ ({first}{'; ...' if len(aside) > 3 else ''}); they are kept: "
                        f"`evo fsck {root}` lists them, docs/format.md says how to get one back")
    # torn files and other problems found while loading
    for w in h.warnings:
        out_warn.append(f"torn or unreadable file: {w}" if "torn" in w or "corrupt" in w else w)

    ctl = h.control
    st = h.state
    trained = integer(st.get("trained"))
    if trained is None:
        trained = len(h)
    flops = h.total_flops()
    budget_reason = None
    next_id = max([r.id + 1 for r in h.individuals[-1:]] + [1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if hasattr(p, "read_next_id"):
            next_id = max(next_id, p.read_next_id())
    if cfg.max_individuals is not None and next_id > cfg.max_individuals:
        budget_reason = f"budget of {cfg.max_individuals} individuals reached"
    if cfg.max_flops is not None and flops >= cfg.max_flops:
        budget_reason = f"budget of {cfg.max_flops:g} FLOPs reached"
    busy = h.counts["inflight"] + h.counts["pending"]
    grow = grow_progress(root, cfg) if cfg.strategy == "grow" else None
    if grow is not None and grow["finished"] and not budget_reason:
        budget_reason = f"the grow run is over after generation {grow['generation']}"
    if ctl.get("stopped"):
        run_state = "stopped"
    elif budget_reason and (busy == 0 or _over(p)):  # pending work past a FLOPs budget is left undone
        run_state = "finished"
    elif ctl.get("paused"):
        run_state = "paused"
    elif h.counts["inflight"]:
        run_state = "running"
    else:
        run_state = "idle"

    births = [r.finished_at for r in h.individuals if r.finished_at is not None]
    last_birth = max(births) if births else None
    durations = sorted(r.finished_at - r.born_at for r in h.individuals[-200:]
                       if r.finished_at is not None and r.born_at is not None and r.finished_at >= r.born_at)
    typical = durations[len(durations) // 2] if durations else 0.0
    stall_after = max(float(cfg.lease_ttl_s), 5.0 * typical)
    if run_state in ("running", "idle") and not (budget_reason and busy == 0):
        since = now - (last_birth if last_birth is not None else (cfg.created_at or now))
        if since > stall_after:
            out_warn.append(f"stalled: no individual committed for {format_duration(since)} (a child usually "
                            f"takes {format_duration(typical)}); check that workers are running")
        if run_state == "idle" and not budget_reason:
            out_warn.append("no worker holds a lease: no worker seems to be running "
                            f"(start some: evo worker {root}, or sbatch slurm/worker.sbatch {root})")

    end = last_birth if run_state == "finished" and last_birth else now  # a finished run's clock stopped
    best = h.best()
    best_alive = h.best(alive_only=True)
    seeds = [r.fitness for r in h.individuals if r.kind == "seed" and r.fitness is not None]
    by_worker: dict[str, float] = {}
    for r in h.individuals:
        if r.worker and r.finished_at is not None:
            by_worker[r.worker] = max(by_worker.get(r.worker, 0.0), r.finished_at)
    return {
        "popdir": root,
        "state": run_state,
        "budget_reason": budget_reason,
        "counts": {"alive": h.counts["alive"], "inflight": h.counts["inflight"], "pending": h.counts["pending"],
                   "dead": h.counts["dead"], "trained": trained, "committed": len(h),
                   "failed": sum(1 for r in h.individuals if r.fitness is None), "quarantined": len(aside)},
        "births_per_hour": {"last_hour": sum(1 for t in births if now - 3600.0 <= t <= now),
                            "overall": round(h.birth_rate(float("inf"), end), 3) if births else 0.0},
        "best": None if best is None else {"id": best.id, "fitness": best.fitness, "alive": best.alive,
                                           "params": best.params, "depth": best.depth},
        "best_alive": None if best_alive is None else {"id": best_alive.id, "fitness": best_alive.fitness},
        "best_seed_fitness": max(seeds) if seeds else None,
        "flops": flops,
        "budget": {"max_individuals": cfg.max_individuals, "max_flops": cfg.max_flops},
        "started_at": h.t0 if h.individuals else cfg.created_at,
        "created_at": cfg.created_at,
        "elapsed_s": (end - h.t0) if h.individuals else 0.0,
        "last_birth_at": last_birth,
        "last_birth_age_s": None if last_birth is None else now - last_birth,
        "workers": workers,
        "recent_workers": len([w for w, t in by_worker.items() if now - t < 3600.0]),
        "strategy": cfg.strategy,
        "grow": grow,
        "knobs": {"population_size": cfg.population_size, "sample_size": cfg.sample_size,
                  "steps_per_child": cfg.steps_per_child, "mutations_per_child": ctl.get("mutations_per_child",
                                                                                          cfg.mutations_per_child),
                  "inheritance": cfg.inheritance, "keep_checkpoints": cfg.keep_checkpoints, "lock": cfg.lock,
                  "lock_detected": cfg.lock_detected, "dataset": cfg.dataset, "lease_ttl_s": cfg.lease_ttl_s},
        "control": {k: ctl.get(k) for k in ("paused", "stopped", "mutations_per_child", "reset_generation", "epoch")},
        "warnings": out_warn,
        "load_s": round(h.load_s, 3),
    }


def format_duration(s: float) -> str:
    """A duration in seconds as "42 s", "7 min", "3.5 h" or "2.1 days"."""
    s = float(s)
    if s < 120:
        return f"{s:.0f} s"
    if s < 7200:
        return f"{s / 60:.0f} min"
    if s < 172800:
        return f"{s / 3600:.1f} h"
    return f"{s / 86400:.1f} days"
