"""Per-child overhead of the worker: everything that is not training or evaluation.

Runs one worker in-process on a fresh population and times, for every child:

* ``next_task``: the selection step (lock, kill, reserve with a lease);
* ``lease -> training``: from the lease to the first training step (load the parent's DNA and
  weights, mutate, build the model, inherit weights, record the child's DNA);
* ``training -> committed``: from the end of training to the commit (cost accounting, copying the
  weights off the device, writing checkpoint + fitness with fsync, the atomic rename, the event).

Training itself is replaced by a 1-step run so that the numbers are the overhead alone.

    python benchmarks/child_overhead.py [--children 60] [--population 20] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

import evo.worker.loop as worker_mod  # noqa: E402
from evo.population import Population  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--children", type=int, default=60)
    ap.add_argument("--population", type=int, default=20)
    ap.add_argument("--image-size", type=int, default=32)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    timings: dict[str, list[float]] = {"next_task": [], "lease_to_training": [], "training_to_commit": []}
    marks: dict[str, float] = {}
    real_train = worker_mod.train
    real_next = Population.next_task
    real_commit = Population.commit

    def timed_next(self, *a, **k):
        t = time.perf_counter()
        out = real_next(self, *a, **k)
        if out:
            timings["next_task"].append(time.perf_counter() - t)
            marks["leased"] = time.perf_counter()
        return out

    def timed_train(model, dataset, lr, config, **k):
        timings["lease_to_training"].append(time.perf_counter() - marks["leased"])
        config.steps = 1
        out = real_train(model, dataset, lr, config, **k)
        marks["trained"] = time.perf_counter()
        return out

    def timed_commit(self, *a, **k):
        out = real_commit(self, *a, **k)
        timings["training_to_commit"].append(time.perf_counter() - marks["trained"])
        return out

    worker_mod.train = timed_train
    Population.next_task = timed_next
    Population.commit = timed_commit
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "pop"
        Population.create(str(root), dataset="synthetic",
                          dataset_kwargs={"n_train": 2000, "n_val": 500, "n_test": 500,
                                          "image_size": args.image_size},
                          population_size=args.population, steps_per_child=1,
                          max_individuals=args.children, lock="flock")
        t0 = time.perf_counter()
        worker_mod.run_worker(str(root), handle_signals=False, progress=lambda m: None, device="cpu")
        wall = time.perf_counter() - t0

    rows = []
    for name, xs in timings.items():
        xs = sorted(xs)
        rows.append({"phase": name, "n": len(xs), "median_ms": 1000 * statistics.median(xs),
                     "p90_ms": 1000 * xs[int(0.9 * (len(xs) - 1))], "max_ms": 1000 * xs[-1]})
    machine = f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}"
    print(f"per-child overhead on CPU ({machine}); {args.children} children, P={args.population}, "
          f"{args.image_size}x{args.image_size} images, local disk; wall {wall:.1f}s")
    print(f"{'phase':22s} {'n':>4s} {'median ms':>10s} {'p90 ms':>8s} {'max ms':>8s}")
    for r in rows:
        print(f"{r['phase']:22s} {r['n']:4d} {r['median_ms']:10.1f} {r['p90_ms']:8.1f} {r['max_ms']:8.1f}")
    if args.json:
        args.json.write_text(json.dumps({"machine": machine, "rows": rows, "wall_s": wall}, indent=1))


if __name__ == "__main__":
    main()
