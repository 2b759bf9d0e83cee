"""The networks the training benchmarks measure, all as DNAs of the real2017 space (built by evo).

``five_conv``: a hand-designed network of the kind a person would write first -- five 3x3 convolutions with
BN-ReLU, 64-128-128-256-256 channels, two stride-2 stages, global pooling and a linear layer.
``evolved_a`` / ``evolved_b``: hand-written DNAs shaped like mid-run individuals of an evolution (conv stems,
stride-2 stages, non-square filters, identity skips); they are not taken from a recorded run.
``seed``: the paper's seed (global pooling + linear), the size of every child early in an evolution.
"""
from __future__ import annotations

from typing import Callable

from evo.genome.real2017.dna import DNA, Edge, EdgeType, Vertex, VertexType, seed_dna

B, L, C, I = VertexType.BN_RELU, VertexType.LINEAR, EdgeType.CONV, EdgeType.IDENTITY


def _chain(shape, classes, convs, skips=(), lr: float = 0.1) -> DNA:
    """Vertices 0..len(convs) in a chain of conv edges ``(channels, (kh, kw), stride)``, plus identity skips."""
    n = len(convs)
    vertices = tuple(Vertex(i, B if i else L) for i in range(n + 1))
    edges = [Edge(100 + i, i, i + 1, C, ch, tuple(k), s) for i, (ch, k, s) in enumerate(convs)]
    edges += [Edge(200 + j, a, b, I, skip=True) for j, (a, b) in enumerate(skips)]
    return DNA(vertices=vertices, edges=tuple(edges), input_vertex=0, output_vertex=n, learning_rate=lr,
               input_shape=tuple(shape), num_classes=classes, next_id=300).validate()


def five_conv(shape, classes) -> DNA:
    return _chain(shape, classes, [(64, (3, 3), 1), (128, (3, 3), 2), (128, (3, 3), 1), (256, (3, 3), 2),
                                   (256, (3, 3), 1)])


def evolved_a(shape, classes) -> DNA:
    """6 convolutions (32-32-64-64-128-128, one 5x3), 2 identity skips (benchmarks/train_speed.py's)."""
    return _chain(shape, classes, [(32, (3, 3), 1), (32, (3, 3), 1), (64, (3, 3), 2), (64, (5, 3), 1),
                                   (128, (3, 3), 2), (128, (3, 3), 1)], skips=[(2, 4), (4, 6)])


def evolved_b(shape, classes) -> DNA:
    """9 convolutions with 1x3 / 3x1 / 5x5 / 7x1 filters, 48-96-192 channels, 3 skips."""
    return _chain(shape, classes, [(48, (3, 3), 1), (48, (1, 3), 1), (48, (3, 1), 1), (96, (5, 5), 2),
                                   (96, (3, 3), 1), (96, (7, 1), 1), (192, (3, 3), 2), (192, (3, 3), 1),
                                   (192, (1, 1), 1)], skips=[(1, 3), (4, 6), (7, 9)])


def seed(shape, classes) -> DNA:
    return seed_dna(tuple(shape), classes)


NETWORKS: dict[str, tuple[Callable[..., DNA], str]] = {
    "five_conv": (five_conv, "hand-designed: 5 convs 64-128-128-256-256, BN-ReLU"),
    "evolved_a": (evolved_a, "evolved-like: 6 convs 32-128 (one 5x3), 2 skips"),
    "evolved_b": (evolved_b, "evolved-like: 9 convs 48-192 (1x3, 3x1, 5x5, 7x1), 3 skips"),
    "seed": (seed, "the paper's seed: global pooling + linear"),
}
