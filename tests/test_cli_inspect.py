"""The inspection commands (status, top, show, lineage, graph, plot, export, evaluate) and the
bin/ analysis scripts, through click's CliRunner, on a population made by a real short run."""

from __future__ import annotations

import contextlib
import importlib.machinery
import importlib.util
import io
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import evo
from evo import analysis
from evo.cli import main
from populations import REPO, assert_real_png


@pytest.fixture(scope="session")
def dataset(history):
    from evo.network.data import load_dataset

    return load_dataset(history.config.dataset, **history.config.dataset_kwargs)


def run(*args: str, code: int = 0) -> str:
    res = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    assert res.exit_code == code, f"evo {' '.join(map(str, args))} -> {res.exit_code}\n{res.output}"
    return res.output


def run_json(*args: str) -> dict:
    return json.loads(run(*args, "--json"))


def user_error(*args: str) -> str:
    """A user mistake: exit code 2, one clear line, no traceback."""
    res = CliRunner().invoke(main, [str(a) for a in args])
    assert res.exit_code == 2, f"evo {' '.join(map(str, args))} -> {res.exit_code}\n{res.output}"
    assert "Traceback" not in res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1, res.output
    return lines[0]


# ----------------------------------------------------------------------------------- status, top


def test_status(population, history):
    out = run("status", population)
    best = history.best()
    assert "state: finished" in out and "alive 6" in out and "dead 19" in out and "trained 25" in out
    assert f"validation accuracy {best.fitness:.4f} by individual {best.id}" in out
    assert "births" in out and "FLOPs" in out and "tournament" in out and "steps_per_child 40" in out
    d = run_json("status", population)
    assert d["counts"]["alive"] == 6 and d["best"]["id"] == best.id and d["state"] == "finished"
    assert d["flops"] > 0 and d["births_per_hour"]["overall"] > 0 and d["warnings"] == []


def test_status_warnings(population, tmp_path):
    """A live-looking copy: an expired lease of a dead worker, a stale soft lock, a torn file."""
    import time

    pop = tmp_path / "pop"
    shutil.copytree(population, pop, ignore=shutil.ignore_patterns("checkpoint.pt"))
    d = pop / "inflight" / "26.abcdef012345"
    d.mkdir()
    old = time.time() - 3600
    (d / "lease.json").write_text(json.dumps({
        "token": "abcdef012345", "id": 26, "acquired_at": old, "heartbeat_at": old, "expires_at": old + 600,
        "ttl_s": 600, "worker": {"id": "4242_3@node7:99", "host": "node7", "pid": 99, "slurm_job_id": "4245",
                                 "slurm_array_job_id": "4242", "slurm_array_task_id": "3"}}))
    (d / "task.json").write_text(json.dumps({"kind": "child", "id": 26, "parent_id": 1, "attempts": 0}))
    (pop / "lock.soft").write_text("{}")
    os.utime(pop / "lock.soft", (old, old))
    dead = next((pop / "dead" / "0").iterdir())
    (dead / "fitness.json").write_text('{"id": ')
    out = run("status", pop)
    assert "4242_3" in out and "EXPIRED" in out
    assert "stale lease" in out and "stale lock" in out and "torn" in out
    s = run_json("status", pop)
    assert s["workers"][0]["slurm_job"] == "4242_3" and s["workers"][0]["expired"]
    assert s["workers"][0]["heartbeat_age_s"] > 3000
    assert s["counts"]["inflight"] == 1 and s["state"] == "running"
    kinds = " ".join(s["warnings"])
    assert "stale lease" in kinds and "stale lock" in kinds and "torn" in kinds
    later = analysis.status(pop, now=time.time() + 7200)  # nothing born for two hours
    assert any(w.startswith("stalled: no individual committed for 2.0 h") for w in later["warnings"])


def test_top(population, history):
    out = run("top", population, "-n", "3")
    lines = out.splitlines()
    assert lines[1].split()[:3] == ["rank", "id", "val"]
    ranked = history.ranked()
    assert [int(ln.split()[1]) for ln in lines[2:]] == [r.id for r in ranked[:3]]
    d = run_json("top", population, "-n", "50")
    assert [x["id"] for x in d["top"]] == [r.id for r in ranked]
    first = d["top"][0]
    assert {"rank", "id", "fitness", "alive", "params", "flops", "depth", "age_s", "checkpoint"} <= set(first)
    assert all(x["checkpoint"] == x["alive"] for x in d["top"])  # keep_checkpoints = alive
    alive = run_json("top", population, "--alive")
    assert all(x["alive"] for x in alive["top"]) and len(alive["top"]) == 6


# ----------------------------------------------------------------------------------- show, lineage, graph


def test_show(population, history):
    child = next(r for r in history.ranked() if r.parent_id is not None)
    out = run("show", population, child.id)
    assert f"individual {child.id}" in out and f"child of {child.parent_id}" in out
    assert "vertices" in out and "edges" in out and "fitness record" in out and "mutations" in out
    assert child.mutations[0] in out
    d = run_json("show", population, child.id)
    assert d["id"] == child.id and d["parent"]["id"] == child.parent_id
    assert [m["name"] for m in d["mutations"]] == list(child.mutations)
    dna = json.loads((Path(history.path_of(child.id)) / "dna.json").read_text())
    tables = {t["title"]: t for t in d["tables"]}
    assert len(tables["edges"]["rows"]) == len(dna["edges"]) and len(tables["vertices"]["rows"]) == len(dna["vertices"])
    assert all(row[-1] != "-" for row in tables["vertices"]["rows"])   # every vertex has its shape
    assert d["search_space"]["name"] == "real2017" and d["stats"]["n_convs"] == sum(
        e["type"] == "CONV" for e in dna["edges"])


def test_lineage(population, history):
    deepest = max(history, key=lambda r: (r.lineage_depth, r.fitness or 0))
    assert deepest.lineage_depth >= 1
    d = run_json("lineage", population, deepest.id)
    steps = d["steps"]
    assert d["complete"] and steps[-1]["id"] == deepest.id
    assert steps[0]["parent_id"] is None and steps[0]["kind"] == "seed" and d["seed"] == steps[0]["id"]
    for a, b in zip(steps, steps[1:]):
        assert b["parent_id"] == a["id"]
        assert b["mutations"] and b["fitness"] == history[b["id"]].fitness
        assert b["delta"] == pytest.approx(b["fitness"] - a["fitness"])
    out = run("lineage", population, deepest.id)
    assert f"from seed individual {steps[0]['id']}" in out and "(seed)" in out
    assert len(out.strip().splitlines()) == len(steps) + 2


def test_graph(population, history, tmp_path):
    b = history.best()
    out = run("graph", population, b.id)
    assert out.startswith("digraph evo {") and out.rstrip().endswith("}")
    d = run_json("graph", population, b.id)
    assert d["dot"] == out
    run("graph", population, b.id, "-o", tmp_path / "g.dot")
    assert (tmp_path / "g.dot").read_text() == out
    if shutil.which("dot"):
        run("graph", population, b.id, "-o", tmp_path / "g.svg")
        assert "<svg" in (tmp_path / "g.svg").read_text()
        run("graph", population, b.id, "-o", tmp_path / "g.png")
        assert (tmp_path / "g.png").read_bytes()[:4] == b"\x89PNG"


def test_graph_without_graphviz(population, history, tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None)
    line = user_error("graph", population, history.best().id, "-o", tmp_path / "g.png")
    assert "Graphviz" in line and "not installed" in line


# ----------------------------------------------------------------------------------- plot


def test_plot(population, tmp_path):
    out = tmp_path / "progress.png"
    text = run("plot", population, "-o", out, "--x", "flops")
    assert f"wrote {out}" in text
    assert_real_png(out)
    d = run_json("plot", population, "-o", tmp_path / "p2.png")
    assert d["axis"] == "time" and d["individuals"] == 25 and Path(d["output"]).exists()


# ----------------------------------------------------------------------------------- export, evaluate


def _rebuilt(history, i):
    """The model of individual i rebuilt by hand from the population's files."""
    from evo.genome.real2017.dna import DNA
    from evo.network.real2017 import build_model

    d = Path(history.path_of(i))
    net = build_model(DNA.from_dict(json.loads((d / "dna.json").read_text())))
    net.load_state_dict(torch.load(d / "checkpoint.pt", map_location="cpu", weights_only=True))
    return net.eval()


def test_export_best_same_predictions(population, history, dataset, tmp_path):
    from evo.network.data import normalize

    f = tmp_path / "best.pt"
    d = run_json("export", population, "--best", "-o", f)
    assert d["id"] == history.best().id and f.exists()
    model = evo.load_model(f)
    assert not model.training
    x = dataset.test_x[:100]
    mean = torch.tensor(dataset.mean)
    std = torch.tensor(dataset.std)
    with torch.no_grad():
        ref = _rebuilt(history, d["id"])(normalize(x, mean, std))
        got = model(x)
        got01 = model(x.float() / 255.0)
    assert torch.allclose(got, ref, atol=1e-5) and torch.allclose(got01, ref, atol=1e-4)
    assert model.meta["id"] == d["id"] and model.meta["fitness"] == history.best().fitness
    text = run("export", population, str(history.alive()[-1].id), "-o", tmp_path / "one.pt")
    assert "exported individual" in text and "evo.load_model" in text


def test_evaluate_top_k_ensemble_by_hand(population, history, dataset):
    from evo.network.data import normalize

    d = run_json("evaluate", population, "--top", "3", "--ensemble", "--no-record")
    ids = [m["id"] for m in d["models"]]
    expect = [r.id for r in history.ranked() if history.checkpoint(r.id)][:3]
    assert ids == expect and d["n_test"] == len(dataset.test_x) == 500
    x, y = dataset.test_x, dataset.test_y
    xn = normalize(x, torch.tensor(dataset.mean), torch.tensor(dataset.std))
    probs = []
    with torch.no_grad():
        for m in d["models"]:
            p = torch.softmax(_rebuilt(history, m["id"])(xn), dim=1)
            probs.append(p)
            acc = (p.argmax(1) == y).float().mean().item()
            assert m["test_accuracy"] == pytest.approx(acc, abs=1.5 / len(y))
            assert m["fitness"] == history[m["id"]].fitness
    ens = (torch.stack(probs).mean(0).argmax(1) == y).float().mean().item()
    assert d["ensemble"]["ids"] == ids
    assert d["ensemble"]["test_accuracy"] == pytest.approx(ens, abs=1.5 / len(y))
    assert not (population / analysis.EVALUATIONS_FILE).exists() or all(
        e.get("selection") != "top 3" for e in analysis.read_evaluations(population))
    text = run("evaluate", population, "--top", "2", "--ensemble", "--no-record")
    assert "ensemble of 2" in text and "test acc" in text


def test_evaluate_best_is_recorded(population, history):
    before = len(analysis.read_evaluations(population))
    out = run("evaluate", population, "--best")
    assert "test split: 500 images" in out and str(history.best().id) in out and "recorded in" in out
    d = run_json("evaluate", population, "--best")
    assert [m["id"] for m in d["models"]] == [history.best().id] and d["ensemble"] is None
    recs = analysis.read_evaluations(population)
    assert len(recs) == before + 2
    assert recs[-1]["models"][0]["test_accuracy"] == d["models"][0]["test_accuracy"]
    assert recs[-1]["selection"] == "best" and "t" in recs[-1]


# ----------------------------------------------------------------------------------- user mistakes


def test_user_mistakes(population, history, tmp_path):
    dead = history.dead()[0]
    assert "no committed individual 9999" in user_error("show", population, "9999")
    assert "no committed individual 9999" in user_error("lineage", population, "9999")
    assert "no committed individual 9999" in user_error("graph", population, "9999")
    assert "expected a number" in user_error("show", population, "abc")
    line = user_error("export", population, str(dead.id), "-o", tmp_path / "x.pt")
    assert f"individual {dead.id} has no trained weights" in line and "keep_checkpoints" in line
    assert "no trained weights" in user_error("evaluate", population, "--id", str(dead.id))
    assert "--best" in user_error("export", population, "-o", tmp_path / "x.pt")
    assert "one of them" in user_error("evaluate", population, "--best", "--top", "2")
    assert "--ensemble needs several" in user_error("evaluate", population, "--best", "--ensemble")
    assert "not an evo population" in user_error("status", tmp_path)
    assert not (tmp_path / "x.pt").exists()


def test_export_of_a_truncated_checkpoint_names_the_file(population, history, tmp_path):
    pop = tmp_path / "pop"
    shutil.copytree(population, pop, ignore=shutil.ignore_patterns(analysis.EVALUATIONS_FILE))
    best = history.best().id
    ck = pop / "alive" / str(best) / "checkpoint.pt"
    ck.write_bytes(ck.read_bytes()[: ck.stat().st_size // 2])
    line = user_error("export", pop, "--best", "-o", tmp_path / "best.pt")
    assert str(ck) in line and "evo fsck --repair" in line
    assert not (tmp_path / "best.pt").exists()
    assert str(ck) in user_error("evaluate", pop, "--best", "--no-record")


def test_no_test_split(population, tmp_path):
    pop = tmp_path / "pop"
    shutil.copytree(population, pop, ignore=shutil.ignore_patterns(analysis.EVALUATIONS_FILE))
    cfg = json.loads((pop / "config.json").read_text())
    cfg["dataset_kwargs"]["n_test"] = 0
    (pop / "config.json").write_text(json.dumps(cfg))
    line = user_error("evaluate", pop, "--best")
    assert "no test split" in line
    assert not (pop / analysis.EVALUATIONS_FILE).exists()


# ----------------------------------------------------------------------------------- bin/ scripts


BIN = ["compare-runs", "architecture-trends", "export-history"]


def _script(name: str):
    path = REPO / "bin" / name
    loader = importlib.machinery.SourceFileLoader(f"bin_{name.replace('-', '_')}", str(path))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    mod = importlib.util.module_from_spec(spec)
    loader.exec_module(mod)
    return mod


def _call(name: str, *argv: str) -> tuple[int, str]:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        try:
            rc = _script(name).main([str(a) for a in argv])
        except SystemExit as e:
            rc = e.code
    return rc, buf.getvalue()


@pytest.mark.parametrize("name", BIN)
def test_bin_help(name):
    path = REPO / "bin" / name
    assert os.access(path, os.X_OK) and path.read_text().startswith("#!/usr/bin/env python3")
    rc, out = _call(name, "--help")
    assert rc == 0 and "usage:" in out and "Examples:" in out


def test_bin_help_runs_as_a_program():
    out = subprocess.run([str(REPO / "bin" / "export-history"), "--help"], capture_output=True, text=True,
                         check=True)
    assert "one csv row per individual" in out.stdout.lower()


def test_compare_runs_script(population, history, tmp_path):
    png = tmp_path / "cmp.png"
    rc, out = _call("compare-runs", population, population, "-o", png, "--labels", "a,b")
    assert rc == 0 and f"wrote {png}" in out and "final best validation accuracy" in out
    assert f"{history.best().fitness:.4f} +- 0.0000 over 2 runs" in out
    assert_real_png(png)
    rc, out = _call("compare-runs", population, "-o", tmp_path / "c2.png", "--x", "flops", "--json")
    d = json.loads(out)
    assert rc == 0 and d["runs"][0]["best_id"] == history.best().id and d["spread"]


def test_architecture_trends_script(population, tmp_path):
    png, csvf = tmp_path / "t.png", tmp_path / "t.csv"
    rc, out = _call("architecture-trends", population, "-o", png, "--bins", "4", "--csv", csvf)
    assert rc == 0 and "wrote" in out and "depth" in out
    assert_real_png(png)
    import csv

    rows = list(csv.DictReader(csvf.open()))
    assert len(rows) == 4 and sum(int(r["individuals"]) for r in rows) == 25
    assert {"depth_median", "params_median", "n_skips_median", "n_strided_median", "learning_rate_median",
            "fitness_best"} <= set(rows[0])


def test_export_history_script(population, history, tmp_path):
    import csv

    f = tmp_path / "h.csv"
    rc, _ = _call("export-history", population, "-o", f, "--with-dna")
    assert rc == 0
    rows = list(csv.DictReader(f.open()))
    assert len(rows) == len(history) == 25
    assert {"id", "parent_id", "fitness", "alive", "mutations", "n_skips", "lineage_depth"} <= set(rows[0])
    rc, out = _call("export-history", population)
    assert rc == 0 and len(out.strip().splitlines()) == 26 and "n_skips" not in out.splitlines()[0]
    rc, _ = _call("export-history", tmp_path / "nope")
    assert rc == 2
