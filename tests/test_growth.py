"""Growth mutations: WIDEN, DEEPEN, LARGER-FILTER (pure Python)."""

import random
from collections import Counter

import pytest

from evo.genome.real2017.dna import DNA, Edge, EdgeType, Vertex, VertexType, seed_dna
from evo.genome.real2017.growth import DEEPEN, GROWTH_MUTATIONS, LARGER_FILTER, WIDEN, deepen, larger_filter, widen
from evo.genome.real2017.mutations import MUTATIONS, MutationConfig, mutate


def two_convs(channels: int = 4, kernel=(3, 3)) -> DNA:
    """input -conv-> v1 (BN-ReLU) -conv-> out (LINEAR)."""
    return DNA(vertices=(Vertex(0), Vertex(1, VertexType.BN_RELU), Vertex(2)),
               edges=(Edge(3, 0, 1, EdgeType.CONV, channels=channels, kernel=kernel, stride=1),
                      Edge(4, 1, 2, EdgeType.CONV, channels=channels, kernel=kernel, stride=2)),
               input_vertex=0, output_vertex=2, learning_rate=0.1, input_shape=(3, 16, 16), next_id=5).validate()


def test_registered_with_weight_zero_by_default():
    assert set(GROWTH_MUTATIONS) == {WIDEN, DEEPEN, LARGER_FILTER} <= set(MUTATIONS)
    names = [n for n, _ in MutationConfig().candidates()]
    assert not set(names) & set(GROWTH_MUTATIONS) and len(names) == 11
    weighted = dict(MutationConfig(weights={WIDEN: 3}).candidates())
    assert weighted[WIDEN] == 3 and DEEPEN not in weighted
    assert dict(MutationConfig(allowed=(WIDEN, DEEPEN)).candidates()) == {WIDEN: 1.0, DEEPEN: 1.0}
    with pytest.raises(ValueError, match="unknown mutation names"):
        MutationConfig(weights={"WIDER": 1})
    cfg = MutationConfig.from_dict({"weights": {WIDEN: 1, DEEPEN: 1, LARGER_FILTER: 1}, "allowed": None})
    assert {n for n, _ in cfg.candidates()} >= set(GROWTH_MUTATIONS)


def test_widen_doubles_one_convolution_up_to_the_bound():
    dna = two_convs()
    child, detail = widen(dna, random.Random(0), MutationConfig())
    e = child.edge(detail["edge"])
    assert (detail["from"], detail["to"], e.channels) == (4, 8, 8)
    assert [x for x in child.edges if x.id != e.id] == [x for x in dna.edges if x.id != e.id]
    capped, d = widen(dna, random.Random(0), MutationConfig(max_channels=6))
    assert d["to"] == 6
    assert widen(two_convs(channels=6), random.Random(0), MutationConfig(max_channels=6)) is None
    assert widen(seed_dna(), random.Random(0), MutationConfig()) is None


def test_deepen_inserts_a_stride_one_conv_and_bn_relu_after_a_relu():
    dna = two_convs()
    child, detail = deepen(dna, random.Random(0), MutationConfig())
    child.validate()
    w, n = detail["vertex"], detail["edge"]
    assert child.vertex(w).type is VertexType.BN_RELU
    conv = child.edge(n)
    assert (conv.src, conv.dst, conv.kernel, conv.stride, conv.skip) == (1, w, (3, 3), 1, False)
    assert conv.channels == 4 == detail["channels"] and detail["after_relu"]
    moved = child.edge(detail["before_edge"])
    assert moved.src == w and moved.dst == 2  # the old backbone edge now reads the new vertex
    assert child.depth() == dna.depth() + 1 and child.shapes()[2] == dna.shapes()[2]
    assert child.next_id == dna.next_id + 2
    # from the seed (no ReLU anywhere) it still grows, reading the image
    grown, d = deepen(seed_dna(), random.Random(0), MutationConfig())
    assert not d["after_relu"] and grown.depth() == 1 and grown.shapes()[grown.output_vertex][0] == 3


def test_larger_filter_grows_by_two_and_stops_at_the_bound():
    dna = two_convs(kernel=(3, 5))
    child, detail = larger_filter(dna, random.Random(0), MutationConfig(max_filter=5))
    assert detail["from"] == [3, 5] and detail["to"] == [5, 5]
    assert child.edge(detail["edge"]).kernel == (5, 5)
    assert larger_filter(two_convs(kernel=(5, 5)), random.Random(0), MutationConfig(max_filter=5)) is None


def test_growth_chains_stay_valid_and_only_grow():
    cfg = MutationConfig(allowed=(WIDEN, DEEPEN, LARGER_FILTER), max_channels=64)
    seen = Counter()
    for chain in range(20):
        rng = random.Random(chain)
        dna = two_convs()
        for _ in range(15):
            parent = dna
            dna, records = mutate(dna, rng, config=cfg)
            seen.update(r["name"] for r in records)
            dna.validate()
            assert DNA.from_json(dna.to_json()) == dna
            assert dna.depth() >= parent.depth()
            assert sum(e.channels or 0 for e in dna.conv_edges) >= sum(e.channels or 0 for e in parent.conv_edges)
            assert dna.shapes()[dna.output_vertex][1:] == parent.shapes()[parent.output_vertex][1:]
    assert set(seen) == set(GROWTH_MUTATIONS)


def test_mutate_is_deterministic_with_growth_weights():
    cfg = MutationConfig(weights={WIDEN: 2, DEEPEN: 2, LARGER_FILTER: 1})
    a = mutate(two_convs(), random.Random(3), n=10, config=cfg)
    b = mutate(two_convs(), random.Random(3), n=10, config=cfg)
    assert a == b
