"""The cell search space of Real et al. 2019 (AmoebaNet; NASNet's space) behind the seam: ``"amoebanet"``.

Genome: a normal and a reduction cell of five pairwise combinations each
(:mod:`evo.genome.amoebanet.genome`); seeds and the random-search baseline: random cells (the
paper's initial population is random within the space); mutations: hidden-state, op and identity
(:mod:`evo.genome.amoebanet.mutations`).  Options: ``N`` normal cells per stage (default 3) and
``F`` filters of the first stage (default 24), the paper's search-time models; its final
AmoebaNet-A is ``N=6, F=36``.  The learning rate is a training setting; children are trained from
scratch, with aging evolution, P=100 and S=25 (:attr:`AmoebaNet.population_defaults`).
"""

from __future__ import annotations

import random as _random
from typing import Any, ClassVar, Mapping, Sequence

from evo.genome.amoebanet.cost import count_flops, count_params, count_train_flops, stack_depth
from evo.genome.amoebanet.dot import to_dot
from evo.genome.amoebanet.genome import CELL_KINDS, INPUTS, Genome, random_genome
from evo.genome.amoebanet.mutations import MutationSettings, mutate, parse_config
from evo.genome.amoebanet.stack import check_options, plan_stack
from evo.genome.space import GenomeError, SearchSpace, genome_check, register

__all__ = ["AmoebaNet"]


#: the genome's type, checked (:class:`~evo.genome.space.GenomeError` for anything else)
_genome = genome_check(Genome, "amoebanet", "a cell genome")


@register
class AmoebaNet(SearchSpace):
    """Two evolved cells in NASNet's fixed stack (stem, 3 stages of N cells, 2 reductions, classifier)."""

    name = "amoebanet"
    network_module = "evo.network.amoebanet"
    defaults: ClassVar[Mapping[str, Any]] = {"N": 3, "F": 24}
    #: the population settings of Real et al. 2019 for this space (``evo init`` uses them unless given)
    population_defaults: ClassVar[Mapping[str, Any]] = {
        "strategy": "aging", "population_size": 100, "sample_size": 25, "inheritance": "none",
    }

    def _check_options(self) -> None:
        """N >= 1 and F >= 2, ints (digit strings from a command line are read as ints)."""
        for key in ("N", "F"):
            value = self.options[key]
            if isinstance(value, str) and value.strip().isdigit():
                self.options[key] = int(value)
        check_options(self.options["N"], self.options["F"])

    @property
    def N(self) -> int:
        return int(self.options["N"])

    @property
    def F(self) -> int:
        return int(self.options["F"])

    # -- the genome ------------------------------------------------------------------------
    def seed(self, input_shape: Sequence[int], num_classes: int, rng: _random.Random | None = None) -> Genome:
        """An individual of the initial population: random cells (a fresh generator when ``rng`` is None)."""
        return random_genome(rng if rng is not None else _random.Random(), input_shape, num_classes)

    def random(self, input_shape: Sequence[int], num_classes: int, rng: _random.Random,
               config: Any = None, max_mutations: int | None = None) -> tuple[Genome, list[dict]]:
        """The random-search baseline: random cells, drawn uniformly (the record is empty).

        ``config`` and ``max_mutations`` (how far real2017 walks from its seed) do not apply: the
        cells are drawn directly."""
        return random_genome(rng, input_shape, num_classes), []

    def mutation_config(self, config: Any = None) -> MutationSettings:
        """``train.mutations`` (``{"weights": {name: w}, "allowed": [names]}``) read and checked;
        raises ValueError naming the bad setting.  Settings of other spaces' mutations are ignored."""
        return parse_config(config)

    def mutate(self, dna: Any, rng: _random.Random, n: int = 1, config: Any = None) -> tuple[Genome, list[dict]]:
        """Apply ``n`` of HIDDEN-STATE, OP and IDENTITY; one record per mutation (every one always applies)."""
        return mutate(_genome(dna), rng, n=int(n), config=self.mutation_config(config))

    def validate(self, dna: Any, input_shape: Sequence[int] | None = None,
                 num_classes: int | None = None) -> Genome:
        """The genome if well formed and, when given, made for this input shape and number of classes."""
        g = _genome(dna).validate()
        if input_shape is not None and tuple(g.input_shape) != tuple(int(s) for s in input_shape):
            raise GenomeError(f"the genome expects input {tuple(g.input_shape)} but the data set has "
                              f"{tuple(input_shape)}")
        if num_classes is not None and g.num_classes != int(num_classes):
            raise GenomeError(f"the genome has {g.num_classes} classes but the data set has {num_classes}")
        return g

    def to_dict(self, dna: Any) -> dict:
        return _genome(dna).to_dict()

    def from_dict(self, d: Mapping[str, Any]) -> Genome:
        """Read and validate a ``dna.json`` object; unknown keys are ignored."""
        return Genome.from_dict(d)

    # -- cost and pictures -----------------------------------------------------------------
    def flops(self, dna: Any, input_shape: Sequence[int] | None = None) -> int:
        """Forward FLOPs per image of convolutions and classifier (multiply-add = 2)."""
        return count_flops(_genome(dna), self.N, self.F, input_shape)

    def train_flops(self, dna: Any, input_shape: Sequence[int] | None = None) -> int:
        """Forward + backward FLOPs per training image (no input gradient for the stem)."""
        return count_train_flops(_genome(dna), self.N, self.F, input_shape)

    def params(self, dna: Any, input_shape: Sequence[int] | None = None) -> int:
        return count_params(_genome(dna), self.N, self.F, input_shape)

    def describe(self, dna: Any) -> dict[str, Any]:
        """``depth`` (weighted layers on the longest path), ``n_cells``, ``<cell>_outputs`` (hidden
        states each cell concatenates) and ``<cell>_<op>``: how often each op occurs in each cell."""
        g = _genome(dna)
        plan = plan_stack(g, self.N, self.F)
        out: dict[str, Any] = {"depth": stack_depth(g, plan), "n_cells": len(plan.cells)}
        for kind in CELL_KINDS:
            cell = g.cell(kind)
            out[f"{kind}_outputs"] = len(cell.unused())
            for op, count in cell.op_counts().items():
                out[f"{kind}_{op}"] = count
        return out

    def draw(self, dna: Any, title: str | None = None) -> str:
        return to_dot(_genome(dna), title=title, subtitle=f"(amoebanet N={self.N} F={self.F})")

    def tables(self, dna: Any) -> list[dict[str, Any]]:
        """``evo show``'s tables: each cell's combinations (hidden state = op(input) + op(input);
        "/2": stride 2, on a reduction cell's inputs) and the stack (every cell's kind and shapes)."""
        g = _genome(dna)
        out = []
        for kind in CELL_KINDS:
            cell = g.cell(kind)
            concat = set(cell.unused())

            def state(i: int) -> str:
                return ("h[i-2]", "h[i-1]")[i] if i < INPUTS else str(i)

            def op(name: str, i: int) -> str:
                return f"{name} /2" if kind == "reduction" and i < INPUTS else name

            rows = [[state(k + INPUTS), state(c.inputs[0]), op(c.ops[0], c.inputs[0]), state(c.inputs[1]),
                     op(c.ops[1], c.inputs[1]), "yes" if k + INPUTS in concat else ""]
                    for k, c in enumerate(cell.combinations)]
            rows += [[state(i), "-", "(cell input)", "-", "", "yes"] for i in sorted(concat) if i < INPUTS]
            out.append({"title": f"{kind} cell", "columns": ["state", "input", "op", "input", "op", "in output"],
                        "rows": rows})
        plan = plan_stack(g, self.N, self.F)
        out.append({"title": f"stack (N={self.N}, F={self.F}, stem {plan.stem_channels} channels)",
                    "columns": ["cell", "kind", "channels", "input (CxHxW)", "output (CxHxW)"],
                    "rows": [[c.index, c.kind, c.channels, "x".join(map(str, c.in_shapes[1])),
                              "x".join(map(str, c.out_shape))] for c in plan.cells]})
        return out
