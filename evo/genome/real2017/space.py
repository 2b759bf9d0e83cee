"""The search space of Large-Scale Evolution (Real et al. 2017) behind the seam: ``"real2017"``.

Genome: a :class:`~evo.genome.real2017.dna.DNA` graph (section 3.1); seeds: the paper's
trivial model (global pooling + linear classifier, learning rate 0.1); mutations: the eleven
of section 3.2; weight inheritance by layer id (``evo.network.real2017``).  The space has no
options: what the mutations may do is a training setting (``train.mutations`` in the
population's config), given to :meth:`Real2017.mutate` as ``config``.
"""

from __future__ import annotations

import dataclasses
import random
from typing import Any, Mapping, Sequence

from evo.genome.real2017.dna import DNA, DNAError, seed_dna
from evo.genome.real2017.dot import to_dot
from evo.genome.real2017.flops import count_flops, count_params
from evo.genome.real2017.mutations import IDENTITY, RESET_WEIGHTS, MutationConfig, mutate, resets_weights
from evo.genome.space import SearchSpace, genome_check, register

__all__ = ["Real2017"]


#: the genome's type, checked (:class:`~evo.genome.space.GenomeError` for anything else)
_dna = genome_check(DNA, "real2017", "a DNA")


@register
class Real2017(SearchSpace):
    """The DNA graphs of Real et al. 2017: convolutions, identities and skips, evolved from a
    network with no convolution at all."""

    name = "real2017"
    network_module = "evo.network.real2017"
    defaults: Mapping[str, Any] = {}
    trend_metrics = ("depth", "n_convs", "n_skips", "n_strided", "downsampling", "max_channels")
    trend_panels = (("depth", "depth (convolutions on the backbone)", False),
                    ("params", "parameters", True),
                    ("n_skips", "skip connections", False),
                    ("n_strided", "strided convolutions", False),
                    ("learning_rate", "learning rate", True),
                    ("fitness", "validation accuracy", False))

    # -- the genome ------------------------------------------------------------------------
    def seed(self, input_shape: Sequence[int], num_classes: int, rng: random.Random | None = None) -> DNA:
        """The paper's initial individual (no convolution; ``rng`` is not used: every seed is the same)."""
        return seed_dna(tuple(int(s) for s in input_shape), int(num_classes))  # type: ignore[arg-type]

    def random(self, input_shape: Sequence[int], num_classes: int, rng: random.Random,
               config: Any = None, max_mutations: int = 30) -> tuple[DNA, list[dict]]:
        """The random-search baseline: the seed after U(0, ``max_mutations``) random mutations.

        Only structural mutations and learning-rate changes are drawn (IDENTITY and
        RESET-WEIGHTS mean nothing for a model trained from scratch).
        """
        base = self.mutation_config(config)
        allowed = [n for n, _ in base.candidates() if n not in (IDENTITY, RESET_WEIGHTS)]
        cfg = dataclasses.replace(base, allowed=tuple(allowed)) if allowed else base
        return mutate(self.seed(input_shape, num_classes), rng, n=rng.randint(0, max_mutations), config=cfg)

    def mutation_config(self, config: Any = None) -> MutationConfig:
        """``train.mutations`` of the config (a dict, a :class:`MutationConfig` or None) read and
        checked; raises ValueError naming the bad setting."""
        if isinstance(config, MutationConfig):
            return config
        if config is not None and not isinstance(config, Mapping):
            raise ValueError(f"mutation settings must be an object, got {type(config).__name__}")
        try:
            return MutationConfig.from_dict(config)
        except TypeError as exc:
            raise ValueError(f"bad mutation settings: {exc}") from None

    def mutate(self, dna: Any, rng: random.Random, n: int = 1,
               config: Any = None) -> tuple[DNA, list[dict]]:
        """Apply ``n`` of the eleven mutations (section 3.2); records as in ``fitness.json``'s ``mutations``.

        Raises :class:`~evo.genome.space.MutationError` when no allowed mutation applies.
        """
        return mutate(_dna(dna), rng, n=int(n), config=self.mutation_config(config))

    def resets_weights(self, record: Sequence[Mapping[str, Any]]) -> bool:
        """RESET-WEIGHTS was applied: the child trains from scratch."""
        return resets_weights(record)

    def learning_rate(self, dna: Any) -> float:
        """The learning rate lives in the DNA (and ALTER-LEARNING-RATE evolves it)."""
        return float(_dna(dna).learning_rate)

    def validate(self, dna: Any, input_shape: Sequence[int] | None = None,
                 num_classes: int | None = None) -> DNA:
        """The DNA if well formed and, when given, made for this input shape and number of classes."""
        d = _dna(dna).validate()
        if input_shape is not None and tuple(d.input_shape) != tuple(int(s) for s in input_shape):
            raise DNAError(f"the DNA expects input {tuple(d.input_shape)} but the data set has {tuple(input_shape)}")
        if num_classes is not None and d.num_classes != int(num_classes):
            raise DNAError(f"the DNA has {d.num_classes} classes but the data set has {num_classes}")
        return d

    def to_dict(self, dna: Any) -> dict:
        return _dna(dna).to_dict()

    def from_dict(self, d: Mapping[str, Any]) -> DNA:
        """Read and validate a ``dna.json`` object; unknown keys are ignored."""
        if not isinstance(d, Mapping):
            raise DNAError(f"a DNA must be a JSON object, got {type(d).__name__}")
        return DNA.from_dict(dict(d))

    # -- cost and pictures -----------------------------------------------------------------
    def _at(self, dna: Any, input_shape: Sequence[int] | None) -> DNA:
        d = _dna(dna)
        if input_shape is None or tuple(input_shape) == tuple(d.input_shape):
            return d
        return d.replace(input_shape=tuple(int(s) for s in input_shape))

    def flops(self, dna: Any, input_shape: Sequence[int] | None = None) -> int:
        """Forward FLOPs per image of convolutions and classifier (multiply-add = 2)."""
        return count_flops(self._at(dna, input_shape)).forward_flops

    def train_flops(self, dna: Any, input_shape: Sequence[int] | None = None) -> int:
        """Forward + backward FLOPs per training image (no input gradient where nothing below trains)."""
        return count_flops(self._at(dna, input_shape)).train_flops_per_image

    def params(self, dna: Any, input_shape: Sequence[int] | None = None) -> int:
        return count_params(self._at(dna, input_shape))

    def describe(self, dna: Any) -> dict[str, Any]:
        """``depth`` (convolutions on the backbone, the paper's depth), ``n_convs``, ``n_skips``,
        ``n_strided`` (stride > 1), ``downsampling`` (product of the backbone's strides),
        ``max_channels`` and ``learning_rate``."""
        d = _dna(dna)
        convs = d.conv_edges
        down = 1
        for e in d.backbone_edges():
            if e.is_conv:
                down *= int(e.stride or 1)
        return {
            "depth": d.depth(),
            "n_convs": len(convs),
            "n_skips": sum(1 for e in d.edges if e.skip),
            "n_strided": sum(1 for e in convs if int(e.stride or 1) > 1),
            "downsampling": down,
            "max_channels": max((int(e.channels or 0) for e in convs), default=0),
            "learning_rate": d.learning_rate,
        }

    def tables(self, dna: Any) -> list[dict[str, Any]]:
        """``evo show``'s tables: the vertices (type, role, activation shape) and the edges
        (convolutions with their channels, kernel and stride; skips marked)."""
        d = _dna(dna)
        shapes = d.shapes()
        role = {d.input_vertex: "input", d.output_vertex: "output"}
        vertices = [[v.id, v.type.value, role.get(v.id, ""),
                     "x".join(map(str, shapes[v.id])) if v.id in shapes else "-"] for v in d.vertices]
        edges = [[e.id, e.src, e.dst, e.type.value, "-" if e.channels is None else e.channels,
                  "x".join(map(str, e.kernel)) if e.kernel else "-", "-" if e.stride is None else e.stride,
                  "skip" if e.skip else ""] for e in sorted(d.edges, key=lambda e: e.id)]
        return [{"title": "vertices", "columns": ["id", "type", "role", "shape (CxHxW)"], "rows": vertices},
                {"title": "edges", "columns": ["id", "from", "to", "type", "channels", "kernel", "stride", "skip"],
                 "rows": edges}]

    def draw(self, dna: Any, title: str | None = None) -> str:
        return to_dot(_dna(dna), title=title)

