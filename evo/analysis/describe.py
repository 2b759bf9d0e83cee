"""What ``evo show`` reports about one individual: its record, its genome as tables, its family.

The genome is read, summarised and tabulated by the population's search space (``describe`` and
``tables`` of :mod:`evo.genome.space`); this module knows no genome.
"""

from __future__ import annotations

import os
from typing import Any

from evo.analysis.history import History
from evo.analysis.loading import history_of
from evo.population.layout import DEATH_FILE, load_json_or_none

__all__ = ["describe"]


def describe(pop: str | os.PathLike | History, i: int) -> dict[str, Any]:
    """Everything ``evo show`` prints about individual ``i``: its record, its genome (``stats``: the
    numbers of its search space's ``describe``; ``tables``: the space's tables, real2017's vertices
    and edges or a cell genome's cells), its parent, the mutations applied, death, checkpoint."""
    h = history_of(pop)
    r = h[i]
    rec = h.record(i)
    dna = h.dna(i)
    space, genome = _genome(h, dna)
    own_lr = None if genome is None else space.learning_rate(genome)
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
        "learning_rate": own_lr if own_lr is not None else rec.get("learning_rate"),
        "genome_learning_rate": own_lr is not None,
        "input_shape": dna.get("input_shape"), "num_classes": dna.get("num_classes"),
        "search_space": None if space is None else space.spec(),
        "stats": {} if genome is None else space.describe(genome),
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
