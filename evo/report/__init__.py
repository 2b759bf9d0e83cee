"""``evo report``: one self-contained HTML page about one or several populations.

For each population: state and budget, the progress figure, the leaderboard, the best
individual's lineage with a drawing of each ancestor's architecture, architecture trends,
workers and warnings (what ``evo status`` reports).  Given several populations (the runs of
one experiment, or of two to compare), the page opens with their comparison: the best so far
of every run against FLOPs and against wall-clock time, with mean and spread, and a table
(``bin/compare-runs``).

Pure Python on top of :mod:`evo.analysis` and :mod:`evo.plots` (matplotlib); never imports
torch.  Figures are embedded as PNG data and architectures as inline SVG (Graphviz ``dot``
where installed, else text), so the file opens anywhere without a server or a network.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Sequence

from evo import __version__, analysis, plots
from evo.base.files import atomic_write
from evo.report.html import esc, fmt, page, png_img, sci, section, table
from evo.report.population import population_section

__all__ = ["build_report", "write_report", "run_labels"]


def run_labels(paths: Sequence[str]) -> list[str]:
    """Short distinct names for populations: the shortest trailing parts of their paths that
    tell them apart (``seed-0`` alone, or ``aging/seed-0`` next to ``tournament/seed-0``)."""
    parts = [os.path.abspath(p).rstrip("/").split("/") for p in paths]
    for k in range(1, max((len(p) for p in parts), default=1) + 1):
        labels = ["/".join(p[-k:]) for p in parts]
        if len(set(labels)) == len(labels):
            return labels
    return [os.path.abspath(p) for p in paths]


def _comparison(hs: list[Any], labels: list[str]) -> str:
    out = []
    for axis, what in (("flops", "FLOPs spent"), ("time", "wall-clock time")):
        fig = plots.compare_runs_figure(hs, axis, labels=labels)
        out.append(f"<figure>{png_img(fig, f'comparison against {what}')}<figcaption>Best validation accuracy so "
                   f"far of each run against {what}; with several runs, their mean (thick), mean &plusmn; std "
                   "(band), min and max (dotted).</figcaption></figure>")
    tab = plots.compare_runs_table(hs, "flops", labels=labels)
    rows = [[r["label"], r["individuals"], fmt(r["best_fitness"], ".4f"), fmt(r["best_id"]),
             sci(r["best_reached_at"]), sci(r["flops"]), analysis.format_duration(r["hours"] * 3600.0)]
            for r in tab["runs"]]
    out.append(table(["run", "individuals", "best val acc", "best id", "reached at (FLOPs)", "FLOPs", "duration"],
                     rows, numeric={1, 2, 3, 4, 5, 6}))
    if tab["final_mean"] is not None:
        finals = [r["best_fitness"] for r in tab["runs"] if r["best_fitness"] is not None]
        out.append(f"<p>Final best validation accuracy: mean {tab['final_mean']:.4f} &plusmn; "
                   f"{tab['final_std']:.4f} (std), range {min(finals):.4f} to {max(finals):.4f}, over "
                   f"{len(finals)} runs.</p>")
    return "\n".join(out)


def build_report(popdirs: Sequence[str | os.PathLike], *, title: str | None = None, top_n: int = 10,
                 max_drawings: int = 40, graphviz: bool | None = None) -> tuple[str, dict[str, Any]]:
    """The report page of ``popdirs`` as HTML text, and a summary (labels, states, whether
    architectures were drawn by Graphviz).  Read-only: safe on live populations."""
    if not popdirs:
        raise ValueError("evo report needs at least one population directory")
    paths = [os.fspath(p) for p in popdirs]
    hs = [analysis.load(p) for p in paths]
    labels = run_labels(paths)
    anchors = [f"pop{k + 1}" for k in range(len(hs))]
    body = []
    if len(hs) > 1:
        nav = " ".join(f'<a href="#{a}">{esc(lab)}</a>' for a, lab in zip(anchors, labels))
        body.append(f'<nav><b>Populations:</b> <a href="#comparison">comparison</a> {nav}</nav>')
        body.append(section("comparison", f"Comparison of {len(hs)} runs", _comparison(hs, labels)))
    facts = []
    for h, a, lab in zip(hs, anchors, labels):
        html_, info = population_section(h, a, lab, top_n=top_n, max_drawings=max_drawings, graphviz=graphviz)
        body.append(html_)
        facts.append({"label": lab, "popdir": h.root, "individuals": len(h), "state": info["status"]["state"],
                      "best": info["status"]["best"], "graphviz": info["graphviz"]})
    when = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    title = title or ("evo report: " + (labels[0] if len(hs) == 1 else f"{len(hs)} populations"))
    text = page(title, "\n".join(body), subtitle=f"written {esc(when)} by evo {esc(__version__)} &middot; "
                "read-only snapshot of the population directories")
    return text, {"populations": facts, "bytes": len(text.encode())}


def write_report(popdirs: Sequence[str | os.PathLike], output: str | os.PathLike, **kw: Any) -> dict[str, Any]:
    """Write the report page to ``output`` (atomically); returns :func:`build_report`'s summary
    with the output path."""
    text, info = build_report(popdirs, **kw)
    out = Path(output)
    if out.parent and not out.parent.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out, lambda f: f.write(text.encode("utf-8")))
    return {**info, "output": str(out)}
