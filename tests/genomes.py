"""Genomes shared by the genome and network tests (a helper module, not a test file)."""

from __future__ import annotations

import random

from evo.genome.real2017.dna import DNA, Edge, EdgeType, Vertex, VertexType, seed_dna
from evo.genome.real2017.mutations import mutate


def small_convnet() -> DNA:
    """Two convolutions (3x3, then 5x3 with stride 2), BN-ReLU vertices and one skip."""
    return DNA(
        vertices=(Vertex(0), Vertex(1, VertexType.BN_RELU), Vertex(2, VertexType.BN_RELU), Vertex(3)),
        edges=(
            Edge(4, 0, 1, EdgeType.CONV, channels=8, kernel=(3, 3), stride=1),
            Edge(5, 1, 2, EdgeType.CONV, channels=16, kernel=(5, 3), stride=2),
            Edge(6, 2, 3, EdgeType.IDENTITY),
            Edge(7, 1, 3, EdgeType.IDENTITY, skip=True),
        ),
        input_vertex=0,
        output_vertex=3,
        learning_rate=0.05,
        input_shape=(3, 32, 32),
        num_classes=10,
        next_id=8,
    ).validate()


def evolved(seed: int, steps: int = 25, shape=(3, 16, 16)) -> DNA:
    """The seed after ``steps`` random mutations drawn with ``seed``."""
    rng = random.Random(seed)
    d = seed_dna(input_shape=shape)
    for _ in range(steps):
        d, _ = mutate(d, rng)
    return d
