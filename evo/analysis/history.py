"""The History of a population: every individual ever committed, and what can be asked of it.

:func:`evo.analysis.load` reads a population directory into a :class:`History` (see
:mod:`evo.analysis.loading`); a History answers from memory: the best individual (the paper's
"best": the highest validation accuracy), rankings, lineages, best-so-far curves along wall-clock
time, individuals trained or FLOPs spent, birth rates, architecture trends, and CSV or pandas
exports.  Only the methods that name files (:meth:`History.record`, :meth:`History.dna`,
:meth:`History.checkpoint`, :meth:`History.fill_dna_stats`, :meth:`History.death_times`) read the
directory again.  Pure Python (numpy, no torch).
"""

from __future__ import annotations

import csv
import io
import math
import os
import warnings
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import numpy as np

from evo.analysis.cache import DeadCache
from evo.analysis.errors import AnalysisError, UnknownIndividualError
from evo.analysis.records import (CACHED_FIELDS, DNA_FIELDS, IndividualSummary, counting_space, genome_numbers,
                                  integer, number, read_dna)
from evo.base.files import atomic_write
from evo.population import Config, read_events
from evo.population.layout import (
    ALIVE,
    CHECKPOINT_FILE,
    DEAD,
    DNA_FILE,
    FITNESS_FILE,
    INFLIGHT,
    PENDING,
    SHARD_SIZE,
    load_json_or_none,
)

__all__ = ["X_AXES", "Curve", "History", "axis_label", "listdir", "shard_of"]

#: The x axes of progress curves: wall-clock hours since the start, individuals trained so
#: far, cumulative FLOPs spent.
X_AXES = ("time", "individuals", "flops")


def shard_of(i: int) -> str:
    """The ``dead/<shard>`` directory name of individual ``i``."""
    return str(i // SHARD_SIZE)


def listdir(d: str) -> list[str]:
    """The names in ``d``; empty when it is missing or unreadable."""
    try:
        return os.listdir(d)
    except OSError:
        return []


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


def axis_label(axis: str) -> str:
    """The words under a figure's x axis for ``axis`` (one of :data:`X_AXES`)."""
    return {"time": "wall-clock time (hours)", "individuals": "individuals trained",
            "flops": "FLOPs spent"}[axis]


def _rank_key(r: IndividualSummary) -> tuple[float, bool, int]:
    """Best first: the higher validation accuracy, then the living, then the older."""
    return (-r.fitness, not r.alive, r.id)  # type: ignore[operator]


class History:
    """Every individual ever committed to a population, read once (see :func:`load`).

    ``individuals`` is sorted by id; ``by_id`` maps ids to records.  ``counts`` has the
    directory counts at load time (``alive``, ``dead``, ``pending``, ``inflight``); ``config``
    is the experiment's :class:`evo.store.Config`, ``control`` and ``state`` the contents of
    control.json and state.json.  ``warnings`` lists what was skipped (torn files, ...).
    """

    def __init__(self, root: str, config: Config, individuals: list[IndividualSummary],
                 counts: dict[str, int], control: dict, state: dict, warnings_: list[str],
                 loaded_at: float, load_s: float, cache_hits: int, dead_inodes: dict[int, int] | None = None,
                 cache: "DeadCache | None" = None):
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
        self._order: list[IndividualSummary] | None = None
        self._compute_lineage_depth()

    # ----------------------------------------------------------------- basics
    def __len__(self) -> int:
        return len(self.individuals)

    def __iter__(self) -> Iterator[IndividualSummary]:
        return iter(self.individuals)

    def __contains__(self, i: object) -> bool:
        return i in self.by_id

    def __getitem__(self, i: int) -> IndividualSummary:
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
            if os.path.isdir(os.path.join(self.root, PENDING, str(n))):
                where = " (it is pending work, not trained yet)"
            elif any(x.startswith(f"{n}.") for x in listdir(os.path.join(self.root, INFLIGHT))):
                where = " (it is being trained right now)"
        except (TypeError, ValueError):
            pass
        return f"no committed individual {i} in {self.root}{where}; {rng} (see `evo top {self.root}`)"

    def get(self, i: int) -> IndividualSummary | None:
        return self.by_id.get(i)

    def alive(self) -> list[IndividualSummary]:
        return [r for r in self.individuals if r.alive]

    def dead(self) -> list[IndividualSummary]:
        return [r for r in self.individuals if not r.alive]

    @property
    def t0(self) -> float:
        """Start of the experiment: the first training's start (else the creation time)."""
        starts = [r.born_at for r in self.individuals if r.born_at is not None]
        if starts:
            return min(starts)
        return float(self.config.created_at or 0.0)

    def in_birth_order(self) -> list[IndividualSummary]:
        """Individuals in the order they joined the population (``finished_at``, then id)."""
        if self._order is None:
            self._order = sorted(self.individuals, key=lambda r: (
                r.finished_at if r.finished_at is not None else math.inf, r.id))
        return self._order

    def array(self, name: str, individuals: Sequence[IndividualSummary] | None = None) -> np.ndarray:
        """A field of every individual (by id, or of ``individuals``) as a float array (NaN for None)."""
        rows = self.individuals if individuals is None else individuals
        return np.array([np.nan if (v := getattr(r, name)) is None else float(v) for r in rows], dtype=float)

    # ----------------------------------------------------------------- ranking
    def ranked(self, alive_only: bool = False) -> list[IndividualSummary]:
        """Individuals with a validation accuracy, best first.  Ties go to the living first
        (their weights are kept; a tournament kills either of two equals), then to the older."""
        return sorted(self._scored(alive_only), key=_rank_key)

    def top(self, n: int = 10, alive_only: bool = False) -> list[IndividualSummary]:
        return self.ranked(alive_only)[:n]

    def best(self, alive_only: bool = False) -> IndividualSummary | None:
        """The individual with the highest validation accuracy (the paper's "best"); ties as in
        :meth:`ranked`."""
        return min(self._scored(alive_only), key=_rank_key, default=None)

    def _scored(self, alive_only: bool) -> Iterator[IndividualSummary]:
        """Individuals with a validation accuracy (the living only, with ``alive_only``)."""
        return (r for r in self.individuals if r.fitness is not None and (r.alive or not alive_only))

    # ----------------------------------------------------------------- lineage
    def _compute_lineage_depth(self) -> None:
        by = self.by_id
        for r in self.individuals:
            if r.lineage_depth is not None:
                continue
            chain = []
            cur: IndividualSummary | None = r
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

    def lineage(self, i: int) -> list[IndividualSummary]:
        """The individual and its ancestors, from a seed individual (first) down to ``i``
        (last).  If an ancestor is missing (a corrupt record), the list starts at the oldest
        ancestor found: check ``result[0].is_seed``."""
        cur: IndividualSummary | None = self[i]
        out = []
        seen = set()
        while cur is not None and cur.id not in seen:
            seen.add(cur.id)
            out.append(cur)
            cur = self.by_id.get(cur.parent_id) if cur.parent_id is not None else None
        out.reverse()
        return out

    def children(self, i: int) -> list[IndividualSummary]:
        return [r for r in self.individuals if r.parent_id == i]

    # ----------------------------------------------------------------- curves
    def positions(self, axis: str = "time") -> tuple[list[IndividualSummary], np.ndarray]:
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
        """The best validation accuracy seen so far, after each birth (see :meth:`positions`);
        ``ids`` names the first individual that reached it (a later tie does not replace it)."""
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
                     axis, axis_label(axis))

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
        st = number(self.state.get("flops"))
        return max(s, st or 0.0)

    # ----------------------------------------------------------------- architecture
    def fill_dna_stats(self) -> None:
        """Read the DNA of every individual whose architecture counts are missing, and keep the
        counts that the population's search space gives (nothing for a space that gives none)."""
        space = counting_space(self.config)
        todo = [r for r in self.individuals if r.n_convs is None] if space is not None else []
        for r in todo:
            numbers = genome_numbers(space, read_dna(self.path_of(r.id)))
            for k in DNA_FIELDS:
                setattr(r, k, integer(numbers.get(k)))
            if r.learning_rate is None:
                r.learning_rate = number(numbers.get("learning_rate"))
        if todo and self._cache is not None:
            # remember the counts of the dead for the next load
            rows = [(r.id, self._dead_inodes[r.id], [getattr(r, k) for k in CACHED_FIELDS]) for r in todo
                    if r.status == "dead" and r.n_convs is not None and r.id in self._dead_inodes]
            self._cache.append(rows, self._dead_inodes)

    def architecture_trends(self, bins: int = 20, axis: str = "individuals") -> dict[str, Any]:
        """How the architectures change over the run, in the metrics of the population's search space.

        The individuals (in birth order) are cut into ``bins`` groups along ``axis``; for each
        metric (the space's ``trend_metrics``, or every number of its ``describe``: for amoebanet
        the op counts per cell; with ``params``, ``learning_rate`` and ``fitness``) the median and
        quartiles of each group, and the value of the best-so-far individual at the end of the
        group.  Returns ``{"axis", "space", "metrics", "panels", "x" (bin centres), "n"
        (individuals per bin), metric: {"median", "q25", "q75", "best"}}``; NaN where a bin is
        empty (:func:`evo.analysis.trends.architecture_trends`).
        """
        from evo.analysis.trends import architecture_trends

        return architecture_trends(self, bins=bins, axis=axis)

    # ----------------------------------------------------------------- files
    def path_of(self, i: int) -> str:
        """The directory of individual ``i`` (where it lives now)."""
        r = self[i]
        pop_paths = [os.path.join(self.root, ALIVE, str(i)),
                     os.path.join(self.root, DEAD, shard_of(i), str(i))]
        if r.status == "dead":
            pop_paths.reverse()
        elif r.status == "retraining":  # queued or being retrained: pending/<id> or inflight/<id>.<token>
            pop_paths.insert(0, os.path.join(self.root, PENDING, str(i)))
            pop_paths[1:1] = [os.path.join(self.root, INFLIGHT, n)
                              for n in listdir(os.path.join(self.root, INFLIGHT))
                              if n.partition(".")[0] == str(i)]
        for p in pop_paths:
            if os.path.isdir(p):
                return p
        return pop_paths[0]

    def record(self, i: int) -> dict:
        """The full fitness record (``fitness.json``) of ``i``, read now."""
        p = os.path.join(self.path_of(i), FITNESS_FILE)
        rec = load_json_or_none(p, warn=False)
        if rec is None:
            raise AnalysisError(f"{p}: the fitness record is gone or unreadable; run `evo fsck {self.root}`")
        return rec

    def dna(self, i: int) -> dict:
        """The DNA (``dna.json``) of ``i`` as a dict."""
        p = os.path.join(self.path_of(i), DNA_FILE)
        d = load_json_or_none(p, warn=False)
        if d is None:
            raise AnalysisError(f"{p}: the DNA is gone or unreadable; run `evo fsck {self.root}`")
        return d

    def checkpoint(self, i: int) -> str | None:
        """Path of the trained weights of ``i``, or None if they were not kept."""
        p = os.path.join(self.path_of(i), CHECKPOINT_FILE)
        return p if os.path.exists(p) else None

    def death_times(self) -> dict[int, float]:
        """Death time of every dead individual, from the event log (read now, once)."""
        out: dict[int, float] = {}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for ev in read_events(self.root, warn=False):
                if ev.get("event") == "death" and isinstance(ev.get("id"), int) and number(ev.get("t")):
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
            atomic_write(dest, buf.getvalue().encode())  # type: ignore[union-attr]
        return None

    def to_dataframe(self, columns: Sequence[str] | None = None):  # pragma: no cover - needs pandas
        """A pandas DataFrame indexed by id (pandas must be installed)."""
        try:
            import pandas as pd
        except ImportError as e:
            raise AnalysisError("to_dataframe needs pandas (pip install pandas); use to_csv or rows()") from e
        return pd.DataFrame(self.rows(columns)).set_index("id", drop=False)
