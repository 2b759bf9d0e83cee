"""The summary of a suite: per experiment, over its seeds, the numbers the comparison rests on.

For every variant (the experiments that are compared with each other) the *equal FLOPs* point F
is the smallest total of FLOPs spent by any of its finished runs, and the equal wall time T the
shortest of their durations.  For each run:

* best validation accuracy among the individuals committed by F (the best-so-far curve
  against FLOPs, read at F);
* top-5 ensemble validation accuracy at F: the mean softmax of the 5 best of those individuals
  (ranked like ``evo top``), measured on the validation split;
* best validation accuracy at T, and at the end of the run; individuals, FLOPs, hours.

Per experiment: the mean, min and max of these over the seeds; the compare-runs figure of its
seeds against FLOPs and against wall time.  Per variant: one figure with every experiment's mean
and range.  Written as ``summary.json`` and ``summary.md`` in the suite's directory.
"""

from __future__ import annotations

import json
import math
import os
import platform
import socket
import textwrap
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from evo import __version__, analysis, plots
from evo.base.files import atomic_write
from evo.bench.runner import read_state, run_dir, state_path
from evo.bench.suite import Run, Suite

__all__ = ["summarize", "run_metrics", "stats", "markdown", "TOP_K"]

#: models in the ensemble (the paper's ensemble of the top models)
TOP_K = 5
_EPS = 1e-9


def _rank_key(r: Any) -> tuple:
    return (-r.fitness, not r.alive, r.id)


def run_metrics(h: Any, flops_eq: float, hours_eq: float, ensemble: Callable[[Any, list[int]], float] | None,
                k: int = TOP_K) -> dict[str, Any]:
    """The numbers of one run (a loaded population ``h``) at ``flops_eq`` FLOPs and ``hours_eq``
    hours; ``ensemble(h, ids)``: the validation accuracy of an ensemble (None: not measured)."""
    order, x = h.positions("flops")
    within = [r for r, xv in zip(order, x) if xv <= flops_eq * (1 + _EPS) and r.fitness is not None]
    top = sorted(within, key=_rank_key)[:k]
    ens, ens_error = None, None
    if ensemble is not None and top:
        try:
            ens = float(ensemble(h, [r.id for r in top]))
        except analysis.AnalysisError as e:  # weights not kept
            ens_error = str(e)
    best = h.best()
    tcurve = h.best_so_far("time")
    _, tx = h.positions("time")
    return {
        "popdir": h.root,
        "individuals": len(h),
        "individuals_at_equal_flops": sum(1 for xv in x if xv <= flops_eq * (1 + _EPS)),
        "flops": h.total_flops(),
        "hours": float(tx[-1]) if len(tx) else 0.0,
        "minutes": float(tx[-1]) * 60.0 if len(tx) else 0.0,
        "best_val": None if best is None else best.fitness,
        "best_id": None if best is None else best.id,
        "best_val_at_equal_flops": max((r.fitness for r in within), default=None),
        "top_ids_at_equal_flops": [r.id for r in top],
        "ensemble_val_at_equal_flops": ens,
        "ensemble_error": ens_error,
        "best_val_at_equal_time": _finite(tcurve.at([hours_eq])[0]) if len(tcurve.x) else None,
    }


def _finite(v: Any) -> float | None:
    return None if v is None or not math.isfinite(float(v)) else float(v)


def stats(values: list[Any]) -> dict[str, Any]:
    """Mean, min, max (and n) of the values that are not None."""
    v = [float(x) for x in values if x is not None]
    if not v:
        return {"n": 0, "mean": None, "min": None, "max": None}
    return {"n": len(v), "mean": sum(v) / len(v), "min": min(v), "max": max(v)}


_STAT_KEYS = ("best_val_at_equal_flops", "ensemble_val_at_equal_flops", "best_val_at_equal_time", "best_val",
              "individuals", "flops", "hours", "minutes")


def _unit(x: np.ndarray) -> tuple[float, str]:
    top = float(np.nanmax(x)) if len(x) else 0.0
    for exp, name in ((18, "exaFLOPs"), (15, "petaFLOPs"), (12, "teraFLOPs"), (9, "gigaFLOPs")):
        if top >= 10.0 ** exp:
            return 10.0 ** -exp, name
    return 1.0, "FLOPs"


def experiments_figure(groups: dict[str, list[Any]], axis: str, title: str, path: Path) -> None:
    """Every experiment of a variant: the mean of its runs' best so far, and their range, up to the
    end of its shortest run (so that every point is a mean over all its seeds)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 5.5), dpi=100)
    FigureCanvasAgg(fig)
    lines = textwrap.wrap(title, 100) or [""]  # a long suite title on two lines rather than cut off
    fig.subplots_adjust(left=0.09, right=0.98, bottom=0.1, top=0.93 if len(lines) == 1 else 0.89)
    ax = fig.add_subplot(1, 1, 1)
    tabs = {name: plots.compare_runs_table(hs, axis) for name, hs in groups.items() if hs}
    top = max((float(t["grid"][-1]) for t in tabs.values() if len(t["grid"])), default=0.0)
    f, unit = _unit(np.array([top])) if axis == "flops" else (1.0, "hours")
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    for k, (name, t) in enumerate(tabs.items()):
        g = t["grid"] * f
        if not len(g):
            continue
        c = cmap(k % 10)
        n = len(t["runs"])
        fin = t["final_mean"]
        # up to the end of the shortest run only: past it the mean would be over fewer seeds
        Y = np.asarray(t["curves"], dtype=float)
        ends = [int(np.nonzero(~np.isnan(y))[0][-1]) for y in Y if (~np.isnan(y)).any()]
        keep = slice(0, min(ends) + 1 if ends else len(g))
        ax.plot(g[keep], t["mean"][keep], color=c, linewidth=2,
                label=f"{name} ({n} runs" + (f", final {fin:.3f})" if fin is not None else ")"))
        ax.fill_between(g[keep], t["min"][keep], t["max"][keep], color=c, alpha=0.15, linewidth=0)
    ax.set_xlabel(f"{unit} spent" if axis == "flops" else "wall-clock time (hours)")
    ax.set_ylabel("best validation accuracy so far")
    ax.set_title("\n".join(lines), fontsize=11)
    ax.grid(True, alpha=0.3)
    if tabs:
        ax.legend(loc="lower right", fontsize=8, framealpha=0.9)
    plots.save(fig, path)


def _machine() -> dict[str, Any]:
    info: dict[str, Any] = {"host": socket.gethostname(), "platform": platform.platform(),
                            "processor": platform.processor() or platform.machine(), "cpus": os.cpu_count()}
    try:
        import subprocess

        res = subprocess.run(["git", "-C", os.path.dirname(os.path.abspath(__file__)), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, timeout=10)
        if res.returncode == 0:
            info["commit"] = res.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        import torch

        info["torch"] = torch.__version__
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except Exception:  # noqa: BLE001 - the summary does not need torch for its own numbers
        pass
    return info


def _cell(s: dict[str, Any], spec: str = ".4f") -> str:
    if s["mean"] is None:
        return "-"
    if s["n"] == 1:
        return format(s["mean"], spec)
    return f"{format(s['mean'], spec)} [{format(s['min'], spec)}, {format(s['max'], spec)}]"


def markdown(summary: dict[str, Any]) -> str:
    """The summary as Markdown: one table per variant."""
    lines = [f"# {summary['title']}", "", f"Suite `{summary['suite']}` ({summary['path']}), summarised "
             f"{summary['generated_at']} on {summary['machine']['host']} ({summary['machine']['cpus']} CPUs"
             + (f", {summary['machine']['gpu']}" if summary["machine"].get("gpu") else "") + f"), evo {summary['evo']}"
             + (f" (commit {summary['machine']['commit']})" if summary["machine"].get("commit") else "") + ".",
             "", "Cells: mean [min, max] over the seeds' finished runs. Accuracies are validation accuracies; the "
             f"ensemble is the mean softmax of the top {TOP_K}.", ""]
    for vname, v in summary["variants"].items():
        lines.append(f"## {vname}")
        lines.append("")
        fe, te = v["equal_flops"], v["equal_hours"]
        lines.append(f"Equal FLOPs: {fe:.3g}; equal wall time: {te * 60:.1f} min." if fe is not None else
                     "No finished run yet.")
        lines.append("")
        lines.append(f"| experiment | runs | best val acc @ equal FLOPs | top-{TOP_K} ensemble @ equal FLOPs | "
                     "best @ equal time | final best | individuals | FLOPs | minutes |")
        lines.append("|---|---|---|---|---|---|---|---|---|")
        for ename, e in v["experiments"].items():
            s = e["stats"]
            runs = f"{e['finished']}/{len(e['runs'])}"
            lines.append(f"| {ename} | {runs} | {_cell(s['best_val_at_equal_flops'])} | "
                         f"{_cell(s['ensemble_val_at_equal_flops'])} | {_cell(s['best_val_at_equal_time'])} | "
                         f"{_cell(s['best_val'])} | {_cell(s['individuals'], '.0f')} | {_cell(s['flops'], '.3g')} | "
                         f"{_cell(s['minutes'], '.1f')} |")
        lines.append("")
        for ename, e in v["experiments"].items():
            figs = e.get("figures") or {}
            if figs:
                lines.append(f"- {ename}: " + ", ".join(f"[{k}]({os.path.relpath(p, summary['dir'])})"
                                                       for k, p in figs.items()))
        if v.get("figures"):
            lines.append("- all experiments: " + ", ".join(f"[{k}]({os.path.relpath(p, summary['dir'])})"
                                                         for k, p in v["figures"].items()))
        lines.append("")
    return "\n".join(lines)


def summarize(suite: Suite, out: str | os.PathLike, *, ensemble: bool = True, figures: bool = True,
              report: bool = False, echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Summarise every run of ``suite`` found under ``out``; write summary.json and summary.md
    (and the figures) into ``<out>/<suite>/``; return the summary."""
    out = Path(out).resolve()
    sdir = out / suite.name
    ens_fn = None
    if ensemble:
        from evo.bench.ensemble import ensemble_val_accuracy

        ens_fn = ensemble_val_accuracy
    variants: dict[str, Any] = {}
    for vname in suite.variants:
        groups = {r.experiment: [] for r in suite.runs if r.variant == vname}
        if not groups:
            continue
        loaded: dict[str, list[tuple[Run, Any, bool]]] = {}
        for run in (r for r in suite.runs if r.variant == vname):
            pop = run_dir(out, run)
            if not (pop / "config.json").exists():
                loaded.setdefault(run.experiment, [])
                continue
            st = read_state(out, run) or {}
            loaded.setdefault(run.experiment, []).append((run, analysis.load(str(pop)), bool(st.get("finished"))))
        finished = [h for rows in loaded.values() for _, h, fin in rows if fin and len(h)]
        flops_eq = min((h.total_flops() for h in finished), default=None)
        hours_eq = None
        if finished:
            hours_eq = min(float(h.positions("time")[1][-1]) for h in finished)
        exps: dict[str, Any] = {}
        for ename in groups:
            rows = loaded.get(ename, [])
            runs = []
            for run, h, fin in rows:
                m = _cached_metrics(out, run, h, flops_eq, hours_eq, ens_fn) if flops_eq is not None else {}
                runs.append({"run": run.key, "seed": run.seed, "finished": fin, **m})
            fin_runs = [r for r in runs if r["finished"]]
            e: dict[str, Any] = {"runs": runs, "finished": len(fin_runs),
                                 "settings": rows[0][0].settings if rows else None,
                                 "stats": {k: stats([r.get(k) for r in fin_runs]) for k in _STAT_KEYS}}
            hs = [h for _, h, _ in rows if len(h)]
            if figures and hs:
                edir = sdir / vname / ename
                e["figures"] = {}
                for axis in ("flops", "time"):
                    p = edir / f"compare-{axis}.png"
                    plots.compare_runs_figure(hs, axis, path=p, labels=[f"seed {r.seed}" for r, h, _ in rows
                                                                         if len(h)],
                                              title=f"{suite.name} / {vname} / {ename}: {len(hs)} seeds")
                    e["figures"][f"against {'FLOPs' if axis == 'flops' else 'wall time'}"] = str(p)
                if report:
                    from evo.report import write_report

                    p = edir / "report.html"
                    write_report([h.root for h in hs], p, title=f"{suite.name} / {vname} / {ename}")
                    e["figures"]["report"] = str(p)
            exps[ename] = e
        v = {"equal_flops": flops_eq, "equal_hours": hours_eq, "experiments": exps}
        if figures:
            grp = {en: [h for _, h, _ in loaded.get(en, []) if len(h)] for en in groups}
            v["figures"] = {}
            for axis in ("flops", "time"):
                p = sdir / vname / f"experiments-{axis}.png"
                experiments_figure(grp, axis, f"{suite.title} ({vname}): mean and range over seeds", p)
                v["figures"][f"against {'FLOPs' if axis == 'flops' else 'wall time'}"] = str(p)
        variants[vname] = v
    summary = {"suite": suite.name, "title": suite.title, "description": suite.description, "path": suite.path,
               "dir": str(sdir), "generated_at": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "evo": __version__,
               "machine": _machine(), "top_k": TOP_K, "variants": variants}
    sdir.mkdir(parents=True, exist_ok=True)
    atomic_write(sdir / "summary.json", lambda f: f.write((json.dumps(summary, indent=1, default=_json) + "\n")
                                                          .encode()))
    atomic_write(sdir / "summary.md", lambda f: f.write((markdown(summary) + "\n").encode()))
    echo(f"wrote {sdir / 'summary.md'} and summary.json")
    return summary


def _json(x: Any) -> Any:
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    return str(x)


def _cached_metrics(out: Path, run: Run, h: Any, flops_eq: float, hours_eq: float,
                    ens_fn: Callable | None) -> dict[str, Any]:
    """:func:`run_metrics`, with the ensemble's accuracy kept beside the run (it loads models)."""
    m = run_metrics(h, flops_eq, hours_eq, None)
    if ens_fn is None or not m["top_ids_at_equal_flops"]:
        return m
    cache = state_path(out, run).with_name(f"seed-{run.seed}.metrics.json")
    key = {"ids": m["top_ids_at_equal_flops"], "individuals": len(h), "epoch": h.control.get("epoch")}
    try:
        c = json.loads(cache.read_text())
        if c.get("key") == key:
            m["ensemble_val_at_equal_flops"] = c["ensemble_val_at_equal_flops"]
            m["ensemble_error"] = c.get("ensemble_error")
            return m
    except (OSError, ValueError, KeyError):
        pass
    m2 = run_metrics(h, flops_eq, hours_eq, ens_fn)
    atomic_write(cache, lambda f: f.write(json.dumps({"key": key, "ensemble_val_at_equal_flops":
                                                      m2["ensemble_val_at_equal_flops"],
                                                      "ensemble_error": m2["ensemble_error"]}).encode()))
    return m2
