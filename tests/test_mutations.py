import random
from collections import Counter

import pytest

from evo.genome.real2017.dna import DNA, seed_dna
from evo.genome.real2017.growth import GROWTH_MUTATIONS
from evo.genome.real2017.mutations import MUTATIONS, MutationConfig, MutationError, mutate, resets_weights


def test_all_eleven_exist():
    assert len(set(MUTATIONS) - set(GROWTH_MUTATIONS)) == 11  # the paper's; the growth ones are extra


def test_property_random_chains_stay_valid_and_round_trip():
    """Thousands of random mutation chains from the seed: every child validates."""
    seen = Counter()
    ids_ever: list[set[int]] = []
    for chain in range(120):
        rng = random.Random(chain)
        d = seed_dna(input_shape=(3, 16, 16))
        used = {v.id for v in d.vertices} | {e.id for e in d.edges}
        for _ in range(40):
            parent = d
            d, record = mutate(d, rng, n=rng.choice([1, 1, 1, 5]))
            seen.update(r["name"] for r in record)
            d.validate()
            assert DNA.from_json(d.to_json()) == d
            assert d.next_id >= parent.next_id
            now = {v.id for v in d.vertices} | {e.id for e in d.edges}
            # a new id is never one that existed before along this lineage and was dropped
            new = now - ({v.id for v in parent.vertices} | {e.id for e in parent.edges})
            assert all(i >= parent.next_id for i in new)
            used |= now
        ids_ever.append(used)
    paper = set(MUTATIONS) - set(GROWTH_MUTATIONS)  # growth mutations weigh 0 by default
    assert set(seen) == paper, f"some mutations never applied: {paper - set(seen)}"
    assert sum(seen.values()) > 5000


def test_deterministic_for_a_seed():
    a, ra = mutate(seed_dna(), random.Random(7), n=30)
    b, rb = mutate(seed_dna(), random.Random(7), n=30)
    assert a == b and ra == rb
    c, _ = mutate(seed_dna(), random.Random(8), n=30)
    assert c != a


def test_inapplicable_mutation_is_replaced_and_recorded():
    cfg = MutationConfig(allowed=["REMOVE-SKIP", "IDENTITY"], weights={"REMOVE-SKIP": 1e9})
    child, record = mutate(seed_dna(), random.Random(0), config=cfg)
    assert record[0]["name"] == "IDENTITY"
    assert record[0]["replaced"] == ["REMOVE-SKIP"]
    assert child == seed_dna()


def test_no_applicable_mutation_is_a_clear_error():
    with pytest.raises(MutationError, match="none of the allowed"):
        mutate(seed_dna(), 0, config=MutationConfig(allowed=["REMOVE-SKIP"]))


def test_config_rejects_unknown_names():
    with pytest.raises(ValueError, match="unknown mutation"):
        MutationConfig(allowed=["GROW-WINGS"])


def only(name, dna=None, seed=0):
    return mutate(dna or seed_dna(), random.Random(seed), config=MutationConfig(allowed=[name]))


def test_learning_rate_factor_between_half_and_two():
    for s in range(200):
        child, rec = only("ALTER-LEARNING-RATE", seed=s)
        assert 0.05 <= child.learning_rate <= 0.2
        assert rec[0]["detail"]["factor"] == pytest.approx(child.learning_rate / 0.1)


def test_insert_convolution_keeps_channels_and_old_edge():
    d = seed_dna()
    child, rec = only("INSERT-CONVOLUTION", d)
    conv = child.conv_edges[0]
    assert conv.kernel == (3, 3) and conv.stride in (1, 2) and conv.channels == 3
    assert d.edges[0].id in {e.id for e in child.edges}
    assert child.depth() == 1


def test_remove_convolution_undoes_depth():
    d = seed_dna()
    rng = random.Random(1)
    for _ in range(3):
        d, _ = mutate(d, rng, config=MutationConfig(allowed=["INSERT-CONVOLUTION"]))
    assert d.depth() == 3
    d2, _ = only("REMOVE-CONVOLUTION", d)
    assert d2.depth() == 2
    assert len(d2.vertices) == len(d.vertices) - 1


def test_filter_size_stays_odd_and_stride_power_of_two():
    d, _ = only("INSERT-CONVOLUTION")
    rng = random.Random(3)
    for _ in range(200):
        d, _ = mutate(d, rng, config=MutationConfig(allowed=["FILTER-SIZE", "ALTER-STRIDE", "ALTER-NUMBER-OF-CHANNELS"]))
        (c,) = d.conv_edges
        assert all(k % 2 == 1 and 1 <= k <= 7 for k in c.kernel)
        assert c.stride in (1, 2, 4)
        assert 1 <= c.channels <= 512


def test_skips_add_and_remove():
    d = seed_dna()
    rng = random.Random(0)
    for _ in range(4):
        d, _ = mutate(d, rng, config=MutationConfig(allowed=["INSERT-ONE-TO-ONE"]))
    d, rec = only("ADD-SKIP", d)
    skips = [e for e in d.edges if e.skip]
    assert len(skips) == 1
    path = d.backbone()
    assert path.index(skips[0].src) < path.index(skips[0].dst)
    d, _ = only("REMOVE-SKIP", d)
    assert not any(e.skip for e in d.edges)


def test_reset_weights_is_flagged():
    child, rec = only("RESET-WEIGHTS")
    assert resets_weights(rec) and child == seed_dna()
