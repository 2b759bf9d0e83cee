"""Search-efficiency suites: a declarative list of experiments, each run for several seeds.

A suite file (TOML or JSON) names the experiments to compare and what they share::

    name = "evolution-vs-random"
    title = "Evolution vs random search at equal FLOPs"
    seeds = [0, 1, 2]

    [defaults]                      # every experiment starts from these
    data = "synthetic"              # a data preset (evo.bench.data.PRESETS) or a [data.NAME] table
    search_space = "real2017"
    strategy = "tournament"         # tournament (Real 2017), aging (Real 2019), random, grow
    inheritance = "paper"           # paper, function-preserving (Net2Net), or none
    population_size = 20            # P
    sample_size = 5                 # S (aging)
    steps_per_child = 300
    mutations_per_child = 1
    recipe = "paper"                # the training recipe: paper or fast (evo.TrainConfig)
    train = { batch_size = 50 }     # any other training setting (config.train)
    budget = { flops = 2e13 }       # flops, wall_s and/or individuals: the first reached ends a run
    workers = 2                     # worker processes (or Slurm tasks) per run

    [[variant]]                     # optional: the whole suite again with other settings
    name = "synthetic"              # (for example another data set and its budget)
    [[variant]]
    name = "cifar10-10k"
    data = "cifar10-10k"
    budget = { flops = 3e14 }

    [[experiment]]
    name = "evolution"
    [[experiment]]
    name = "random"
    strategy = "random"
    [[experiment]]
    name = "five-mutations"
    schedule = [{ at = 0.5, mutations_per_child = 5 }, { at = 0.65, mutations_per_child = 1 }]

A run is one (variant, experiment, seed): one population.  ``schedule`` steers a run while it
goes (the paper's plateau escapes): at a fraction ``at`` of the budget, set
``mutations_per_child`` or ``reset_weights = true`` (retrain every living individual from
scratch).  Values resolve as: built-in defaults < ``[defaults]`` < the variant < the experiment.
Pure Python: reading a suite imports neither torch nor the population layer.
"""

from __future__ import annotations

import copy
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from evo.bench.data import PRESETS
from evo.population.config import INHERITANCE_MODES
from evo.population.strategies import STRATEGIES

__all__ = ["SuiteError", "Run", "Suite", "load_suite", "RUN_FIELDS", "BUDGET_KEYS"]


class SuiteError(ValueError):
    """A suite file that cannot be run; the message names the file, the entry and the fix."""


#: The settings of a run, with their built-in defaults.
RUN_FIELDS: dict[str, Any] = {
    "data": "synthetic",
    "search_space": "real2017",
    "space_options": {},
    "strategy": "tournament",
    "inheritance": "paper",
    "population_size": 20,
    "sample_size": 5,
    "steps_per_child": 300,
    "mutations_per_child": 1,
    "recipe": None,           # the training recipe (train.recipe): "paper" or "fast"; None: evo's default
    "train": {},
    "budget": {},
    "workers": None,          # None: the command line's --workers
    "schedule": [],
    "config": {},             # any other field of the population config (docs/format.md), as is
}
BUDGET_KEYS = ("flops", "wall_s", "individuals")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
# config fields a suite sets through its own keys (or that the runner owns)
_RESERVED_CONFIG = {"dataset", "dataset_kwargs", "population_size", "strategy", "sample_size", "steps_per_child",
                    "mutations_per_child", "inheritance", "seed", "train", "max_individuals", "max_flops"}


@dataclass
class Run:
    """One run of a suite: the population ``<out>/<suite>/<variant>/<experiment>/seed-<seed>``."""

    suite: str
    variant: str
    experiment: str
    seed: int
    settings: dict[str, Any]
    data: dict[str, Any]

    @property
    def key(self) -> str:
        return f"{self.variant}/{self.experiment}/seed-{self.seed}"

    @property
    def group(self) -> str:
        """The experiment across seeds (``variant/experiment``)."""
        return f"{self.variant}/{self.experiment}"

    def spec(self) -> dict[str, Any]:
        """Everything that defines the run (a finished run is reused only if this is unchanged)."""
        return {"suite": self.suite, "variant": self.variant, "experiment": self.experiment, "seed": self.seed,
                "settings": self.settings, "data": self.data}


@dataclass
class Suite:
    name: str
    title: str
    description: str
    path: str
    seeds: list[int]
    variants: list[str]
    experiments: list[str]
    runs: list[Run] = field(default_factory=list)

    def groups(self) -> dict[str, list[Run]]:
        """The runs of each experiment (``variant/experiment``), in suite order."""
        out: dict[str, list[Run]] = {}
        for r in self.runs:
            out.setdefault(r.group, []).append(r)
        return out


def _read(path: Path) -> dict:
    try:
        text = path.read_text()
    except OSError as e:
        raise SuiteError(f"{path}: cannot read the suite ({e.strerror})") from None
    try:
        if path.suffix == ".json":
            d = json.loads(text)
        else:
            import tomllib

            d = tomllib.loads(text)
    except ValueError as e:
        raise SuiteError(f"{path}: not valid {'JSON' if path.suffix == '.json' else 'TOML'} ({e})") from None
    if not isinstance(d, dict):
        raise SuiteError(f"{path}: a suite is a table of settings, not {type(d).__name__}")
    return d


def _merge(base: dict, over: Mapping[str, Any], where: str, path: Path) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if k in ("name", "title", "description"):
            continue
        if k not in RUN_FIELDS:
            import difflib

            close = difflib.get_close_matches(k, list(RUN_FIELDS), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise SuiteError(f"{path}: {where}: unknown setting {k!r}{hint}; settings: {', '.join(RUN_FIELDS)}")
        if k in ("train", "config", "space_options") and isinstance(v, Mapping):
            out[k] = {**out.get(k, {}), **copy.deepcopy(dict(v))}
        elif k == "budget" and isinstance(v, Mapping):
            out[k] = copy.deepcopy(dict(v))  # a budget replaces the one above it as a whole
        else:
            out[k] = copy.deepcopy(v)
    return out


def _check(s: dict, where: str, path: Path) -> None:
    def bad(msg: str) -> SuiteError:
        return SuiteError(f"{path}: {where}: {msg}")

    if s["strategy"] not in STRATEGIES:
        raise bad(f"strategy {s['strategy']!r}: use one of {', '.join(STRATEGIES)}")
    if s["inheritance"] not in INHERITANCE_MODES:
        raise bad(f"inheritance {s['inheritance']!r}: use one of {', '.join(INHERITANCE_MODES)}")
    for k in ("population_size", "sample_size", "steps_per_child", "mutations_per_child"):
        if not isinstance(s[k], int) or isinstance(s[k], bool) or s[k] < 1:
            raise bad(f"{k} = {s[k]!r}: a positive integer")
    if s["strategy"] != "random" and s["population_size"] < 2:
        raise bad("population_size must be at least 2 for selection")
    if s["workers"] is not None and (not isinstance(s["workers"], int) or s["workers"] < 1):
        raise bad(f"workers = {s['workers']!r}: a positive integer")
    b = s["budget"]
    if not isinstance(b, Mapping) or not b:
        raise bad("no budget: set budget = { flops = F } (and/or wall_s = SECONDS, individuals = N)")
    for k, v in b.items():
        if k not in BUDGET_KEYS:
            raise bad(f"budget key {k!r}: use {', '.join(BUDGET_KEYS)}")
        if not isinstance(v, (int, float)) or isinstance(v, bool) or v <= 0:
            raise bad(f"budget {k} = {v!r}: a positive number")
    if not isinstance(s["train"], Mapping) or not isinstance(s["config"], Mapping):
        raise bad("train and config are tables")
    if s["recipe"] is not None and (not isinstance(s["recipe"], str) or "recipe" in s["train"]):
        raise bad("recipe is a name (\"paper\" or \"fast\"), set either as recipe or as train.recipe")
    clash = sorted(set(s["config"]) & _RESERVED_CONFIG)
    if clash:
        raise bad(f"config.{clash[0]} is set by the suite's own setting; use that instead")
    if not isinstance(s["schedule"], list):
        raise bad("schedule is a list of { at = FRACTION, mutations_per_child = N } or "
                  "{ at = FRACTION, reset_weights = true }")
    last = -1.0
    for k, ev in enumerate(s["schedule"]):
        if not isinstance(ev, Mapping) or not isinstance(ev.get("at"), (int, float)) or not 0 < ev["at"] < 1:
            raise bad(f"schedule[{k}]: needs at = a fraction of the budget between 0 and 1")
        actions = set(ev) - {"at"}
        if not actions or not actions <= {"mutations_per_child", "reset_weights"}:
            raise bad(f"schedule[{k}]: set mutations_per_child = N and/or reset_weights = true")
        if "mutations_per_child" in ev and (not isinstance(ev["mutations_per_child"], int)
                                            or ev["mutations_per_child"] < 1):
            raise bad(f"schedule[{k}]: mutations_per_child is a positive integer")
        if ev["at"] < last:
            raise bad(f"schedule[{k}]: events must be in increasing order of at")
        last = ev["at"]


def _data(name: Any, tables: Mapping[str, Any], where: str, path: Path) -> dict:
    if not isinstance(name, str):
        raise SuiteError(f"{path}: {where}: data = {name!r}: the name of a data preset or a [data.NAME] table")
    d = tables.get(name, PRESETS.get(name))
    if d is None:
        known = sorted(set(PRESETS) | set(tables))
        raise SuiteError(f"{path}: {where}: unknown data {name!r}; known: {', '.join(known)} "
                         "(or define it in a [data.NAME] table)")
    if not isinstance(d, Mapping) or "dataset" not in d:
        raise SuiteError(f"{path}: [data.{name}] needs dataset = \"synthetic\" | \"imagefolder\" | ...")
    return {"name": name, **copy.deepcopy(dict(d))}


def load_suite(path: str | os.PathLike, *, only: list[str] | None = None,
               seeds: list[int] | None = None) -> Suite:
    """Read and check a suite file; expand it into its runs (variants x experiments x seeds).

    ``only``: keep the experiments whose ``variant/experiment`` (or either part) matches one of
    these names; ``seeds``: replace the suite's seeds.
    """
    p = Path(path)
    d = _read(p)
    known = {"name", "title", "description", "seeds", "defaults", "variant", "experiment", "data"}
    unknown = sorted(set(d) - known)
    if unknown:
        raise SuiteError(f"{p}: unknown top-level key {unknown[0]!r}; keys: {', '.join(sorted(known))}")
    name = str(d.get("name") or p.stem.split(".")[0])
    if not _NAME.match(name):
        raise SuiteError(f"{p}: name {name!r}: letters, digits, '.', '_' and '-' only")
    seed_list = seeds if seeds is not None else d.get("seeds", [0, 1, 2])
    if not isinstance(seed_list, list) or not seed_list or not all(isinstance(s, int) for s in seed_list):
        raise SuiteError(f"{p}: seeds = {seed_list!r}: a non-empty list of integers")
    tables = d.get("data", {})
    if not isinstance(tables, Mapping):
        raise SuiteError(f"{p}: data is a table of [data.NAME] tables")
    base = _merge(RUN_FIELDS, d.get("defaults", {}), "[defaults]", p)
    variants = d.get("variant") or [{"name": "default"}]
    experiments = d.get("experiment") or []
    if not experiments:
        raise SuiteError(f"{p}: no [[experiment]]; add at least one")
    runs = []
    seen_v: list[str] = []
    seen_e: set[str] = set()
    for v in variants:
        vname = str(v.get("name", ""))
        if not _NAME.match(vname) or vname in seen_v:
            raise SuiteError(f"{p}: [[variant]] name {vname!r}: missing, repeated or not a plain name")
        seen_v.append(vname)
        vset = _merge(base, v, f"variant {vname!r}", p)
        for e in experiments:
            ename = str(e.get("name", ""))
            if not _NAME.match(ename):
                raise SuiteError(f"{p}: [[experiment]] name {ename!r}: missing or not a plain name")
            if len(seen_v) == 1 and ename in seen_e:
                raise SuiteError(f"{p}: experiment {ename!r} is defined twice")
            seen_e.add(ename)
            if only and not any(o in (ename, vname, f"{vname}/{ename}") for o in only):
                continue
            where = f"experiment {ename!r} (variant {vname!r})"
            s = _merge(vset, e, where, p)
            _check(s, where, p)
            data = _data(s["data"], tables, where, p)
            for seed in seed_list:
                runs.append(Run(name, vname, ename, int(seed), s, data))
    if only and not runs:
        raise SuiteError(f"{p}: --only {','.join(only)} matches no experiment "
                         f"(experiments: {', '.join(sorted(seen_e))}; variants: {', '.join(sorted(seen_v))})")
    return Suite(name=name, title=str(d.get("title") or name), description=str(d.get("description") or ""),
                 path=str(p.resolve()), seeds=[int(s) for s in seed_list], variants=seen_v,
                 experiments=[str(e.get("name")) for e in experiments], runs=runs)
