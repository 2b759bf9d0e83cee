"""The best cell found against random cells, both trained longer (Real et al. 2019's check of a search).

A search trains each child briefly; what it found is worth something only if its best cell, built into
the same stack and trained longer, beats cells drawn at random from the space.  For each population
given (the runs of an AmoebaNet search), its best individual by validation accuracy gives one cell pair;
``--random K`` cell pairs are drawn with ``space.random`` (seeds 0..K-1).  Every cell pair is built into
the population's stack (or the one ``--space-opt`` gives) and trained on the population's own data set
and validation split for ``--steps`` steps with one recipe and one seed, then measured the way evo
measures fitness (validation accuracy).  Prints a table and, per group, the mean and range.

    python benchmarks/cells.py runs/amoebanet/cifar10-10k-16px/aging/seed-* --random 3 --steps 600 \\
        --batch 64 --recipe fast --json cells.json
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import random
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evo.genome import search_space  # noqa: E402
from evo.network.data import load_dataset  # noqa: E402
from evo.network.settings import TrainConfig  # noqa: E402
from evo.network.train import train  # noqa: E402
from evo.population import Population  # noqa: E402


def best_individual(root: str) -> tuple[int, float, dict]:
    """The id, search fitness and DNA of a population's best individual (alive or dead)."""
    pop = Population.open(root)
    best = max((i for i in pop.individuals() if i.fitness is not None), key=lambda i: (i.fitness, -i.id),
               default=None)
    if best is None:
        raise SystemExit(f"{root}: no individual with a fitness. Fix: give the directory of a population "
                         "that has trained some individuals")
    return best.id, float(best.fitness), best.dna()


def parse_opts(items: list[str]) -> dict[str, int]:
    out = {}
    for it in items:
        k, _, v = it.partition("=")
        if not v:
            raise SystemExit(f"--space-opt {it!r}: use NAME=VALUE, e.g. F=8")
        out[k] = int(v)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("populations", nargs="+", help="population directories of one search space and data set")
    ap.add_argument("--random", type=int, default=3, help="random cell pairs to train (seeds 0..K-1)")
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--recipe", default="fast", choices=["paper", "fast"])
    ap.add_argument("--lr", type=float, help="learning rate (default: the genome's own where it carries one, else the population's "
                    "train.lr, else 0.1)")
    ap.add_argument("--space-opt", action="append", default=[], help="stack option, e.g. F=8 (repeatable)")
    ap.add_argument("--seed", type=int, default=0, help="the seed of every training")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    # a shell glob such as seed-* also matches the suite runner's seed-N.run.json files beside the populations
    pops = [Population.open(p) for p in args.populations if not (os.path.isfile(p) and p.endswith(".json"))]
    first = pops[0].config
    for p in pops[1:]:
        if (p.config.search_space, p.config.dataset, p.config.dataset_kwargs) != \
                (first.search_space, first.dataset, first.dataset_kwargs):
            raise SystemExit(f"{p.root}: another search space or data set than {pops[0].root}. Fix: compare "
                             "populations of one space and one data set")
    opts = {**dict(first.space_options or {}), **parse_opts(args.space_opt)}
    space = search_space(first.search_space, **opts)
    ds = load_dataset(first.dataset, **dict(first.dataset_kwargs))
    lr = args.lr or float((first.train or {}).get("lr", 0.1))
    cfg = TrainConfig(steps=args.steps, batch_size=args.batch, recipe=args.recipe, seed=args.seed,
                      checkpoint_every_s=None, device="cpu")

    cells: list[tuple[str, str, float | None, dict]] = []
    for p in pops:
        i, fit, dna = best_individual(p.root)
        cells.append(("best found", f"{p.root} #{i}", fit, dna))
    for k in range(args.random):
        g, _ = space.random(ds.input_shape, ds.num_classes, random.Random(k))
        cells.append(("random", f"random cell, seed {k}", None, json.loads(space.to_json(g))))

    info = {"date": dt.datetime.now().isoformat(timespec="seconds"), "machine": platform.node(),
            "cores": os.cpu_count(), "threads": args.threads, "torch": torch.__version__,
            "space": first.search_space, "space_options": opts, "data": repr(ds), "steps": args.steps,
            "batch": args.batch, "recipe": args.recipe, "lr": lr, "seed": args.seed}
    print(f"# {json.dumps(info)}")
    print(f"{'group':11} {'search val':>10} {'params':>8} {'MFLOPs':>7} {'val acc':>8} {'wall s':>7}  cell")
    rows = []
    for group, name, fit, d in cells:
        dna = space.from_json(json.dumps(d))
        torch.manual_seed(args.seed)
        model = space.build(dna)
        t = time.perf_counter()
        r = train(model, ds, args.lr or space.learning_rate(dna) or lr, cfg)
        row = {"group": group, "cell": name, "search_fitness": fit, "val_accuracy": r.fitness,
               "outcome": r.outcome, "params": space.params(dna, ds.input_shape),
               "flops": space.flops(dna, ds.input_shape), "wall_s": round(time.perf_counter() - t, 1)}
        rows.append(row)
        print(f"{group:11} {'-' if fit is None else f'{fit:.4f}':>10} {row['params']:8d} "
              f"{row['flops'] / 1e6:7.2f} {r.fitness:8.4f} {row['wall_s']:7.1f}  {name}", flush=True)
    summary = {}
    for group in ("best found", "random"):
        accs = [r["val_accuracy"] for r in rows if r["group"] == group]
        if accs:
            summary[group] = {"mean": sum(accs) / len(accs), "min": min(accs), "max": max(accs), "n": len(accs)}
            print(f"# {group}: mean {summary[group]['mean']:.4f} [{min(accs):.4f}, {max(accs):.4f}] over {len(accs)}")
    if args.json:
        Path(args.json).write_text(json.dumps({"info": info, "rows": rows, "summary": summary}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
