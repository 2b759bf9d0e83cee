"""Tests of bin/search-efficiency and evo.bench: suites, data subsets, steering, and the tiny
suite run end to end (interrupted, resumed, rerun), its summary checked against the populations'
own records."""

from __future__ import annotations

import io
import json
import math
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from evo.bench import DataPrepError, Runner, RunError, RunnerOptions, SuiteError, load_suite, read_state, run_dir
from evo.bench.data import prepare, subset_images
from evo.bench.runner import population_config
from evo.population import Config, Population

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "bin" / "search-efficiency"
SUITES = REPO / "benchmarks" / "suites"
TINY = SUITES / "smoke" / "tiny.toml"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


# ------------------------------------------------------------------------------------------ suites
def test_shipped_suites_load_and_make_valid_configs():
    files = sorted(SUITES.glob("*.toml"))
    names = {f.stem for f in files}
    assert {"evolution-vs-random", "aging-vs-tournament", "population-size", "steps-per-child",
            "plateau-escapes", "growth", "amoebanet"} <= names
    for f in files + [TINY]:
        suite = load_suite(f)
        assert len(suite.runs) == len(suite.variants) * len(suite.experiments) * len(suite.seeds), f
        if f != TINY:
            # the synthetic set and the 10,000-image CIFAR-10 subset (read at 16x16 for the cell space)
            assert suite.variants[0] == "synthetic" and suite.variants[1].startswith("cifar10-10k"), f
            assert len(suite.variants) == 2, f
            assert len(suite.seeds) >= 3, f
        for run in suite.runs:
            cfg = population_config(run, run.data["dataset"], {"root": "/data"} if "subset_of" in run.data else {},
                                    run.settings["workers"] or 2)
            Config.from_dict(cfg).validate()  # what `evo init` accepts
            assert cfg["seed"] == run.seed


def test_settings_resolve_defaults_variant_experiment(tmp_path):
    p = tmp_path / "s.toml"
    p.write_text("""
name = "s"
seeds = [3, 4]
[defaults]
population_size = 10
budget = { flops = 1e9 }
train = { batch_size = 20 }
[[variant]]
name = "a"
[[variant]]
name = "b"
population_size = 12
budget = { wall_s = 60 }
[[experiment]]
name = "x"
[[experiment]]
name = "y"
population_size = 2
train = { momentum = 0.8 }
schedule = [{ at = 0.5, mutations_per_child = 5 }, { at = 0.7, reset_weights = true }]
""")
    suite = load_suite(p)
    by = {r.key: r.settings for r in suite.runs}
    assert len(by) == 8
    assert by["a/x/seed-3"]["population_size"] == 10 and by["b/x/seed-4"]["population_size"] == 12
    assert by["b/y/seed-3"]["population_size"] == 2 and by["b/y/seed-3"]["budget"] == {"wall_s": 60}
    assert by["a/y/seed-3"]["train"] == {"batch_size": 20, "momentum": 0.8}
    cfg = population_config(suite.runs[0], "synthetic", {}, 2)
    assert cfg["max_flops"] == 1e9 and "max_individuals" not in cfg and cfg["keep_checkpoints"] == "top:14"
    assert [r.key for r in load_suite(p, only=["b/y"], seeds=[9]).runs] == ["b/y/seed-9"]


@pytest.mark.parametrize("body, message", [
    ('[[experiment]]\nname = "x"\n', "no budget"),
    ('[defaults]\nbudget = { flops = 1 }\npopulaton_size = 3\n[[experiment]]\nname = "x"\n',
     "did you mean 'population_size'"),
    ('[defaults]\nbudget = { flops = 1 }\n[[experiment]]\nname = "x"\nschedule = [{ at = 1.5, reset_weights = true }]\n',
     "schedule[0]"),
    ('[defaults]\nbudget = { flops = 1 }\n[[experiment]]\nname = "x"\nstrategy = "best"\n', "strategy 'best'"),
    ('[defaults]\nbudget = { flops = 1 }\n[[experiment]]\nname = "x"\ndata = "imagenet"\n', "unknown data"),
    ('[defaults]\nbudget = { flops = 1 }\n[[experiment]]\nname = "x"\nconfig = { seed = 3 }\n', "config.seed"),
])
def test_bad_suites_name_the_problem(tmp_path, body, message):
    p = tmp_path / "bad.toml"
    p.write_text(body)
    with pytest.raises(SuiteError) as e:
        load_suite(p)
    assert message in str(e.value) and str(p) in str(e.value)


# ------------------------------------------------------------------------------------------ data
def _image_tar(path: Path, classes: int = 3, per_class: int = 4) -> Path:
    from PIL import Image

    with tarfile.open(path, "w:gz") as tf:
        for c in range(classes):
            for k in reversed(range(per_class)):  # archive order is not name order
                buf = io.BytesIO()
                Image.new("RGB", (8, 8), (40 * c, 10 * k, 0)).save(buf, format="PNG")
                info = tarfile.TarInfo(f"train/class{c}/{k:04d}.png")
                info.size = len(buf.getvalue())
                tf.addfile(info, io.BytesIO(buf.getvalue()))
        readme = tarfile.TarInfo("train/README.txt")
        readme.size = 2
        tf.addfile(readme, io.BytesIO(b"hi"))
    return path


def test_subset_of_an_archive(tmp_path):
    src = _image_tar(tmp_path / "imgs.tar.gz")
    chosen = subset_images(src, 6)
    assert chosen == {f"class{c}": [f"train/class{c}/0000.png", f"train/class{c}/0001.png"] for c in range(3)}
    data = {"name": "small", "dataset": "imagefolder", "subset_of": "imgs.tar.gz", "images": 6,
            "dataset_kwargs": {"image_size": 8}}
    logs: list[str] = []
    dataset, kw = prepare(data, tmp_path, tmp_path / "out", log=logs.append)
    root = Path(kw["root"])
    assert dataset == "imagefolder" and kw["image_size"] == 8 and root == (tmp_path / "out" / "data" / "small")
    assert sorted(str(p.relative_to(root)) for p in root.rglob("*.png")) == sorted(
        f"class{c}/{k:04d}.png" for c in range(3) for k in range(2))
    info = json.loads((root / "subset.json").read_text())
    assert info["images"] == 6 and info["per_class"] == 2 and len(logs) == 1
    mtime = (root / "subset.json").stat().st_mtime_ns
    prepare(data, tmp_path, tmp_path / "out", log=logs.append)  # made once
    assert len(logs) == 1 and (root / "subset.json").stat().st_mtime_ns == mtime
    from evo.network.data import load_dataset

    ds = load_dataset("imagefolder", **kw, val_fraction=0.5)
    assert len(ds.train_x) + len(ds.val_x) == 6 and ds.num_classes == 3
    with pytest.raises(DataPrepError, match="too few"):
        subset_images(src, 15)
    with pytest.raises(DataPrepError, match="does not exist"):
        prepare({**data, "subset_of": "missing.tar"}, tmp_path, tmp_path / "out2")


# ------------------------------------------------------------------------------------------ steering
def test_schedule_and_wall_budget_steer_the_population(tmp_path):
    p = tmp_path / "s.toml"
    p.write_text('seeds = [0]\n[defaults]\ndata = "synthetic-tiny"\nbudget = { flops = 1000, wall_s = 50 }\n'
                 '[[experiment]]\nname = "x"\n'
                 'schedule = [{ at = 0.2, mutations_per_child = 5 }, { at = 0.4, mutations_per_child = 1 }, '
                 '{ at = 0.6, reset_weights = true }]\n')
    suite = load_suite(p)
    run = suite.runs[0]
    runner = Runner(suite, RunnerOptions(out=tmp_path / "out", echo=lambda m: None))
    pop = run_dir(runner.out, run)
    pop.parent.mkdir(parents=True)
    Population.create(str(pop), **population_config(run, "synthetic", {}, 1))
    st = {"spec": run.spec(), "sessions": [], "applied": []}

    def control() -> dict:
        return json.loads((pop / "control.json").read_text())

    runner._steer(run, pop, st, wall_s=5)  # 10% of the wall budget
    assert st["applied"] == [] and control()["mutations_per_child"] == 1
    runner._steer(run, pop, st, wall_s=12)  # 24%
    assert st["applied"] == [0] and control()["mutations_per_child"] == 5
    # the FLOPs spent count too: 500 of 1000 is half the budget
    state = json.loads((pop / "state.json").read_text())
    (pop / "state.json").write_text(json.dumps({**state, "flops": 500.0}))
    runner._steer(run, pop, st, wall_s=12)
    assert st["applied"] == [0, 1] and control()["mutations_per_child"] == 1
    runner._steer(run, pop, st, wall_s=31)
    assert st["applied"] == [0, 1, 2] and control()["reset_generation"] == 1 and not control()["stopped"]
    runner._steer(run, pop, st, wall_s=50)
    assert control()["stopped"] and st["wall_stop"]
    assert [e["event"] for e in st["events"]] == [{"mutations_per_child": 5}, {"mutations_per_child": 1},
                                                   {"reset_weights": True}]
    saved = read_state(runner.out, run)
    assert saved["applied"] == [0, 1, 2] and saved["wall_stop"]


def test_a_changed_suite_is_refused_for_an_existing_run(tmp_path):
    out = tmp_path / "out"
    suite = load_suite(TINY, only=["evolution"], seeds=[0])
    run = suite.runs[0]
    st_path = run_dir(out.resolve(), run).with_name("seed-0.run.json")
    st_path.parent.mkdir(parents=True)
    other = run.spec()
    other["settings"] = {**other["settings"], "population_size": 99}
    st_path.write_text(json.dumps({"spec": other, "finished": True}))
    with pytest.raises(RunError, match="other settings"):
        Runner(suite, RunnerOptions(out=out, echo=lambda m: None)).status(run)


# ------------------------------------------------------------------------------------------ end to end
def _script(out: Path, *args: str) -> list[str]:
    return [sys.executable, str(SCRIPT), str(TINY), "--out", str(out), "--poll", "0.5", *args]


def _births(pop: Path) -> int:
    try:
        return sum(1 for line in (pop / "events.jsonl").read_text().splitlines() if '"event":"birth"' in
                   line.replace(" ", ""))
    except OSError:
        return 0


def _records(pop: Path) -> list[dict]:
    """Every committed individual's fitness.json, read directly from the directories."""
    recs = []
    for d in list((pop / "alive").iterdir()) + [x for s in (pop / "dead").iterdir() for x in s.iterdir()]:
        recs.append(json.loads((d / "fitness.json").read_text()))
    return recs


def _expected(recs: list[dict], flops_eq: float) -> dict:
    order = sorted(recs, key=lambda r: (r["finished_at"], r["id"]))
    cum, within = 0.0, []
    for r in order:
        cum += r["flops"]
        if cum <= flops_eq * (1 + 1e-9) and r["fitness"] is not None:
            within.append(r)
    return {"individuals": len(recs), "flops": sum(r["flops"] for r in recs),
            "best_val": max(r["fitness"] for r in recs if r["fitness"] is not None),
            "best_val_at_equal_flops": max(r["fitness"] for r in within),
            "within": within}


def _ensemble_by_hand(pop: Path, ids: list[int]) -> float:
    import torch

    from evo import analysis
    from evo.network.data import load_dataset

    h = analysis.load(pop)
    ds = load_dataset(h.config.dataset, **h.config.dataset_kwargs)
    x = (ds.val_x.float() / 255.0 - torch.tensor(ds.mean).view(1, -1, 1, 1)) / torch.tensor(ds.std).view(1, -1, 1, 1)
    with torch.no_grad():
        p = sum(torch.softmax(analysis.load_individual_model(h, i)(x), dim=1) for i in ids)
    return int((p.argmax(1) == ds.val_y).sum()) / len(ds.val_y)


def test_tiny_suite_end_to_end_interrupted_resumed_and_rerun(tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "EVO_CACHE_DIR": str(tmp_path / "cache")}
    first = run_dir(out.resolve(), load_suite(TINY).runs[0])
    assert first.name == "seed-0" and first.parent.name == "evolution"

    # 1. start; once the first run has a birth, pause it (no new work) and interrupt the runner
    proc = subprocess.Popen(_script(out), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True)
    try:
        deadline = time.monotonic() + 300
        while _births(first) < 1:
            assert proc.poll() is None, proc.stdout.read()
            assert time.monotonic() < deadline, "no birth in the first run"
            time.sleep(0.05)
        Population.open(str(first)).pause()
        while any((first / "inflight").iterdir()):  # the child in training is committed
            assert time.monotonic() < deadline
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        text, _ = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, text
    assert "interrupted" in text
    st = read_state(out.resolve(), load_suite(TINY).runs[0])
    assert st["finished"] is False and st["sessions"][0]["interrupted"]
    before = {r["id"]: r for r in _records(first)}
    assert 1 <= len(before) < 10
    assert not (out / "tiny" / "default" / "random").exists()  # the runs after it have not started

    # 2. the same command again: the interrupted run goes on, the others start
    res = subprocess.run(_script(out, "--json"), capture_output=True, text=True, env=env, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    outcome = json.loads(res.stdout)["tiny"]
    assert outcome["runs"]["skipped"] == [] and len(outcome["runs"]["completed"]) == 4
    assert "default/evolution/seed-0: was paused; resumed it" in res.stderr
    after = {r["id"]: r for r in _records(first)}
    assert len(after) == 10 and set(before) <= set(after)
    assert all(after[i]["task_uid"] == before[i]["task_uid"] for i in before)  # kept, not redone
    events = (first / "events.jsonl").read_text()
    assert events.count('"event":"create"') + events.count('"event": "create"') == 1
    st = read_state(out.resolve(), load_suite(TINY).runs[0])
    assert st["finished"] and len(st["sessions"]) == 2

    # 3. and again: everything is finished, nothing runs, nothing changes
    snap = {p: p.stat().st_mtime_ns for p in (out / "tiny").rglob("events.jsonl")}
    res3 = subprocess.run(_script(out, "--json"), capture_output=True, text=True, env=env, timeout=600)
    assert res3.returncode == 0, res3.stderr[-3000:]
    assert len(json.loads(res3.stdout)["tiny"]["runs"]["skipped"]) == 4
    assert {p: p.stat().st_mtime_ns for p in snap} == snap

    # 4. the summary's numbers are the populations' own
    summary = json.loads((out / "tiny" / "summary.json").read_text())
    v = summary["variants"]["default"]
    pops = {f"{e}/seed-{s}": out.resolve() / "tiny" / "default" / e / f"seed-{s}"
            for e in ("evolution", "random") for s in (0, 1)}
    recs = {k: _records(p) for k, p in pops.items()}
    flops_eq = min(max(sum(r["flops"] for r in rs), json.loads((pops[k] / "state.json").read_text())["flops"])
                   for k, rs in recs.items())
    assert math.isclose(v["equal_flops"], flops_eq, rel_tol=1e-12)
    for ename, e in v["experiments"].items():
        assert e["finished"] == 2 and len(e["runs"]) == 2
        for r in e["runs"]:
            k = f"{ename}/seed-{r['seed']}"
            want = _expected(recs[k], flops_eq)
            assert r["individuals"] == want["individuals"] and r["best_val"] == want["best_val"], k
            assert math.isclose(r["flops"], want["flops"], rel_tol=1e-12)
            assert r["best_val_at_equal_flops"] == want["best_val_at_equal_flops"], k
            top = sorted(want["within"], key=lambda x: (-x["fitness"], x["id"]))
            assert sorted(x["fitness"] for x in top[:5]) == sorted(
                next(x for x in recs[k] if x["id"] == i)["fitness"] for i in r["top_ids_at_equal_flops"])
            assert r["ensemble_error"] is None
            assert math.isclose(r["ensemble_val_at_equal_flops"],
                                _ensemble_by_hand(pops[k], r["top_ids_at_equal_flops"]), abs_tol=1e-9), k
        vals = [r["best_val_at_equal_flops"] for r in e["runs"]]
        s = e["stats"]["best_val_at_equal_flops"]
        assert math.isclose(s["mean"], sum(vals) / 2) and s["min"] == min(vals) and s["max"] == max(vals)
        ens = e["stats"]["ensemble_val_at_equal_flops"]
        md = (out / "tiny" / "summary.md").read_text()
        assert f"| {ename} | 2/2 | {s['mean']:.4f} [{s['min']:.4f}, {s['max']:.4f}] | " \
               f"{ens['mean']:.4f} [{ens['min']:.4f}, {ens['max']:.4f}] |" in md
        for fig in e["figures"].values():
            assert Path(fig).read_bytes()[:8] == PNG_SIGNATURE
    for fig in v["figures"].values():
        assert Path(fig).read_bytes()[:8] == PNG_SIGNATURE


def test_runs_through_evo_submit(tmp_path):
    """--executor slurm submits each run's workers with `evo submit` (here its local executor, so
    that the path runs without a cluster) and watches the populations until their budgets."""
    out = tmp_path / "out"
    env = {**os.environ, "EVO_CACHE_DIR": str(tmp_path / "cache")}
    args = _script(out, "--only", "evolution", "--seeds", "0", "--executor", "slurm",
                   "--submit-opt=--executor=local", "--no-ensemble", "--json")
    res = subprocess.run(args, capture_output=True, text=True, env=env, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert json.loads(res.stdout)["tiny"]["runs"]["completed"] == ["default/evolution/seed-0"]
    run = load_suite(TINY, only=["evolution"], seeds=[0]).runs[0]
    pop = run_dir(out.resolve(), run)
    st = read_state(out.resolve(), run)
    assert st["finished"] and [s["executor"] for s in st["sessions"]] == ["local-submit"]
    jobs = [json.loads(line) for line in (pop / "jobs.jsonl").read_text().splitlines()]
    assert len(jobs) == 1 and jobs[0]["executor"] == "local" and jobs[0]["workers"] == 1
    assert len(_records(pop)) == 10
    again = subprocess.run(args, capture_output=True, text=True, env=env, timeout=600)
    assert again.returncode == 0 and json.loads(again.stdout)["tiny"]["runs"]["skipped"] == [run.key]
    assert len((pop / "jobs.jsonl").read_text().splitlines()) == 1  # nothing submitted again
