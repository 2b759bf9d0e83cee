"""One committed individual as the analysis sees it: :class:`IndividualSummary`, read from its files.

An individual's directory holds ``fitness.json`` (its fitness record: accuracy, cost, lineage,
where it was trained) and ``dna.json``.  :func:`read_individual` turns them into the flat values
of one :class:`IndividualSummary`, tolerating anything a live population or an older version may
hold: a missing or torn file is reported, never raised; an unknown or mistyped field becomes None.
Pure Python (no torch), as the rest of :mod:`evo.analysis`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from evo.base.slurm import slurm_job_id
from evo.base.files import read_bytes
from evo.population.layout import DNA_FILE, FITNESS_FILE, load_json_or_none

__all__ = ["IndividualSummary", "counting_space", "genome_numbers", "read_dna", "read_individual",
           "read_individuals", "summary_from_values", "values_from_record", "CACHED_FIELDS", "DNA_FIELDS", "integer",
           "number"]


@dataclass(slots=True)
class IndividualSummary:
    """One individual ever committed, alive or dead, summarised from its ``fitness.json``.

    ``fitness`` is the validation accuracy, a float (None when training failed: ``outcome`` then
    says why).  ``born_at`` is when its training started, ``finished_at`` when it joined the
    population (the ``birth`` event); times are Unix seconds.  ``flops`` is the cost of its
    training and validation (the paper's accounting).  ``mutations`` names the mutations that
    made it from its parent.  ``generation`` is the store's reset generation (``evo
    reset-weights`` increments it); ``lineage_depth`` counts its ancestors back to a seed.
    ``status`` is ``alive``, ``dead`` or ``retraining`` (a living individual queued or being
    retrained by ``reset-weights``).  ``slurm_job`` is the Slurm job it was trained in
    (``12345_7`` for an array task).  The architecture counts (``n_convs``, ``n_skips``,
    ``n_strided``, ``downsampling``, ``max_channels``) are the numbers of those names that the
    population's search space's ``describe`` gives (:data:`DNA_FIELDS`), None unless the DNA was read
    (``load(..., with_dna=True)`` or :meth:`History.fill_dna_stats`) and the space gives them.
    """

    id: int
    parent_id: int | None
    status: str
    kind: str | None
    outcome: str | None
    fitness: float | None
    born_at: float | None
    finished_at: float | None
    flops: float
    params: int | None
    depth: int | None
    learning_rate: float | None
    mutations: tuple[str, ...]
    generation: int
    steps_trained: int | None
    train_wall_s: float | None
    worker: str | None
    slurm_job: str | None
    attempts: int | None
    reason: str | None = None
    n_convs: int | None = None
    n_skips: int | None = None
    n_strided: int | None = None
    downsampling: int | None = None
    max_channels: int | None = None
    lineage_depth: int | None = None

    @property
    def alive(self) -> bool:
        """True for a living individual (``retraining`` ones included)."""
        return self.status != "dead"

    @property
    def ok(self) -> bool:
        """True when its training succeeded and it has a validation accuracy."""
        return self.fitness is not None

    @property
    def is_seed(self) -> bool:
        return self.parent_id is None

    def to_dict(self) -> dict[str, Any]:
        d = {f: getattr(self, f) for f in FIELDS}
        d["mutations"] = list(self.mutations)
        d["alive"] = self.alive
        return d


FIELDS = [f.name for f in dataclasses.fields(IndividualSummary)]
#: the fields kept in the cache of the dead (``status`` is "dead" there; ``lineage_depth`` is recomputed)
CACHED_FIELDS = [f for f in FIELDS if f not in ("status", "lineage_depth")]
DNA_FIELDS = ("n_convs", "n_skips", "n_strided", "downsampling", "max_channels")
_MUT = CACHED_FIELDS.index("mutations")
assert FIELDS[:2] == ["id", "parent_id"] and FIELDS[2] == "status" and FIELDS[-1] == "lineage_depth"
assert CACHED_FIELDS == FIELDS[:2] + FIELDS[3:-1]


def number(x: Any) -> float | None:
    """A finite float from a JSON value, else None (booleans and strings are not numbers)."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def integer(x: Any) -> int | None:
    """An int from a JSON value (a whole float counts), else None."""
    if isinstance(x, bool):
        return None
    if isinstance(x, int):
        return x
    if isinstance(x, float) and math.isfinite(x) and x == int(x):
        return int(x)
    return None


def _str(x: Any) -> str | None:
    return x if isinstance(x, str) else (None if x is None else str(x))


def genome_numbers(space: Any, dna: Mapping[str, Any] | None) -> dict[str, Any]:
    """The numbers that the population's search space's ``describe`` gives for the genome ``dna``
    (a ``dna.json`` object); {} when there is no space or it cannot read the genome (a torn or foreign
    one: its counts stay unknown).  Never raises."""
    if space is None or dna is None:
        return {}
    try:
        return dict(space.describe(space.from_dict(dna)))
    except Exception:  # noqa: BLE001 - whatever the space's reader raises: unknown counts
        return {}


def counting_space(config: Any) -> Any:
    """The population's search space when its ``trend_metrics`` include a :data:`DNA_FIELDS` count
    (those worth reading every ``dna.json`` for, and caching), else None."""
    from evo.genome import GenomeError, space_of

    try:
        space = space_of(config)
    except GenomeError:
        return None
    return space if set(space.trend_metrics) & set(DNA_FIELDS) else None


def values_from_record(rec: dict, numbers: Mapping[str, Any] | None = None) -> list:
    """The :data:`CACHED_FIELDS` values of a fitness record (and of its genome's numbers, from
    :func:`genome_numbers`, when its DNA was read)."""
    muts = rec.get("mutations") or []
    names = tuple(str(m.get("name")) if isinstance(m, dict) else str(m) for m in muts) \
        if isinstance(muts, list) else ()
    stats = numbers or {}
    vals = {
        "id": rec.get("id"),
        "parent_id": integer(rec.get("parent_id")),
        "kind": _str(rec.get("kind")),
        "outcome": _str(rec.get("outcome")),
        "fitness": number(rec.get("fitness")),
        "born_at": number(rec.get("born_at")),
        "finished_at": number(rec.get("finished_at")),
        "flops": number(rec.get("flops")) or 0.0,
        "params": integer(rec.get("params")),
        "depth": integer(rec.get("depth")),
        "learning_rate": number(rec.get("learning_rate")),
        "mutations": names,
        "generation": integer(rec.get("generation")) or 0,
        "steps_trained": integer(rec.get("steps_trained")),
        "train_wall_s": number(rec.get("train_wall_s")),
        "worker": _str(rec.get("worker")),
        "slurm_job": slurm_job_id(rec.get("slurm_job_id"), rec.get("slurm_array_job_id"),
                                  rec.get("slurm_array_task_id")),
        "attempts": integer(rec.get("attempts")),
        "reason": _str(rec.get("reason")) or None,
        **{k: integer(stats.get(k)) for k in DNA_FIELDS},
    }
    if vals["learning_rate"] is None:
        vals["learning_rate"] = number(stats.get("learning_rate"))
    return [vals[k] for k in CACHED_FIELDS]


def read_individual(directory: str, expect_id: int, space: Any = None) -> tuple[list | None, str | None]:
    """(values, None) or (None, problem) for one individual's directory; problem ``"missing"``
    when it has no fitness record (it moved away meanwhile).  ``space``: also read its DNA and
    keep the counts this search space gives (:func:`counting_space`).  Never raises."""
    fpath = os.path.join(directory, FITNESS_FILE)
    try:
        rec = json.loads(read_bytes(fpath))
        if not isinstance(rec, dict):
            raise ValueError("not a JSON object")
    except (FileNotFoundError, NotADirectoryError):
        return None, "missing"
    except (ValueError, UnicodeDecodeError) as e:
        return None, f"{fpath}: torn or corrupt fitness record ({e}); skipped"
    except OSError as e:
        return None, f"{fpath}: unreadable ({e}); skipped"
    if rec.get("id") != expect_id:
        return None, f"{fpath}: record id {rec.get('id')!r} != directory id {expect_id}; skipped (run evo fsck)"
    return values_from_record(rec, genome_numbers(space, read_dna(directory)) if space is not None else None), None


def read_dna(directory: str) -> dict | None:
    """The ``dna.json`` object of an individual's directory, or None (missing, torn, unreadable)."""
    try:
        return load_json_or_none(os.path.join(directory, DNA_FILE), warn=False)
    except OSError:
        return None


def read_individuals(jobs: list[tuple[str, int]], space: Any = None) -> list[tuple[list | None, str | None]]:
    """:func:`read_individual` of each (directory, id); module-level so that a process pool can run it."""
    return [read_individual(d, i, space) for d, i in jobs]


def summary_from_values(values: Sequence, status: str) -> IndividualSummary:
    """An :class:`IndividualSummary` from its :data:`CACHED_FIELDS` values and its status."""
    m = values[_MUT]
    if not isinstance(m, tuple):
        values = list(values)
        values[_MUT] = tuple(m or ())
    return IndividualSummary(values[0], values[1], status, *values[2:])
