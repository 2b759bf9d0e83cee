"""Turn a DNA into a ``torch.nn.Module`` and carry weights from parent to child.

The builder follows Real et al. 2017: convolution edges have no bias and He
initialisation; identity edges pass their input through (a gated identity skip, ``Edge.gate``,
scales it by a learnable scalar ``gates.e<edge id>``, 1 in a fresh network); a ``BN_RELU`` vertex applies
batch norm then ReLU to the sum of its inputs, a ``LINEAR`` vertex nothing.  A vertex
with several inputs takes the shape of its primary input; the others are resized by
nearest-neighbour interpolation and zero-padded or truncated in channels, then summed.
The output vertex is globally average-pooled and fed to a linear classifier.

Every tensor is named after its owner's stable id (``convs.e<edge id>.weight``,
``bns.v<vertex id>.*``, ``head.*``), so weight inheritance is a name-and-shape match.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from evo.genome.real2017.dna import DNA, Edge, VertexType
from evo.network.weights import copy_matching

__all__ = ["DNANet", "build", "build_model", "inherit", "inherit_weights"]


def conv_key(edge_id: int) -> str:
    return f"e{edge_id}"


def bn_key(vertex_id: int) -> str:
    return f"v{vertex_id}"


class DNANet(nn.Module):
    """The network a DNA describes; ``forward`` takes NCHW floats and returns logits."""

    def __init__(self, dna: DNA) -> None:
        super().__init__()
        dna.validate()
        self.dna = dna
        shapes = dna.shapes()
        self.convs = nn.ModuleDict()
        for e in dna.conv_edges:
            cin = shapes[e.src][0]
            kh, kw = e.kernel or (1, 1)
            conv = nn.Conv2d(cin, int(e.channels or cin), (kh, kw), stride=int(e.stride or 1),
                             padding=(kh // 2, kw // 2), bias=False)
            nn.init.kaiming_normal_(conv.weight, mode="fan_in", nonlinearity="relu")
            self.convs[conv_key(e.id)] = conv
        self.bns = nn.ModuleDict()
        for v in dna.vertices:
            if v.type is VertexType.BN_RELU and v.id != dna.input_vertex:
                self.bns[bn_key(v.id)] = nn.BatchNorm2d(shapes[v.id][0])
        self.head = nn.Linear(shapes[dna.output_vertex][0], dna.num_classes)
        self.gates = nn.ParameterDict({conv_key(e.id): nn.Parameter(torch.ones(1))
                                       for e in dna.edges if e.gate and e.skip and not e.is_conv})

        # a static plan: for each vertex in order, its primary edge and skip edges
        order = dna.topological_order()
        self._plan: list[tuple[int, Edge, list[Edge], bool]] = []
        for vid in order:
            if vid == dna.input_vertex:
                continue
            ins = dna.in_edges(vid)
            primary = next(e for e in ins if not e.skip)
            skips = sorted((e for e in ins if e.skip), key=lambda e: e.id)
            self._plan.append((vid, primary, skips, bn_key(vid) in self.bns))
        # free each activation after its last reader
        last_use: dict[int, int] = {}
        for i, (_, primary, skips, _) in enumerate(self._plan):
            for e in [primary, *skips]:
                last_use[e.src] = i
        self._free_after: list[list[int]] = [[] for _ in self._plan]
        for vid, i in last_use.items():
            if vid != dna.output_vertex:
                self._free_after[i].append(vid)

    def _edge(self, e: Edge, x: torch.Tensor) -> torch.Tensor:
        if e.is_conv:
            return self.convs[conv_key(e.id)](x)
        return x * self.gates[conv_key(e.id)] if e.gate else x

    @staticmethod
    def _reshape_to(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """Nearest-neighbour resize and channel pad/truncate ``t`` to ``like``'s shape."""
        if t.shape[-2:] != like.shape[-2:]:
            t = F.interpolate(t, size=like.shape[-2:], mode="nearest")
        c, target = t.shape[1], like.shape[1]
        if c > target:
            t = t[:, :target]
        elif c < target:
            t = F.pad(t, (0, 0, 0, 0, 0, target - c))
        return t

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Activations of the output vertex (before pooling)."""
        acts: dict[int, torch.Tensor] = {self.dna.input_vertex: x}
        for i, (vid, primary, skips, has_bn) in enumerate(self._plan):
            h = self._edge(primary, acts[primary.src])
            for e in skips:
                h = h + self._reshape_to(self._edge(e, acts[e.src]), h)
            if has_bn:
                h = F.relu(self.bns[bn_key(vid)](h))
            acts[vid] = h
            for dead in self._free_after[i]:
                acts.pop(dead, None)
        return acts[self.dna.output_vertex]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.features(x)
        return self.head(h.mean(dim=(2, 3)))


def build_model(dna: DNA) -> DNANet:
    """A freshly initialised network for ``dna`` (He-initialised convolutions)."""
    return DNANet(dna)


def inherit_weights(child: nn.Module, parent_state: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """Copy every parent tensor whose name (owner id) and shape match into ``child``.

    Parameters and batch-norm running statistics alike; everything else keeps its fresh
    initialisation.  Returns ``{"copied": [...], "fresh": [...], "mismatched": [...]}``
    (mismatched: same owner, different shape, so freshly initialised).
    """
    return copy_matching(child, parent_state)


# -- the search-space seam (evo.genome.space.SearchSpace.build / .inherit) ----------------------
def build(space: Any, dna: DNA) -> DNANet:
    """``space.build(dna)`` for the ``real2017`` space: :func:`build_model`."""
    return build_model(dna)


def inherit(space: Any, child_net: nn.Module, parent_state: Mapping[str, torch.Tensor],
            **context: Any) -> dict[str, Any]:
    """``space.inherit(...)`` for the ``real2017`` space: the paper's name-and-shape match
    (:func:`inherit_weights`); with ``inheritance="function-preserving"`` in ``context`` (and the
    ``parent`` and ``child`` genomes, the ``mutations`` records), Net2Net's function-preserving
    inheritance (:func:`evo.network.preserve.preserve_function`) and its report."""
    if context.get("inheritance", "paper") == "function-preserving":
        from evo.network.preserve import inherit_preserving
        return inherit_preserving(child_net, parent_state, **context)
    return inherit_weights(child_net, parent_state)
