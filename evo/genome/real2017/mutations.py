"""The eleven mutations of Large-Scale Evolution (Real et al. 2017, section 3.2); pure Python.

``mutate(dna, rng, n)`` picks ``n`` mutations at random (weights and an allow-list are
configurable).  When the picked mutation cannot apply to the DNA (say REMOVE-SKIP on a
network with no skip), another one is drawn from those not yet tried, and the record
says so.  The child is always a valid DNA, and for a given seed the result is the same.

Every mutation allocates fresh ids from ``DNA.next_id``: a new vertex or edge never takes
an id that ever existed along the lineage, so weight inheritance (which matches tensors
by owner id and shape) never confuses two different layers.
"""

from __future__ import annotations

import dataclasses
import math
import random
from typing import Any, Callable, Mapping, Sequence

from evo.genome.real2017.dna import DNA, DNAError, Edge, EdgeType, Vertex, VertexType
from evo.genome.real2017.growth import GROWTH_MUTATIONS
from evo.genome.space import MutationError

__all__ = ["MUTATIONS", "MutationConfig", "MutationError", "mutate"]

ALTER_LEARNING_RATE = "ALTER-LEARNING-RATE"
IDENTITY = "IDENTITY"
RESET_WEIGHTS = "RESET-WEIGHTS"
INSERT_CONVOLUTION = "INSERT-CONVOLUTION"
REMOVE_CONVOLUTION = "REMOVE-CONVOLUTION"
ALTER_STRIDE = "ALTER-STRIDE"
ALTER_NUMBER_OF_CHANNELS = "ALTER-NUMBER-OF-CHANNELS"
FILTER_SIZE = "FILTER-SIZE"
INSERT_ONE_TO_ONE = "INSERT-ONE-TO-ONE"
ADD_SKIP = "ADD-SKIP"
REMOVE_SKIP = "REMOVE-SKIP"


@dataclasses.dataclass(frozen=True)
class MutationConfig:
    """Which mutations may be drawn, how often, and the bounds that keep a child trainable.

    ``weights`` maps mutation names to relative probabilities (missing names weigh 1;
    the paper draws uniformly; the growth mutations WIDEN, DEEPEN and LARGER-FILTER weigh 0
    unless ``weights`` or ``allowed`` names them).  ``allowed`` restricts the draw to a subset.
    ``gated_skips``: ADD-SKIP adds a gated identity skip (``Edge.gate``), which function-preserving
    inheritance can switch off at birth; populations with that inheritance set it by default.
    """

    weights: Mapping[str, float] = dataclasses.field(default_factory=dict)
    allowed: Sequence[str] | None = None
    max_channels: int = 512
    max_filter: int = 7
    max_stride: int = 4
    gated_skips: bool = False

    def __post_init__(self) -> None:
        unknown = set(self.weights) | set(self.allowed or ())
        unknown -= set(MUTATIONS)
        if unknown:
            raise ValueError(f"unknown mutation names {sorted(unknown)}; known: {', '.join(MUTATIONS)}")
        for name, w in self.weights.items():
            if not (isinstance(w, (int, float)) and math.isfinite(w) and w >= 0):
                raise ValueError(f"mutation weight for {name} must be a finite number >= 0, got {w!r}")
        if not isinstance(self.gated_skips, bool):
            raise ValueError(f"gated_skips must be true or false, got {self.gated_skips!r}")
        if self.allowed is not None and not self.allowed:
            raise ValueError("the mutation allow-list is empty")
        if self.max_channels < 1 or self.max_filter < 1 or self.max_filter % 2 == 0 or self.max_stride < 1:
            raise ValueError("max_channels >= 1, max_filter odd >= 1 and max_stride >= 1 are required")

    def candidates(self) -> list[tuple[str, float]]:
        names = list(self.allowed) if self.allowed is not None else list(MUTATIONS)
        default = {n: 0.0 for n in GROWTH_MUTATIONS} if self.allowed is None else {}
        weights = [(n, float(self.weights.get(n, default.get(n, 1.0)))) for n in names]
        return [(n, w) for n, w in weights if w > 0]

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> "MutationConfig":
        d = dict(d or {})
        unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown mutation settings {sorted(unknown)}")
        if d.get("allowed") is not None:
            d["allowed"] = tuple(d["allowed"])
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        return {
            "weights": dict(self.weights),
            "allowed": None if self.allowed is None else list(self.allowed),
            "max_channels": self.max_channels,
            "max_filter": self.max_filter,
            "max_stride": self.max_stride,
            "gated_skips": self.gated_skips,
        }


Result = tuple[DNA, dict[str, Any]]
MutationFn = Callable[[DNA, random.Random, MutationConfig], "Result | None"]


# ---------------------------------------------------------------------- helpers
def _new_ids(dna: DNA, k: int) -> tuple[list[int], int]:
    return list(range(dna.next_id, dna.next_id + k)), dna.next_id + k


def _random_vertex_type(rng: random.Random) -> VertexType:
    return rng.choice([VertexType.BN_RELU, VertexType.LINEAR])


def _replace_edge(dna: DNA, old: Edge, new: Edge) -> DNA:
    return dna.with_edges(new if e.id == old.id else e for e in dna.edges)


def _insert_on_backbone(dna: DNA, rng: random.Random, e: Edge, new_edge: Callable[[int, int, int], Edge]) -> Result:
    """Split backbone edge e = u->v into u->w (the old edge, weights kept) and w->v (new)."""
    (w, eid), next_id = _new_ids(dna, 2)
    edges = [dataclasses.replace(x, dst=w) if x.id == e.id else x for x in dna.edges]
    edges.append(new_edge(eid, w, e.dst))
    vtype = _random_vertex_type(rng)
    child = dna.replace(vertices=dna.vertices + (Vertex(w, vtype),), edges=tuple(edges), next_id=next_id)
    return child, {"after_edge": e.id, "vertex": w, "edge": eid, "vertex_type": vtype.value}


# ---------------------------------------------------------------------- the mutations
def alter_learning_rate(dna: DNA, rng: random.Random, cfg: MutationConfig) -> Result:
    """Multiply the learning rate by 2**U(-1, 1): a factor between 0.5 and 2."""
    factor = 2.0 ** rng.uniform(-1.0, 1.0)
    return dna.replace(learning_rate=dna.learning_rate * factor), {"factor": factor}


def identity(dna: DNA, rng: random.Random, cfg: MutationConfig) -> Result:
    """No change: the child keeps training the parent's weights."""
    return dna, {}


def reset_weights(dna: DNA, rng: random.Random, cfg: MutationConfig) -> Result:
    """Same architecture; the worker trains the child from scratch (inherits nothing)."""
    return dna, {"reset_weights": True}


def insert_convolution(dna: DNA, rng: random.Random, cfg: MutationConfig) -> Result:
    """A 3x3 convolution, stride 1 or 2, output channels = input channels, at a random
    place in the backbone, followed at random by BN-ReLU or nothing."""
    e = rng.choice(dna.backbone_edges())
    stride = rng.choice([1, 2])
    channels = dna.shapes()[e.dst][0]  # the new conv reads what e produces
    child, detail = _insert_on_backbone(
        dna, rng, e,
        lambda eid, src, dst: Edge(eid, src, dst, EdgeType.CONV, channels=channels, kernel=(3, 3), stride=stride))
    detail.update(channels=channels, stride=stride)
    return child, detail


def insert_one_to_one(dna: DNA, rng: random.Random, cfg: MutationConfig) -> Result:
    """An identity connection to a new vertex, inserted at a random place in the backbone."""
    e = rng.choice(dna.backbone_edges())
    return _insert_on_backbone(dna, rng, e, lambda eid, src, dst: Edge(eid, src, dst, EdgeType.IDENTITY))


def remove_convolution(dna: DNA, rng: random.Random, cfg: MutationConfig) -> Result | None:
    """Remove a random convolution of the backbone by merging its two vertices."""
    convs = [e for e in dna.backbone_edges() if e.is_conv]
    if not convs:
        return None
    c = rng.choice(convs)
    u, w = c.src, c.dst
    if u == dna.input_vertex and w == dna.output_vertex:
        # the only layer between image and classifier: it becomes a plain connection
        (eid,), next_id = _new_ids(dna, 1)
        ident = Edge(eid, u, w, EdgeType.IDENTITY, skip=False)
        return dna.replace(edges=tuple(ident if e.id == c.id else e for e in dna.edges), next_id=next_id), {
            "edge": c.id, "replaced_by": eid}
    edges: list[Edge] = []
    for e in dna.edges:
        if e.id == c.id:
            continue
        src = u if e.src == w else e.src
        dst = u if e.dst == w else e.dst
        edges.append(dataclasses.replace(e, src=src, dst=dst))
    # drop self-loops and duplicate pairs, keeping the primary edge of a pair
    edges = [e for e in edges if e.src != e.dst]
    edges.sort(key=lambda e: (e.skip, e.id))
    kept: list[Edge] = []
    pairs: set[tuple[int, int]] = set()
    for e in edges:
        if (e.src, e.dst) not in pairs:
            pairs.add((e.src, e.dst))
            kept.append(e)
    kept.sort(key=lambda e: e.id)
    output = u if w == dna.output_vertex else dna.output_vertex
    child = dna.replace(
        vertices=tuple(v for v in dna.vertices if v.id != w),
        edges=tuple(kept),
        output_vertex=output,
    )
    return child, {"edge": c.id, "merged_vertex": w, "into": u}


def _pick_conv(dna: DNA, rng: random.Random) -> Edge | None:
    convs = dna.conv_edges
    return rng.choice(convs) if convs else None


def alter_stride(dna: DNA, rng: random.Random, cfg: MutationConfig) -> Result | None:
    """Double or halve a random convolution's stride (powers of two only)."""
    convs = [e for e in dna.conv_edges if (e.stride or 1) * 2 <= cfg.max_stride or (e.stride or 1) > 1]
    if not convs:
        return None
    c = rng.choice(convs)
    s = c.stride or 1
    options = [x for x in (s // 2, s * 2) if 1 <= x <= cfg.max_stride and x != s]
    new = rng.choice(options)
    return _replace_edge(dna, c, dataclasses.replace(c, stride=new)), {"edge": c.id, "from": s, "to": new}


def alter_number_of_channels(dna: DNA, rng: random.Random, cfg: MutationConfig) -> Result | None:
    """Multiply a random convolution's output channels by U(0.5, 2), rounded, >= 1."""
    c = _pick_conv(dna, rng)
    if c is None:
        return None
    old = int(c.channels or 1)
    new = max(1, min(cfg.max_channels, int(round(old * rng.uniform(0.5, 2.0)))))
    if new == old:
        new = old + 1 if old < cfg.max_channels else old - 1
        if new < 1:
            return None
    return _replace_edge(dna, c, dataclasses.replace(c, channels=new)), {"edge": c.id, "from": old, "to": new}


def filter_size(dna: DNA, rng: random.Random, cfg: MutationConfig) -> Result | None:
    """Grow or shrink a random convolution's filter height or width by 2 (stays odd)."""
    c = _pick_conv(dna, rng)
    if c is None:
        return None
    axis = rng.choice([0, 1])
    kernel = list(c.kernel or (1, 1))
    options = [k for k in (kernel[axis] - 2, kernel[axis] + 2) if 1 <= k <= cfg.max_filter]
    if not options:
        return None
    old = kernel[axis]
    kernel[axis] = rng.choice(options)
    new_edge = dataclasses.replace(c, kernel=(kernel[0], kernel[1]))
    return _replace_edge(dna, c, new_edge), {
        "edge": c.id, "axis": "height" if axis == 0 else "width", "from": old, "to": kernel[axis]}


def add_skip(dna: DNA, rng: random.Random, cfg: MutationConfig) -> Result | None:
    """An identity edge between two random backbone vertices, forward only, no duplicate."""
    path = dna.backbone()
    existing = {(e.src, e.dst) for e in dna.edges}
    pairs = [(a, b) for i, a in enumerate(path) for b in path[i + 1:] if (a, b) not in existing]
    if not pairs:
        return None
    a, b = rng.choice(pairs)
    (eid,), next_id = _new_ids(dna, 1)
    edge = Edge(eid, a, b, EdgeType.IDENTITY, skip=True, gate=bool(cfg.gated_skips))
    return dna.replace(edges=dna.edges + (edge,), next_id=next_id), {"edge": eid, "src": a, "dst": b}


def remove_skip(dna: DNA, rng: random.Random, cfg: MutationConfig) -> Result | None:
    """Remove a random skip edge."""
    skips = [e for e in dna.edges if e.skip]
    if not skips:
        return None
    e = rng.choice(skips)
    return dna.with_edges(x for x in dna.edges if x.id != e.id), {"edge": e.id, "src": e.src, "dst": e.dst}


MUTATIONS: dict[str, MutationFn] = {
    ALTER_LEARNING_RATE: alter_learning_rate,
    IDENTITY: identity,
    RESET_WEIGHTS: reset_weights,
    INSERT_CONVOLUTION: insert_convolution,
    REMOVE_CONVOLUTION: remove_convolution,
    ALTER_STRIDE: alter_stride,
    ALTER_NUMBER_OF_CHANNELS: alter_number_of_channels,
    FILTER_SIZE: filter_size,
    INSERT_ONE_TO_ONE: insert_one_to_one,
    ADD_SKIP: add_skip,
    REMOVE_SKIP: remove_skip,
    **GROWTH_MUTATIONS,  # WIDEN, DEEPEN, LARGER-FILTER: weight 0 unless the config names them
}


def _weighted_pick(rng: random.Random, options: list[tuple[str, float]]) -> str:
    total = sum(w for _, w in options)
    x = rng.uniform(0.0, total)
    for name, w in options:
        x -= w
        if x <= 0:
            return name
    return options[-1][0]


def mutate(
    dna: DNA,
    rng: random.Random | int,
    n: int = 1,
    config: MutationConfig | None = None,
) -> tuple[DNA, list[dict[str, Any]]]:
    """Apply ``n`` random mutations in turn; return the child and what was applied.

    Each record is ``{"name": ..., "detail": {...}}`` and, when the first draw could not
    apply, ``"replaced": [names that could not apply]``.  RESET-WEIGHTS leaves the DNA
    unchanged; its record (``detail.reset_weights``) tells the caller not to inherit.
    """
    if n < 0:
        raise ValueError(f"number of mutations must be >= 0, got {n}")
    if not isinstance(rng, random.Random):
        rng = random.Random(rng)
    config = config or MutationConfig()
    records: list[dict[str, Any]] = []
    child = dna
    for _ in range(n):
        options = config.candidates()
        tried: list[str] = []
        while True:
            if not options:
                raise MutationError(
                    f"none of the allowed mutations {[n for n, _ in config.candidates()]} applies to this DNA "
                    f"(tried {tried}); allow more mutations, for example IDENTITY")
            name = _weighted_pick(rng, options)
            out = MUTATIONS[name](child, rng, config)
            if out is not None:
                candidate, detail = out
                try:
                    candidate.validate()
                except DNAError:
                    out = None
            if out is None:
                tried.append(name)
                options = [(o, w) for o, w in options if o != name]
                continue
            child = candidate
            record: dict[str, Any] = {"name": name, "detail": detail}
            if tried:
                record["replaced"] = tried
            records.append(record)
            break
    return child, records


def resets_weights(records: Sequence[Mapping[str, Any]]) -> bool:
    """True when one of the applied mutations was RESET-WEIGHTS."""
    return any(r.get("name") == RESET_WEIGHTS for r in records)
