"""Tests of evo.analysis on a population made by a real short run, and on fake large ones.

The population is built once per test session (the ``population`` fixture of conftest.py,
shared with test_plots.py and test_cli_inspect.py); while its worker runs, the history is read over and
over to check that reading a live population never fails and never sees an individual twice.

Benchmark (not a test): ``python tests/test_analysis.py --bench 100000 [--dir DIR]`` writes a
fake population of that many dead individuals and times the loads.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import time
from pathlib import Path

import pytest

import evo
from evo import analysis
from evo.analysis import loading as loading_module
from evo.analysis.records import DNA_FIELDS
from evo.population import Population
from populations import _BUILT, POP_KW, _DNA, make_fake_population



# ----------------------------------------------------------------------------------- real run


def test_live_reads_never_fail(population):
    live = _BUILT["live"]
    assert live["errors"] == []
    assert len(live["snaps"]) >= 3
    prev = set()
    for s in live["snaps"]:
        assert len(s["ids"]) == len(set(s["ids"])), "an individual seen twice"
        assert not set(s["alive"]) & set(s["dead"])
        assert s["warnings"] == []
        assert prev <= set(s["ids"]), "an individual disappeared from the history"
        prev = set(s["ids"])
        assert s["status"]["counts"]["alive"] <= POP_KW["population_size"] + 1


def test_load_matches_directories(population, history):
    alive = {int(n) for n in os.listdir(population / "alive")}
    dead = {int(n) for s in os.listdir(population / "dead") for n in os.listdir(population / "dead" / s)}
    assert {r.id for r in history.alive()} == alive
    assert {r.id for r in history.dead()} == dead
    assert len(history) == 25 == len(alive) + len(dead)
    assert len(alive) == POP_KW["population_size"]
    assert history.warnings == []
    assert history.counts == {"alive": len(alive), "dead": len(dead), "pending": 0, "inflight": 0}
    for r in history:
        rec = json.loads((Path(history.path_of(r.id)) / "fitness.json").read_text())
        assert r.fitness == rec["fitness"] and r.parent_id == rec["parent_id"]
        assert r.flops == rec["flops"] and r.params == rec["params"] and r.depth == rec["depth"]
        assert list(r.mutations) == [m["name"] for m in rec["mutations"]]
        assert r.born_at <= r.finished_at
    assert math.isclose(history.total_flops(), sum(r.flops for r in history), rel_tol=1e-9)
    seeds = [r for r in history if r.is_seed]
    assert len(seeds) == POP_KW["population_size"] and all(r.kind == "seed" and r.lineage_depth == 0 for r in seeds)


def test_best_and_ranking(history):
    best = history.best()
    assert best is not None and best.fitness == max(r.fitness for r in history if r.fitness is not None)
    ranked = history.ranked()
    assert ranked[0].fitness == best.fitness
    assert all(a.fitness >= b.fitness for a, b in zip(ranked, ranked[1:]))
    assert history.top(3) == ranked[:3]
    assert all(r.alive for r in history.ranked(alive_only=True))
    # tournament selection never kills the best
    assert best.alive


def test_ties_go_to_the_living_then_the_older(history):
    import copy
    import dataclasses

    top = history.best(alive_only=True)
    dead = [r for r in history if not r.alive and r.fitness is not None]
    assert top is not None and dead
    older = min(dead, key=lambda r: r.id)
    # a dead individual (weights dropped) with the same accuracy as the best living one
    h = copy.copy(history)
    h.individuals = [dataclasses.replace(r, fitness=top.fitness) if r.id == older.id else r
                     for r in history.individuals]
    h.by_id = {r.id: r for r in h.individuals}
    assert h.best() is h[top.id]
    ranked = h.ranked()
    assert ranked.index(h[top.id]) < ranked.index(h[older.id])
    equals = [r for r in ranked if r.fitness == top.fitness]
    assert equals == sorted(equals, key=lambda r: (not r.alive, r.id))


def test_lineage_back_to_a_seed(history):
    for r in history:
        chain = history.lineage(r.id)
        assert chain[-1] is r
        assert chain[0].is_seed and chain[0].kind == "seed"
        for parent, child in zip(chain, chain[1:]):
            assert child.parent_id == parent.id
            assert child.born_at >= parent.finished_at - 1e-6
            assert child.mutations, "every child records its mutation"
        assert r.lineage_depth == len(chain) - 1
    assert analysis.lineage(history, history.best().id) == history.lineage(history.best().id)


def test_best_so_far_curves(history):
    n = sum(1 for r in history if r.finished_at is not None)
    for axis in analysis.X_AXES:
        c = history.best_so_far(axis)
        assert len(c.x) == n
        assert all(b >= a for a, b in zip(c.x, c.x[1:]))
        assert all(b >= a for a, b in zip(c.y, c.y[1:]))
        # the curve names the first individual to reach the best accuracy; best() breaks a tie
        # in favour of the living, so only the accuracy has to agree
        assert c.y[-1] == history.best().fitness
        assert history.by_id[int(c.ids[-1])].fitness == history.best().fitness
        assert all(history.by_id[int(i)].fitness == y for i, y in zip(c.ids, c.y))
    ind = history.best_so_far("individuals")
    assert list(ind.x) == list(range(1, n + 1))
    fl = history.best_so_far("flops")
    assert math.isclose(fl.x[-1], sum(r.flops for r in history), rel_tol=1e-9)
    assert fl.at([-1.0])[0] != fl.at([-1.0])[0]  # NaN before the first individual
    assert fl.at([fl.x[-1] * 2])[0] == history.best().fitness


def test_rates_trends_and_csv(history, tmp_path):
    hours, counts = history.births_per_hour()
    assert counts.sum() == len(history)
    assert history.birth_rate(3600.0, now=history.loaded_at) > 0
    t = history.architecture_trends(bins=4)
    assert t["n"].sum() == len(history) and len(t["x"]) == 4
    for m in ("depth", "params", "n_skips", "n_strided", "learning_rate", "fitness"):
        assert set(t[m]) == {"median", "q25", "q75", "best"}
    assert all(r.n_convs is not None for r in history)  # the trends read every DNA
    assert t["fitness"]["best"][-1] == history.best().fitness
    out = tmp_path / "h.csv"
    history.to_csv(out)
    import csv

    rows = list(csv.DictReader(out.open()))
    assert len(rows) == len(history)
    assert [int(r["id"]) for r in rows] == [r.id for r in history]
    b = history.best()
    row = next(r for r in rows if int(r["id"]) == b.id)
    assert float(row["fitness"]) == b.fitness and row["alive"] == "True"
    assert history.to_csv().splitlines()[0].startswith("id,parent_id,alive,")


def test_status_dict(history):
    st = analysis.status(history)
    assert st["state"] == "finished"
    assert st["counts"]["alive"] == 6 and st["counts"]["trained"] == 25 and st["counts"]["dead"] == 19
    assert st["best"]["id"] == history.best().id
    assert st["strategy"] == "tournament" and st["knobs"]["population_size"] == 6
    assert st["workers"] == [] and st["warnings"] == []
    json.dumps(st)  # JSON-ready


def test_describe_and_unknown(history):
    b = history.best()
    d = analysis.describe(history, b.id)
    assert d["id"] == b.id and d["checkpoint"] and [t["title"] for t in d["tables"]] == ["vertices", "edges"]
    assert d["record"]["fitness"] == b.fitness
    with pytest.raises(analysis.UnknownIndividualError, match="no committed individual 9999"):
        history[9999]
    dead = history.dead()[0]
    with pytest.raises(analysis.NoCheckpointError, match="keep_checkpoints"):
        analysis.checkpoint_of(history, dead.id)


# ----------------------------------------------------------------------------------- live safety


def _copy(population: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "pop"
    shutil.copytree(population, dst, ignore=shutil.ignore_patterns("checkpoint.pt"))
    return dst


def test_torn_files_are_skipped_with_a_warning(population, tmp_path):
    pop = _copy(population, tmp_path)
    h0 = analysis.load(pop, cache=False)
    victim = h0.dead()[0]
    f = Path(h0.path_of(victim.id)) / "fitness.json"
    f.write_bytes(f.read_bytes()[:40])  # torn
    alive = h0.alive()[0]
    (Path(h0.path_of(alive.id)) / "fitness.json").write_text("{not json")
    (pop / "state.json").write_text("{")
    h = analysis.load(pop, cache=False)
    assert victim.id not in h and alive.id not in h
    assert len(h) == len(h0) - 2
    assert any(str(f) in w for w in h.warnings)
    st = analysis.status(h)
    assert any("torn" in w for w in st["warnings"])


def test_individual_killed_while_loading(population, tmp_path, monkeypatch):
    pop = _copy(population, tmp_path)
    h0 = analysis.load(pop, cache=False)
    victim = h0.alive()[0].id
    real = loading_module.read_individual

    def racing(directory, i, space):
        if i == victim and "/alive/" in directory and os.path.isdir(directory):
            os.rename(directory, pop / "dead" / "0" / str(victim))  # a worker kills it right now
        return real(directory, i, space)

    monkeypatch.setattr(loading_module, "read_individual", racing)
    h = analysis.load(pop, cache=False)
    assert h[victim].status == "dead"
    assert len(h) == len(h0) and h.warnings == []


def test_retraining_individuals_stay_in_the_history(population, tmp_path):
    pop = _copy(population, tmp_path)
    n_alive = len(analysis.load(pop, cache=False).alive())
    assert Population.open(str(pop)).reset_all_weights() == n_alive
    h = analysis.load(pop, cache=False)
    assert len(h) == 25 and len([r for r in h if r.status == "retraining"]) == n_alive
    assert h.counts["pending"] == n_alive
    assert all(r.alive for r in h if r.status == "retraining")
    r = next(r for r in h if r.status == "retraining")
    assert h.record(r.id)["fitness"] == r.fitness and h.dna(r.id)["vertices"]
    assert analysis.describe(h, r.id)["status"] == "retraining"


def test_status_warns_when_workers_cannot_write(read_only_dir, tmp_path):
    src = read_only_dir.parent / "src"
    Population.create(str(src / "pop"), dataset="synthetic", population_size=2, lock="none")
    warns = analysis.status(read_only_dir / "pop")["warnings"]
    assert any(w.startswith(f"{read_only_dir / 'pop'} is not writable from here") for w in warns), warns
    # POPDIR writable, its logs/ not: Slurm jobs with -o there never start
    pop = tmp_path / "pop"
    Population.create(str(pop), dataset="synthetic", population_size=2, lock="none")
    shutil.rmtree(pop / "logs", ignore_errors=True)
    (pop / "logs").symlink_to(read_only_dir)
    warns = analysis.status(pop)["warnings"]
    assert any("logs is not writable from here" in w and "JobLaunchFailure" in w for w in warns), warns
    assert not any("is not writable" in w for w in analysis.status(src / "pop")["warnings"])


def test_not_a_population(tmp_path):
    from evo.population import NotAPopulationError

    with pytest.raises(NotAPopulationError):
        analysis.load(tmp_path)


# ----------------------------------------------------------------------------------- scale


def test_many_dead_individuals_and_the_cache(tmp_path, monkeypatch):
    root = make_fake_population(tmp_path / "big", 2500, 50)
    cache = str(tmp_path / "cache")
    h1 = analysis.load(root, cache=cache, workers=1)
    assert len(h1) == 2550 and h1.cache_hits == 0 and h1.warnings == []
    h2 = analysis.load(root, cache=cache)
    assert h2.cache_hits == 2500
    assert [r.to_dict() for r in h1] == [r.to_dict() for r in h2]
    assert h2[2000].slurm_job == "70_1" and h2[2000].mutations == ("INSERT-CONVOLUTION",)
    # a kill: the newly dead individual is read, the rest comes from the cache
    os.rename(root / "alive" / "2550", root / "dead" / "2" / "2550")
    h3 = analysis.load(root, cache=cache)
    assert h3.cache_hits == 2500 and h3[2550].status == "dead"
    # a directory replaced (new inode) is read again, not trusted to the cache
    d = root / "dead" / "1" / "1500"
    rec = json.loads((d / "fitness.json").read_text())
    shutil.rmtree(d)
    d.mkdir()
    rec["fitness"] = 0.123
    (d / "fitness.json").write_text(json.dumps(rec))
    (d / "dna.json").write_text(json.dumps(_DNA))
    h4 = analysis.load(root, cache=cache)
    assert h4[1500].fitness == 0.123 and h4.cache_hits == 2500
    # a torn cache costs a re-read, never a wrong answer
    cfile = next(Path(cache).rglob("*.jsonl"))
    cfile.write_bytes(cfile.read_bytes()[:-30])
    h5 = analysis.load(root, cache=cache)
    assert [r.to_dict() for r in h5] == [r.to_dict() for r in h4]
    # DNA counts (skips, strides) are read once and cached too
    h6 = analysis.load(root, cache=cache, with_dna=True)
    assert h6[10].n_skips == 1 and h6[10].n_strided == 1 and h6[10].downsampling == 2 and h6[10].n_convs == 1
    h7 = analysis.load(root, cache=cache, with_dna=True)
    assert h7.cache_hits == 2501 and h7[10].n_skips == 1
    # many uncached files are read by a pool of processes, with the same result
    monkeypatch.setattr(loading_module, "PARALLEL_MIN", 100)
    h8 = analysis.load(root, cache=False, workers=2)
    assert [r.to_dict() for r in h8] == [r.to_dict() for r in h5]
    # status stays cheap and complete
    st = analysis.status(h2)
    assert st["counts"]["dead"] == 2500 and st["best"]["fitness"] == max(r.fitness for r in h2)


def test_genome_numbers_come_from_the_search_space():
    from evo.analysis.records import genome_numbers

    s = genome_numbers(evo.search_space("real2017"), _DNA)
    assert {k: s[k] for k in DNA_FIELDS} == {"n_convs": 1, "n_skips": 1, "n_strided": 1, "downsampling": 2,
                                             "max_channels": 8}
    assert genome_numbers(evo.search_space("real2017"), {}) == {}     # unreadable: unknown, not zero
    assert genome_numbers(None, _DNA) == {}


def test_import_does_not_pull_torch():
    import subprocess

    code = "import sys, evo.analysis, evo.plots; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ----------------------------------------------------------------------------------- benchmark


def _bench(n: int, directory: str | None) -> None:  # pragma: no cover - run by hand
    import tempfile

    base = Path(directory or tempfile.mkdtemp(prefix="evo-bench-"))
    root = base / f"fake-{n}"
    if not (root / "config.json").exists():
        t = time.perf_counter()
        make_fake_population(root, n, 100)
        print(f"made {n} dead + 100 alive fake individuals in {time.perf_counter() - t:.1f} s under {root}")
    cache = str(base / "cache")
    shutil.rmtree(cache, ignore_errors=True)
    rows = []

    def run(label: str, **kw):
        t, c = time.perf_counter(), time.process_time()
        h = analysis.load(root, **kw)
        rows.append((label, time.perf_counter() - t, time.process_time() - c, h.cache_hits))
        return h

    run("first load, 1 process, no cache", cache=False, workers=1)
    run("first load, process pool, no cache", cache=False)
    run("first load, filling the cache", cache=cache)
    h = run("cached load", cache=cache)
    run("cached load again", cache=cache)
    t = time.perf_counter()
    analysis.status(h)
    rows.append(("status on a loaded history", time.perf_counter() - t, float("nan"), 0))
    print(f"{'':38s} {'wall s':>8s} {'cpu s':>8s} {'cache hits':>10s}   ({os.cpu_count()} CPUs)")
    for label, w, c, hits in rows:
        print(f"{label:38s} {w:8.2f} {c:8.2f} {hits:10d}")


if __name__ == "__main__":  # pragma: no cover
    import argparse

    ap = argparse.ArgumentParser(description="time evo.analysis.load on a fake population")
    ap.add_argument("--bench", type=int, default=100000, help="dead individuals")
    ap.add_argument("--dir", default=None, help="where to make (or reuse) the fake population")
    a = ap.parse_args()
    _bench(a.bench, a.dir)


def test_status_calls_a_spent_flops_budget_with_unstarted_retraining_finished(tmp_path):
    import random

    from evo import analysis
    from evo.population import WorkerInfo
    from popkit import fill, make, train_one

    pop = make(tmp_path, population_size=3, max_flops=3.0)
    me, rng = WorkerInfo.from_env(), random.Random(6)
    fill(pop, me, rng)
    pop.reset_all_weights()
    for _ in range(2):
        train_one(pop, me, rng)
    s = analysis.status(pop.root)
    assert s["state"] == "finished" and "FLOPs" in s["budget_reason"] and s["counts"]["pending"] == 1
