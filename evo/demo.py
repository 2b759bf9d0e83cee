"""``evo demo``: a small evolution on the embedded synthetic data set, with local workers.

It shows the whole method in a few minutes on a laptop: a population of trivial seed
individuals (global pooling + linear classifier, at chance on this task) evolves
convolutional networks that classify well, through tournament selection, mutation and
weight inheritance, with worker processes that share nothing but the directory.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

from evo.population import Population

__all__ = ["DEMO_CONFIG", "run_demo"]

#: The demo's experiment: small enough for 2 CPU cores in a few minutes.
DEMO_CONFIG = {
    "dataset": "synthetic",
    "population_size": 10,
    "strategy": "tournament",
    "steps_per_child": 150,
    "max_individuals": 200,
    "lock": "auto",
    "keep_checkpoints": "top:5",
    "lease_ttl_s": 120.0,
    "heartbeat_s": 10.0,
    "checkpoint_every_s": 60.0,
}


def _workers_default() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def _snapshot(pop: Population) -> dict:
    best = None
    seed_best = None
    born = 0
    for ind in pop.individuals():
        rec = ind.record or {}
        f = rec.get("fitness")
        born += 1
        if not isinstance(f, (int, float)):
            continue
        if best is None or f > best[1]:
            best = (ind.id, f, rec.get("depth"), rec.get("params"))
        if rec.get("parent_id") is None and (seed_best is None or f > seed_best):
            seed_best = f
    st = pop.status()
    return {"born": born, "alive": st["alive"], "inflight": st["inflight"], "best": best, "seed_best": seed_best}


def run_demo(directory: str | Path, *, workers: int | None = None, overrides: dict | None = None,
             echo: Callable[[str], None] = print, interval_s: float = 3.0) -> dict:
    """Create (or continue) the demo population in ``directory``, evolve it to its budget with
    local worker processes, then report.  Returns a summary dict."""
    directory = Path(directory).resolve()
    workers = workers or _workers_default()
    if (directory / "config.json").exists():
        pop = Population.open(str(directory))
        echo(f"continuing the demo population in {directory}")
    else:
        pop = Population.create(str(directory), {**DEMO_CONFIG, **(overrides or {})})
        echo(f"created a demo population in {directory}")
    c = pop.config
    echo(f"  data set {c.dataset}, P={c.population_size}, {c.strategy} selection, {c.steps_per_child} "
         f"SGD steps per child, budget {c.max_individuals} individuals, {workers} local workers")

    env = dict(os.environ)
    threads = max(1, _workers_default() // workers)
    env.setdefault("OMP_NUM_THREADS", str(threads))
    env.setdefault("MKL_NUM_THREADS", str(threads))
    logs = directory / "logs"
    logs.mkdir(exist_ok=True)
    procs: list[subprocess.Popen] = []
    t0 = time.time()
    try:
        for k in range(workers):
            log = open(logs / f"demo-worker-{k}.log", "ab")
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "evo", "worker", str(directory), "--worker-id", f"demo-{k}"],
                stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True))
            log.close()
        last = ""
        while any(p.poll() is None for p in procs):
            time.sleep(interval_s)
            s = _snapshot(pop)
            best = s["best"]
            line = (f"[{time.time() - t0:5.0f}s] born {s['born']:4d}/{c.max_individuals}  alive {s['alive']:3d}  "
                    f"training {s['inflight']}  best val acc "
                    + (f"{best[1]:.3f} (id {best[0]}, {best[2]} convs, {best[3]} params)" if best else "-")
                    + (f"  seeds {s['seed_best']:.3f}" if s["seed_best"] is not None else ""))
            if line[8:] != last:
                echo(line)
                last = line[8:]
    except KeyboardInterrupt:
        echo("interrupted: asking the workers to hand their children back (run `evo demo` again to continue)")
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            p.wait(timeout=60)
        raise
    codes = [p.returncode for p in procs]
    if any(code not in (0, 3) for code in codes):
        raise RuntimeError(f"a demo worker failed (exit codes {codes}); see {logs}/demo-worker-*.log")
    s = _snapshot(pop)
    return {"directory": str(directory), "wall_s": time.time() - t0, **s}
