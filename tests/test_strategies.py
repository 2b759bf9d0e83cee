"""Selection strategies: pure functions over (id, fitness, birth order) candidates."""

import collections
import math
import random

import pytest

from evo.population.strategies import STRATEGIES, Candidate, aging, random_search, select, tournament


def recs(*fitness):
    return [Candidate(i + 1, f, i + 1) for i, f in enumerate(fitness)]


def test_tournament_better_is_parent_worse_is_victim():
    rng = random.Random(0)
    pop = recs(0.1, 0.9)
    for _ in range(50):
        assert tournament(pop, rng) == (2, 1)


def test_tournament_picks_two_distinct_and_is_uniform():
    rng = random.Random(1)
    pop = recs(*[i / 10 for i in range(10)])
    seen = collections.Counter()
    for _ in range(4000):
        parent, victim = tournament(pop, rng)
        assert parent != victim
        assert next(r.fitness for r in pop if r.id == parent) > next(r.fitness for r in pop if r.id == victim)
        seen[parent] += 1
    # the best wins every tournament it is drawn into (prob 2/10), the worst never
    assert seen[1] == 0
    assert 0.15 < seen[10] / 4000 < 0.25


def test_tournament_no_kill_below_setpoint_and_small_populations():
    rng = random.Random(2)
    assert tournament(recs(0.5, 0.2), rng, kill=False) == (1, None)
    assert tournament(recs(0.5), rng) == (1, None)
    assert tournament([], rng) == (None, None)


def test_tournament_ties_are_random():
    rng = random.Random(3)
    pop = recs(0.5, 0.5)
    parents = collections.Counter(tournament(pop, rng)[0] for _ in range(400))
    assert parents[1] > 100 and parents[2] > 100


def test_nan_fitness_counts_as_worst():
    rng = random.Random(4)
    pop = [Candidate(1, math.nan, 1), Candidate(2, 0.0, 2)]
    assert tournament(pop, rng) == (2, 1)
    assert random_search(pop, rng) == (None, 1)


def test_aging_kills_oldest_whatever_its_fitness():
    rng = random.Random(5)
    pop = [Candidate(7, 0.99, 7), Candidate(3, 0.95, 3), Candidate(9, 0.1, 9)]
    for _ in range(20):
        parent, victim = aging(pop, rng, sample_size=3)
        assert victim == 3
    assert aging(pop, rng, sample_size=2, kill=False)[1] is None


def test_aging_parent_is_best_of_sample_with_replacement():
    rng = random.Random(6)
    pop = recs(*[i / 100 for i in range(100)])
    # sample of the whole population size: the parent is nearly always among the best few
    parents = [aging(pop, rng, sample_size=100)[0] for _ in range(200)]
    assert sum(p >= 95 for p in parents) > 180
    # sample size 1: the parent is uniform
    parents = collections.Counter(aging(pop, rng, sample_size=1)[0] for _ in range(5000))
    assert len(parents) > 90
    with pytest.raises(ValueError):
        aging(pop, rng, sample_size=0)


def test_random_search_has_no_parent_and_kills_the_worst():
    rng = random.Random(7)
    assert random_search(recs(0.3, 0.1, 0.2), rng) == (None, 2)
    assert random_search(recs(0.3, 0.1), rng, kill=False) == (None, None)


def test_select_dispatch():
    rng = random.Random(8)
    pop = recs(0.1, 0.9, 0.5)
    assert set(STRATEGIES) == {"tournament", "aging", "random", "grow"}
    with pytest.raises(ValueError, match="no selection step"):
        select("grow", pop, rng)  # it plans whole generations (evo.population.grow)
    assert select("random", pop, rng) == (None, 1)
    p, v = select("aging", pop, rng, sample_size=50)
    assert (p, v) == (2, 1)
    p, v = select("tournament", pop, rng)
    assert p != v
    with pytest.raises(ValueError, match="unknown strategy"):
        select("nope", pop, rng)
