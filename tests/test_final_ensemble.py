"""A grow run end to end (evo init --strategy grow, evo worker, evo status): generations of growth
with function-preserving inheritance, and the last survivors' ensemble measured once at the end."""

import json

from click.testing import CliRunner

from evo.cli import main
from evo.population import Population

TINY = ["--dataset-opt", "n_train=600", "--dataset-opt", "n_val=200", "--dataset-opt", "n_test=200",
        "--dataset-opt", "image_size=8"]


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_a_grow_run_from_init_to_its_ensemble(tmp_path):
    pop = tmp_path / "pop"
    r = run("init", pop, "-P", "2", "--strategy", "grow", "--grow-children", "3", "--grow-survivors", "2",
            "--grow-generations", "2", "--steps-per-child", "5", "--seed", "1", *TINY)
    assert r.exit_code == 0, r.output
    cfg = Population.open(str(pop)).config
    assert cfg.inheritance == "function-preserving" and cfg.grow == {"children": 3, "survivors": 2, "generations": 2}
    r = run("worker", pop, "-q")
    assert r.exit_code == 0, r.output
    p = Population.open(str(pop))
    st = p.grow_state()
    assert st["phase"] == "finished" and [h["generation"] for h in st["history"]] == [0, 1, 2]
    ens = st["final_ensemble"]
    assert ens["ids"] == st["survivors"] and len(ens["ids"]) == 2 and 0.0 <= ens["val_accuracy"] <= 1.0
    children = [json.loads(f.read_text()) for f in (pop / "alive").glob("*/fitness.json")]
    children += [json.loads(f.read_text()) for f in (pop / "dead").glob("*/*/fitness.json")]
    grown = [c for c in children if c["kind"] == "child"]
    assert len(grown) == 6 and len(children) == 8
    for c in grown:
        assert c["mutations"][0]["name"] in ("WIDEN", "DEEPEN", "LARGER-FILTER")
        inh = c["inherited"]
        assert inh["mode"] == "function-preserving" and set(inh["preserved"]) | set(inh["not_preserved"]) \
            == {c["mutations"][0]["name"]}
    # a DEEPEN after a ReLU (any child of a child that was deepened) keeps the function
    assert any(c["inherited"]["exact"] for c in grown)
    r = run("status", pop)
    assert r.exit_code == 0, r.output
    assert "generation   2 of 2: 3/3 committed" in r.output and "the run is over" in r.output
    assert "ensemble     of the last 2 survivors: validation accuracy" in r.output
    assert "state: finished" in r.output
    d = json.loads(run("status", pop, "--json").output)
    assert d["grow"]["final_ensemble"]["ids"] == ens["ids"] and d["state"] == "finished"


def test_each_members_accuracy_in_the_final_ensemble_is_its_fitness(tmp_path, monkeypatch):
    """The fast recipe measures a fitness with test-time flips (and the weight average, kept as the
    weights); the final ensemble measures its members through the same evaluation with the same
    settings, so a member's validation accuracy there is its recorded fitness. (It measured them
    without the flips, so a member showed less than its fitness.)"""
    import evo.network.evaluation as evaluation
    import evo.network.train as training

    calls: list[tuple[str, dict]] = []

    def spy(where, real):
        def evaluate(*args, **kwargs):
            calls.append((where, {k: kwargs.get(k) for k in ("amp", "channels_last", "tta")}))
            return real(*args, **kwargs)
        return evaluate

    monkeypatch.setattr(training, "evaluate", spy("fitness", evaluation.evaluate))
    monkeypatch.setattr(evaluation, "evaluate", spy("later", evaluation.evaluate))
    pop = tmp_path / "pop"
    r = run("init", pop, "-P", "2", "--strategy", "grow", "--grow-children", "2", "--grow-survivors", "2",
            "--grow-generations", "1", "--steps-per-child", "30", "--seed", "3", "--train-opt", "recipe=fast", *TINY)
    assert r.exit_code == 0, r.output
    r = run("worker", pop, "-q")
    assert r.exit_code == 0, r.output
    ens = Population.open(str(pop)).grow_state()["final_ensemble"]
    fitness = [json.loads((pop / "alive" / str(i) / "fitness.json").read_text())["fitness"] for i in ens["ids"]]
    assert ens["members_val_accuracy"] == fitness
    how = {where: {json.dumps(kw, sort_keys=True) for w, kw in calls if w == where} for where in ("fitness", "later")}
    assert how["fitness"] == how["later"] == {json.dumps({"amp": True, "channels_last": True, "tta": True},
                                                         sort_keys=True)}, calls
