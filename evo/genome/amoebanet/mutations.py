"""The mutations of the cell space (Real et al. 2019, section 2.2 and figure 3); pure Python.

* ``HIDDEN-STATE``: one input of one combination, in the normal or the reduction cell, is
  re-wired to another hidden state before that combination (the cell stays a DAG);
* ``OP``: one operation of one combination is replaced by another one of the space;
* ``IDENTITY``: no change (the child is trained again, from scratch).

``mutate(genome, rng, n)`` draws ``n`` of them (relative weights and an allow-list are
configurable, uniform by default) and returns the child and one record per mutation,
``{"name": ..., "detail": {...}}``, as the other search spaces do.  Every mutation can always
apply, so a record never names a replacement; for a given seed the result is the same.
"""

from __future__ import annotations

import dataclasses
import math
import random
from typing import Any, Callable, Mapping, Sequence

from evo.genome.amoebanet.genome import CELL_KINDS, INPUTS, OPS, Combination, Genome
from evo.genome.space import GenomeError

__all__ = ["HIDDEN_STATE", "IDENTITY", "MUTATIONS", "OP", "MutationSettings", "hidden_state", "identity", "mutate",
           "op", "parse_config"]

HIDDEN_STATE = "HIDDEN-STATE"
OP = "OP"
IDENTITY = "IDENTITY"

Result = tuple[Genome, dict[str, Any]]


def _pick_slot(genome: Genome, rng: random.Random) -> tuple[str, int, int]:
    """A random (cell kind, combination, side) uniformly over both cells."""
    kind = rng.choice(CELL_KINDS)
    k = rng.randrange(len(genome.cell(kind).combinations))
    return kind, k, rng.randrange(2)


def hidden_state(genome: Genome, rng: random.Random) -> Result:
    """Re-wire one input of one combination to another hidden state before it (always possible)."""
    kind, k, side = _pick_slot(genome, rng)
    cell = genome.cell(kind)
    combo = cell.combinations[k]
    old = combo.inputs[side]
    new = rng.choice([s for s in range(k + INPUTS) if s != old])
    inputs = (new, combo.inputs[1]) if side == 0 else (combo.inputs[0], new)
    child = genome.replace_cell(kind, cell.replace_combination(k, Combination(inputs, combo.ops)))
    return child, {"cell": kind, "combination": k, "side": side, "from": old, "to": new}


def op(genome: Genome, rng: random.Random) -> Result:
    """Replace one operation of one combination by another operation of the space."""
    kind, k, side = _pick_slot(genome, rng)
    cell = genome.cell(kind)
    combo = cell.combinations[k]
    old = combo.ops[side]
    new = rng.choice([o for o in OPS if o != old])
    ops = (new, combo.ops[1]) if side == 0 else (combo.ops[0], new)
    child = genome.replace_cell(kind, cell.replace_combination(k, Combination(combo.inputs, ops)))
    return child, {"cell": kind, "combination": k, "side": side, "from": old, "to": new}


def identity(genome: Genome, rng: random.Random) -> Result:
    """No change: the same architecture is trained again."""
    return genome, {}


MUTATIONS: dict[str, Callable[[Genome, random.Random], Result]] = {
    HIDDEN_STATE: hidden_state,
    OP: op,
    IDENTITY: identity,
}


@dataclasses.dataclass(frozen=True)
class MutationSettings:
    """The mutations that may be drawn and their relative weights (read by :func:`parse_config`)."""

    pairs: tuple[tuple[str, float], ...]


def parse_config(config: Mapping[str, Any] | MutationSettings | None) -> MutationSettings:
    """``{"weights": {name: w}, "allowed": [names]}`` (``train.mutations``) read and checked.

    Missing names weigh 1.  Settings that belong to other spaces' mutations (``max_channels``,
    ...) are ignored, so a population's mutation settings never stop this space from reading them.
    """
    if isinstance(config, MutationSettings):
        return config
    if config is not None and not isinstance(config, Mapping):
        raise GenomeError(f"mutation settings must be an object, got {type(config).__name__}")
    config = dict(config or {})
    weights = config.get("weights") or {}
    allowed = config.get("allowed")
    if not isinstance(weights, Mapping):
        raise GenomeError(f"mutation weights must be a mapping of names to numbers, got {weights!r}")
    if allowed is not None and (not isinstance(allowed, (list, tuple)) or not all(isinstance(x, str) for x in allowed)):
        raise GenomeError(f"the mutation allow-list must be a list of names, got {allowed!r}")
    names = list(MUTATIONS) if allowed is None else list(allowed)
    unknown = sorted(str(x) for x in (set(weights) | set(names)) - set(MUTATIONS))
    if unknown:
        raise GenomeError(f"unknown amoebanet mutations {unknown} (known: {', '.join(MUTATIONS)})")
    for name, w in weights.items():
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or w < 0:
            raise GenomeError(f"mutation weight for {name} must be a finite number >= 0, got {w!r}")
    pairs = tuple((n, float(weights.get(n, 1.0))) for n in dict.fromkeys(names))
    pairs = tuple((n, w) for n, w in pairs if w > 0)
    if not pairs:
        raise GenomeError("no amoebanet mutation can be drawn (the allow-list is empty or every weight is 0)")
    return MutationSettings(pairs)


def _weighted_pick(rng: random.Random, pairs: Sequence[tuple[str, float]]) -> str:
    total = sum(w for _, w in pairs)
    x = rng.random() * total
    for name, w in pairs:
        x -= w
        if x < 0:
            return name
    return pairs[-1][0]


def mutate(genome: Genome, rng: random.Random, n: int = 1,
           config: Mapping[str, Any] | MutationSettings | None = None,
           ) -> tuple[Genome, list[dict[str, Any]]]:
    """Apply ``n`` mutations drawn by weight; return the child and one record per mutation."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise GenomeError(f"the number of mutations must be an int >= 0, got {n!r}")
    pairs = parse_config(config).pairs
    child = genome
    records: list[dict[str, Any]] = []
    for _ in range(n):
        name = _weighted_pick(rng, pairs)
        child, detail = MUTATIONS[name](child, rng)
        records.append({"name": name, "detail": detail})
    return child.validate(), records
