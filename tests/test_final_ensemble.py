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
