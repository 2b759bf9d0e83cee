"""The genome of the cell search space (NASNet, Zoph et al. 2018; Real et al. 2019): pure data, no torch.

A genome is two cells, a *normal* cell and a *reduction* cell, each of :data:`COMBINATIONS`
pairwise combinations.  A cell's hidden states are numbered:

* ``0``: the output of the cell before the previous one (h_{i-2}),
* ``1``: the output of the previous cell (h_{i-1}),
* ``k + 2``: the output of combination ``k``.

Combination ``k`` takes two hidden states numbered below ``k + 2`` (so every cell is a DAG by
construction), applies one operation of :data:`OPS` to each and adds the results.  The cell's
output concatenates every hidden state that no combination uses (NASNet's rule; a cell input no
combination uses is passed on too).  In a reduction cell the operations applied to hidden states
``0`` and ``1`` have stride 2.

The JSON form (``Genome.to_dict``)::

    {"format_version": 1, "space": "amoebanet", "input_shape": [3, 32, 32], "num_classes": 10,
     "normal": [{"inputs": [0, 1], "ops": ["sep_3x3", "identity"]}, ... 5 combinations],
     "reduction": [...]}
"""

from __future__ import annotations

import dataclasses
import random
from typing import Any, Iterable, Mapping, Sequence

from evo.genome.space import GenomeError

__all__ = [
    "CELL_KINDS", "COMBINATIONS", "FORMAT_VERSION", "INPUTS", "OPS", "Cell", "Combination", "Genome",
    "random_cell", "random_genome",
]

FORMAT_VERSION = 1
#: pairwise combinations per cell (Real et al. 2019)
COMBINATIONS = 5
#: hidden states a cell receives (h_{i-2}, h_{i-1})
INPUTS = 2
#: the two cells of a genome, in the order they are stored and drawn
CELL_KINDS = ("normal", "reduction")
#: the operations of the space of Real et al. 2019 (names as stored in the JSON genome)
OPS = (
    "identity",
    "sep_3x3",
    "sep_5x5",
    "sep_7x7",
    "avg_pool_3x3",
    "max_pool_3x3",
    "dil_sep_3x3",
    "conv_1x7_7x1",
)


@dataclasses.dataclass(frozen=True)
class Combination:
    """One pairwise combination: ``ops[0](state inputs[0]) + ops[1](state inputs[1])``."""

    inputs: tuple[int, int]
    ops: tuple[str, str]

    def to_dict(self) -> dict[str, Any]:
        return {"inputs": list(self.inputs), "ops": list(self.ops)}


@dataclasses.dataclass(frozen=True)
class Cell:
    """A cell: :data:`COMBINATIONS` combinations; hidden state ``k + 2`` is combination ``k``'s output."""

    combinations: tuple[Combination, ...]

    @property
    def num_states(self) -> int:
        """Hidden states of the cell: the two inputs and one per combination."""
        return INPUTS + len(self.combinations)

    def used(self) -> set[int]:
        """Hidden states that some combination takes as an input."""
        return {i for c in self.combinations for i in c.inputs}

    def unused(self) -> list[int]:
        """The hidden states the cell's output concatenates, in increasing order."""
        used = self.used()
        return [s for s in range(self.num_states) if s not in used]

    def op_counts(self) -> dict[str, int]:
        """How many times each operation of :data:`OPS` occurs in the cell."""
        counts = {op: 0 for op in OPS}
        for c in self.combinations:
            for op in c.ops:
                counts[op] += 1
        return counts

    def validate(self, kind: str = "cell") -> "Cell":
        """Return the cell if well formed; raise :class:`GenomeError` naming the combination at fault."""
        if len(self.combinations) != COMBINATIONS:
            raise GenomeError(f"the {kind} cell has {len(self.combinations)} combinations; it needs {COMBINATIONS}")
        for k, c in enumerate(self.combinations):
            if len(c.inputs) != 2 or len(c.ops) != 2:
                raise GenomeError(f"{kind} cell, combination {k}: needs two inputs and two ops, "
                                  f"got inputs {list(c.inputs)} and ops {list(c.ops)}")
            for i in c.inputs:
                if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < k + INPUTS:
                    raise GenomeError(f"{kind} cell, combination {k}: input {i!r} is not a hidden state before it "
                                      f"(0 and 1 are the cell inputs, 2..{k + 1} earlier combinations)")
            for op in c.ops:
                if op not in OPS:
                    raise GenomeError(f"{kind} cell, combination {k}: unknown op {op!r} (known: {', '.join(OPS)})")
        return self

    def replace_combination(self, k: int, combination: Combination) -> "Cell":
        combos = list(self.combinations)
        combos[k] = combination
        return Cell(tuple(combos))

    def to_dict(self) -> list[dict[str, Any]]:
        return [c.to_dict() for c in self.combinations]


@dataclasses.dataclass(frozen=True)
class Genome:
    """An individual of the cell space: the normal and reduction cells and the task's shapes."""

    normal: Cell
    reduction: Cell
    input_shape: tuple[int, int, int] = (3, 32, 32)
    num_classes: int = 10

    def cell(self, kind: str) -> Cell:
        if kind not in CELL_KINDS:
            raise GenomeError(f"no {kind!r} cell (cells: {', '.join(CELL_KINDS)})")
        return self.normal if kind == "normal" else self.reduction

    def replace_cell(self, kind: str, cell: Cell) -> "Genome":
        self.cell(kind)
        return dataclasses.replace(self, **{kind: cell})

    def validate(self) -> "Genome":
        """Return the genome if well formed; raise :class:`GenomeError` saying what is wrong."""
        shape = self.input_shape
        if (not isinstance(shape, tuple) or len(shape) != 3
                or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in shape)):
            raise GenomeError(f"input_shape must be (channels, height, width) of positive ints, got {shape!r}")
        if isinstance(self.num_classes, bool) or not isinstance(self.num_classes, int) or self.num_classes < 1:
            raise GenomeError(f"num_classes must be an int >= 1, got {self.num_classes!r}")
        for kind in CELL_KINDS:
            cell = self.cell(kind)
            if not isinstance(cell, Cell):
                raise GenomeError(f"the {kind} cell is a {type(cell).__name__}, not a Cell")
            cell.validate(kind)
        return self

    # ------------------------------------------------------------------ JSON
    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "space": "amoebanet",
            "input_shape": list(self.input_shape),
            "num_classes": self.num_classes,
            "normal": self.normal.to_dict(),
            "reduction": self.reduction.to_dict(),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Genome":
        """Read and validate a genome; unknown keys are ignored, as everywhere in the format."""
        if not isinstance(d, Mapping):
            raise GenomeError(f"an amoebanet genome is a JSON object, not {type(d).__name__}")
        space = d.get("space", "amoebanet")
        if space != "amoebanet":
            raise GenomeError(f"this genome belongs to the search space {space!r}, not 'amoebanet'")
        if "vertices" in d and "normal" not in d:
            raise GenomeError("this is a real2017 DNA (vertices and edges), not an amoebanet genome; "
                              "open it with evo.search_space('real2017')")
        version = d.get("format_version")
        if isinstance(version, bool) or not isinstance(version, int):
            raise GenomeError("the amoebanet genome has no integer format_version")
        if version > FORMAT_VERSION:
            raise GenomeError(f"the amoebanet genome has format_version {version}, newer than this evo understands "
                              f"({FORMAT_VERSION}); upgrade evo to read it")
        missing = sorted({"input_shape", "num_classes", *CELL_KINDS} - set(d))
        if missing:
            raise GenomeError(f"the amoebanet genome lacks the fields {missing}")
        shape = d["input_shape"]
        if not isinstance(shape, list) or not all(isinstance(s, int) and not isinstance(s, bool) for s in shape):
            raise GenomeError(f"input_shape must be a list of ints [channels, height, width], got {shape!r}")
        genome = cls(
            normal=_cell_from_list(d["normal"], "normal"),
            reduction=_cell_from_list(d["reduction"], "reduction"),
            input_shape=tuple(shape),  # type: ignore[arg-type]
            num_classes=d["num_classes"],
        )
        return genome.validate()


def _cell_from_list(items: Any, kind: str) -> Cell:
    if not isinstance(items, list):
        raise GenomeError(f"the {kind} cell must be a list of {COMBINATIONS} combinations, got {type(items).__name__}")
    combos = []
    for k, item in enumerate(items):
        if not isinstance(item, Mapping) or not isinstance(item.get("inputs"), list) \
                or not isinstance(item.get("ops"), list):
            raise GenomeError(f"{kind} cell, combination {k}: must be an object "
                              f'{{"inputs": [i, j], "ops": [op_i, op_j]}}, got {item!r}')
        combos.append(Combination(tuple(item["inputs"]), tuple(item["ops"])))  # type: ignore[arg-type]
    return Cell(tuple(combos)).validate(kind)


# ---------------------------------------------------------------------- random cells
def random_cell(rng: random.Random, ops: Sequence[str] = OPS) -> Cell:
    """A cell drawn uniformly: each input among the states before its combination, each op among ``ops``."""
    combos = []
    for k in range(COMBINATIONS):
        inputs = (rng.randrange(k + INPUTS), rng.randrange(k + INPUTS))
        combos.append(Combination(inputs, (rng.choice(ops), rng.choice(ops))))
    return Cell(tuple(combos))


def random_genome(rng: random.Random, input_shape: Iterable[int] = (3, 32, 32), num_classes: int = 10) -> Genome:
    """A random individual of the space (the initial population of Real et al. 2019 and random search)."""
    normal = random_cell(rng)
    reduction = random_cell(rng)
    shape = tuple(int(s) for s in input_shape)
    return Genome(normal, reduction, shape, int(num_classes)).validate()  # type: ignore[arg-type]
