"""Growth mutations for growth runs (Net2Net, Chen et al. 2015; the grow-and-prune proposal); pure Python.

Three mutations that only make a network larger, each in a way that function-preserving
inheritance (:func:`evo.network.preserve.preserve_function`) can start from the parent's function:

* ``WIDEN``: a random convolution's output channels x2 (Net2Wider);
* ``DEEPEN``: a stride-1 3x3 convolution + BN-ReLU inserted on the backbone (Net2Deeper), reading a
  BN-ReLU vertex where there is one (its input is non-negative, so the identity-initialised layer
  is exact);
* ``LARGER-FILTER``: a random convolution's filter grows by 2 in height and width (zero-padded).

They are registered in the mutation table (:data:`evo.genome.real2017.mutations.MUTATIONS`) with a
default weight of 0: the paper's draw is unchanged unless the mutation config names them
(``weights={"WIDEN": 2, "DEEPEN": 1}`` or an ``allowed`` list).  Ids come from ``DNA.next_id`` as for
every mutation, so inheritance never confuses two layers.
"""

from __future__ import annotations

import dataclasses
import random
from typing import Any, Callable, Protocol

from evo.genome.real2017.dna import DNA, Edge, EdgeType, Vertex, VertexType

__all__ = ["DEEPEN", "GROWTH_MUTATIONS", "LARGER_FILTER", "WIDEN", "deepen", "larger_filter", "widen"]

WIDEN = "WIDEN"
DEEPEN = "DEEPEN"
LARGER_FILTER = "LARGER-FILTER"


class _Bounds(Protocol):
    max_channels: int
    max_filter: int


Result = tuple[DNA, dict[str, Any]]


def _replace_edge(dna: DNA, new: Edge) -> DNA:
    return dna.with_edges(new if e.id == new.id else e for e in dna.edges)


def widen(dna: DNA, rng: random.Random, cfg: _Bounds) -> Result | None:
    """Double a random convolution's output channels (at most ``max_channels``)."""
    convs = [e for e in dna.conv_edges if int(e.channels or 1) < cfg.max_channels]
    if not convs:
        return None
    c = rng.choice(convs)
    old = int(c.channels or 1)
    new = min(2 * old, cfg.max_channels)
    return _replace_edge(dna, dataclasses.replace(c, channels=new)), {"edge": c.id, "from": old, "to": new}


def deepen(dna: DNA, rng: random.Random, cfg: _Bounds) -> Result | None:
    """Insert ``u -> conv 3x3, stride 1 -> w (BN-ReLU) -> ...`` before a random backbone edge ``u -> x``.

    The new convolution keeps ``u``'s channels; the backbone edge now reads ``w``.  Edges out of
    a BN-ReLU vertex are preferred (identity-initialised, the new layer is then exact).
    """
    edges = dna.backbone_edges()
    bn = {v.id for v in dna.vertices if v.type is VertexType.BN_RELU and v.id != dna.input_vertex}
    preferred = [e for e in edges if e.src in bn]
    e = rng.choice(preferred or edges)
    channels = dna.shapes()[e.src][0]
    k = 3 if cfg.max_filter >= 3 else 1
    w, n = dna.next_id, dna.next_id + 1
    conv = Edge(n, e.src, w, EdgeType.CONV, channels=channels, kernel=(k, k), stride=1)
    moved = dataclasses.replace(e, src=w)
    child = dna.replace(
        vertices=dna.vertices + (Vertex(w, VertexType.BN_RELU),),
        edges=tuple(moved if x.id == e.id else x for x in dna.edges) + (conv,),
        next_id=dna.next_id + 2,
    )
    return child, {"vertex": w, "edge": n, "before_edge": e.id, "channels": channels,
                   "after_relu": e.src in bn}


def larger_filter(dna: DNA, rng: random.Random, cfg: _Bounds) -> Result | None:
    """Grow a random convolution's filter by 2 in each dimension still below ``max_filter``."""
    convs = [e for e in dna.conv_edges if min(e.kernel or (1, 1)) < cfg.max_filter]
    if not convs:
        return None
    c = rng.choice(convs)
    old = tuple(c.kernel or (1, 1))
    new = tuple(k + 2 if k + 2 <= cfg.max_filter else k for k in old)
    return _replace_edge(dna, dataclasses.replace(c, kernel=(new[0], new[1]))), {
        "edge": c.id, "from": list(old), "to": list(new)}


GROWTH_MUTATIONS: dict[str, Callable[[DNA, random.Random, Any], Result | None]] = {
    WIDEN: widen,
    DEEPEN: deepen,
    LARGER_FILTER: larger_filter,
}
