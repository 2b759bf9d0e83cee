"""What ``evo show`` reports about one individual: its record, its DNA as tables, its family."""

from __future__ import annotations

import os
from typing import Any

from evo.analysis.history import History
from evo.analysis.loading import history_of
from evo.analysis.records import dna_stats
from evo.population.layout import DEATH_FILE, load_json_or_none

__all__ = ["describe"]


def describe(pop: str | os.PathLike | History, i: int) -> dict[str, Any]:
    """Everything ``evo show`` prints about individual ``i``: its record, its genome as tables (real2017:
    rows of vertices and edges with shapes; another search space: its ``tables``, and ``stats`` from its
    ``describe``), its parent, the mutations applied, death, checkpoint."""
    h = history_of(pop)
    r = h[i]
    rec = h.record(i)
    dna = h.dna(i)
    space, genome = _genome(h, dna)
    real2017 = space is None or space.name == "real2017"
    vertices, edges = _dna_tables(dna) if real2017 else ([], [])
    summary = {} if genome is None else space.describe(genome)
    lr = dna.get("learning_rate") if real2017 else rec.get("learning_rate")
    parent = h.get(r.parent_id) if r.parent_id is not None else None
    death = load_json_or_none(os.path.join(h.path_of(i), DEATH_FILE), warn=False)
    return {
        "id": r.id, "status": r.status, "alive": r.alive, "path": h.path_of(i),
        "fitness": r.fitness, "outcome": r.outcome, "kind": r.kind,
        "parent": None if r.parent_id is None else {
            "id": r.parent_id, "fitness": None if parent is None else parent.fitness,
            "alive": None if parent is None else parent.alive, "known": parent is not None},
        "mutations": rec.get("mutations") or [],
        "children": [c.id for c in h.children(i)],
        "lineage_depth": r.lineage_depth,
        "learning_rate": lr,
        "input_shape": dna.get("input_shape"), "num_classes": dna.get("num_classes"),
        "search_space": None if space is None else space.spec(),
        "stats": dna_stats(dna) if real2017 else summary,
        "vertices": vertices, "edges": edges,
        "tables": [] if genome is None else space.tables(genome),
        "record": rec, "death": death, "checkpoint": h.checkpoint(i),
    }


def _genome(h: History, dna: dict) -> tuple[Any, Any]:
    """(the population's search space, ``dna`` read by it); (None, None) for a space this version
    does not know, and (space, None) for a genome it cannot read: ``evo show`` still shows the record."""
    from evo.genome import GenomeError, space_of

    try:
        space = space_of(h.config)
    except GenomeError:
        return None, None
    try:
        return space, space.from_dict(dna)
    except (GenomeError, TypeError, ValueError, KeyError):
        return space, None


def _dna_tables(dna: dict) -> tuple[list[dict], list[dict]]:
    shapes: dict[int, Any] = {}
    try:
        from evo.genome.real2017.dna import DNA

        shapes = {k: list(v) for k, v in DNA.from_dict(dna).shapes().items()}
    except Exception:  # noqa: BLE001 - a DNA this version cannot parse: show it without shapes
        shapes = {}
    vin, vout = dna.get("input_vertex"), dna.get("output_vertex")
    vertices = []
    for v in dna.get("vertices") or []:
        vid = v.get("id")
        role = "input" if vid == vin else "output" if vid == vout else ""
        vertices.append({"id": vid, "type": v.get("type"), "role": role, "shape": shapes.get(vid)})
    edges = []
    for e in sorted(dna.get("edges") or [], key=lambda e: e.get("id", 0)):
        edges.append({"id": e.get("id"), "src": e.get("src"), "dst": e.get("dst"), "type": e.get("type"),
                      "channels": e.get("channels"), "kernel": e.get("kernel"), "stride": e.get("stride"),
                      "skip": bool(e.get("skip"))})
    return vertices, edges
