"""The DNA of one individual (Real et al. 2017, section 3.1): pure data, no torch.

A DNA is a directed acyclic graph.  Vertices are rank-3 activation tensors with a
nonlinearity (``LINEAR`` or ``BN_RELU``); edges are ``IDENTITY`` connections or ``CONV``
convolutions (output channels, odd filter height and width, power-of-two stride).  The
learning rate lives in the DNA too.  Every vertex and edge carries an id that is never
reused along a lineage (``next_id`` only grows): weight inheritance keys on it.

Structure kept by the mutations (and checked by :meth:`DNA.validate`):

* one *input* vertex (the image, no nonlinearity is applied to it) and one *output*
  vertex (followed by the fixed global average pooling + linear classifier);
* every other vertex has exactly one *primary* in-edge (``skip=False``); following
  primary edges backwards from any vertex reaches the input vertex;
* extra in-edges (``skip=True``) are reshaped to the primary input (nearest-neighbour
  resize, channel zero-padding or truncation) and summed, as in the paper.
"""

from __future__ import annotations

import dataclasses
import json
import math
from enum import Enum
from typing import Any, Iterable

from evo.genome.space import GenomeError

FORMAT_VERSION = 1

__all__ = [
    "FORMAT_VERSION",
    "DNA",
    "DNAError",
    "Edge",
    "EdgeType",
    "Vertex",
    "VertexType",
    "seed_dna",
]


class DNAError(GenomeError):
    """A DNA that is malformed; the message says what is wrong and where (a :class:`GenomeError`)."""


class VertexType(str, Enum):
    """A vertex's nonlinearity: identity, or batch norm followed by ReLU."""

    LINEAR = "LINEAR"
    BN_RELU = "BN_RELU"


class EdgeType(str, Enum):
    """An edge is a one-to-one (identity) connection or a convolution."""

    IDENTITY = "IDENTITY"
    CONV = "CONV"


@dataclasses.dataclass(frozen=True)
class Vertex:
    """An activation tensor and its nonlinearity."""

    id: int
    type: VertexType = VertexType.LINEAR

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "type": self.type.value}


@dataclasses.dataclass(frozen=True)
class Edge:
    """A connection ``src -> dst``: identity, or a convolution without bias.

    For ``CONV`` edges ``channels`` is the number of output channels, ``kernel`` the
    (height, width) of the filter (both odd) and ``stride`` a power of two.  These
    three are ``None`` for ``IDENTITY`` edges.  ``skip`` marks a non-primary input of
    ``dst``.  ``gate`` marks an identity skip scaled by a learnable scalar (added by ADD-SKIP in
    populations with function-preserving inheritance, which starts it at 0 so that the new path is
    silent until trained; a fresh network starts it at 1, the paper's plain identity).
    """

    id: int
    src: int
    dst: int
    type: EdgeType = EdgeType.IDENTITY
    channels: int | None = None
    kernel: tuple[int, int] | None = None
    stride: int | None = None
    skip: bool = False
    gate: bool = False

    @property
    def is_conv(self) -> bool:
        return self.type is EdgeType.CONV

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"id": self.id, "src": self.src, "dst": self.dst, "type": self.type.value}
        if self.is_conv:
            d.update(channels=self.channels, kernel=list(self.kernel or ()), stride=self.stride)
        d["skip"] = self.skip
        if self.gate:
            d["gate"] = True
        return d


_DNA_FIELDS = {
    "format_version",
    "vertices",
    "edges",
    "input_vertex",
    "output_vertex",
    "learning_rate",
    "input_shape",
    "num_classes",
    "next_id",
}


@dataclasses.dataclass(frozen=True)
class DNA:
    """The whole genome of an individual: graph, learning rate, input and output sizes."""

    vertices: tuple[Vertex, ...]
    edges: tuple[Edge, ...]
    input_vertex: int
    output_vertex: int
    learning_rate: float
    input_shape: tuple[int, int, int] = (3, 32, 32)
    num_classes: int = 10
    next_id: int = 0

    # ------------------------------------------------------------------ lookups
    def vertex(self, vid: int) -> Vertex:
        for v in self.vertices:
            if v.id == vid:
                return v
        raise KeyError(f"no vertex {vid}")

    def edge(self, eid: int) -> Edge:
        for e in self.edges:
            if e.id == eid:
                return e
        raise KeyError(f"no edge {eid}")

    def in_edges(self, vid: int) -> list[Edge]:
        return [e for e in self.edges if e.dst == vid]

    def out_edges(self, vid: int) -> list[Edge]:
        return [e for e in self.edges if e.src == vid]

    def primary_in_edge(self, vid: int) -> Edge:
        for e in self.edges:
            if e.dst == vid and not e.skip:
                return e
        raise KeyError(f"vertex {vid} has no primary input")

    def backbone(self) -> list[int]:
        """Vertex ids on the primary path from the input to the output vertex."""
        path = [self.output_vertex]
        seen = {self.output_vertex}
        while path[-1] != self.input_vertex:
            src = self.primary_in_edge(path[-1]).src
            if src in seen:
                raise DNAError(f"the primary path loops back to vertex {src}")
            seen.add(src)
            path.append(src)
        path.reverse()
        return path

    def backbone_edges(self) -> list[Edge]:
        """Primary edges along :meth:`backbone`, in order from the input."""
        return [self.primary_in_edge(v) for v in self.backbone()[1:]]

    @property
    def conv_edges(self) -> list[Edge]:
        return [e for e in self.edges if e.is_conv]

    def topological_order(self) -> list[int]:
        """Vertex ids in an order where every edge goes forward (Kahn's algorithm)."""
        indeg = {v.id: 0 for v in self.vertices}
        for e in self.edges:
            if e.dst in indeg:
                indeg[e.dst] += 1
        ready = sorted(v for v, d in indeg.items() if d == 0)
        order: list[int] = []
        out: dict[int, list[int]] = {v.id: [] for v in self.vertices}
        for e in self.edges:
            if e.src in out:
                out[e.src].append(e.dst)
        while ready:
            v = ready.pop(0)
            order.append(v)
            for w in out[v]:
                indeg[w] -= 1
                if indeg[w] == 0:
                    ready.append(w)
        if len(order) != len(self.vertices):
            stuck = sorted(v for v, d in indeg.items() if d > 0)
            raise DNAError(f"the graph has a cycle through vertices {stuck}")
        return order

    # ------------------------------------------------------------------ shapes
    def shapes(self) -> dict[int, tuple[int, int, int]]:
        """(channels, height, width) of every vertex, computed from ``input_shape``.

        A vertex takes the shape of its primary input; a convolution with stride s and
        'same' padding maps H to ceil(H / s).  Skip inputs are reshaped to it.
        """
        shapes: dict[int, tuple[int, int, int]] = {}
        for vid in self.topological_order():
            if vid == self.input_vertex:
                shapes[vid] = tuple(self.input_shape)  # type: ignore[assignment]
                continue
            e = self.primary_in_edge(vid)
            shapes[vid] = edge_output_shape(e, shapes[e.src])
        return shapes

    def depth(self) -> int:
        """Number of convolutions on the backbone (the paper's notion of depth)."""
        return sum(1 for e in self.backbone_edges() if e.is_conv)

    # ------------------------------------------------------------------ validation
    def validate(self) -> "DNA":
        """Check every structural rule; raise :class:`DNAError` naming the culprit."""
        if not (isinstance(self.learning_rate, (int, float)) and math.isfinite(self.learning_rate)
                and self.learning_rate > 0):
            raise DNAError(f"learning_rate must be a positive finite number, got {self.learning_rate!r}")
        if len(self.input_shape) != 3 or any(int(s) < 1 for s in self.input_shape):
            raise DNAError(f"input_shape must be (channels, height, width) of positive ints, got {self.input_shape!r}")
        if int(self.num_classes) < 1:
            raise DNAError(f"num_classes must be >= 1, got {self.num_classes!r}")
        vids = [v.id for v in self.vertices]
        if len(set(vids)) != len(vids):
            raise DNAError(f"duplicate vertex ids in {sorted(vids)}")
        eids = [e.id for e in self.edges]
        if len(set(eids)) != len(eids):
            raise DNAError(f"duplicate edge ids in {sorted(eids)}")
        shared = set(vids) & set(eids)
        if shared:
            raise DNAError(f"ids {sorted(shared)} are used by both a vertex and an edge")
        all_ids = vids + eids
        if all_ids and max(all_ids) >= self.next_id:
            raise DNAError(f"next_id {self.next_id} must exceed every used id (max {max(all_ids)})")
        if self.input_vertex not in vids:
            raise DNAError(f"input_vertex {self.input_vertex} is not a vertex")
        if self.output_vertex not in vids:
            raise DNAError(f"output_vertex {self.output_vertex} is not a vertex")
        vset = set(vids)
        pairs: set[tuple[int, int]] = set()
        for e in self.edges:
            where = f"edge {e.id} ({e.src}->{e.dst})"
            if e.src not in vset or e.dst not in vset:
                raise DNAError(f"{where} connects a vertex that does not exist")
            if e.src == e.dst:
                raise DNAError(f"{where} is a self-loop")
            if e.dst == self.input_vertex:
                raise DNAError(f"{where} points into the input vertex")
            if (e.src, e.dst) in pairs:
                raise DNAError(f"{where} duplicates another edge between the same vertices")
            pairs.add((e.src, e.dst))
            if e.is_conv:
                if not isinstance(e.channels, int) or e.channels < 1:
                    raise DNAError(f"{where}: channels must be a positive int, got {e.channels!r}")
                if e.kernel is None or len(e.kernel) != 2:
                    raise DNAError(f"{where}: kernel must be (height, width), got {e.kernel!r}")
                for k in e.kernel:
                    if not isinstance(k, int) or k < 1 or k % 2 == 0:
                        raise DNAError(f"{where}: filter sizes must be odd positive ints, got {e.kernel!r}")
                s = e.stride
                if not isinstance(s, int) or s < 1 or (s & (s - 1)) != 0:
                    raise DNAError(f"{where}: stride must be a power of two, got {s!r}")
            elif e.channels is not None or e.kernel is not None or e.stride is not None:
                raise DNAError(f"{where}: an IDENTITY edge has no channels, kernel or stride")
        for vid in vids:
            if vid == self.input_vertex:
                continue
            primaries = [e for e in self.edges if e.dst == vid and not e.skip]
            if len(primaries) != 1:
                raise DNAError(f"vertex {vid} must have exactly one primary (non-skip) input, has {len(primaries)}")
        self.topological_order()  # raises on a cycle
        reach = {self.input_vertex}
        for vid in self.topological_order():
            if vid in reach:
                reach.update(e.dst for e in self.edges if e.src == vid)
        unreachable = sorted(vset - reach)
        if unreachable:
            raise DNAError(f"vertices {unreachable} cannot be reached from the input vertex {self.input_vertex}")
        self.backbone()  # primary path must end at the input
        useless = sorted(v for v in vset if v != self.output_vertex and not self.out_edges(v))
        if useless:
            raise DNAError(f"vertices {useless} have no outgoing edge and are not the output vertex")
        return self

    # ------------------------------------------------------------------ JSON
    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "learning_rate": self.learning_rate,
            "input_shape": list(self.input_shape),
            "num_classes": self.num_classes,
            "input_vertex": self.input_vertex,
            "output_vertex": self.output_vertex,
            "next_id": self.next_id,
            "vertices": [v.to_dict() for v in self.vertices],
            "edges": [e.to_dict() for e in self.edges],
        }

    def to_json(self, indent: int | None = 1) -> str:
        """Exact JSON form (floats use Python's shortest round-trip repr)."""
        return json.dumps(self.to_dict(), indent=indent, sort_keys=False)

    @classmethod
    def from_dict(cls, d: dict[str, Any], *, validate: bool = True) -> "DNA":
        if not isinstance(d, dict):
            raise DNAError(f"a DNA must be a JSON object, got {type(d).__name__}")
        version = d.get("format_version")
        if not isinstance(version, int):
            raise DNAError("the DNA has no integer format_version")
        if version > FORMAT_VERSION:
            raise DNAError(
                f"the DNA has format_version {version}, newer than this evo understands ({FORMAT_VERSION}); "
                "upgrade evo to read it"
            )
        # unknown keys are ignored, as everywhere in the format (docs/format.md)
        missing = _DNA_FIELDS - set(d)
        if missing:
            raise DNAError(f"missing DNA fields {sorted(missing)}")
        try:
            vertices = tuple(_vertex_from_dict(v) for v in d["vertices"])
            edges = tuple(_edge_from_dict(e) for e in d["edges"])
            dna = cls(
                vertices=vertices,
                edges=edges,
                input_vertex=int(d["input_vertex"]),
                output_vertex=int(d["output_vertex"]),
                learning_rate=float(d["learning_rate"]),
                input_shape=tuple(int(s) for s in d["input_shape"]),  # type: ignore[arg-type]
                num_classes=int(d["num_classes"]),
                next_id=int(d["next_id"]),
            )
        except DNAError:
            raise
        except (TypeError, ValueError, KeyError) as exc:
            raise DNAError(f"malformed DNA: {exc}") from exc
        return dna.validate() if validate else dna

    @classmethod
    def from_json(cls, text: str, *, validate: bool = True) -> "DNA":
        try:
            d = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DNAError(f"DNA is not valid JSON: {exc}") from exc
        return cls.from_dict(d, validate=validate)

    # ------------------------------------------------------------------ editing helpers
    def replace(self, **changes: Any) -> "DNA":
        return dataclasses.replace(self, **changes)

    def with_edges(self, edges: Iterable[Edge]) -> "DNA":
        return dataclasses.replace(self, edges=tuple(edges))


def edge_output_shape(e: Edge, in_shape: tuple[int, int, int]) -> tuple[int, int, int]:
    """Shape produced by one edge from its source shape ('same' padding, ceil division)."""
    c, h, w = in_shape
    if not e.is_conv:
        return (c, h, w)
    s = int(e.stride or 1)
    return (int(e.channels or c), -(-h // s), -(-w // s))


def _vertex_from_dict(d: Any) -> Vertex:
    if not isinstance(d, dict):
        raise DNAError(f"a vertex must be an object, got {d!r}")
    try:
        vtype = VertexType(d.get("type", "LINEAR"))
    except ValueError:
        raise DNAError(f"vertex {d.get('id')}: unknown type {d.get('type')!r} (LINEAR or BN_RELU)") from None
    return Vertex(id=int(d["id"]), type=vtype)


def _edge_from_dict(d: Any) -> Edge:
    if not isinstance(d, dict):
        raise DNAError(f"an edge must be an object, got {d!r}")
    try:
        etype = EdgeType(d.get("type", "IDENTITY"))
    except ValueError:
        raise DNAError(f"edge {d.get('id')}: unknown type {d.get('type')!r} (IDENTITY or CONV)") from None
    kernel = d.get("kernel")
    if kernel is not None:
        if not isinstance(kernel, (list, tuple)) or len(kernel) != 2:
            raise DNAError(f"edge {d.get('id')}: kernel must be [height, width], got {kernel!r}")
        kernel = (int(kernel[0]), int(kernel[1]))
    channels = d.get("channels")
    stride = d.get("stride")
    skip = d.get("skip", False)
    if not isinstance(skip, bool):
        raise DNAError(f"edge {d.get('id')}: skip must be true or false, got {skip!r}")
    gate = d.get("gate", False)
    if not isinstance(gate, bool):
        raise DNAError(f"edge {d.get('id')}: gate must be true or false, got {gate!r}")
    if gate and (etype is not EdgeType.IDENTITY or not skip):
        raise DNAError(f"edge {d.get('id')}: only an identity skip edge can have a gate")
    return Edge(
        id=int(d["id"]),
        src=int(d["src"]),
        dst=int(d["dst"]),
        type=etype,
        channels=None if channels is None else int(channels),
        kernel=kernel,
        stride=None if stride is None else int(stride),
        skip=skip,
        gate=gate,
    )


def seed_dna(
    input_shape: tuple[int, int, int] = (3, 32, 32),
    num_classes: int = 10,
    learning_rate: float = 0.1,
) -> DNA:
    """The paper's initial individual: no convolution, only global pooling + linear classifier.

    The graph is the input vertex joined to the output vertex by one identity edge, so
    the classifier sees the globally pooled image.  Learning rate 0.1 as in the paper.
    """
    return DNA(
        vertices=(Vertex(0, VertexType.LINEAR), Vertex(1, VertexType.LINEAR)),
        edges=(Edge(2, 0, 1, EdgeType.IDENTITY),),
        input_vertex=0,
        output_vertex=1,
        learning_rate=float(learning_rate),
        input_shape=tuple(int(s) for s in input_shape),  # type: ignore[arg-type]
        num_classes=int(num_classes),
        next_id=3,
    ).validate()
