"""FLOPs to reach a reference accuracy: how much of its compute one search needs to match another's result.

Reads a search-efficiency suite's ``summary.json`` (``bin/search-efficiency``).  The reference is one
experiment's mean best validation accuracy at the variant's equal FLOPs budget F; for every seed of each
other experiment, the FLOPs its best-so-far curve needed to reach that accuracy, as a fraction of F
(``> 1`` or ``never`` when it did not get there by its end).  The growth suite's target reads off it:
function-preserving inheritance reaches the paper inheritance's result with at most half its FLOPs.

    python benchmarks/reach.py runs/science/growth/summary.json --reference tournament-paper
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evo.analysis import best_so_far  # noqa: E402


def flops_to_reach(popdir: str, target: float) -> float | None:
    """The FLOPs spent when the population's best-so-far first reached ``target`` (None: never)."""
    c = best_so_far(popdir, "flops")
    hit = np.nonzero(np.asarray(c.y) >= target - 1e-12)[0]
    return float(c.x[hit[0]]) if len(hit) else None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("summary", help="a suite's summary.json")
    ap.add_argument("--reference", required=True, help="the experiment whose result is the target")
    ap.add_argument("--variant", action="append", help="only these variants (default: all)")
    args = ap.parse_args(argv)
    s = json.loads(Path(args.summary).read_text())
    print("| variant | experiment | seed | reaches the reference's accuracy after | fraction of F |")
    print("|---|---|---|---|---|")
    for vname, v in s["variants"].items():
        if args.variant and vname not in args.variant:
            continue
        exps = v["experiments"]
        if args.reference not in exps:
            raise SystemExit(f"{args.summary}: variant {vname} has no experiment {args.reference!r}; "
                             f"it has {', '.join(exps)}")
        target = exps[args.reference]["stats"]["best_val_at_equal_flops"]["mean"]
        F = float(v["equal_flops"])
        print(f"| {vname} | (target: {args.reference}'s mean best {target:.4f} at F = {F:.3g} FLOPs) | | | |")
        for ename, e in exps.items():
            fracs = []
            for r in e["runs"]:
                if not r.get("finished"):
                    continue
                f = flops_to_reach(r["popdir"], target)
                fracs.append(None if f is None else f / F)
                print(f"| {vname} | {ename} | {r['seed']} | {'never' if f is None else f'{f:.3g} FLOPs'} | "
                      f"{'-' if f is None else f'{f / F:.2f}'} |")
            got = [x for x in fracs if x is not None]
            if fracs:
                med = f"{float(np.median(got)):.2f}" if len(got) == len(fracs) else "-"
                print(f"| {vname} | {ename} | all | {len(got)}/{len(fracs)} seeds reach it | median {med} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
