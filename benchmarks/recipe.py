"""Validation accuracy against images seen: the ``fast`` training recipe against the paper's, on the CPU.

Real CIFAR-10: the training JPEGs (a tar.gz of ``train/<class>/<image>.jpg``) read through evo's
``imagefolder`` data set at 32x32, 10% held out for validation (45,000 / 5,000 for the full set). For each
network (benchmarks/networks.py: the hand-designed 5-convolution net and two evolved-like DNAs, all built by
evo from a DNA) and each budget of training images:

- ``paper``: batch 50, constant learning rate (the DNA's); one training to the largest budget, interrupted
  at each smaller budget to measure the weights there (the constant rate makes that the same as a training
  of that length; the interruption resumes bit-identically);
- ``fast``: at each batch of ``--fast-batch`` (the learning rate scaled by batch/50; a larger batch is
  what keeps a GPU busy, a smaller one learns more per image), its schedule run within the budget's own
  steps -- so one full training per budget, as a child of that length would have.

Both start from the same initial weights, see the same data set, and are measured the same way (evo's
fitness: validation accuracy; ``fast`` includes its test-time flips, part of the recipe). The table ends with,
per network and fast batch, the images ``fast`` needed to reach ``paper``'s accuracy at its largest
budget N.

    python benchmarks/recipe.py --data /work/shared/data/cifar10-train-jpeg.tar.gz \\
        --budgets 100000,200000,400000,800000 --threads 2 --json recipe.json
    python benchmarks/recipe.py --data ... --per-class 50 --budgets 200,400 --fast-batch 50,100   # a smoke run
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from networks import NETWORKS  # noqa: E402

from evo.cli.group import UserError, parse_kv  # noqa: E402
from evo.network.data import Dataset, load_dataset  # noqa: E402
from evo.network.evaluation import evaluate_split  # noqa: E402
from evo.network.real2017 import build_model  # noqa: E402
from evo.network.settings import TrainConfig  # noqa: E402
from evo.network.train import train  # noqa: E402


def extract(archive: Path, work: Path, per_class: int | None) -> Path:
    """Extract the JPEG tree (only the first ``per_class`` images of each class when given); its root."""
    tag = "all" if per_class is None else f"{per_class}-per-class"
    dest = work / f"{archive.name.split('.')[0]}-{tag}"
    marker = dest / ".extracted"
    if not marker.exists():
        counts: dict[str, int] = {}
        with tarfile.open(archive) as tf:
            members = []
            for m in tf:
                parts = Path(m.name).parts
                if m.isfile() and len(parts) >= 2:
                    cls = parts[-2]
                    counts[cls] = counts.get(cls, 0) + 1
                    if per_class is not None and counts[cls] > per_class:
                        continue
                members.append(m)
            tf.extractall(dest, members=members, filter="data")
        marker.touch()
    tops = [p for p in dest.iterdir() if p.is_dir() and not p.name.startswith(".")]
    return tops[0] if len(tops) == 1 else dest


def make_model(name: str, ds: Dataset, seed: int):
    dna = NETWORKS[name][0](ds.input_shape, ds.num_classes)
    torch.manual_seed(seed)
    return build_model(dna), dna.learning_rate


def run_paper(name: str, ds: Dataset, budgets: list[int], seed: int, lr: float | None, common: dict) -> dict:
    """Accuracy at each budget along one paper-recipe training (interrupted and resumed at each budget)."""
    model, dna_lr = make_model(name, ds, seed)
    lr = lr or dna_lr
    steps = [b // 50 for b in budgets]
    cfg = TrainConfig(steps=steps[-1], batch_size=50, recipe="paper", poll_every=1, **common)
    out, state, t0 = {}, None, time.perf_counter()
    for b, s in zip(budgets, steps):
        done = 0 if state is None else int(state["step"])
        calls = [done]

        def stop(target=s) -> bool:
            calls[0] += 1
            return calls[0] >= target

        r = train(model, ds, lr, cfg, state=state, should_stop=stop if s < steps[-1] else None)
        if r.outcome == "interrupted":
            acc, state = evaluate_split(model, ds, "val"), r.state
        else:
            acc = r.fitness
        out[b] = {"accuracy": acc, "outcome": r.outcome, "steps": r.steps_done,
                  "wall_s": time.perf_counter() - t0}
    return out


def run_fast(name: str, ds: Dataset, budgets: list[int], seed: int, lr: float | None, batch: int,
             common: dict, opts: dict | None = None) -> dict:
    """Accuracy of one fast-recipe training per budget (its schedule within the budget's steps)."""
    out = {}
    for b in budgets:
        steps = b // batch
        if steps < 1:
            out[b] = {"accuracy": None, "outcome": f"budget below one batch of {batch}"}
            continue
        model, dna_lr = make_model(name, ds, seed)
        t0 = time.perf_counter()
        cfg = TrainConfig(steps=steps, batch_size=batch, recipe="fast", **common, **(opts or {})).validate()
        r = train(model, ds, lr or dna_lr, cfg)
        out[b] = {"accuracy": r.fitness, "outcome": r.outcome, "steps": r.steps_done,
                  "wall_s": time.perf_counter() - t0}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="/work/shared/data/cifar10-train-jpeg.tar.gz",
                    help="tar.gz of train/<class>/<image>.jpg, or an extracted image folder")
    ap.add_argument("--workdir", help="where to extract the archive (default: a temporary directory)")
    ap.add_argument("--per-class", type=int, help="only this many images of each class (smoke runs)")
    ap.add_argument("--budgets", default="50000,100000,200000,400000",
                    help="training images seen, comma-separated, ascending")
    ap.add_argument("--nets", default="five_conv,evolved_a,evolved_b")
    ap.add_argument("--fast-budgets", help="train fast only at these budgets (default: --budgets); e.g. N/3 "
                    "alone, to test the target without the cost of fast trainings to N")
    ap.add_argument("--fast-batch", default="50,250", help="batch sizes of the fast recipe, comma-separated")
    ap.add_argument("--fast-opt", action="append", default=[], metavar="KEY=VALUE",
                    help="a setting of the fast recipe (JSON value), e.g. crop_first_epoch=true; repeatable")
    ap.add_argument("--lr", type=float, help="learning rate at batch 50 (default: each DNA's own, 0.1)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    budgets = sorted(int(b) for b in args.budgets.split(","))
    fast_budgets = sorted(int(b) for b in (args.fast_budgets or args.budgets).split(","))
    budgets = sorted(set(budgets) | set(fast_budgets))

    data = Path(args.data)
    if data.is_file():
        work = Path(args.workdir or tempfile.mkdtemp(prefix="evo-recipe-"))
        root = extract(data, work, args.per_class)
    else:
        root = data
    t = time.perf_counter()
    ds = load_dataset("imagefolder", root=root, image_size=32, val_fraction=0.1)
    info = {"data": f"{data.name}: {ds!r}", "date": dt.datetime.now().isoformat(timespec="seconds"),
            "cpu": platform.processor(), "cores": os.cpu_count(), "threads": args.threads,
            "torch": torch.__version__, "fast_batch": args.fast_batch, "budgets": budgets,
            "load_s": round(time.perf_counter() - t, 1)}
    batches = [int(b) for b in args.fast_batch.split(",")]
    try:
        fast_opts = parse_kv(tuple(args.fast_opt), "--fast-opt")
    except UserError as exc:
        ap.error(exc.message)
    info["fast_opts"] = fast_opts
    print(f"# validation accuracy vs images seen, paper (batch 50) vs fast (batch {args.fast_batch})\n"
          f"# {json.dumps(info)}")
    common = dict(device=args.device, checkpoint_every_s=None, check_every=50, seed=args.seed)
    results = {}
    print(f"{'network':10} {'images':>9} {'paper':>7} " + " ".join(f"{'fast/' + str(b):>9}" for b in batches)
          + "   wall s: paper " + " ".join(f"{'fast/' + str(b):>9}" for b in batches))
    for name in args.nets.split(","):
        paper = run_paper(name, ds, budgets, args.seed, args.lr, common)
        fast = {fb: run_fast(name, ds, fast_budgets, args.seed, args.lr, fb, common, fast_opts) for fb in batches}
        none = {"accuracy": None, "outcome": "not measured (--fast-budgets)"}
        for fb in batches:
            fast[fb] = {b: fast[fb].get(b, none) for b in budgets}
        results[name] = {"paper": paper, "fast": {str(fb): v for fb, v in fast.items()},
                         "desc": NETWORKS[name][1], "summary": {}}
        for b in budgets:
            accs = " ".join("      -  " if fast[fb][b]["accuracy"] is None else f"{fast[fb][b]['accuracy']:9.4f}"
                            for fb in batches)
            walls = " ".join(f"{fast[fb][b].get('wall_s', 0):9.1f}" for fb in batches)
            print(f"{name:10} {b:9d} {paper[b]['accuracy']:7.4f} {accs}   {'':8}{paper[b]['wall_s']:6.1f} {walls}",
                  flush=True)
        target = paper[budgets[-1]]["accuracy"]
        for fb in batches:
            reach = next((b for b in budgets if (fast[fb][b]["accuracy"] or 0) >= target), None)
            ahead = all((fast[fb][b]["accuracy"] or 0) > paper[b]["accuracy"] for b in budgets
                        if fast[fb][b]["accuracy"] is not None)
            results[name]["summary"][str(fb)] = {"fast_reaches_paper_at": reach, "fast_ahead_everywhere": ahead}
            within = reach is not None and reach * 3 <= budgets[-1]
            measured = [b for b in budgets if fast[fb][b]["accuracy"] is not None]
            print(f"# {name}, fast/{fb}: paper reaches {target:.4f} after N={budgets[-1]} images; fast after "
                  f"{reach if reach is not None else '> ' + str(max(measured, default=0))} images "
                  f"({'<= N/3' if within else 'not within N/3'}); ahead at every budget: {ahead}")
    if args.json:
        Path(args.json).write_text(json.dumps({"info": info, "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
