"""The search-space seam: one small interface over every genome evo can evolve.

The worker, the population layer, FLOPs, export, ``evo show`` / ``evo graph`` and the analysis use
a :class:`SearchSpace` without knowing which genome they hold::

    space = evo.search_space("real2017")            # or "amoebanet", N=3, F=24
    space = evo.genome.space_of(config)             # the space a population's config names
    space.spec()                                    # {"name": ..., "options": {...}}
    dna = space.seed((3, 32, 32), 10, rng)           # an individual of the initial population
    dna, record = space.random((3, 32, 32), 10, rng) # the random-search baseline's architecture
    cfg = space.mutation_config(train["mutations"]) # settings checked (ValueError naming the bad one)
    child, record = space.mutate(dna, rng, n=1, config=cfg)  # record: one dict per mutation applied
    space.resets_weights(record)                    # train the child from scratch?
    space.learning_rate(dna)                        # the genome's own rate, or None (train.lr)
    space.validate(child, (3, 32, 32), 10)          # raises GenomeError naming what is wrong
    d = space.to_dict(child); same = space.from_dict(d)          # dna.json (unknown keys ignored)
    text = space.to_json(child); same = space.from_json(text)
    space.flops(child, (3, 32, 32))                 # forward FLOPs per image
    space.train_flops(child, (3, 32, 32))           # forward + backward FLOPs per training image
    space.params(child, (3, 32, 32)); space.describe(child)       # size; a few summary numbers
    space.draw(child, title="individual 7")         # DOT text for Graphviz
    space.tables(child)                             # tables for ``evo show``
    net = space.build(child)                        # an nn.Module (torch imported only here)
    space.inherit(net, parent_state, parent=dna, child=child, mutations=record, inheritance="paper")

Errors: :class:`GenomeError` (a ValueError) for a malformed genome or unknown space/option,
:class:`MutationError` when no allowed mutation applies.

Pure Python: this module and every genome module import no torch.  ``build`` and ``inherit``
import the space's network module (``SearchSpace.network_module``) when called; that lazy import
is the one place where the genome layer reaches the network layer.
"""

from __future__ import annotations

import importlib
import json
import random
from typing import Any, Callable, ClassVar, Mapping, Sequence

__all__ = ["GenomeError", "MutationError", "SearchSpace", "SPACES", "genome_check", "register", "search_space",
           "space_names", "space_of"]


class GenomeError(ValueError):
    """A genome (or a search space's options) that is malformed; the message says what and where."""


class MutationError(RuntimeError):
    """No allowed mutation applies to a genome (a too narrow allow-list in ``train.mutations``)."""


class SearchSpace:
    """One search space: its genome type, seeds, mutations, cost, drawing and network builder.

    Subclasses set :attr:`name`, :attr:`network_module` and implement the genome methods; a
    genome is the space's own immutable value type (``DNA`` for ``real2017``).  Options (for
    example ``N`` and ``F`` of the cell space) are given to the constructor and recorded in the
    population's config, so every worker rebuilds the same space.
    """

    #: the name the space is registered and recorded under
    name: ClassVar[str] = ""
    #: the torch module (network layer) with ``build(space, genome)`` and ``inherit(...)``
    network_module: ClassVar[str] = ""
    #: the options a population records, with their defaults
    defaults: ClassVar[Mapping[str, Any]] = {}
    #: population settings (config fields) that suit the space, used by ``evo init`` unless given
    population_defaults: ClassVar[Mapping[str, Any]] = {}
    #: the numbers of :meth:`describe` that the architecture trends follow, in order (the analysis
    #: keeps those it has a field for, cached for the dead); empty: every number describe gives
    trend_metrics: ClassVar[tuple[str, ...]] = ()
    #: the trends figure's panels, ``(metric, title, log scale)`` each, of :attr:`trend_metrics` or the
    #: fitness record's ``params``, ``learning_rate``, ``fitness``; empty: the figure groups the counts
    trend_panels: ClassVar[tuple[tuple[str, str, bool], ...]] = ()

    def __init__(self, **options: Any) -> None:
        unknown = sorted(set(options) - set(self.defaults))
        if unknown:
            known = ", ".join(sorted(self.defaults)) or "none"
            raise GenomeError(f"search space {self.name!r} has no option {unknown[0]!r} (options: {known})")
        self.options: dict[str, Any] = {**self.defaults, **options}
        self._check_options()

    def _check_options(self) -> None:
        """Raise :class:`GenomeError` for an option of the wrong type or out of range."""

    def spec(self) -> dict[str, Any]:
        """``{"name": ..., "options": {...}}``: what a population records to rebuild this space."""
        return {"name": self.name, "options": dict(self.options)}

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in sorted(self.options.items()))
        return f"search_space({self.name!r}{', ' if opts else ''}{opts})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SearchSpace) and (self.name, self.options) == (other.name, other.options)

    def __hash__(self) -> int:
        return hash((self.name, json.dumps(self.options, sort_keys=True)))

    # -- the genome ------------------------------------------------------------------------
    def seed(self, input_shape: Sequence[int], num_classes: int, rng: random.Random | None = None) -> Any:
        """An individual of the initial population."""
        raise NotImplementedError

    def random(self, input_shape: Sequence[int], num_classes: int, rng: random.Random,
               config: Any = None) -> tuple[Any, list[dict]]:
        """A random architecture of the space (the random-search baseline) and how it was drawn
        (a record like :meth:`mutate`'s, possibly empty)."""
        raise NotImplementedError

    def mutation_config(self, config: Any = None) -> Any:
        """The space's mutation settings (``train.mutations`` of the config, a dict or None) read
        and checked; raises ValueError naming the bad setting.  :meth:`mutate` takes the result."""
        if config:
            raise ValueError(f"search space {self.name!r} takes no mutation settings, got {sorted(config)}")
        return None

    def mutate(self, dna: Any, rng: random.Random, n: int = 1,
               config: Any = None) -> tuple[Any, list[dict]]:
        """Apply ``n`` mutations; return the child and one record per mutation applied
        (``{"name": ..., "detail": {...}}``, JSON-ready).  ``config``: see :meth:`mutation_config`.
        Raises :class:`MutationError` when no allowed mutation applies."""
        raise NotImplementedError

    def resets_weights(self, record: Sequence[Mapping[str, Any]]) -> bool:
        """Whether the mutations in ``record`` ask the child to start from fresh weights."""
        return False

    def learning_rate(self, dna: Any) -> float | None:
        """The learning rate the genome carries, or None where it is a training setting (the
        worker then trains with ``train.lr`` of the population's config)."""
        return None

    def validate(self, dna: Any, input_shape: Sequence[int] | None = None,
                 num_classes: int | None = None) -> Any:
        """Return ``dna`` if it is well formed (and, when given, fits images of ``input_shape``
        and ``num_classes`` classes); raise :class:`GenomeError` naming the fault."""
        raise NotImplementedError

    def to_dict(self, dna: Any) -> dict:
        """The genome as the JSON object of ``dna.json``."""
        raise NotImplementedError

    def from_dict(self, d: Mapping[str, Any]) -> Any:
        """Read (and validate) a genome; unknown keys are ignored, as everywhere in the format."""
        raise NotImplementedError

    def to_json(self, dna: Any) -> str:
        return json.dumps(self.to_dict(dna), indent=1, sort_keys=True)

    def from_json(self, text: str) -> Any:
        try:
            d = json.loads(text)
        except (TypeError, ValueError) as e:
            raise GenomeError(f"not a JSON genome: {e}") from None
        if not isinstance(d, dict):
            raise GenomeError(f"a genome is a JSON object, not {type(d).__name__}")
        return self.from_dict(d)

    # -- cost and pictures -----------------------------------------------------------------
    def flops(self, dna: Any, input_shape: Sequence[int] | None = None) -> int:
        """Forward FLOPs per image (multiply-adds counted as two)."""
        raise NotImplementedError

    def train_flops(self, dna: Any, input_shape: Sequence[int] | None = None) -> int:
        """FLOPs of one training image, forward and backward (about three forwards)."""
        return 3 * self.flops(dna, input_shape)

    def params(self, dna: Any, input_shape: Sequence[int] | None = None) -> int:
        """Trainable parameters of the network the genome builds."""
        raise NotImplementedError

    def describe(self, dna: Any) -> dict[str, Any]:
        """A few numbers that summarise the architecture (``evo show``, trends, the report);
        ``depth`` (an int) is recorded in ``fitness.json``."""
        return {}

    def draw(self, dna: Any, title: str | None = None) -> str:
        """The architecture as DOT text (Graphviz)."""
        raise NotImplementedError

    def tables(self, dna: Any) -> list[dict[str, Any]]:
        """The architecture as tables for ``evo show``: ``{"title", "columns", "rows"}`` each
        (rows of JSON-ready cells)."""
        return []

    # -- the network (torch, imported here only) -------------------------------------------
    def _network(self) -> Any:
        return importlib.import_module(self.network_module)

    def build(self, dna: Any) -> Any:
        """The ``torch.nn.Module`` the genome describes."""
        return self._network().build(self, dna)

    def inherit(self, child_net: Any, parent_state: Mapping[str, Any], **kwargs: Any) -> dict[str, Any]:
        """Copy into ``child_net`` what it can take of the parent's weights (a state dict).

        The worker passes ``parent=`` (the parent's genome), ``child=`` (the child's),
        ``mutations=`` (the record of :meth:`mutate`), ``inheritance=`` (the population's mode,
        ``"paper"`` or for example ``"function-preserving"``) and ``rng=``; a space uses what it
        needs.  Returns a JSON-ready report, kept as the fitness record's ``inherited``: ``copied``,
        ``fresh`` and ``mismatched`` (lists of tensor names, which the record counts, or counts),
        and whatever else the space reports.
        """
        return self._network().inherit(self, child_net, parent_state, **kwargs)


def genome_check(kind: type, space: str, what: str) -> Callable[[Any], Any]:
    """A space's check of its genome type: returns its argument if it is a ``kind``, else raises
    :class:`GenomeError` saying that the space ``space`` expects ``what``."""
    def check(genome: Any) -> Any:
        if isinstance(genome, kind):
            return genome
        raise GenomeError(f"search space {space!r} expects {what}, got {type(genome).__name__}; "
                          "read one with space.from_dict(d)")

    return check


#: registered spaces by name; modules register on import (see :func:`register`)
SPACES: dict[str, type[SearchSpace]] = {}
#: where each built-in space lives, imported on first use (keeps ``import evo`` light)
_BUILTIN = {"real2017": "evo.genome.real2017.space", "amoebanet": "evo.genome.amoebanet.space"}


def register(cls: type[SearchSpace]) -> type[SearchSpace]:
    """Class decorator: make a space available to :func:`search_space` under ``cls.name``."""
    if not cls.name:
        raise GenomeError(f"{cls.__name__} has no name")
    SPACES[cls.name] = cls
    return cls


def space_names() -> list[str]:
    """Every space that :func:`search_space` can build."""
    return sorted(set(SPACES) | set(_BUILTIN))


def search_space(name: str = "real2017", **options: Any) -> SearchSpace:
    """The search space ``name`` with ``options`` (for example ``N=3, F=24`` for ``amoebanet``)."""
    if name not in SPACES and name in _BUILTIN:
        try:
            importlib.import_module(_BUILTIN[name])
        except ModuleNotFoundError as e:
            if e.name != _BUILTIN[name]:
                raise
    cls = SPACES.get(name)
    if cls is None:
        raise GenomeError(f"unknown search space {name!r} (known: {', '.join(space_names())})")
    return cls(**options)



def space_of(config: Any) -> SearchSpace:
    """The search space a population's config names: its ``search_space`` (a name, or
    ``{"name": ..., "options": {...}}``) and ``space_options``, read from a config object or
    from ``config.json``'s dict; ``real2017`` for a config written before either existed."""
    def get(key: str) -> Any:
        return config.get(key) if isinstance(config, Mapping) else getattr(config, key, None)

    spec = get("search_space") if config is not None else None
    options = get("space_options") if config is not None else None
    if isinstance(spec, Mapping):
        spec, options = spec.get("name"), spec.get("options", options)
    if options is not None and not isinstance(options, Mapping):
        raise GenomeError(f"space_options must be an object of option: value, got {type(options).__name__}")
    return search_space(str(spec or "real2017"), **dict(options or {}))
