"""Selection strategies: which living individual reproduces and which one dies.

Pure functions, no I/O, no torch.  Each takes the living population as a sequence of
:class:`Candidate` ``(id, fitness, birth_order)`` and a :class:`random.Random`, and returns
``(parent_id, victim_id)``:

* ``parent_id`` -- the individual whose copy is mutated into the child, or ``None`` when the
  child is not derived from anyone (random search);
* ``victim_id`` -- the individual removed from the population at this step, or ``None`` when
  nobody dies (``kill=False``: the population is below its set-point).

``fitness`` is the validation accuracy (higher is better); ``birth_order`` says who is older
(the population layer uses the individual id, which is allocated at the selection step that
created the individual, so smaller means older).  A NaN fitness counts as the worst possible value.

The population layer calls :func:`select` under its lock with the candidates of ``alive/``.
"""

from __future__ import annotations

import math
import random
from typing import NamedTuple, Sequence

__all__ = [
    "Candidate",
    "STRATEGIES",
    "tournament",
    "aging",
    "random_search",
    "select",
]

#: Names accepted in the experiment config (``strategy``).
STRATEGIES = ("tournament", "aging", "random", "grow")  # grow: by generations, evo.population.grow


class Candidate(NamedTuple):
    """One living individual as the strategies see it."""

    id: int
    fitness: float
    birth_order: int


def _key(candidate: Candidate) -> float:
    f = candidate.fitness
    if f is None or (isinstance(f, float) and math.isnan(f)):
        return -math.inf
    return float(f)


def tournament(
    candidates: Sequence[Candidate], rng: random.Random, *, kill: bool = True
) -> tuple[int | None, int | None]:
    """Pairwise tournament selection of Real et al. 2017 ("Large-Scale Evolution of Image
    Classifiers", Section 3, *Evolutionary Algorithm*): a worker picks two individuals at
    random; the worse one is killed and the better one becomes the parent.

    The two are distinct.  Ties are broken at random.  With ``kill=False`` (population below
    its set-point, "reproduces when below it") the worse one survives.  With a single living
    individual it is the parent and nobody dies.
    """
    n = len(candidates)
    if n == 0:
        return None, None
    if n == 1:
        return candidates[0].id, None
    a, b = rng.sample(range(n), 2)
    ra, rb = candidates[a], candidates[b]
    ka, kb = _key(ra), _key(rb)
    if ka > kb or (ka == kb and rng.random() < 0.5):
        better, worse = ra, rb
    else:
        better, worse = rb, ra
    return better.id, (worse.id if kill else None)


def aging(
    candidates: Sequence[Candidate],
    rng: random.Random,
    *,
    sample_size: int,
    kill: bool = True,
) -> tuple[int | None, int | None]:
    """Aging (regularized) evolution of Real et al. 2019 ("Regularized Evolution for Image
    Classifier Architecture Search", Algorithm 1): sample ``sample_size`` individuals
    uniformly *with replacement*, the best of the sample is the parent, and the **oldest**
    individual of the whole population is removed whatever its fitness.

    The parent may be the oldest individual and be removed at the same step (the store keeps
    its DNA and checkpoint for the child).  Ties in the sample go to the first sampled;
    among equally old individuals the smallest id dies.
    """
    n = len(candidates)
    if n == 0:
        return None, None
    if sample_size < 1:
        raise ValueError(f"sample_size must be >= 1, got {sample_size}")
    best: Candidate | None = None
    best_key = -math.inf
    for _ in range(sample_size):
        r = candidates[rng.randrange(n)]
        k = _key(r)
        if best is None or k > best_key:
            best, best_key = r, k
    assert best is not None
    victim = min(candidates, key=lambda r: (r.birth_order, r.id)).id if kill else None
    return best.id, victim


def random_search(
    candidates: Sequence[Candidate], rng: random.Random, *, kill: bool = True
) -> tuple[int | None, int | None]:
    """The random-search control of Real et al. 2019 (Section 4, *Baselines*): every child is a
    fresh random architecture trained from scratch, so there is no parent and no selection
    pressure on what is generated.

    The population directory still holds at most ``population_size`` living individuals, so
    when asked to kill this returns the *worst* living individual (the alive set is then the
    best ``population_size`` models found so far, which keeps their checkpoints).  The worst
    is chosen deterministically (lowest fitness, then oldest); ``rng`` is unused but kept for
    a uniform signature.
    """
    del rng
    if not kill or not candidates:
        return None, None
    return None, min(candidates, key=lambda r: (_key(r), r.birth_order, r.id)).id


def select(
    strategy: str,
    candidates: Sequence[Candidate],
    rng: random.Random,
    *,
    kill: bool = True,
    sample_size: int | None = None,
) -> tuple[int | None, int | None]:
    """Run one selection step of ``strategy`` (one of :data:`STRATEGIES`)."""
    if strategy == "tournament":
        return tournament(candidates, rng, kill=kill)
    if strategy == "aging":
        return aging(candidates, rng, sample_size=sample_size or 1, kill=kill)
    if strategy == "random":
        return random_search(candidates, rng, kill=kill)
    if strategy == "grow":
        raise ValueError("the grow strategy has no selection step: it plans whole generations "
                         "(evo.population.grow)")
    raise ValueError(
        f"unknown strategy {strategy!r}; expected one of {', '.join(STRATEGIES)}"
    )
