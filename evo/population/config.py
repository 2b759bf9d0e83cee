"""The experiment config (``config.json``, immutable) and the run-control knobs (``control.json``).

Pure Python: the whole config, training settings included, is checked without torch, so that
``evo init`` refuses on the login node what every worker would fail on later.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import time
from dataclasses import dataclass, field

from evo.genome.space import GenomeError, search_space, space_names
from evo.population import strategies
from evo.population.grow import check_grow, grow_defaults
from evo.population.layout import (
    CONFIG_FILE,
    FORMAT_VERSION,
    ConfigError,
    CorruptFileError,
    FormatVersionError,
    NotAPopulationError,
    is_num,
    load_json,
    warn,
)

__all__ = ["Config", "Control", "INHERITANCE_MODES", "LOCK_MODES", "init_defaults", "read_config"]

LOCK_MODES = ("auto", "flock", "soft", "none")
INHERITANCE_MODES = ("paper", "function-preserving", "none")


def init_defaults(config: dict) -> dict:
    """A new population's config dict with what its settings imply unless it says otherwise: a ``grow``
    run's function-preserving inheritance and growth mutations (:func:`~evo.population.grow.grow_defaults`);
    with function-preserving inheritance in the ``real2017`` space, gated skips (``train.mutations``
    ``gated_skips``: ADD-SKIP's new path starts switched off, so that it too keeps the parent's function)."""
    out = grow_defaults(config)
    if out.get("inheritance") == "function-preserving" and out.get("search_space", "real2017") == "real2017":
        train = dict(out.get("train") or {})
        muts = dict(train.get("mutations") or {})
        muts.setdefault("gated_skips", True)
        out = {**out, "train": {**train, "mutations": muts}}
    return out


@dataclass
class Config:
    """The experiment config, written once to ``config.json`` and never changed.

    See docs/format.md for the meaning of every field.
    """

    dataset: str = "synthetic"
    dataset_kwargs: dict = field(default_factory=dict)
    population_size: int = 20
    strategy: str = "tournament"
    sample_size: int = 25
    steps_per_child: int = 25600
    mutations_per_child: int = 1
    max_individuals: int | None = None
    max_flops: float | None = None
    lock: str = "auto"
    inheritance: str = "paper"
    keep_checkpoints: str = "alive"
    seed: int = 0
    lease_ttl_s: float = 600.0
    heartbeat_s: float = 30.0
    checkpoint_every_s: float = 300.0
    lock_ttl_s: float = 60.0
    lock_timeout_s: float = 600.0
    max_attempts: int = 5
    seed_dna: dict | None = None
    train: dict = field(default_factory=dict)
    grow: dict = field(default_factory=dict)
    search_space: str = "real2017"
    space_options: dict = field(default_factory=dict)
    format_version: int = FORMAT_VERSION
    created_at: float | None = None
    lock_detected: str | None = None

    @classmethod
    def from_dict(cls, d: dict) -> "Config":
        if not isinstance(d, dict):
            raise ConfigError(f"config must be a JSON object, got {type(d).__name__}")
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = [k for k in d if k not in names]
        if unknown:
            k = unknown[0]
            close = difflib.get_close_matches(k, names, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ConfigError(
                f"config field '{k}': unknown field{hint}. Fix: remove it; known fields are "
                f"{', '.join(names)}"
            )
        return cls(**d)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @property
    def keep_top(self) -> int:
        """K of ``keep_checkpoints = "top:K"`` (0 otherwise)."""
        if self.keep_checkpoints.startswith("top:"):
            return int(self.keep_checkpoints[4:])
        return 0

    def validate(self, *, at_init: bool = False) -> "Config":
        """Raise :class:`ConfigError` (one line naming the field and the fix) for a bad field,
        training settings and the search space's settings included (torch-free).  ``at_init``
        (``evo init``) also refuses a budget of individuals below the population size, which
        would leave seeds that are never trained."""

        def bad(name: str, problem: str, fix: str) -> ConfigError:
            return ConfigError(
                f"config field '{name}': {problem}, got {getattr(self, name)!r}. Fix: {fix}"
            )

        def integer(name: str, lo: int, fix: str, optional: bool = False) -> None:
            v = getattr(self, name)
            if v is None and optional:
                return
            if not isinstance(v, int) or isinstance(v, bool) or v < lo:
                raise bad(name, f"must be an integer >= {lo}", fix)

        def positive(name: str, fix: str, optional: bool = False) -> None:
            v = getattr(self, name)
            if v is None and optional:
                return
            if not is_num(v) or v <= 0:
                raise bad(name, "must be a positive number", fix)

        if self.format_version != FORMAT_VERSION:
            raise bad("format_version", f"this evo writes format {FORMAT_VERSION}", "leave it out")
        if not isinstance(self.dataset, str) or not self.dataset:
            raise bad("dataset", "must be a non-empty string", "name a dataset, e.g. cifar10")
        if not isinstance(self.dataset_kwargs, dict):
            raise bad("dataset_kwargs", "must be a JSON object", "pass a dict of keyword arguments")
        integer("population_size", 2, "use at least 2 (the paper uses 1000)")
        if self.strategy not in strategies.STRATEGIES:
            raise bad("strategy", f"must be one of {', '.join(strategies.STRATEGIES)}",
                      "pick tournament (Real 2017), aging (Real 2019), random or grow (generations of growth)")
        integer("sample_size", 1, "use 1 <= sample_size (Real 2019 uses 25 for P=100)")
        integer("steps_per_child", 1, "use a positive number of training steps (paper: 25600)")
        integer("mutations_per_child", 0, "use 0 or more mutations per child (paper: 1)")
        integer("max_individuals", 1, "use a positive number or null for no limit", optional=True)
        positive("max_flops", "use a positive number of FLOPs or null for no limit", optional=True)
        if self.lock not in LOCK_MODES:
            raise bad("lock", f"must be one of {', '.join(LOCK_MODES)}",
                      "use auto unless you know the file system's locking")
        if self.inheritance not in INHERITANCE_MODES:
            raise bad("inheritance", "must be 'paper', 'function-preserving' or 'none'",
                      "paper = children inherit matching weights; function-preserving = grown children "
                      "start computing their parent's function (Net2Net); none = train from scratch")
        kc = self.keep_checkpoints
        ok_kc = kc in ("all", "alive") or (
            isinstance(kc, str) and kc.startswith("top:") and kc[4:].isdigit() and int(kc[4:]) > 0
        )
        if not ok_kc:
            raise bad("keep_checkpoints", "must be 'all', 'alive' or 'top:K' with K > 0",
                      "e.g. top:10 keeps the 10 best models ever trained besides the living")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise bad("seed", "must be an integer", "pass an integer random seed")
        positive("lease_ttl_s", "use a time-to-live in seconds, several times heartbeat_s")
        positive("heartbeat_s", "use a heartbeat period in seconds")
        if self.heartbeat_s * 2 > self.lease_ttl_s:
            raise bad("heartbeat_s", f"must be at most half of lease_ttl_s ({self.lease_ttl_s})",
                      "heartbeat more often or raise lease_ttl_s")
        positive("checkpoint_every_s", "use a period in seconds")
        positive("lock_ttl_s", "use a time-to-live in seconds for the soft lock")
        positive("lock_timeout_s", "use a timeout in seconds")
        integer("max_attempts", 1, "use at least 1")
        if self.seed_dna is not None and not isinstance(self.seed_dna, dict):
            raise bad("seed_dna", "must be a DNA dict (DNA.to_dict()) or null", "pass DNA.to_dict()")
        if not isinstance(self.train, dict):
            raise bad("train", "must be a JSON object", "pass a dict of training settings")
        self.check_search_space()
        self.check_settings()
        check_grow(self)
        if at_init and self.max_individuals is not None and self.max_individuals < self.population_size:
            raise bad("max_individuals", f"is below population_size ({self.population_size}): seeds would "
                      f"never be trained", f"use at least {self.population_size}, or a smaller population_size")
        return self

    def check_search_space(self) -> None:
        """Raise :class:`ConfigError` unless ``search_space`` names a known space and
        ``space_options`` are options it takes (``evo.search_space(name, **options)``)."""
        if not isinstance(self.search_space, str) or not self.search_space:
            raise ConfigError(f"config field 'search_space': must be a space's name, got {self.search_space!r}. "
                              f"Fix: use one of {', '.join(space_names())}")
        if not isinstance(self.space_options, dict):
            raise ConfigError(f"config field 'space_options': must be a JSON object of option: value, got "
                              f"{self.space_options!r}. Fix: e.g. {{\"N\": 3, \"F\": 24}} for amoebanet")
        try:
            search_space(self.search_space, **self.space_options)
        except GenomeError as exc:
            field_name = "space_options" if self.search_space in space_names() else "search_space"
            raise ConfigError(f"config field '{field_name}': {exc}. Fix: see `evo init --help` "
                              f"(--search-space, --space-opt KEY=VALUE)") from None

    def check_settings(self) -> None:
        """Raise :class:`ConfigError` for training settings (``train``: :mod:`evo.network.settings`,
        torch-free), mutation settings (``train.mutations``) or a seed genome (``seed_dna``) that
        every worker would fail on.  Call :meth:`check_search_space` first."""
        from evo.network.settings import check_train_settings  # torch-free, like this module

        space = search_space(self.search_space, **self.space_options)
        try:
            check_train_settings(self.train, space)
            space.mutation_config(self.train.get("mutations"))
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"config field 'train': {exc}") from None
        if self.seed_dna is not None:
            try:
                space.from_dict(self.seed_dna)
            except (GenomeError, TypeError, ValueError, KeyError) as exc:
                raise ConfigError(f"config field 'seed_dna': not a valid {self.search_space} genome ({exc}). "
                                  f"Fix: pass a genome written by the space (space.to_dict), or null") from None


def read_config(root: str) -> Config:
    """The config of the population at ``root`` (any readable format version), with clear errors
    when ``root`` is not a population or was written by a newer evo."""
    cpath = os.path.join(root, CONFIG_FILE)
    if not os.path.isdir(root):
        raise NotAPopulationError(f"{root}: no such directory. Fix: create a population with `evo init {root}`")
    try:
        raw = load_json(cpath)
    except FileNotFoundError:
        raise NotAPopulationError(
            f"{root} is not an evo population (no {CONFIG_FILE}). Fix: check the path, or "
            f"create one with `evo init {root}`"
        ) from None
    except CorruptFileError as e:
        raise NotAPopulationError(f"{e} -- the experiment config is unreadable") from None
    ver = raw.get("format_version")
    if not isinstance(ver, int):
        raise NotAPopulationError(f"{cpath}: no format_version; not an evo population")
    if ver > FORMAT_VERSION:
        raise FormatVersionError(
            f"{root} uses on-disk format {ver}, newer than this evo reads (<= {FORMAT_VERSION}). "
            f"Fix: upgrade evo"
        )
    if ver == 1:  # format 1 (before the search-space seam): the genome was always real2017
        raw = {"search_space": "real2017", "space_options": {}, **raw}
    known = {f.name for f in dataclasses.fields(Config)}
    extra = sorted(k for k in raw if k not in known)
    if extra:
        warn(f"{cpath}: ignoring unknown config fields {extra}")
    return Config(**{k: v for k, v in raw.items() if k in known})


@dataclass
class Control:
    """Mutable run-control knobs (``control.json``), re-read by workers at every step."""

    mutations_per_child: int = 1
    paused: bool = False
    stopped: bool = False
    reset_generation: int = 0
    epoch: int = 0
    updated_at: float = 0.0

    @classmethod
    def from_dict(cls, d: dict) -> "Control":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def default_state() -> dict:
    """The counters of a new population (``state.json``)."""
    return {"trained": 0, "flops": 0.0, "top": [], "updated_at": time.time()}
