"""An AmoebaNet search end to end, on the command line: `evo init --search-space amoebanet` on the
synthetic data set, two workers to a small budget, then every command that reads a population
(status, top, show, lineage, graph, export, fsck), `evo.load_model`, the architecture trends and
the report, all through the search-space seam."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import evo
from evo import analysis
from evo.cli import main
from evo.population import Population, read_events
from populations import REPO, assert_real_png

TINY = ["--dataset-opt", "n_train=300", "--dataset-opt", "n_val=100", "--dataset-opt", "n_test=100",
        "--dataset-opt", "image_size=8"]
BUDGET, P = 6, 3


def run(*args: str | os.PathLike, code: int = 0) -> str:
    res = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    assert res.exit_code == code, f"evo {' '.join(map(str, args))} -> {res.exit_code}\n{res.output}"
    return res.output


@pytest.fixture(scope="module")
def pop(tmp_path_factory) -> Path:
    """An amoebanet population (N=1, F=4) run to its budget by two `evo worker` processes."""
    root = tmp_path_factory.mktemp("amoebanet") / "pop"
    out = run("init", root, "--search-space", "amoebanet", "--space-opt", "N=1", "--space-opt", "F=4", "-P", str(P),
              "--sample-size", "2", "--max-individuals", str(BUDGET), "--steps-per-child", "8",
              "--keep-checkpoints", "all", "--train-opt", "batch_size=16", "--train-opt", "lr=0.05", *TINY)
    assert "strategy aging" in out, out
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    procs = [subprocess.Popen([sys.executable, "-m", "evo", "worker", str(root), "-q", "--device", "cpu"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for _ in range(2)]
    for p in procs:
        assert p.wait(timeout=300) == 0, p.stdout.read().decode()
    return root


def test_the_search_runs_to_its_budget_with_the_papers_settings(pop):
    cfg = Population.open(str(pop)).config
    assert (cfg.search_space, cfg.space_options) == ("amoebanet", {"N": 1, "F": 4})
    assert (cfg.strategy, cfg.inheritance) == ("aging", "none")  # the space's defaults; P and S as given
    births = [e["id"] for e in read_events(str(pop)) if e["event"] == "birth"]
    assert sorted(births) == list(range(1, BUDGET + 1))
    recs = [ind.record for ind in Population.open(str(pop)).individuals()]
    assert all(r["outcome"] == "ok" and r["steps_trained"] == 8 for r in recs)
    assert {r["learning_rate"] for r in recs} == {0.05}  # the training setting: the genome carries none
    children = [r for r in recs if r["parent_id"] is not None]
    assert len(children) == BUDGET - P
    assert all(r["inherited"]["copied"] == 0 for r in children)  # trained from scratch
    assert all(m["name"] in ("HIDDEN-STATE", "OP", "IDENTITY") for r in children for m in r["mutations"])
    space = evo.search_space("amoebanet", N=1, F=4)
    for ind in Population.open(str(pop)).individuals():
        genome = space.from_dict(json.loads((Path(ind.path) / "dna.json").read_text()))
        assert ind.record["params"] == space.params(genome, (3, 8, 8))
        assert ind.record["depth"] == space.describe(genome)["depth"]
    assert "OK" in run("fsck", pop)


def test_status_top_show_lineage_and_graph(pop):
    st = json.loads(run("status", pop, "--json"))
    assert st["counts"]["trained"] == BUDGET and st["counts"]["alive"] == P
    top = json.loads(run("top", pop, "--json"))["top"]
    assert len(top) == BUDGET and all(r["learning_rate"] == 0.05 and r["depth"] > 0 for r in top)
    child = max(r["id"] for r in top)
    d = json.loads(run("show", pop, child, "--json"))
    assert d["search_space"] == {"name": "amoebanet", "options": {"N": 1, "F": 4}}
    assert [t["title"] for t in d["tables"]][:2] == ["normal cell", "reduction cell"]
    assert d["stats"]["n_cells"] == 5 and d["learning_rate"] == 0.05 and not d["genome_learning_rate"]
    text = run("show", pop, child)
    assert "amoebanet F=4 N=1; learning rate 0.05" in text and "normal cell" in text and "in output" in text
    assert "stack (N=1, F=4" in text and "fitness record" in text
    assert f"lineage of {child}" in run("lineage", pop, child)
    dot = run("graph", pop, child)
    assert dot.startswith("digraph") and "cluster_normal" in dot and "N=1 F=4" in dot


def test_export_and_load_model(pop, tmp_path):
    h = analysis.load(str(pop))
    best = h.best()
    out = json.loads(run("export", pop, "--best", "-o", tmp_path / "best.pt", "--json"))
    assert out["id"] == best.id
    model = evo.load_model(tmp_path / "best.pt")
    assert type(model.dna).__name__ == "Genome" and model.meta["id"] == best.id
    from evo.analysis.models import load_individual_model, load_population_dataset
    from evo.network.data import normalize

    ds = load_population_dataset(h)
    x = ds.test_x[:4]  # uint8 images, as the exported model takes them
    with torch.no_grad():
        ref = load_individual_model(h, best.id)(normalize(x, torch.tensor(ds.mean), torch.tensor(ds.std)))
        torch.testing.assert_close(model(x), ref)
    assert torch.load(tmp_path / "best.pt", weights_only=True)["search_space"] == {
        "name": "amoebanet", "options": {"N": 1, "F": 4}}
    run("export", pop, "--top", "2", "--ensemble", "-o", tmp_path / "ens.pt")
    ens = evo.load_model(tmp_path / "ens.pt")
    with torch.no_grad():
        torch.testing.assert_close(ens(x).sum(1), torch.ones(4))


def test_architecture_trends_are_the_op_counts_per_cell(pop, tmp_path):
    from evo import plots
    from evo.genome.amoebanet.genome import OPS

    h = analysis.load(str(pop))
    t = h.architecture_trends(bins=2)
    assert t["space"] == "amoebanet" and t["n"].sum() == BUDGET
    for kind in ("normal", "reduction"):  # every op of the cell, ten ops a cell in all
        assert {f"{kind}_{op}" for op in OPS} <= set(t["metrics"])
        total = sum(t[f"{kind}_{op}"]["best"][-1] for op in OPS)
        assert total == 10
    assert t["fitness"]["best"][-1] == h.best().fitness
    fig = plots.architecture_trends_figure(h, bins=2, path=tmp_path / "t.png")
    titles = [a.get_title() for a in fig.axes if a.get_visible()]
    assert "validation accuracy" in titles and any(s.startswith("normal cell") for s in titles)
    assert_real_png(tmp_path / "t.png")
    script = subprocess.run([sys.executable, str(REPO / "bin" / "architecture-trends"), str(pop), "-o",
                             str(tmp_path / "s.png"), "--bins", "2", "--csv", str(tmp_path / "s.csv")],
                            capture_output=True, text=True, timeout=120)
    assert script.returncode == 0, script.stderr
    assert "normal (commonest)" in script.stdout
    header = (tmp_path / "s.csv").read_text().splitlines()[0].split(",")
    assert "reduction_sep_3x3_median" in header and "fitness_best" in header
    run("report", pop, "-o", tmp_path / "report.html")
    page = (tmp_path / "report.html").read_text()
    assert "Architecture trends" in page and "amoebanet" in page
