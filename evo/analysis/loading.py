"""Reading a population directory into a :class:`~evo.analysis.history.History`: :func:`load`.

Lock-free and read-only, so it is safe on a live population that hundreds of workers are
changing: a file caught half-written is skipped with a warning (kept in
:attr:`History.warnings`), an individual killed while it is being read is found in ``dead/``,
nothing ever raises because of a race.  Each individual's ``fitness.json`` is read once; the dead
come from the per-user cache (:mod:`evo.analysis.cache`) after the first load, and a first load of
many files is spread over several processes.
"""

from __future__ import annotations

import math
import os
import sys
import time
import warnings
from typing import Any

from evo.analysis.cache import DeadCache
from evo.analysis.history import Curve, History, listdir, shard_of
from evo.analysis.records import (CACHED_FIELDS, IndividualSummary, counting_space, genome_numbers, read_individual,
                                  read_individuals, summary_from_values, values_from_record)
from evo.population import Population
from evo.population.layout import (
    ALIVE,
    CONTROL_FILE,
    DEAD,
    DNA_FILE,
    FITNESS_FILE,
    INFLIGHT,
    PENDING,
    STATE_FILE,
    StoreWarning,
    load_json_or_none,
)

__all__ = ["load", "history_of", "lineage", "best_so_far"]

PARALLEL_MIN = 4000  # uncached files before a process pool is worth its start-up
_NCONVS = CACHED_FIELDS.index("n_convs")


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
        warnings.warn(f"{d}: cannot list ({e})", StoreWarning)
    return out


def _read_parallel(jobs: list[tuple[str, int]], space: Any, workers: int) -> list[tuple[list | None, str | None]]:
    import concurrent.futures as cf
    import multiprocessing as mp

    n = max(1, min(workers, len(jobs) // 1000 or 1))
    size = max(500, math.ceil(len(jobs) / (n * 4)))
    chunks = [jobs[k:k + size] for k in range(0, len(jobs), size)]
    ctx = mp.get_context("forkserver" if sys.platform.startswith("linux") else "spawn")
    with cf.ProcessPoolExecutor(max_workers=n, mp_context=ctx) as ex:
        parts = list(ex.map(read_individuals, chunks, [space] * len(chunks)))
    return [x for p in parts for x in p]


def load(popdir: str | os.PathLike, *, with_dna: bool = False, cache: bool | str = True,
         workers: int | None = None) -> History:
    """Read every committed individual of the population at ``popdir``.

    Lock-free and read-only.  ``with_dna``: also read each DNA for the architecture counts that
    the population's search space gives (skips, strides, ...; cached for the dead).  ``cache``:
    keep and use the per-user cache of the dead (True), a directory for it (str), or neither
    (False).  ``workers``: processes for a first read of many files (default: the CPUs, at most
    8; 1 reads in this process).
    Raises :class:`evo.store.NotAPopulationError` if ``popdir`` is not a population.
    """
    t_start = time.perf_counter()
    root = os.path.abspath(os.fspath(popdir))
    problems: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", StoreWarning)
        pop = Population.open(root, lock="none")
        cfg = pop.config
        control = load_json_or_none(os.path.join(root, CONTROL_FILE)) or {}
        state = load_json_or_none(os.path.join(root, STATE_FILE)) or {}
        loaded_at = time.time()

        # 1. list (alive first: an individual killed meanwhile then shows up in dead/)
        alive = _scan_ids(os.path.join(root, ALIVE))
        dead: dict[int, int] = {}
        dead_root = os.path.join(root, DEAD)
        for s in listdir(dead_root):
            if s.isdigit():
                dead.update(_scan_ids(os.path.join(dead_root, s)))
        pending = listdir(os.path.join(root, PENDING))
        inflight = listdir(os.path.join(root, INFLIGHT))

        # 2. the dead: from the cache when the directory is the same, else read
        dc = None
        if cache:
            dc = DeadCache(root, cfg.created_at, cache if isinstance(cache, str) else None)
            dc.load()
        records: dict[int, IndividualSummary] = {}
        jobs: list[tuple[str, int]] = []
        hits = 0
        space = counting_space(cfg) if with_dna else None  # None: no counts to read
        need_dna = space is not None
        entries = dc.entries if dc is not None else {}
        for i, ino in dead.items():
            ent = entries.get(i)
            if ent is not None and ent[0] == ino and (not need_dna or ent[1][_NCONVS] is not None):
                records[i] = summary_from_values(ent[1], "dead")
                hits += 1
            else:
                jobs.append((os.path.join(dead_root, shard_of(i), str(i)), i))
        nworkers = workers if workers is not None else min(8, os.cpu_count() or 1)
        results: list[tuple[list | None, str | None]] | None = None
        if len(jobs) >= PARALLEL_MIN and nworkers > 1:
            try:
                results = _read_parallel(jobs, space, nworkers)
            except Exception:  # noqa: BLE001 - no pool here (sandbox, frozen app): read serially
                results = None
        if results is None:
            results = read_individuals(jobs, space)
        new_rows = []
        for (p, i), (vals, err) in zip(jobs, results):
            if vals is None:
                if err != "missing":
                    problems.append(err or f"{p}: unreadable")
                else:
                    problems.append(f"{p}: dead individual without fitness.json; skipped (run evo fsck)")
                continue
            records[i] = summary_from_values(vals, "dead")
            new_rows.append((i, dead[i], vals))
        if dc is not None:
            dc.append(new_rows, dead)

        # 3. the living (always read: a retrain replaces their record)
        for i in sorted(alive):
            if i in dead:
                continue  # killed between the two listings
            vals, err = read_individual(os.path.join(root, ALIVE, str(i)), i, space)
            if vals is None and err == "missing":
                # killed since the listing: it is in dead/ now
                dp = os.path.join(root, DEAD, shard_of(i), str(i))
                vals, err = read_individual(dp, i, space)
                if vals is not None:
                    records[i] = summary_from_values(vals, "dead")
                    continue
                if not os.path.isdir(os.path.join(root, ALIVE, str(i))):
                    continue  # moved away (a retrain queued): seen below or next time
            if vals is None:
                problems.append(err if err != "missing" else
                                f"{os.path.join(root, ALIVE, str(i))}: alive without fitness.json")
                continue
            records[i] = summary_from_values(vals, "alive")

        # 4. living individuals being retrained (reset-weights): their previous record
        for sub, names in ((PENDING, pending), (INFLIGHT, inflight)):
            for n in names:
                a = n.partition(".")[0]
                if not a.isdigit() or int(a) in records:
                    continue
                d = os.path.join(root, sub, n)
                i = int(a)
                rec = None
                for cand in sorted(listdir(d), reverse=True):
                    if cand == FITNESS_FILE or (cand.startswith("fitness.g") and cand.endswith(".json")):
                        rec = load_json_or_none(os.path.join(d, cand), warn=False)
                        if rec is not None and rec.get("id") == i:
                            break
                        rec = None
                if rec is not None and rec.get("outcome") == "ok":
                    dna = load_json_or_none(os.path.join(d, DNA_FILE), warn=False) if need_dna else None
                    records[i] = summary_from_values(values_from_record(rec, genome_numbers(space, dna)), "retraining")

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


def history_of(pop: str | os.PathLike | History, **kw: Any) -> History:
    return pop if isinstance(pop, History) else load(pop, **kw)


def lineage(pop: str | os.PathLike | History, i: int) -> list[IndividualSummary]:
    """:meth:`History.lineage` of ``i`` in a population directory or a loaded history."""
    return history_of(pop).lineage(i)


def best_so_far(pop: str | os.PathLike | History, axis: str = "time") -> Curve:
    """:meth:`History.best_so_far` of a population directory or a loaded history."""
    return history_of(pop).best_so_far(axis)
