"""Architecture trends: how the architectures of a population change over the run, per search space.

The individuals, in birth order, are cut into bins along an axis (:meth:`History.positions`); for
each metric the median and quartiles of every bin and the value of the best-so-far individual at its
end.  The metrics are the search space's: the numbers of ``space.describe`` named by its
``trend_metrics`` (real2017: depth, convolutions, skips, strides, ...: the counts an
:class:`~evo.analysis.records.IndividualSummary` keeps, cached for the dead), or every number it
gives (amoebanet: depth, cells, and how often each op occurs in each cell), read from every
``dna.json``.  Parameters, the learning rate and the validation accuracy come from the fitness
records in every space.  Pure Python (numpy, no torch); this module knows no genome.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from evo.analysis.errors import AnalysisError
from evo.analysis.records import DNA_FIELDS

if TYPE_CHECKING:
    from evo.analysis.history import History
    from evo.analysis.records import IndividualSummary

__all__ = ["RECORD_METRICS", "architecture_trends", "metric_groups", "trend_values"]

#: read from the fitness records, in every space
RECORD_METRICS = ("params", "learning_rate", "fitness")


def _space(h: "History") -> Any:
    """The population's search space, or None when this version does not know it."""
    from evo.genome import GenomeError, space_of

    try:
        return space_of(h.config)
    except GenomeError:
        return None


def trend_values(h: "History", order: Sequence["IndividualSummary"]) -> tuple[str, dict[str, np.ndarray]]:
    """(the space's name, ``{metric: values of the individuals of order}``; NaN where unknown)."""
    space = _space(h)
    values: dict[str, np.ndarray] = {}
    wanted = list(space.trend_metrics) if space is not None else []
    if wanted and all(m in DNA_FIELDS or m == "depth" for m in wanted):
        h.fill_dna_stats()  # the counts an IndividualSummary keeps (cached for the dead); depth: the record's
        values = {m: h.array(m, order) for m in wanted}
    elif space is not None:
        from evo.genome import GenomeError

        described: list[dict[str, Any]] = []
        for r in order:
            try:
                described.append(space.describe(space.from_dict(h.dna(r.id))))
            except (AnalysisError, GenomeError, TypeError, ValueError, KeyError):
                described.append({})  # a DNA gone or unreadable: NaN in every metric of the genome
        keys = [k for k in wanted if k not in RECORD_METRICS]
        for d in described if not wanted else []:
            keys += [k for k, v in d.items() if k not in keys and k not in RECORD_METRICS and _is_number(v)]
        values = {k: np.array([float(d[k]) if _is_number(d.get(k)) else np.nan for d in described]) for k in keys}
    if "depth" not in values:
        values["depth"] = h.array("depth", order)
    for m in RECORD_METRICS:
        values[m] = h.array(m, order)
    name = space.name if space is not None else str(getattr(h.config, "search_space", None) or "unknown")
    return name, values


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))


def metric_groups(metrics: Sequence[str]) -> list[tuple[str, list[str]]]:
    """The metrics as the figure draws them: ``(title, [metrics])``; the metrics that share a prefix
    before ``_`` with two or more others (amoebanet's ``normal_sep_3x3``, ``normal_identity``, ...)
    are drawn together, the others one per panel."""
    prefix: dict[str, list[str]] = {}
    for m in metrics:
        if "_" in m:
            prefix.setdefault(m.split("_", 1)[0], []).append(m)
    grouped = {p: ms for p, ms in prefix.items() if len(ms) >= 3}
    out: list[tuple[str, list[str]]] = []
    done: set[str] = set()
    for m in metrics:
        p = m.split("_", 1)[0] if "_" in m else None
        if p in grouped:
            if p not in done:
                out.append((p, grouped[p]))
                done.add(p)
        else:
            out.append((m, [m]))
    return out


def architecture_trends(h: "History", bins: int = 20, axis: str = "individuals") -> dict[str, Any]:
    """How the architectures change over the run (:meth:`History.architecture_trends`).

    Returns ``{"axis", "label", "space", "metrics" (their names, in order), "panels" (the space's
    ``trend_panels`` for the figure, maybe empty), "x" (bin centres), "edges", "n" (individuals per
    bin), metric: {"median", "q25", "q75", "best"}}``; NaN where a bin is empty or a value unknown.
    """
    from evo.analysis.history import axis_label

    order, x = h.positions(axis)
    space, values = trend_values(h, order)
    metrics = list(values)
    known = _space(h)
    panels = [list(p) for p in known.trend_panels if p[0] in values] if known is not None else []
    bins = max(1, int(bins))
    out: dict[str, Any] = {"axis": axis, "label": axis_label(axis), "space": space, "metrics": metrics,
                           "panels": panels}
    if not order:
        out.update(x=np.zeros(0), n=np.zeros(0, dtype=int), edges=np.zeros(0))
        for m in metrics:
            out[m] = {k: np.zeros(0) for k in ("median", "q25", "q75", "best")}
        return out
    lo, hi = float(x[0]), float(x[-1])
    if hi <= lo:
        hi = lo + 1.0
    edges = np.linspace(lo, hi, bins + 1)
    idx = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, bins - 1)
    best_at: list[int | None] = []  # position in order of the best so far, after each individual
    best, where = -math.inf, None
    for k, r in enumerate(order):
        if r.fitness is not None and r.fitness > best:
            best, where = r.fitness, k
        best_at.append(where)
    last_in_bin = {int(b): k for k, b in enumerate(idx)}
    out["x"] = (edges[:-1] + edges[1:]) / 2
    out["edges"] = edges
    out["n"] = np.bincount(idx, minlength=bins)
    for m in metrics:
        vals = values[m]
        med, q25, q75, bst = (np.full(bins, np.nan) for _ in range(4))
        for b in range(bins):
            v = vals[idx == b]
            v = v[~np.isnan(v)]
            if len(v):
                med[b], q25[b], q75[b] = np.percentile(v, [50, 25, 75])
            k = last_in_bin.get(b)
            if k is not None and best_at[k] is not None:
                bst[b] = vals[best_at[k]]
        out[m] = {"median": med, "q25": q25, "q75": q75, "best": bst}
    return out
