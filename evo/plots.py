"""Figures of a population, drawn with matplotlib from :mod:`evo.analysis`.

Each function returns a :class:`matplotlib.figure.Figure` (no pyplot state, so they are safe
in scripts, threads and notebooks, where the figure displays itself) and, given ``path``,
writes it to that file (PNG, SVG, PDF: from the suffix).  No display is needed: the Agg
canvas is used.

* :func:`progress_figure` -- the paper's progress figure: every individual a dot at the
  moment it joined the population against its validation accuracy, the living ones marked,
  the best-so-far line, and the ancestry of the best individual highlighted.
* :func:`compare_runs_figure` -- repeatability across runs: the best-so-far of each run and
  their mean and spread against time or FLOPs (the paper's figure of five runs).
* :func:`architecture_trends_figure` -- the architectures along the run in the metrics of the
  population's search space (real2017: depth, parameters, skips, strides and learning rate;
  amoebanet: depth, parameters and the op counts of each cell).
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np

from evo.analysis.history import History, axis_label
from evo.analysis.loading import history_of
from evo.base.files import place_file

__all__ = ["progress_figure", "compare_runs_figure", "compare_runs_table", "architecture_trends_figure",
           "save"]


def _figure(w: float, h: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h), dpi=100)  # fixed margins: a layout engine triples the drawing time
    FigureCanvasAgg(fig)
    return fig


def save(fig, path: str | os.PathLike, dpi: int = 120) -> str:
    """Write ``fig`` to ``path`` atomically (format from the suffix)."""
    path = os.fspath(path)
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    ext = os.path.splitext(path)[1]
    place_file(lambda tmp: fig.savefig(tmp, dpi=dpi, format=(ext.lstrip(".") or "png")), path)
    return path


def _load(pop: Any) -> History:
    return history_of(pop)


def _unit(axis: str, x: np.ndarray) -> tuple[float, str]:
    """(factor, axis label): FLOPs shown in a readable unit."""
    label = axis_label(axis)
    if axis != "flops" or not len(x):
        return 1.0, label
    top = float(np.nanmax(x))
    for exp, name in ((18, "exaFLOPs"), (15, "petaFLOPs"), (12, "teraFLOPs"), (9, "gigaFLOPs")):
        if top >= 10.0 ** exp:
            return 10.0 ** -exp, f"{name} spent"
    return 1.0, label


def progress_figure(pop: str | os.PathLike | History, axis: str = "time", path: str | os.PathLike | None = None,
                    title: str | None = None):
    """The progress of one run (Real et al. 2017, figure 1).

    Every individual is a dot at the moment it joined the population (``axis``: ``time``
    in hours, ``individuals``, or cumulative ``flops``) against its validation accuracy;
    living individuals are ringed, failed trainings are crosses at the bottom; the step line
    is the best validation accuracy so far; the ancestors of the best individual are joined
    in red from a seed to it.
    """
    h = _load(pop)
    order, x = h.positions(axis)
    f, xlabel = _unit(axis, x)
    xs = x * f
    fig = _figure(9, 5.5)
    fig.subplots_adjust(left=0.09, right=0.98, bottom=0.1, top=0.93)
    ax = fig.add_subplot(1, 1, 1)
    fit = np.array([np.nan if r.fitness is None else r.fitness for r in order], dtype=float)
    alive = np.array([r.alive for r in order], dtype=bool)
    ok = ~np.isnan(fit)
    ax.scatter(xs[ok & ~alive], fit[ok & ~alive], s=9, c="#9ca3af", alpha=0.6, linewidths=0, label="dead",
               zorder=2)
    ax.scatter(xs[ok & alive], fit[ok & alive], s=26, facecolors="#2563eb", edgecolors="#1e3a8a", linewidths=0.8,
               label="alive", zorder=4)
    lo = float(np.nanmin(fit)) if ok.any() else 0.0
    if (~ok).any():
        ax.scatter(xs[~ok], np.full((~ok).sum(), lo), marker="x", s=14, c="#ef4444", alpha=0.7,
                   label="failed training", zorder=3)
    curve = h.best_so_far(axis)
    if len(curve.x):
        ax.step(curve.x * f, curve.y, where="post", color="#111827", linewidth=1.4, label="best so far", zorder=5)
    best = h.best()
    if best is not None:
        where = {r.id: k for k, r in enumerate(order)}
        lin = [r for r in h.lineage(best.id) if r.id in where and r.fitness is not None]
        if lin:
            lx = [xs[where[r.id]] for r in lin]
            ly = [r.fitness for r in lin]
            ax.plot(lx, ly, "-o", color="#dc2626", markersize=4, linewidth=1.2, zorder=6,
                    label=f"ancestry of the best ({best.id}: {best.fitness:.4f})")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("validation accuracy")
    n_alive = int(alive.sum())
    ax.set_title(title or f"{os.path.basename(h.root.rstrip('/'))}: {len(order)} individuals, {n_alive} alive"
                 f" ({h.config.strategy}, P={h.config.population_size})", fontsize=11)
    ax.grid(True, alpha=0.3)
    if len(order):
        ax.legend(loc="lower right", fontsize=8, framealpha=0.9)
    else:
        ax.text(0.5, 0.5, "no individual committed yet", ha="center", va="center", transform=ax.transAxes)
    if path is not None:
        save(fig, path)
    return fig


def _grid(histories: Sequence[History], axis: str, points: int) -> np.ndarray:
    ends = []
    for h in histories:
        _, x = h.positions(axis)
        if len(x):
            ends.append(float(x[-1]))
    if not ends:
        return np.zeros(0)
    hi = max(ends)
    return np.linspace(0.0, hi, points) if axis != "individuals" else np.linspace(1.0, hi, points)


def compare_runs_table(histories: Sequence[History], axis: str = "time", points: int = 200,
                       labels: Sequence[str] | None = None) -> dict[str, Any]:
    """The numbers behind :func:`compare_runs_figure`.

    ``runs``: per run its label, individuals, best validation accuracy and id, when it was
    reached, total FLOPs and hours.  ``grid``, ``curves`` (one best-so-far per run sampled on
    the grid; NaN before a run's first individual and after its end), ``mean``, ``std``,
    ``min``, ``max`` across the runs still going at each grid point.
    """
    labels = list(labels or [os.path.basename(h.root.rstrip("/")) for h in histories])
    grid = _grid(histories, axis, points)
    curves = []
    runs = []
    for h, lab in zip(histories, labels):
        c = h.best_so_far(axis)
        _, x = h.positions(axis)
        y = c.at(grid)
        if len(x):
            y = np.where(grid <= x[-1], y, np.nan)
        curves.append(y)
        b = h.best()
        reached = None
        if b is not None and len(c.x):  # when the best accuracy was first reached (a tie: by the first)
            reached = float(c.x[int(np.argmax(c.y >= b.fitness))])
        hours = (max((r.finished_at or 0) for r in h.individuals) - h.t0) / 3600.0 if len(h) else 0.0
        runs.append({"label": lab, "popdir": h.root, "individuals": len(h),
                     "best_fitness": None if b is None else b.fitness, "best_id": None if b is None else b.id,
                     "best_reached_at": reached, "flops": h.total_flops(), "hours": hours})
    Y = np.array(curves, dtype=float) if curves else np.zeros((0, len(grid)))
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            stats = {"mean": np.nanmean(Y, axis=0), "std": np.nanstd(Y, axis=0),
                     "min": np.nanmin(Y, axis=0) if len(Y) else Y, "max": np.nanmax(Y, axis=0) if len(Y) else Y}
    finals = [r["best_fitness"] for r in runs if r["best_fitness"] is not None]
    return {"axis": axis, "grid": grid, "curves": Y, **stats, "runs": runs,
            "final_mean": float(np.mean(finals)) if finals else None,
            "final_std": float(np.std(finals)) if finals else None}


def compare_runs_figure(pops: Sequence[str | os.PathLike | History], axis: str = "time",
                        path: str | os.PathLike | None = None, labels: Sequence[str] | None = None,
                        points: int = 200, title: str | None = None):
    """Repeatability: the best-so-far of several runs against ``axis`` (``time`` or
    ``flops``; ``individuals`` too), each run a thin line, their mean a thick line and the
    band the spread (mean +- std; the dotted lines are min and max)."""
    hs = [_load(p) for p in pops]
    tab = compare_runs_table(hs, axis, points, labels)
    fig = _figure(9, 5.5)
    fig.subplots_adjust(left=0.09, right=0.98, bottom=0.1, top=0.93)
    ax = fig.add_subplot(1, 1, 1)
    f, xlabel = _unit(axis, tab["grid"])
    grid = tab["grid"] * f
    cmap = _cmap(len(hs))
    for k, (y, run) in enumerate(zip(tab["curves"], tab["runs"])):
        fin = "" if run["best_fitness"] is None else f" ({run['best_fitness']:.4f})"
        ax.plot(grid, y, color=cmap[k], linewidth=0.9, alpha=0.8, label=f"{run['label']}{fin}")
    if len(hs) > 1 and len(grid):
        ax.plot(grid, tab["mean"], color="#111827", linewidth=2.2, label=f"mean of {len(hs)} runs")
        ax.fill_between(grid, tab["mean"] - tab["std"], tab["mean"] + tab["std"], color="#111827", alpha=0.15,
                        linewidth=0, label="mean +- std")
        ax.plot(grid, tab["min"], ":", color="#374151", linewidth=0.8)
        ax.plot(grid, tab["max"], ":", color="#374151", linewidth=0.8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("best validation accuracy so far")
    fm, fs = tab["final_mean"], tab["final_std"]
    summary = f"final best {fm:.4f} +- {fs:.4f}" if fm is not None else "no individual yet"
    ax.set_title(title or f"{len(hs)} runs: {summary}", fontsize=11)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right", fontsize=8, framealpha=0.9)
    if path is not None:
        save(fig, path)
    return fig


def _cmap(n: int) -> list:
    from matplotlib import colormaps

    cm = colormaps["tab10"]
    return [cm(k % 10) for k in range(max(n, 1))]


#: titles of the metrics of a space without its own panels (the rest are titled by their names)
_TITLES = {"depth": "depth (weighted layers on the longest path)", "params": "parameters",
           "learning_rate": "learning rate", "fitness": "validation accuracy",
           "normal": "normal cell: op counts, outputs (medians)",
           "reduction": "reduction cell: op counts, outputs (medians)"}


def _trend_panels(t: dict) -> list[tuple[str, list[str], bool, int]]:
    """The panels (title, metrics, log scale, prefix to strip from the legend) of a trends dict: the
    search space's own (``trend_panels``: real2017's six), or depth, parameters, validation accuracy
    and one panel per group of counts (amoebanet: the op counts of each cell); a metric that never
    changes (the number of cells) is left out."""
    if t.get("panels"):
        return [(title, [m], bool(log), 0) for m, title, log in t["panels"]]
    from evo.analysis.trends import metric_groups

    def constant(m: str) -> bool:
        v = np.concatenate([t[m][k] for k in ("q25", "q75", "best")])
        v = v[~np.isnan(v)]
        return len(v) > 0 and bool(np.all(v == v[0]))

    first = ["depth", "params", "fitness"]
    groups = [g for g in metric_groups([m for m in t["metrics"] if m not in first])
              if len(g[1]) > 1 or not constant(g[1][0])]
    return [(_TITLES[m], [m], m == "params", 0) for m in first if m in t["metrics"]] + \
        [(_TITLES.get(key, key.replace("_", " ")), ms, False, len(key) + 1 if len(ms) > 1 else 0)
         for key, ms in groups]


def architecture_trends_figure(pop: str | os.PathLike | History, axis: str = "individuals", bins: int = 20,
                               path: str | os.PathLike | None = None, title: str | None = None):
    """How the architectures evolve: for each metric of the population's search space, the median
    and quartiles of the individuals born in each part of the run, and the value of the best-so-far
    individual; a panel of several counts (amoebanet: each op in a cell) shows their medians."""
    h = _load(pop)
    t = h.architecture_trends(bins=bins, axis=axis)
    f, xlabel = _unit(axis, t["x"])
    x = t["x"] * f
    panels = _trend_panels(t)
    rows = max(2, -(-len(panels) // 3))
    fig = _figure(11, 3.5 * rows)
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.08 * 2 / rows, top=1 - 0.1 * 2 / rows, wspace=0.3,
                        hspace=0.25)
    axes = fig.subplots(rows, 3, sharex=True)
    for a, (label, ms, log, prefix) in zip(axes.flat, panels):
        if len(ms) == 1:
            s = t[ms[0]]
            a.fill_between(x, s["q25"], s["q75"], color="#2563eb", alpha=0.2, linewidth=0, label="quartiles")
            a.plot(x, s["median"], "-o", color="#2563eb", markersize=3, linewidth=1.2, label="median")
            a.plot(x, s["best"], "-", color="#dc2626", linewidth=1.2, label="best so far")
            if log and np.nanmin(np.concatenate([s["q25"], s["best"], [np.inf]])) > 0:
                a.set_yscale("log")
        else:
            for m, colour in zip(ms, _cmap(len(ms))):
                a.plot(x, t[m]["median"], "-", color=colour, linewidth=1.2, label=m[prefix:])
            a.legend(fontsize=6, loc="best", ncol=2)
        a.set_title(label, fontsize=10)
        a.grid(True, alpha=0.3)
    for a in list(axes.flat)[len(panels):]:
        a.set_visible(False)
    for a in axes[-1]:
        a.set_xlabel(xlabel)
    axes.flat[0].legend(fontsize=7, loc="best")
    fig.suptitle(title or f"{os.path.basename(h.root.rstrip('/'))}: architecture trends over {len(h)} individuals",
                 fontsize=11)
    if path is not None:
        save(fig, path)
    return fig
