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


def _one_conv_seed(path):
    """A seed of one 3x3 convolution into a BN-ReLU vertex: every growth mutation of it can keep the function."""
    from evo.genome.real2017.dna import DNA, Edge, EdgeType, Vertex, VertexType

    dna = DNA(vertices=(Vertex(0, VertexType.LINEAR), Vertex(1, VertexType.BN_RELU)),
              edges=(Edge(10, 0, 1, EdgeType.CONV, 4, (3, 3), 1),), input_vertex=0, output_vertex=1,
              learning_rate=0.1, input_shape=(3, 8, 8), num_classes=10, next_id=20).validate()
    path.write_text(json.dumps({"seed_dna": dna.to_dict()}))
    return path


def test_a_grow_run_from_init_to_its_ensemble(tmp_path):
    pop = tmp_path / "pop"
    r = run("init", pop, "--config", _one_conv_seed(tmp_path / "seed.json"), "-P", "2", "--strategy", "grow",
            "--grow-children", "3", "--grow-survivors", "2", "--grow-generations", "2", "--steps-per-child", "5",
            "--seed", "1", *TINY)
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
    # from a seed whose vertices after the image are BN-ReLUs, WIDEN, LARGER-FILTER and a DEEPEN after a ReLU
    # keep the function whichever the generations draw (a DEEPEN on the signed image need not)
    keeps = [c for c in grown if not (c["mutations"][0]["name"] == "DEEPEN"
                                      and not c["mutations"][0]["detail"].get("after_relu"))]
    assert keeps and all(c["inherited"]["exact"] for c in keeps), [(c["mutations"], c["inherited"]) for c in keeps]
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
