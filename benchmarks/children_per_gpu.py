"""Children trained per GPU-hour at the start of an evolution, with 1, 2, 4, 8 children per GPU.

Early in an evolution every child is seed-sized: the paper's seed (global pooling + linear) after 0-3 random
mutations of the real2017 space. For each K in ``--per-gpu``, K processes share one GPU, each prepared by
``evo.network.gpu.share_gpu(K)`` (its memory share and CPU threads) and training one child after another
with evo's trainer exactly as a worker does (build, train ``--steps`` steps, evaluate on the validation
split) for ``--seconds`` after a common start (set-up -- torch, CUDA, the data on the GPU, one warm-up
child -- is not timed). Children finished inside the window are counted. ``--baseline`` adds today's
configuration before graphs: one process, the eager step (``cuda_graph=off``). The population's file
protocol is not exercised (benchmarks/child_overhead.py measures that).

    python benchmarks/children_per_gpu.py --per-gpu 1,2,4,8 --seconds 40 --steps 400 --baseline
    python benchmarks/children_per_gpu.py --device cpu --per-gpu 1,2 --seconds 5 --steps 5   # a CPU smoke run
"""
from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def worker(args) -> int:
    """One process: set up, wait for the common start, train children until the window closes."""
    sys.path.insert(0, str(ROOT))
    import torch

    from evo.genome import search_space
    from evo.network.data import load_dataset, to_device
    from evo.network.gpu import share_gpu
    from evo.network.settings import TrainConfig
    from evo.network.train import train

    shared = share_gpu(args.k, args.device) if args.device != "cpu" else {"threads": torch.get_num_threads()}
    if args.device == "cpu":
        torch.set_num_threads(1)
    ds = load_dataset("synthetic", n_train=args.n_train, n_val=500, n_test=0, image_size=32)
    to_device(ds, args.device)
    space = search_space("real2017")
    rng = random.Random(f"{args.slot}/{args.k}")
    cfg = TrainConfig(steps=args.steps, batch_size=args.batch, device=args.device, recipe=args.recipe,
                      cuda_graph=args.graph, checkpoint_every_s=None, seed=args.slot)

    def child() -> object:
        dna = space.seed(ds.input_shape, ds.num_classes, rng)
        n = rng.randint(0, 3)
        if n:
            dna, _ = space.mutate(dna, rng, n=n)
        return train(space.build(dna), ds, space.learning_rate(dna) or 0.1, cfg)

    child()  # warm-up: cuDNN autotuning, lazy allocations
    late = time.time() - args.start_at
    time.sleep(max(0.0, args.start_at - time.time()))
    end = args.start_at + args.seconds
    done, ips, kinds = 0, [], {}
    while time.time() < end:
        r = child()
        if time.time() <= end:
            done += 1
            ips.append(r.images_per_s)
            kinds[r.step_kind] = kinds.get(r.step_kind, 0) + 1
    print(json.dumps({"slot": args.slot, "children": done, "late_s": max(0.0, late), "images_per_s": ips,
                      "steps": kinds, "shared": shared}), flush=True)
    return 0


def run(k: int, args, graph: str) -> dict:
    setup = args.setup_s + 2.0 * k
    start = time.time() + setup
    cmd = [sys.executable, __file__, "--worker", "--k", str(k), "--start-at", str(start), "--seconds",
           str(args.seconds), "--steps", str(args.steps), "--batch", str(args.batch), "--device", args.device,
           "--recipe", args.recipe, "--graph", graph, "--n-train", str(args.n_train)]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    procs = [subprocess.Popen(cmd + ["--slot", str(i)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                              text=True) for i in range(k)]
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=setup + args.seconds + 300)
        lines = [ln for ln in out.splitlines() if ln.startswith("{")]
        if p.returncode != 0 or not lines:
            raise RuntimeError(f"a worker failed (exit {p.returncode}): {err[-2000:]}")
        outs.append(json.loads(lines[-1]))
    children = sum(o["children"] for o in outs)
    ips = [v for o in outs for v in o["images_per_s"]]
    steps: dict = {}
    for o in outs:
        for kk, v in o["steps"].items():
            steps[kk] = steps.get(kk, 0) + v
    return {"per_gpu": k, "graph": graph, "children": children, "per_gpu_hour": children * 3600.0 / args.seconds,
            "median_images_per_s": statistics.median(ips) if ips else 0.0, "steps": steps,
            "late_s": max(o["late_s"] for o in outs), "shared": outs[0]["shared"]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--per-gpu", default="1,2,4,8")
    ap.add_argument("--seconds", type=float, default=40.0)
    ap.add_argument("--setup-s", type=float, default=20.0, help="set-up allowance before the common start")
    ap.add_argument("--steps", type=int, default=400, help="steps per child")
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument("--recipe", default="paper")
    ap.add_argument("--graph", default="auto")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--n-train", type=int, default=10000)
    ap.add_argument("--baseline", action="store_true", help="first: 1 per GPU with the eager step")
    ap.add_argument("--json")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--k", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--slot", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--start-at", type=float, default=0.0, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        return worker(args)
    print(f"# children per GPU-hour: seed-sized children, {args.steps} steps of batch {args.batch} each, "
          f"recipe {args.recipe}, {args.seconds:.0f} s windows, device {args.device}")
    print(f"{'per GPU':>7} {'step':>10} {'children':>8} {'per GPU-hour':>12} {'vs base':>7} {'img/s/child':>11}"
          f" {'late s':>6}")
    plan = ([(1, "off")] if args.baseline else []) + [(int(k), args.graph) for k in args.per_gpu.split(",")]
    rows, base = [], None
    for k, graph in plan:
        r = run(k, args, graph)
        base = base or r["per_gpu_hour"] or None
        r["vs_base"] = r["per_gpu_hour"] / base if base else None
        rows.append(r)
        kinds = "+".join(sorted(r["steps"])) or "-"
        vs = f"{r['vs_base']:6.1f}x" if r["vs_base"] else "     -"
        print(f"{k:7d} {kinds:>10} {r['children']:8d} {r['per_gpu_hour']:12.0f} {vs} "
              f"{r['median_images_per_s']:11.0f} {r['late_s']:6.1f}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
