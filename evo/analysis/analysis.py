"""Read API over a population directory: individuals, lineages, progress curves, costs.

Everything here reads the on-disk format of :mod:`evo.store` (``docs/format.md``) and
nothing else; importing this module never imports torch, so it is fast and safe on a login
node and in a notebook.  It never takes the population lock and never writes into the
population (except :func:`record_evaluation`, which appends one line to
``POPDIR/evaluations.jsonl``), so it is safe on a live population that hundreds of workers
are changing: a file caught half-written is skipped with a warning (kept in
:attr:`History.warnings`), an individual killed while it is being read is found in
``dead/``, nothing ever raises because of a race.

Typical use (a script, or a notebook)::

    from evo import analysis
    h = analysis.load("runs/c10")               # every individual ever committed
    best = h.best()                             # highest validation accuracy (the paper's "best")
    print(best.id, best.fitness, best.params, best.depth)
    for step in h.lineage(best.id):             # from a seed individual to the best
        print(step.id, step.mutations, step.fitness)
    curve = h.best_so_far("time")               # or "individuals", "flops"
    h.to_csv("history.csv")                     # one row per individual, for pandas or R
    df = h.to_dataframe()                       # when pandas is installed

Speed.  Each individual's ``fitness.json`` is read once.  The records of the dead never
change, so a compact copy of them is kept in a per-user cache (``$EVO_CACHE_DIR``, else
``$XDG_CACHE_HOME/evo/analysis``, else ``~/.cache/evo/analysis``), checked against the inode
of each dead individual's directory: after the first load, loading a population of 100,000
dead individuals reads a directory listing, the cache and the few hundred living ones.  The
first load reads the files with several processes when there are many (``workers``).

The functions under "Models" (exporting and test-set evaluation) import torch when called.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import math
import os
import sys
import time
import warnings
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import numpy as np

from evo.population import store as _store

__all__ = [
    "AnalysisError",
    "UnknownIndividualError",
    "NoCheckpointError",
    "NoTestSplitError",
    "IndividualRecord",
    "History",
    "Curve",
    "load",
    "lineage",
    "best_so_far",
    "status",
    "describe",
    "dna_stats",
    "X_AXES",
    "EVALUATIONS_FILE",
    "checkpoint_of",
    "load_individual_model",
    "export_individual",
    "evaluate_test",
    "record_evaluation",
    "read_evaluations",
    "format_duration",
]

#: The x axes of progress curves: wall-clock hours since the start, individuals trained so
#: far, cumulative FLOPs spent.
X_AXES = ("time", "individuals", "flops")

#: Where :func:`record_evaluation` appends test-set results (one JSON object per line).
EVALUATIONS_FILE = "evaluations.jsonl"

_CACHE_VERSION = 1
_PARALLEL_MIN = 4000  # uncached files before a process pool is worth its start-up


class AnalysisError(Exception):
    """A request the population cannot answer; the message says why and what to do."""


class UnknownIndividualError(AnalysisError, KeyError):
    """No committed individual has this id."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class NoCheckpointError(AnalysisError):
    """The individual's trained weights were not kept (``keep_checkpoints``)."""


class NoTestSplitError(AnalysisError):
    """The population's data set has no test split."""


# --------------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------------


@dataclass(slots=True)
class IndividualRecord:
    """One individual ever committed, alive or dead, as its ``fitness.json`` describes it.

    ``fitness`` is the validation accuracy (None when training failed: ``outcome`` then says
    why).  ``born_at`` is when its training started, ``finished_at`` when it joined the
    population (the ``birth`` event); times are Unix seconds.  ``flops`` is the cost of its
    training and validation (the paper's accounting).  ``mutations`` names the mutations that
    made it from its parent.  ``generation`` is the store's reset generation (``evo
    reset-weights`` increments it); ``lineage_depth`` counts its ancestors back to a seed.
    ``status`` is ``alive``, ``dead`` or ``retraining`` (a living individual queued or being
    retrained by ``reset-weights``).  The DNA-derived counts (``n_convs``, ``n_skips``,
    ``n_strided``, ``downsampling``, ``max_channels``) are None unless the DNA was read
    (``load(..., with_dna=True)`` or :meth:`History.fill_dna_stats`).
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
        d = {f: getattr(self, f) for f in _FIELDS}
        d["mutations"] = list(self.mutations)
        d["alive"] = self.alive
        return d


_FIELDS = [f.name for f in dataclasses.fields(IndividualRecord)]
# fields kept in the cache of the dead (status is "dead", lineage_depth is recomputed)
_CACHED = [f for f in _FIELDS if f not in ("status", "lineage_depth")]
_DNA_FIELDS = ("n_convs", "n_skips", "n_strided", "downsampling", "max_channels")
_CACHE_TAG = f"v{_CACHE_VERSION}:" + hashlib.sha1(",".join(_CACHED).encode()).hexdigest()[:10]


def _num(x: Any) -> float | None:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _int(x: Any) -> int | None:
    if isinstance(x, bool):
        return None
    if isinstance(x, int):
        return x
    if isinstance(x, float) and math.isfinite(x) and x == int(x):
        return int(x)
    return None


def _str(x: Any) -> str | None:
    return x if isinstance(x, str) else (None if x is None else str(x))


def dna_stats(dna: dict) -> dict[str, int]:
    """Architecture counts of a DNA dict (``dna.json``), pure Python and tolerant.

    ``n_convs``: convolutions; ``n_skips``: skip connections; ``n_strided``: convolutions with
    stride > 1; ``downsampling``: product of the strides along the backbone (input to output);
    ``max_channels``: the widest convolution.
    """
    edges = [e for e in dna.get("edges") or [] if isinstance(e, dict)]
    convs = [e for e in edges if e.get("type") == "CONV"]
    primary = {e.get("dst"): e for e in edges if not e.get("skip")}
    down = 1
    v = dna.get("output_vertex")
    seen = set()
    while v in primary and v != dna.get("input_vertex") and v not in seen:
        seen.add(v)
        e = primary[v]
        if e.get("type") == "CONV":
            down *= int(e.get("stride") or 1)
        v = e.get("src")
    return {
        "n_convs": len(convs),
        "n_skips": sum(1 for e in edges if e.get("skip")),
        "n_strided": sum(1 for e in convs if int(e.get("stride") or 1) > 1),
        "downsampling": down,
        "max_channels": max((int(e.get("channels") or 0) for e in convs), default=0),
    }


def _values(rec: dict, dna: dict | None) -> list:
    """The cached field values (``_CACHED`` order) of a fitness record."""
    muts = rec.get("mutations") or []
    names = tuple(str(m.get("name")) if isinstance(m, dict) else str(m) for m in muts) \
        if isinstance(muts, list) else ()
    ajob, atask = rec.get("slurm_array_job_id"), rec.get("slurm_array_task_id")
    job = f"{ajob}_{atask}" if ajob and atask is not None else _str(rec.get("slurm_job_id"))
    params = _int(rec.get("params"))
    stats = dna_stats(dna) if dna is not None else {}
    vals = {
        "id": rec.get("id"),
        "parent_id": _int(rec.get("parent_id")),
        "kind": _str(rec.get("kind")),
        "outcome": _str(rec.get("outcome")),
        "fitness": _num(rec.get("fitness")),
        "born_at": _num(rec.get("born_at")),
        "finished_at": _num(rec.get("finished_at")),
        "flops": _num(rec.get("flops")) or 0.0,
        "params": params,
        "depth": _int(rec.get("depth")),
        "learning_rate": _num(rec.get("learning_rate")),
        "mutations": names,
        "generation": _int(rec.get("generation")) or 0,
        "steps_trained": _int(rec.get("steps_trained")),
        "train_wall_s": _num(rec.get("train_wall_s")),
        "worker": _str(rec.get("worker")),
        "slurm_job": job,
        "attempts": _int(rec.get("attempts")),
        "reason": _str(rec.get("reason")) or None,
        **{k: stats.get(k) for k in _DNA_FIELDS},
    }
    if dna is not None:
        lr = _num(dna.get("learning_rate"))
        if vals["learning_rate"] is None and lr is not None:
            vals["learning_rate"] = lr
    return [vals[k] for k in _CACHED]


def _read_one(directory: str, expect_id: int, with_dna: bool) -> tuple[list | None, str | None]:
    """(values, None) or (None, problem) for one individual's directory.  Never raises."""
    fpath = os.path.join(directory, _store.FITNESS_FILE)
    try:
        rec = json.loads(_store.read_bytes(fpath))
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
    dna = None
    if with_dna:
        try:
            dna = json.loads(_store.read_bytes(os.path.join(directory, _store.DNA_FILE)))
            if not isinstance(dna, dict):
                dna = None
        except (OSError, ValueError, UnicodeDecodeError):
            dna = None
    return _values(rec, dna), None


def _read_chunk(jobs: list[tuple[str, int]], with_dna: bool) -> list[tuple[list | None, str | None]]:
    return [_read_one(d, i, with_dna) for d, i in jobs]


_MUT = _CACHED.index("mutations")
_NCONVS = _CACHED.index("n_convs")
assert _FIELDS[:2] == ["id", "parent_id"] and _FIELDS[2] == "status" and _FIELDS[-1] == "lineage_depth"
assert _CACHED == _FIELDS[:2] + _FIELDS[3:-1]


def _make(values: Sequence, status: str) -> IndividualRecord:
    m = values[_MUT]
    if not isinstance(m, tuple):
        values = list(values)
        values[_MUT] = tuple(m or ())
    return IndividualRecord(values[0], values[1], status, *values[2:])


# --------------------------------------------------------------------------------------------
# The cache of the dead
# --------------------------------------------------------------------------------------------


def _shard(i: int) -> str:
    return str(i // _store.SHARD_SIZE)


def _listdir(d: str) -> list[str]:
    try:
        return os.listdir(d)
    except OSError:
        return []


def _cache_dir() -> str:
    env = os.environ.get("EVO_CACHE_DIR")
    if env:
        return os.path.join(env, "analysis")
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "evo", "analysis")


class _DeadCache:
    """Append-only JSON-lines file: a header, then ``[id, inode, *values]`` per dead individual.

    Later lines win.  Rewritten compactly when more than a quarter of it is stale.  Any
    problem (unwritable directory, torn line, another version) only costs a re-read.
    """

    def __init__(self, root: str, created_at: Any, directory: str | None = None):
        key = hashlib.sha256(f"{os.path.realpath(root)}\0{created_at}".encode()).hexdigest()[:20]
        self.path = os.path.join(directory or _cache_dir(), f"{key}.jsonl")
        self.header = {"cache": "evo-analysis-dead", "tag": _CACHE_TAG, "root": os.path.realpath(root),
                       "created_at": created_at}
        self.entries: dict[int, tuple[int, list]] = {}
        self.lines = 0

    def load(self) -> None:
        try:
            with open(self.path, "rb") as f:
                data = f.read()
        except OSError:
            return
        head_end = data.find(b"\n")
        try:
            head = json.loads(data[:head_end])
        except ValueError:
            return
        if head != self.header:
            return
        body = data[head_end + 1:].rstrip(b"\n")
        if not body:
            return
        try:  # one parse for the whole file; per line only if a line is torn
            rows = json.loads(b"[" + body.replace(b"\n", b",") + b"]")
        except ValueError:
            rows = []
            for line in body.split(b"\n"):
                try:
                    rows.append(json.loads(line))
                except ValueError:
                    continue  # torn by a concurrent writer
        entries = self.entries
        n = len(_CACHED) + 2
        for row in rows:
            if isinstance(row, list) and len(row) == n:
                entries[row[0]] = (row[1], row[2:])
                self.lines += 1

    def append(self, rows: list[tuple[int, int, list]], live: dict[int, int]) -> None:
        """Add new rows; rewrite the file when stale lines dominate.  Never raises."""
        try:
            stale = self.lines - sum(1 for i, (ino, _) in self.entries.items() if live.get(i) == ino)
            if not os.path.exists(self.path) or stale * 4 > self.lines + len(rows):
                for i, ino, vals in rows:
                    self.entries[i] = (ino, vals)
                keep = [(i, ino, vals) for i, (ino, vals) in self.entries.items() if live.get(i) == ino]
                buf = io.StringIO()
                buf.write(json.dumps(self.header) + "\n")
                for i, ino, vals in sorted(keep, key=lambda r: r[0]):
                    buf.write(json.dumps([i, ino, *vals], separators=(",", ":")) + "\n")
                os.makedirs(os.path.dirname(self.path), exist_ok=True)
                _store.atomic_write_bytes(self.path, buf.getvalue().encode(), fsync=False)
                self.lines = len(keep)
                return
            if not rows:
                return
            payload = "".join(json.dumps([i, ino, *vals], separators=(",", ":")) + "\n"
                              for i, ino, vals in rows).encode()
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
            try:
                os.write(fd, payload)
            finally:
                os.close(fd)
            self.lines += len(rows)
        except (OSError, TypeError, ValueError):
            pass


# --------------------------------------------------------------------------------------------
# History
# --------------------------------------------------------------------------------------------


@dataclass
class Curve:
    """A best-so-far curve: ``y[k]`` is the best validation accuracy among the individuals
    born up to ``x[k]``; ``ids[k]`` the individual that holds it."""

    x: np.ndarray
    y: np.ndarray
    ids: np.ndarray
    axis: str
    label: str

    def at(self, xs: Sequence[float]) -> np.ndarray:
        """Best-so-far sampled at ``xs`` (NaN before the first individual)."""
        xs = np.asarray(xs, dtype=float)
        if len(self.x) == 0:
            return np.full(xs.shape, np.nan)
        k = np.searchsorted(self.x, xs, side="right") - 1
        out = np.where(k >= 0, self.y[np.clip(k, 0, None)], np.nan)
        return out


def _axis_label(axis: str) -> str:
    return {"time": "wall-clock time (hours)", "individuals": "individuals trained",
            "flops": "FLOPs spent"}[axis]


def _rank_key(r: IndividualRecord) -> tuple[float, bool, int]:
    """Best first: the higher validation accuracy, then the living, then the older."""
    return (-r.fitness, not r.alive, r.id)  # type: ignore[operator]


class History:
    """Every individual ever committed to a population, read once (see :func:`load`).

    ``individuals`` is sorted by id; ``by_id`` maps ids to records.  ``counts`` has the
    directory counts at load time (``alive``, ``dead``, ``pending``, ``inflight``); ``config``
    is the experiment's :class:`evo.store.Config`, ``control`` and ``state`` the contents of
    control.json and state.json.  ``warnings`` lists what was skipped (torn files, ...).
    """

    def __init__(self, root: str, config: _store.Config, individuals: list[IndividualRecord],
                 counts: dict[str, int], control: dict, state: dict, warnings_: list[str],
                 loaded_at: float, load_s: float, cache_hits: int, dead_inodes: dict[int, int] | None = None,
                 cache: "_DeadCache | None" = None):
        self.root = root
        self.config = config
        self.individuals = individuals
        self.by_id = {r.id: r for r in individuals}
        self.counts = counts
        self.control = control
        self.state = state
        self.warnings = warnings_
        self.loaded_at = loaded_at
        self.load_s = load_s
        self.cache_hits = cache_hits
        self._dead_inodes = dead_inodes or {}
        self._cache = cache
        self._order: list[IndividualRecord] | None = None
        self._compute_lineage_depth()

    # ----------------------------------------------------------------- basics
    def __len__(self) -> int:
        return len(self.individuals)

    def __iter__(self) -> Iterator[IndividualRecord]:
        return iter(self.individuals)

    def __contains__(self, i: object) -> bool:
        return i in self.by_id

    def __getitem__(self, i: int) -> IndividualRecord:
        try:
            return self.by_id[int(i)]
        except (KeyError, ValueError, TypeError):
            raise UnknownIndividualError(self._unknown(i)) from None

    def __repr__(self) -> str:
        b = self.best()
        best = f", best {b.id} at {b.fitness:.4f}" if b else ""
        return (f"History({self.root!r}: {len(self)} individuals, {self.counts.get('alive', 0)} alive"
                f"{best})")

    def _unknown(self, i: object) -> str:
        ids = sorted(self.by_id)
        rng = f"ids {ids[0]}..{ids[-1]}" if ids else "no individual committed yet"
        where = ""
        try:
            n = int(i)  # type: ignore[arg-type]
            if os.path.isdir(os.path.join(self.root, _store.PENDING, str(n))):
                where = " (it is pending work, not trained yet)"
            elif any(x.startswith(f"{n}.") for x in _listdir(os.path.join(self.root, _store.INFLIGHT))):
                where = " (it is being trained right now)"
        except (TypeError, ValueError):
            pass
        return f"no committed individual {i} in {self.root}{where}; {rng} (see `evo top {self.root}`)"

    def get(self, i: int) -> IndividualRecord | None:
        return self.by_id.get(i)

    def alive(self) -> list[IndividualRecord]:
        return [r for r in self.individuals if r.alive]

    def dead(self) -> list[IndividualRecord]:
        return [r for r in self.individuals if not r.alive]

    @property
    def t0(self) -> float:
        """Start of the experiment: the first training's start (else the creation time)."""
        starts = [r.born_at for r in self.individuals if r.born_at is not None]
        if starts:
            return min(starts)
        return float(self.config.created_at or 0.0)

    def in_birth_order(self) -> list[IndividualRecord]:
        """Individuals in the order they joined the population (``finished_at``, then id)."""
        if self._order is None:
            self._order = sorted(self.individuals, key=lambda r: (
                r.finished_at if r.finished_at is not None else math.inf, r.id))
        return self._order

    def array(self, name: str, individuals: Sequence[IndividualRecord] | None = None) -> np.ndarray:
        """A field of every individual (by id, or of ``individuals``) as a float array (NaN for None)."""
        rows = self.individuals if individuals is None else individuals
        return np.array([np.nan if (v := getattr(r, name)) is None else float(v) for r in rows], dtype=float)

    # ----------------------------------------------------------------- ranking
    def ranked(self, alive_only: bool = False) -> list[IndividualRecord]:
        """Individuals with a validation accuracy, best first.  Ties go to the living first
        (their weights are kept; a tournament kills either of two equals), then to the older."""
        return sorted(self._scored(alive_only), key=_rank_key)

    def top(self, n: int = 10, alive_only: bool = False) -> list[IndividualRecord]:
        return self.ranked(alive_only)[:n]

    def best(self, alive_only: bool = False) -> IndividualRecord | None:
        """The individual with the highest validation accuracy (the paper's "best"); ties as in
        :meth:`ranked`."""
        return min(self._scored(alive_only), key=_rank_key, default=None)

    def _scored(self, alive_only: bool) -> Iterator[IndividualRecord]:
        """Individuals with a validation accuracy (the living only, with ``alive_only``)."""
        return (r for r in self.individuals if r.fitness is not None and (r.alive or not alive_only))

    # ----------------------------------------------------------------- lineage
    def _compute_lineage_depth(self) -> None:
        by = self.by_id
        for r in self.individuals:
            if r.lineage_depth is not None:
                continue
            chain = []
            cur: IndividualRecord | None = r
            seen = set()
            while cur is not None and cur.lineage_depth is None and cur.id not in seen:
                seen.add(cur.id)
                chain.append(cur)
                cur = by.get(cur.parent_id) if cur.parent_id is not None else None
            if cur is None or cur.lineage_depth is None:
                base = -1 if cur is None else 0  # a cycle (corrupt): count from here
            else:
                base = cur.lineage_depth
            for k, c in enumerate(reversed(chain)):
                c.lineage_depth = base + 1 + k

    def lineage(self, i: int) -> list[IndividualRecord]:
        """The individual and its ancestors, from a seed individual (first) down to ``i``
        (last).  If an ancestor is missing (a corrupt record), the list starts at the oldest
        ancestor found: check ``result[0].is_seed``."""
        cur: IndividualRecord | None = self[i]
        out = []
        seen = set()
        while cur is not None and cur.id not in seen:
            seen.add(cur.id)
            out.append(cur)
            cur = self.by_id.get(cur.parent_id) if cur.parent_id is not None else None
        out.reverse()
        return out

    def children(self, i: int) -> list[IndividualRecord]:
        return [r for r in self.individuals if r.parent_id == i]

    # ----------------------------------------------------------------- curves
    def positions(self, axis: str = "time") -> tuple[list[IndividualRecord], np.ndarray]:
        """(individuals in birth order, their x coordinate on ``axis``).

        ``time``: hours since :attr:`t0` at which each joined the population;
        ``individuals``: 1, 2, 3, ... in that order; ``flops``: cumulative FLOPs spent by
        every training committed so far, this one included.
        """
        if axis not in X_AXES:
            raise AnalysisError(f"unknown x axis {axis!r}: use one of {', '.join(X_AXES)}")
        order = [r for r in self.in_birth_order() if r.finished_at is not None]
        if axis == "time":
            t0 = self.t0
            x = np.array([(r.finished_at - t0) / 3600.0 for r in order], dtype=float)  # type: ignore[operator]
        elif axis == "individuals":
            x = np.arange(1, len(order) + 1, dtype=float)
        else:
            x = np.cumsum(np.array([r.flops for r in order], dtype=float))
        return order, x

    def best_so_far(self, axis: str = "time") -> Curve:
        """The best validation accuracy seen so far, after each birth (see :meth:`positions`)."""
        order, x = self.positions(axis)
        xs, ys, ids = [], [], []
        best = -math.inf
        best_id = -1
        for r, xv in zip(order, x):
            if r.fitness is not None and r.fitness > best:
                best, best_id = r.fitness, r.id
            if best_id >= 0:
                xs.append(xv)
                ys.append(best)
                ids.append(best_id)
        return Curve(np.array(xs, dtype=float), np.array(ys, dtype=float), np.array(ids, dtype=int),
                     axis, _axis_label(axis))

    # ----------------------------------------------------------------- rates
    def births_per_hour(self) -> tuple[np.ndarray, np.ndarray]:
        """(hour index since :attr:`t0`, individuals committed in that hour)."""
        t = np.array([r.finished_at for r in self.individuals if r.finished_at is not None], dtype=float)
        if not len(t):
            return np.zeros(0, dtype=int), np.zeros(0, dtype=int)
        h = np.floor((t - self.t0) / 3600.0).astype(int)
        h = np.clip(h, 0, None)
        counts = np.bincount(h)
        return np.arange(len(counts)), counts

    def birth_rate(self, window_s: float = 3600.0, now: float | None = None) -> float:
        """Individuals committed per hour over the last ``window_s`` seconds (or since t0)."""
        now = self.loaded_at if now is None else now
        start = max(now - window_s, self.t0)
        span = now - start
        if span <= 0:
            return 0.0
        n = sum(1 for r in self.individuals if r.finished_at is not None and start <= r.finished_at <= now)
        return n * 3600.0 / span

    def total_flops(self) -> float:
        """FLOPs spent by every committed training (state.json's counter when larger: it also
        counts the earlier trainings of retrained individuals)."""
        s = float(sum(r.flops for r in self.individuals))
        st = _num(self.state.get("flops"))
        return max(s, st or 0.0)

    # ----------------------------------------------------------------- architecture
    def fill_dna_stats(self) -> None:
        """Read the DNA of every individual whose architecture counts are missing."""
        todo = [r for r in self.individuals if r.n_convs is None]
        for r in todo:
            d = self.path_of(r.id)
            try:
                dna = json.loads(_store.read_bytes(os.path.join(d, _store.DNA_FILE)))
            except (OSError, ValueError, UnicodeDecodeError):
                continue
            if isinstance(dna, dict):
                for k, v in dna_stats(dna).items():
                    setattr(r, k, v)
                if r.learning_rate is None:
                    r.learning_rate = _num(dna.get("learning_rate"))
        if todo and self._cache is not None:
            # remember the counts of the dead for the next load
            rows = [(r.id, self._dead_inodes[r.id], [getattr(r, k) for k in _CACHED]) for r in todo
                    if r.status == "dead" and r.n_convs is not None and r.id in self._dead_inodes]
            self._cache.append(rows, self._dead_inodes)

    def architecture_trends(self, bins: int = 20, axis: str = "individuals") -> dict[str, Any]:
        """How the architectures change over the run.

        The individuals (in birth order) are cut into ``bins`` groups along ``axis``; for each
        metric (``depth``, ``params``, ``n_convs``, ``n_skips``, ``n_strided``,
        ``downsampling``, ``learning_rate``, ``fitness``) the median and quartiles of each
        group, and the value of the best-so-far individual at the end of the group.
        Returns ``{"axis", "x" (bin centres), "n" (individuals per bin), metric: {"median",
        "q25", "q75", "best"}}``; NaN where a bin is empty.
        """
        self.fill_dna_stats()
        order, x = self.positions(axis)
        bins = max(1, int(bins))
        metrics = ("depth", "params", "n_convs", "n_skips", "n_strided", "downsampling", "learning_rate",
                   "fitness")
        out: dict[str, Any] = {"axis": axis, "label": _axis_label(axis)}
        if not order:
            out.update(x=np.zeros(0), n=np.zeros(0, dtype=int), edges=np.zeros(0))
            for m in metrics:
                out[m] = {k: np.zeros(0) for k in ("median", "q25", "q75", "best")}
            return out
        lo, hi = float(x[0]), float(x[-1])
        if hi <= lo:
            hi = lo + 1.0
        edges = np.linspace(lo, hi, bins + 1)
        idx = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, bins - 1)
        curve_ids = []
        best, best_r = -math.inf, None
        for r in order:
            if r.fitness is not None and r.fitness > best:
                best, best_r = r.fitness, r
            curve_ids.append(best_r)
        last_in_bin = {int(b): k for k, b in enumerate(idx)}
        out["x"] = (edges[:-1] + edges[1:]) / 2
        out["edges"] = edges
        out["n"] = np.bincount(idx, minlength=bins)
        for m in metrics:
            vals = self.array(m, order)
            med, q25, q75, bst = (np.full(bins, np.nan) for _ in range(4))
            for b in range(bins):
                v = vals[idx == b]
                v = v[~np.isnan(v)]
                if len(v):
                    med[b], q25[b], q75[b] = np.percentile(v, [50, 25, 75])
                k = last_in_bin.get(b)
                if k is not None and curve_ids[k] is not None:
                    bv = getattr(curve_ids[k], m)
                    bst[b] = np.nan if bv is None else float(bv)
            out[m] = {"median": med, "q25": q25, "q75": q75, "best": bst}
        return out

    # ----------------------------------------------------------------- files
    def path_of(self, i: int) -> str:
        """The directory of individual ``i`` (where it lives now)."""
        r = self[i]
        pop_paths = [os.path.join(self.root, _store.ALIVE, str(i)),
                     os.path.join(self.root, _store.DEAD, _shard(i), str(i))]
        if r.status == "dead":
            pop_paths.reverse()
        elif r.status == "retraining":  # queued or being retrained: pending/<id> or inflight/<id>.<token>
            pop_paths.insert(0, os.path.join(self.root, _store.PENDING, str(i)))
            pop_paths[1:1] = [os.path.join(self.root, _store.INFLIGHT, n)
                              for n in _listdir(os.path.join(self.root, _store.INFLIGHT))
                              if n.partition(".")[0] == str(i)]
        for p in pop_paths:
            if os.path.isdir(p):
                return p
        return pop_paths[0]

    def record(self, i: int) -> dict:
        """The full fitness record (``fitness.json``) of ``i``, read now."""
        p = os.path.join(self.path_of(i), _store.FITNESS_FILE)
        rec = _store.load_json_or_none(p, warn=False)
        if rec is None:
            raise AnalysisError(f"{p}: the fitness record is gone or unreadable; run `evo fsck {self.root}`")
        return rec

    def dna(self, i: int) -> dict:
        """The DNA (``dna.json``) of ``i`` as a dict."""
        p = os.path.join(self.path_of(i), _store.DNA_FILE)
        d = _store.load_json_or_none(p, warn=False)
        if d is None:
            raise AnalysisError(f"{p}: the DNA is gone or unreadable; run `evo fsck {self.root}`")
        return d

    def checkpoint(self, i: int) -> str | None:
        """Path of the trained weights of ``i``, or None if they were not kept."""
        p = os.path.join(self.path_of(i), _store.CHECKPOINT_FILE)
        return p if os.path.exists(p) else None

    def death_times(self) -> dict[int, float]:
        """Death time of every dead individual, from the event log (read now, once)."""
        out: dict[int, float] = {}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for ev in _store.read_events(self.root, warn=False):
                if ev.get("event") == "death" and isinstance(ev.get("id"), int) and _num(ev.get("t")):
                    out[ev["id"]] = float(ev["t"])
        return out

    # ----------------------------------------------------------------- export
    COLUMNS = ("id", "parent_id", "alive", "status", "kind", "outcome", "fitness", "born_at", "finished_at",
               "flops", "params", "depth", "learning_rate", "mutations", "generation", "lineage_depth",
               "steps_trained", "train_wall_s", "worker", "slurm_job", "attempts", "reason", "n_convs",
               "n_skips", "n_strided", "downsampling", "max_channels")

    def rows(self, columns: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """One dict per individual (by id); ``mutations`` joined with ``+``."""
        cols = list(columns or self.COLUMNS)
        out = []
        for r in self.individuals:
            d = r.to_dict()
            d["mutations"] = "+".join(r.mutations)
            out.append({c: d.get(c) for c in cols})
        return out

    def to_csv(self, dest: str | os.PathLike | io.TextIOBase | None = None,
               columns: Sequence[str] | None = None) -> str | None:
        """Write one CSV row per individual ever born (header first).  ``dest``: a path, an
        open text file, or None to return the text."""
        cols = list(columns or self.COLUMNS)
        buf = io.StringIO() if dest is None or isinstance(dest, (str, os.PathLike)) else dest
        w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
        w.writeheader()
        for row in self.rows(cols):
            w.writerow({k: ("" if v is None else (repr(v) if isinstance(v, float) else v)) for k, v in row.items()})
        if dest is None:
            return buf.getvalue()  # type: ignore[union-attr]
        if isinstance(dest, (str, os.PathLike)):
            tmp = f"{os.fspath(dest)}.tmp-{os.getpid()}"
            with open(tmp, "w", newline="") as f:
                f.write(buf.getvalue())  # type: ignore[union-attr]
            os.replace(tmp, dest)
        return None

    def to_dataframe(self, columns: Sequence[str] | None = None):  # pragma: no cover - needs pandas
        """A pandas DataFrame indexed by id (pandas must be installed)."""
        try:
            import pandas as pd
        except ImportError as e:
            raise AnalysisError("to_dataframe needs pandas (pip install pandas); use to_csv or rows()") from e
        return pd.DataFrame(self.rows(columns)).set_index("id", drop=False)


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


def _scan_ids(d: str) -> dict[int, int]:
    """{id: inode} of the numeric entries of a directory (no stat: d_ino comes with readdir)."""
    out: dict[int, int] = {}
    try:
        with os.scandir(d) as it:
            for e in it:
                if e.name.isdigit():
                    out[int(e.name)] = e.inode()
    except (FileNotFoundError, NotADirectoryError):
        pass
    except OSError as e:
        warnings.warn(f"{d}: cannot list ({e})", _store.StoreWarning)
    return out


def _read_parallel(jobs: list[tuple[str, int]], with_dna: bool, workers: int) -> list[tuple[list | None, str | None]]:
    import concurrent.futures as cf
    import multiprocessing as mp

    n = max(1, min(workers, len(jobs) // 1000 or 1))
    size = max(500, math.ceil(len(jobs) / (n * 4)))
    chunks = [jobs[k:k + size] for k in range(0, len(jobs), size)]
    ctx = mp.get_context("forkserver" if sys.platform.startswith("linux") else "spawn")
    with cf.ProcessPoolExecutor(max_workers=n, mp_context=ctx) as ex:
        parts = list(ex.map(_read_chunk, chunks, [with_dna] * len(chunks)))
    return [x for p in parts for x in p]


def load(popdir: str | os.PathLike, *, with_dna: bool = False, cache: bool | str = True,
         workers: int | None = None) -> History:
    """Read every committed individual of the population at ``popdir``.

    Lock-free and read-only.  ``with_dna``: also read each DNA for the architecture counts
    (skips, strides, ...; cached for the dead).  ``cache``: keep and use the per-user cache of
    the dead (True), a directory for it (str), or neither (False).  ``workers``: processes for
    a first read of many files (default: the CPUs, at most 8; 1 reads in this process).
    Raises :class:`evo.store.NotAPopulationError` if ``popdir`` is not a population.
    """
    t_start = time.perf_counter()
    root = os.path.abspath(os.fspath(popdir))
    problems: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", _store.StoreWarning)
        pop = _store.Population.open(root, lock="none")
        cfg = pop.config
        control = _store.load_json_or_none(os.path.join(root, _store.CONTROL_FILE)) or {}
        state = _store.load_json_or_none(os.path.join(root, _store.STATE_FILE)) or {}
        loaded_at = time.time()

        # 1. list (alive first: an individual killed meanwhile then shows up in dead/)
        alive = _scan_ids(os.path.join(root, _store.ALIVE))
        dead: dict[int, int] = {}
        dead_root = os.path.join(root, _store.DEAD)
        for s in _listdir(dead_root):
            if s.isdigit():
                dead.update(_scan_ids(os.path.join(dead_root, s)))
        pending = _listdir(os.path.join(root, _store.PENDING))
        inflight = _listdir(os.path.join(root, _store.INFLIGHT))

        # 2. the dead: from the cache when the directory is the same, else read
        dc = None
        if cache:
            dc = _DeadCache(root, cfg.created_at, cache if isinstance(cache, str) else None)
            dc.load()
        records: dict[int, IndividualRecord] = {}
        jobs: list[tuple[str, int]] = []
        hits = 0
        need_dna = with_dna
        entries = dc.entries if dc is not None else {}
        for i, ino in dead.items():
            ent = entries.get(i)
            if ent is not None and ent[0] == ino and (not need_dna or ent[1][_NCONVS] is not None):
                records[i] = _make(ent[1], "dead")
                hits += 1
            else:
                jobs.append((os.path.join(dead_root, _shard(i), str(i)), i))
        nworkers = workers if workers is not None else min(8, os.cpu_count() or 1)
        results: list[tuple[list | None, str | None]] | None = None
        if len(jobs) >= _PARALLEL_MIN and nworkers > 1:
            try:
                results = _read_parallel(jobs, with_dna, nworkers)
            except Exception:  # noqa: BLE001 - no pool here (sandbox, frozen app): read serially
                results = None
        if results is None:
            results = _read_chunk(jobs, with_dna)
        new_rows = []
        for (p, i), (vals, err) in zip(jobs, results):
            if vals is None:
                if err != "missing":
                    problems.append(err or f"{p}: unreadable")
                else:
                    problems.append(f"{p}: dead individual without fitness.json; skipped (run evo fsck)")
                continue
            records[i] = _make(vals, "dead")
            new_rows.append((i, dead[i], vals))
        if dc is not None:
            dc.append(new_rows, dead)

        # 3. the living (always read: a retrain replaces their record)
        for i in sorted(alive):
            if i in dead:
                continue  # killed between the two listings
            vals, err = _read_one(os.path.join(root, _store.ALIVE, str(i)), i, with_dna)
            if vals is None and err == "missing":
                # killed since the listing: it is in dead/ now
                dp = os.path.join(root, _store.DEAD, _shard(i), str(i))
                vals, err = _read_one(dp, i, with_dna)
                if vals is not None:
                    records[i] = _make(vals, "dead")
                    continue
                if not os.path.isdir(os.path.join(root, _store.ALIVE, str(i))):
                    continue  # moved away (a retrain queued): seen below or next time
            if vals is None:
                problems.append(err if err != "missing" else
                                f"{os.path.join(root, _store.ALIVE, str(i))}: alive without fitness.json")
                continue
            records[i] = _make(vals, "alive")

        # 4. living individuals being retrained (reset-weights): their previous record
        for sub, names in ((_store.PENDING, pending), (_store.INFLIGHT, inflight)):
            for n in names:
                a = n.partition(".")[0]
                if not a.isdigit() or int(a) in records:
                    continue
                d = os.path.join(root, sub, n)
                i = int(a)
                rec = None
                for cand in sorted(_listdir(d), reverse=True):
                    if cand == _store.FITNESS_FILE or (cand.startswith("fitness.g") and cand.endswith(".json")):
                        rec = _store.load_json_or_none(os.path.join(d, cand), warn=False)
                        if rec is not None and rec.get("id") == i:
                            break
                        rec = None
                if rec is not None and rec.get("outcome") == "ok":
                    dna = _store.load_json_or_none(os.path.join(d, _store.DNA_FILE), warn=False) if with_dna else None
                    records[i] = _make(_values(rec, dna), "retraining")

    for w in caught:
        problems.append(str(w.message))
    individuals = [records[i] for i in sorted(records)]
    counts = {"alive": len(alive), "dead": len(dead),
              "pending": sum(1 for n in pending if n.isdigit()),
              "inflight": sum(1 for n in inflight if n.partition(".")[0].isdigit())}
    # keep the order, drop duplicates
    problems = list(dict.fromkeys(problems))
    return History(root, cfg, individuals, counts, control, state, problems, loaded_at,
                   time.perf_counter() - t_start, hits, dead, dc)


def _history(pop: str | os.PathLike | History, **kw: Any) -> History:
    return pop if isinstance(pop, History) else load(pop, **kw)


def lineage(pop: str | os.PathLike | History, i: int) -> list[IndividualRecord]:
    """:meth:`History.lineage` of ``i`` in a population directory or a loaded history."""
    return _history(pop).lineage(i)


def best_so_far(pop: str | os.PathLike | History, axis: str = "time") -> Curve:
    """:meth:`History.best_so_far` of a population directory or a loaded history."""
    return _history(pop).best_so_far(axis)


# --------------------------------------------------------------------------------------------
# Status, description
# --------------------------------------------------------------------------------------------


def status(pop: str | os.PathLike | History, now: float | None = None) -> dict[str, Any]:
    """Everything ``evo status`` prints, as a JSON-ready dict.

    Counts (alive, in flight, pending, dead, trained), births per hour (``last_hour``: the
    individuals committed in the last hour; ``overall``: the mean rate since the start), the best individual, FLOPs spent, budgets, the workers that hold a lease (with
    Slurm job ids and last heartbeat), strategy, knobs and control, the state of the run
    (``running``, ``paused``, ``stopped``, ``finished``, ``idle``) and warnings: expired
    leases, a stale soft lock, torn files, stalled progress.
    """
    h = _history(pop)
    now = time.time() if now is None else now
    cfg = h.config
    root = h.root
    out_warn: list[str] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p = _store.Population.open(root, lock="none")
        leases = p.leases()
    workers = []
    for ls in leases:
        job = None
        if ls.get("slurm_array_job_id") and ls.get("slurm_array_task_id") is not None:
            job = f"{ls['slurm_array_job_id']}_{ls['slurm_array_task_id']}"
        elif ls.get("slurm_job_id"):
            job = str(ls["slurm_job_id"])
        hb = ls.get("heartbeat_at")
        workers.append({
            "worker": ls.get("worker"), "host": ls.get("host"), "pid": ls.get("pid"), "slurm_job": job,
            "child": ls.get("id"), "kind": ls.get("kind"), "parent": ls.get("parent_id"),
            "attempt": ls.get("attempt"), "heartbeat_at": hb,
            "heartbeat_age_s": None if not _num(hb) else max(0.0, now - hb),
            "expired": bool(ls.get("expired")),
        })
        if ls.get("expired"):
            exp = ls.get("expires_at")
            ago = f" {now - exp:.0f} s ago" if _num(exp) else ""
            out_warn.append(f"stale lease: child {ls.get('id')} of worker {ls.get('worker')} expired{ago} "
                            f"(the worker died; any worker recovers it, or run `evo fsck --repair {root}`)")
    # locks
    soft = os.path.join(root, _store.SOFT_LOCK_FILE)
    try:
        age = now - os.stat(soft).st_mtime
        if age > cfg.lock_ttl_s:
            out_warn.append(f"stale lock: {soft} has had no heartbeat for {age:.0f} s "
                            f"(> lock_ttl_s {cfg.lock_ttl_s:g}); workers will break it, or run `evo fsck --repair`")
    except OSError:
        pass
    for n in _listdir(root):
        if n.startswith(_store.SOFT_LOCK_FILE + ".broken-"):
            out_warn.append(f"leftover of a broken lock: {os.path.join(root, n)} (`evo fsck --repair` removes it)")
    # torn files and other problems found while loading
    for w in h.warnings:
        out_warn.append(f"torn or unreadable file: {w}" if "torn" in w or "corrupt" in w else w)

    ctl = h.control
    st = h.state
    trained = _int(st.get("trained"))
    if trained is None:
        trained = len(h)
    flops = h.total_flops()
    budget_reason = None
    next_id = max([r.id + 1 for r in h.individuals[-1:]] + [1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if hasattr(p, "read_next_id"):
            next_id = max(next_id, p.read_next_id())
    if cfg.max_individuals is not None and next_id > cfg.max_individuals:
        budget_reason = f"budget of {cfg.max_individuals} individuals reached"
    if cfg.max_flops is not None and flops >= cfg.max_flops:
        budget_reason = f"budget of {cfg.max_flops:g} FLOPs reached"
    busy = h.counts["inflight"] + h.counts["pending"]
    if ctl.get("stopped"):
        run_state = "stopped"
    elif budget_reason and busy == 0:
        run_state = "finished"
    elif ctl.get("paused"):
        run_state = "paused"
    elif h.counts["inflight"]:
        run_state = "running"
    else:
        run_state = "idle"

    births = [r.finished_at for r in h.individuals if r.finished_at is not None]
    last_birth = max(births) if births else None
    durations = sorted(r.finished_at - r.born_at for r in h.individuals[-200:]
                       if r.finished_at is not None and r.born_at is not None and r.finished_at >= r.born_at)
    typical = durations[len(durations) // 2] if durations else 0.0
    stall_after = max(float(cfg.lease_ttl_s), 5.0 * typical)
    if run_state in ("running", "idle") and not (budget_reason and busy == 0):
        since = now - (last_birth if last_birth is not None else (cfg.created_at or now))
        if since > stall_after:
            out_warn.append(f"stalled: no individual committed for {format_duration(since)} (a child usually "
                            f"takes {format_duration(typical)}); check that workers are running")
        if run_state == "idle" and not budget_reason:
            out_warn.append("no worker holds a lease: no worker seems to be running "
                            f"(start some: evo worker {root}, or sbatch slurm/worker.sbatch {root})")

    end = last_birth if run_state == "finished" and last_birth else now  # a finished run's clock stopped
    best = h.best()
    best_alive = h.best(alive_only=True)
    seeds = [r.fitness for r in h.individuals if r.kind == "seed" and r.fitness is not None]
    by_worker: dict[str, float] = {}
    for r in h.individuals:
        if r.worker and r.finished_at is not None:
            by_worker[r.worker] = max(by_worker.get(r.worker, 0.0), r.finished_at)
    return {
        "popdir": root,
        "state": run_state,
        "budget_reason": budget_reason,
        "counts": {"alive": h.counts["alive"], "inflight": h.counts["inflight"], "pending": h.counts["pending"],
                   "dead": h.counts["dead"], "trained": trained, "committed": len(h),
                   "failed": sum(1 for r in h.individuals if r.fitness is None)},
        "births_per_hour": {"last_hour": sum(1 for t in births if now - 3600.0 <= t <= now),
                            "overall": round(h.birth_rate(float("inf"), end), 3) if births else 0.0},
        "best": None if best is None else {"id": best.id, "fitness": best.fitness, "alive": best.alive,
                                           "params": best.params, "depth": best.depth},
        "best_alive": None if best_alive is None else {"id": best_alive.id, "fitness": best_alive.fitness},
        "best_seed_fitness": max(seeds) if seeds else None,
        "flops": flops,
        "budget": {"max_individuals": cfg.max_individuals, "max_flops": cfg.max_flops},
        "started_at": h.t0 if h.individuals else cfg.created_at,
        "created_at": cfg.created_at,
        "elapsed_s": (end - h.t0) if h.individuals else 0.0,
        "last_birth_at": last_birth,
        "last_birth_age_s": None if last_birth is None else now - last_birth,
        "workers": workers,
        "recent_workers": len([w for w, t in by_worker.items() if now - t < 3600.0]),
        "strategy": cfg.strategy,
        "knobs": {"population_size": cfg.population_size, "sample_size": cfg.sample_size,
                  "steps_per_child": cfg.steps_per_child, "mutations_per_child": ctl.get("mutations_per_child",
                                                                                          cfg.mutations_per_child),
                  "inheritance": cfg.inheritance, "keep_checkpoints": cfg.keep_checkpoints, "lock": cfg.lock,
                  "lock_detected": cfg.lock_detected, "dataset": cfg.dataset, "lease_ttl_s": cfg.lease_ttl_s},
        "control": {k: ctl.get(k) for k in ("paused", "stopped", "mutations_per_child", "reset_generation", "epoch")},
        "warnings": out_warn,
        "load_s": round(h.load_s, 3),
    }


def format_duration(s: float) -> str:
    """A duration in seconds as "42 s", "7 min", "3.5 h" or "2.1 days"."""
    s = float(s)
    if s < 120:
        return f"{s:.0f} s"
    if s < 7200:
        return f"{s / 60:.0f} min"
    if s < 172800:
        return f"{s / 3600:.1f} h"
    return f"{s / 86400:.1f} days"


def describe(pop: str | os.PathLike | History, i: int) -> dict[str, Any]:
    """Everything ``evo show`` prints about individual ``i``: its record, its DNA as rows of
    vertices and edges (with shapes), its parent, the mutations applied, death, checkpoint."""
    h = _history(pop)
    r = h[i]
    rec = h.record(i)
    dna = h.dna(i)
    vertices, edges = _dna_tables(dna)
    parent = h.get(r.parent_id) if r.parent_id is not None else None
    death = _store.load_json_or_none(os.path.join(h.path_of(i), _store.DEATH_FILE), warn=False)
    return {
        "id": r.id, "status": r.status, "alive": r.alive, "path": h.path_of(i),
        "fitness": r.fitness, "outcome": r.outcome, "kind": r.kind,
        "parent": None if r.parent_id is None else {
            "id": r.parent_id, "fitness": None if parent is None else parent.fitness,
            "alive": None if parent is None else parent.alive, "known": parent is not None},
        "mutations": rec.get("mutations") or [],
        "children": [c.id for c in h.children(i)],
        "lineage_depth": r.lineage_depth,
        "learning_rate": dna.get("learning_rate"),
        "input_shape": dna.get("input_shape"), "num_classes": dna.get("num_classes"),
        "stats": dna_stats(dna),
        "vertices": vertices, "edges": edges,
        "record": rec, "death": death, "checkpoint": h.checkpoint(i),
    }


def _dna_tables(dna: dict) -> tuple[list[dict], list[dict]]:
    shapes: dict[int, Any] = {}
    try:
        from evo.genome.real2017.dna import DNA

        shapes = {k: list(v) for k, v in DNA.from_dict(dna).shapes().items()}
    except Exception:  # noqa: BLE001 - a DNA this version cannot parse: show it without shapes
        shapes = {}
    vin, vout = dna.get("input_vertex"), dna.get("output_vertex")
    vertices = []
    for v in dna.get("vertices") or []:
        vid = v.get("id")
        role = "input" if vid == vin else "output" if vid == vout else ""
        vertices.append({"id": vid, "type": v.get("type"), "role": role, "shape": shapes.get(vid)})
    edges = []
    for e in sorted(dna.get("edges") or [], key=lambda e: e.get("id", 0)):
        edges.append({"id": e.get("id"), "src": e.get("src"), "dst": e.get("dst"), "type": e.get("type"),
                      "channels": e.get("channels"), "kernel": e.get("kernel"), "stride": e.get("stride"),
                      "skip": bool(e.get("skip"))})
    return vertices, edges


# --------------------------------------------------------------------------------------------
# Models: export and test-set evaluation (torch is imported when these are called)
# --------------------------------------------------------------------------------------------


def checkpoint_of(h: History, i: int) -> str:
    """The trained weights of ``i``; :class:`NoCheckpointError` with the reason if gone."""
    r = h[i]
    p = h.checkpoint(i)
    if p is not None:
        return p
    kc = h.config.keep_checkpoints
    if r.status == "dead":
        why = (f"its weights were dropped when it died (keep_checkpoints={kc!r}; use 'all' or 'top:K' "
               f"to keep the best models' weights)")
    elif r.status == "retraining":
        why = "it is being retrained right now (reset-weights); try again when it is committed"
    else:
        why = "its checkpoint.pt is missing (run `evo fsck`)"
    alive = h.best(alive_only=True)
    hint = f"; the best living individual is {alive.id} ({alive.fitness:.4f})" if alive else ""
    raise NoCheckpointError(f"individual {i} has no trained weights: {why}{hint}")


def _load_weights(path: str):
    import torch

    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]  # a full training state
    if not isinstance(state, dict):
        raise AnalysisError(f"{path}: not a weights file")
    return state


def load_individual_model(pop: str | os.PathLike | History, i: int, device: str = "cpu"):
    """Individual ``i`` as its trained network (:class:`evo.model.DNANet`, eval mode).

    Expects normalised inputs; :func:`export_individual` writes a self-contained model
    that normalises its own inputs.
    """
    from evo.genome.real2017.dna import DNA
    from evo.network.real2017 import build_model

    h = _history(pop)
    ck = checkpoint_of(h, i)
    net = build_model(DNA.from_dict(h.dna(i)))
    missing, unexpected = net.load_state_dict(_load_weights(ck), strict=False)
    if missing or unexpected:
        raise AnalysisError(f"{ck}: weights do not fit the DNA of {i} (missing {missing}, unexpected {unexpected})")
    return net.to(device).eval()


def _dataset(h: History):
    from evo.network.data import load_dataset

    return load_dataset(h.config.dataset, **dict(h.config.dataset_kwargs))


def export_individual(pop: str | os.PathLike | History, i: int, path: str | os.PathLike,
                      dataset: Any = None) -> dict[str, Any]:
    """Write individual ``i`` as one self-contained model file (:func:`evo.export.export_model`:
    DNA + weights + the data set's normalisation); read it back with ``evo.load_model``."""
    from evo.genome.real2017.dna import DNA
    from evo.network.export import export_model

    h = _history(pop)
    r = h[i]
    ck = checkpoint_of(h, i)
    ds = dataset if dataset is not None else _dataset(h)
    meta = {"id": r.id, "fitness": r.fitness, "parent_id": r.parent_id, "popdir": h.root,
            "dataset": h.config.dataset, "dataset_kwargs": dict(h.config.dataset_kwargs),
            "params": r.params, "flops": r.flops, "exported_at": time.time()}
    out = export_model(path, DNA.from_dict(h.dna(i)), _load_weights(ck), ds.mean, ds.std,
                       classes=(ds.info or {}).get("classes"), meta=meta)
    return {"id": r.id, "path": str(out), "fitness": r.fitness, "checkpoint": ck}


def evaluate_test(pop: str | os.PathLike | History, ids: Sequence[int], *, ensemble: bool = False,
                  device: str | None = None, batch_size: int = 500, dataset: Any = None) -> dict[str, Any]:
    """Test-set accuracy of each individual in ``ids`` and, with ``ensemble``, of their
    ensemble (the average of their softmax probabilities, as in the paper).

    The only place where evo touches the test split.  Returns ``{"dataset", "n_test",
    "models": [{"id", "fitness", "test_accuracy"}], "ensemble": {"ids", "test_accuracy"} or
    None}``.
    """
    import torch

    from evo.network.data import normalize

    h = _history(pop)
    ids = [int(i) for i in ids]
    for i in ids:
        checkpoint_of(h, i)  # fail before the (slow) data set load
    ds = dataset if dataset is not None else _dataset(h)
    if ds.test_x is None or len(ds.test_x) == 0:
        raise NoTestSplitError(f"data set {h.config.dataset!r} ({dict(h.config.dataset_kwargs)}) has no test split; "
                               f"evo evaluate needs one (synthetic: n_test > 0; imagefolder: test_root=DIR)")
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    x, y = ds.test_x, ds.test_y
    mean = torch.as_tensor(ds.mean, dtype=torch.float32, device=dev)
    std = torch.as_tensor(ds.std, dtype=torch.float32, device=dev)
    y_dev = y.to(dev)
    models = []
    prob_sum = None
    for i in ids:
        net = load_individual_model(h, i, device=str(dev))
        probs = []
        with torch.no_grad():
            for k in range(0, len(x), batch_size):
                xb = normalize(x[k:k + batch_size].to(dev), mean, std)
                logits = net(xb).float()
                p = torch.softmax(logits, dim=1)
                p = torch.where(torch.isfinite(p), p, torch.zeros_like(p))
                probs.append(p)
        P = torch.cat(probs)
        acc = int((P.argmax(1) == y_dev).sum().item()) / max(1, len(P))
        models.append({"id": i, "fitness": h[i].fitness, "test_accuracy": acc})
        if ensemble:
            prob_sum = P if prob_sum is None else prob_sum + P
    ens = None
    if ensemble and prob_sum is not None:
        avg = prob_sum / len(ids)
        ens = {"ids": ids, "test_accuracy": int((avg.argmax(1) == y_dev).sum().item()) / max(1, len(avg))}
    return {"popdir": h.root, "dataset": h.config.dataset, "dataset_kwargs": dict(h.config.dataset_kwargs),
            "n_test": int(len(x)), "split_seed": getattr(ds, "split_seed", None), "models": models,
            "ensemble": ens, "device": str(dev)}


def record_evaluation(popdir: str | os.PathLike, result: dict[str, Any]) -> str:
    """Append a test-set result to ``POPDIR/evaluations.jsonl`` (one JSON object per line,
    with the time ``t`` and ``host``); returns the file's path."""
    import socket

    path = os.path.join(os.fspath(popdir), EVALUATIONS_FILE)
    line = {"t": time.time(), "host": socket.gethostname(), **result}
    payload = (json.dumps(line, sort_keys=True, default=str) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, payload)
        os.fsync(fd)
    finally:
        os.close(fd)
    return path


def read_evaluations(popdir: str | os.PathLike) -> list[dict[str, Any]]:
    """Every result recorded by :func:`record_evaluation` (torn lines skipped)."""
    path = os.path.join(os.fspath(popdir), EVALUATIONS_FILE)
    try:
        data = _store.read_bytes(path)
    except FileNotFoundError:
        return []
    out = []
    for line in data.split(b"\n"):
        if line.strip():
            try:
                d = json.loads(line)
            except ValueError:
                continue
            if isinstance(d, dict):
                out.append(d)
    return out
