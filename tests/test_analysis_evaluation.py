"""evo.analysis.evaluation: test-split accuracy through the network layer's one evaluation path.

Fast: a population of hand-made individuals (a seed network with given weights), no training.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from evo import analysis  # noqa: E402
from evo.genome.real2017.dna import seed_dna  # noqa: E402
from evo.network.data import load_dataset  # noqa: E402
from evo.network.real2017 import build_model  # noqa: E402
from evo.network.evaluation import evaluate_split  # noqa: E402
from evo.population import Population  # noqa: E402

DATA = {"n_train": 200, "n_val": 100, "n_test": 300, "image_size": 8}


def add_individual(root: Path, i: int, state: dict | None, dna: dict, fitness: float = 0.5) -> None:
    """An alive individual as a worker commits it: dna.json, fitness.json and (unless None) weights."""
    d = root / "alive" / str(i)
    d.mkdir(parents=True)
    now = time.time()
    (d / "dna.json").write_text(json.dumps(dna))
    (d / "fitness.json").write_text(json.dumps({
        "format_version": 1, "id": i, "parent_id": None, "kind": "seed", "outcome": "ok", "fitness": fitness,
        "flops": 1.0, "params": 10, "mutations": [], "born_at": now - 1, "finished_at": now}))
    if state is not None:
        torch.save(state, d / "checkpoint.pt")


@pytest.fixture
def pop(tmp_path):
    """A population with a trained-looking model (1), a model whose outputs are NaN (2), and the
    data set; every test image of class 0 would be 'right' if a NaN output were read as class 0."""
    root = tmp_path / "pop"
    Population.create(str(root), dataset="synthetic", dataset_kwargs=DATA, population_size=2, lock="none")
    ds = load_dataset("synthetic", **DATA)
    dna = seed_dna(ds.input_shape, ds.num_classes)
    torch.manual_seed(0)
    net = build_model(dna)
    good = {k: v.clone() for k, v in net.state_dict().items()}
    nan = {k: (torch.full_like(v, float("nan")) if v.is_floating_point() else v.clone()) for k, v in good.items()}
    add_individual(root, 1, good, dna.to_dict(), 0.6)
    add_individual(root, 2, nan, dna.to_dict(), 0.5)
    assert (ds.test_y == 0).any()
    return root, ds, net


def test_a_non_finite_output_counts_as_wrong(pop):
    root, ds, _ = pop
    res = analysis.evaluate_test(root, [2], device="cpu", dataset=ds)
    assert res["models"][0]["test_accuracy"] == 0.0      # not the share of class-0 images
    assert res["n_test"] == DATA["n_test"]


def test_the_test_accuracy_is_the_network_layers_evaluation(pop):
    root, ds, net = pop
    res = analysis.evaluate_test(root, [1], device="cpu", dataset=ds)
    assert res["models"][0]["test_accuracy"] == evaluate_split(net.eval(), ds, "test")
    assert res["ensemble"] is None


def test_an_ensemble_with_a_non_finite_member_counts_the_image_wrong(pop):
    root, ds, net = pop
    res = analysis.evaluate_test(root, [1, 1], ensemble=True, device="cpu", dataset=ds)
    # an ensemble of one model twice: the mean of its probabilities has the model's top class
    assert res["ensemble"]["test_accuracy"] == res["models"][0]["test_accuracy"]
    res = analysis.evaluate_test(root, [1, 2], ensemble=True, device="cpu", dataset=ds)
    assert res["ensemble"] == {"ids": [1, 2], "test_accuracy": 0.0}


def test_no_test_split_and_missing_weights_are_clear_errors(pop, tmp_path):
    root, ds, _ = pop
    add_individual(root, 3, None, json.loads((root / "alive" / "1" / "dna.json").read_text()))
    with pytest.raises(analysis.NoCheckpointError, match="individual 3 has no trained weights"):
        analysis.evaluate_test(root, [3], device="cpu", dataset=ds)
    no_test = load_dataset("synthetic", **{**DATA, "n_test": 0})
    with pytest.raises(analysis.NoTestSplitError, match="no test split"):
        analysis.evaluate_test(root, [1], device="cpu", dataset=no_test)


def test_a_truncated_checkpoint_is_one_error_naming_the_file(pop, tmp_path):
    root, ds, _ = pop
    ck = root / "alive" / "1" / "checkpoint.pt"
    ck.write_bytes(ck.read_bytes()[:100])
    with pytest.raises(analysis.AnalysisError, match=str(ck)):
        analysis.export_individual(root, 1, tmp_path / "out.pt", dataset=ds)
    assert not (tmp_path / "out.pt").exists()


def test_evaluations_are_recorded_and_torn_lines_skipped(pop):
    root, _, _ = pop
    path = analysis.record_evaluation(root, {"models": [{"id": 1, "test_accuracy": 0.5}]})
    with open(path, "a") as f:
        f.write('{"torn": ')
    recs = analysis.read_evaluations(root)
    assert len(recs) == 1 and recs[0]["models"][0]["id"] == 1 and "t" in recs[0] and "host" in recs[0]
