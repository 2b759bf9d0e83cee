"""The amoebanet cell space's genome layer (pure Python): genome, validation, JSON, mutations, cost, DOT."""

import json
import random
import shutil
import subprocess
import sys

import pytest

import evo
from evo.genome.amoebanet.cost import count_params, stack_depth
from evo.genome.amoebanet.genome import COMBINATIONS, OPS, Cell, Combination, Genome, random_genome
from evo.genome.amoebanet.known import AMOEBANET_A
from evo.genome.amoebanet.mutations import HIDDEN_STATE, IDENTITY, OP
from evo.genome.amoebanet.space import AmoebaNet
from evo.genome.amoebanet.stack import plan_stack
from evo.genome.space import GenomeError, space_names

DARTS_NAMES = {"skip_connect": "identity", "sep_conv_3x3": "sep_3x3", "sep_conv_5x5": "sep_5x5",
               "sep_conv_7x7": "sep_7x7", "conv_7x1_1x7": "conv_1x7_7x1"}


def cell_of(pairs):
    """A cell from DARTS-style (op, input) pairs, two per combination."""
    pairs = [(DARTS_NAMES.get(op, op), i) for op, i in pairs]
    return Cell(tuple(Combination((a[1], b[1]), (a[0], b[0])) for a, b in zip(pairs[::2], pairs[1::2])))


def test_amoebanet_a_is_the_published_cell():
    # DARTS's genotypes.py writes AmoebaNet-A (Real et al. 2019, figure 4) as (op, input) pairs
    normal = cell_of([("avg_pool_3x3", 0), ("max_pool_3x3", 1), ("sep_conv_3x3", 0), ("sep_conv_5x5", 2),
                      ("sep_conv_3x3", 0), ("avg_pool_3x3", 3), ("sep_conv_3x3", 1), ("skip_connect", 1),
                      ("skip_connect", 0), ("avg_pool_3x3", 1)])
    reduction = cell_of([("avg_pool_3x3", 0), ("sep_conv_3x3", 1), ("max_pool_3x3", 0), ("sep_conv_7x7", 2),
                         ("sep_conv_7x7", 0), ("avg_pool_3x3", 1), ("max_pool_3x3", 0), ("max_pool_3x3", 1),
                         ("conv_7x1_1x7", 0), ("sep_conv_3x3", 5)])
    assert AMOEBANET_A == Genome(normal, reduction)
    # DARTS: normal_concat = [4, 5, 6], reduce_concat = [3, 4, 6]
    assert AMOEBANET_A.normal.unused() == [4, 5, 6]
    assert AMOEBANET_A.reduction.unused() == [3, 4, 6]


def mutation_chain(seed: int, steps: int, space=None):
    """A random genome and its descendants after ``steps`` single mutations, with the records."""
    space = space or evo.search_space("amoebanet", N=1, F=4)
    rng = random.Random(seed)
    g = space.seed((3, 32, 32), 10, rng)
    out = [(g, None)]
    for _ in range(steps):
        g, rec = space.mutate(g, rng)
        out.append((g, rec))
    return out


# ------------------------------------------------------------------------------ the space
def test_registered_with_paper_defaults():
    s = evo.search_space("amoebanet")
    assert isinstance(s, AmoebaNet) and s.options == {"N": 3, "F": 24}
    assert s.network_module == "evo.network.amoebanet"
    assert "amoebanet" in space_names()
    assert AmoebaNet.population_defaults == {"strategy": "aging", "population_size": 100, "sample_size": 25,
                                             "inheritance": "none"}
    assert evo.search_space("amoebanet", N=6, F=36) == evo.search_space("amoebanet", N="6", F="36")
    assert s.learning_rate(random_genome(random.Random(0))) is None
    assert s.resets_weights([{"name": OP, "detail": {}}]) is False


@pytest.mark.parametrize("opts, word", [({"N": 0}, "N"), ({"F": 1}, "F"), ({"N": 2.5}, "N"), ({"F": "x"}, "F"),
                                        ({"N": True}, "N"), ({"M": 3}, "no option 'M'")])
def test_bad_options_are_named(opts, word):
    with pytest.raises(GenomeError, match=word):
        evo.search_space("amoebanet", **opts)


def test_genome_layer_imports_no_torch():
    code = ("import random, sys, evo; s = evo.search_space('amoebanet'); g = s.seed((3, 32, 32), 10, random.Random(1));"
            "s.flops(g); s.params(g); s.draw(g); s.describe(g); s.mutate(g, random.Random(2), n=5);"
            "assert 'torch' not in sys.modules, 'torch was imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


# ------------------------------------------------------------------------------ genome and JSON
def test_seed_and_random_are_random_cells_and_reproducible():
    s = evo.search_space("amoebanet")
    a = s.seed((3, 32, 32), 10, random.Random(5))
    assert a == s.seed((3, 32, 32), 10, random.Random(5))
    seeds = {s.to_json(s.seed((3, 32, 32), 10, random.Random(i))) for i in range(20)}
    assert len(seeds) == 20
    g, record = s.random((1, 28, 28), 7, random.Random(3))
    assert record == [] and g.input_shape == (1, 28, 28) and g.num_classes == 7
    ops_seen = {op for i in range(20) for c in ("normal", "reduction")
                for combo in s.seed((3, 32, 32), 10, random.Random(i)).cell(c).combinations for op in combo.ops}
    assert ops_seen == set(OPS)


def test_json_round_trip_and_unknown_keys_ignored():
    s = evo.search_space("amoebanet")
    for g, _ in mutation_chain(1, 30):
        d = s.to_dict(g)
        assert d["space"] == "amoebanet" and len(d["normal"]) == COMBINATIONS
        assert s.from_json(s.to_json(g)) == g
        assert s.from_dict(json.loads(json.dumps(d))) == g
    d = s.to_dict(AMOEBANET_A)
    d["comment"] = "a later field"
    d["normal"][0]["note"] = "also ignored"
    assert s.from_dict(d) == AMOEBANET_A


def _broken(edit):
    d = AMOEBANET_A.to_dict()
    edit(d)
    return d


@pytest.mark.parametrize("edit, message", [
    (lambda d: d["normal"][0]["ops"].__setitem__(0, "conv_9x9"), "normal cell, combination 0: unknown op 'conv_9x9'"),
    (lambda d: d["reduction"][1]["inputs"].__setitem__(1, 3), "reduction cell, combination 1: input 3 is not"),
    (lambda d: d["normal"][4]["inputs"].__setitem__(0, -1), "normal cell, combination 4: input -1"),
    (lambda d: d["normal"][2]["inputs"].__setitem__(0, "1"), "input '1'"),
    (lambda d: d["normal"].pop(), "the normal cell has 4 combinations; it needs 5"),
    (lambda d: d["reduction"][0].__setitem__("ops", ["identity"]), "needs two inputs and two ops"),
    (lambda d: d["reduction"].__setitem__(2, [0, 1]), 'must be an object {"inputs"'),
    (lambda d: d.pop("reduction"), r"lacks the fields \['reduction'\]"),
    (lambda d: d.__setitem__("format_version", 99), "newer than this evo understands"),
    (lambda d: d.__setitem__("space", "real2017"), "belongs to the search space 'real2017'"),
    (lambda d: d.__setitem__("num_classes", 0), "num_classes must be an int >= 1"),
    (lambda d: d.__setitem__("input_shape", [3, 32]), "input_shape must be"),
])
def test_malformed_genomes_are_named(edit, message):
    with pytest.raises(GenomeError, match=message):
        evo.search_space("amoebanet").from_dict(_broken(edit))


def test_other_genomes_are_refused_clearly():
    s = evo.search_space("amoebanet")
    dna = evo.search_space("real2017").seed((3, 32, 32), 10)
    with pytest.raises(GenomeError, match="real2017 DNA"):
        s.from_dict(evo.search_space("real2017").to_dict(dna))
    with pytest.raises(GenomeError, match="expects a cell genome, got DNA"):
        s.flops(dna)
    with pytest.raises(GenomeError, match="not a JSON genome"):
        s.from_json("{")
    with pytest.raises(GenomeError, match="expects input"):
        s.validate(AMOEBANET_A, (1, 28, 28), 10)
    with pytest.raises(GenomeError, match="classes"):
        s.validate(AMOEBANET_A, (3, 32, 32), 100)
    assert s.validate(AMOEBANET_A, (3, 32, 32), 10) is AMOEBANET_A


def test_output_concatenates_the_unused_states():
    only_first = Cell(tuple(Combination((1, 1), ("identity", "identity")) if k == 0
                            else Combination((k + 1, k + 1), ("sep_3x3", "max_pool_3x3")) for k in range(5)))
    assert only_first.unused() == [0, 6]  # an unused cell input is passed on


# ------------------------------------------------------------------------------ mutations
def _differences(a: Genome, b: Genome):
    out = []
    for kind in ("normal", "reduction"):
        for k, (x, y) in enumerate(zip(a.cell(kind).combinations, b.cell(kind).combinations)):
            for side in range(2):
                if x.inputs[side] != y.inputs[side]:
                    out.append(("input", kind, k, side, x.inputs[side], y.inputs[side]))
                if x.ops[side] != y.ops[side]:
                    out.append(("op", kind, k, side, x.ops[side], y.ops[side]))
    return out


def test_every_mutation_keeps_a_valid_dag_and_changes_what_its_record_says():
    names = set()
    for seed in range(4):
        chain = mutation_chain(seed, 250)
        for (parent, _), (child, record) in zip(chain, chain[1:]):
            child.validate()  # inputs of combination k are states < k + 2: a DAG
            (rec,) = record
            names.add(rec["name"])
            diff = _differences(parent, child)
            if rec["name"] == IDENTITY:
                assert child == parent and diff == [] and rec["detail"] == {}
                continue
            d = rec["detail"]
            kind = "input" if rec["name"] == HIDDEN_STATE else "op"
            assert diff == [(kind, d["cell"], d["combination"], d["side"], d["from"], d["to"])]
            if rec["name"] == HIDDEN_STATE:
                assert 0 <= d["to"] < d["combination"] + 2 and d["to"] != d["from"]
            else:
                assert d["to"] in OPS and d["to"] != d["from"]
            json.dumps(record)
    assert names == {HIDDEN_STATE, OP, IDENTITY}


def test_hidden_state_mutation_reaches_every_earlier_state():
    s = evo.search_space("amoebanet")
    g = AMOEBANET_A
    targets = set()
    rng = random.Random(0)
    for _ in range(3000):
        _, (rec,) = s.mutate(g, rng, config={"allowed": [HIDDEN_STATE]})
        d = rec["detail"]
        targets.add((d["cell"], d["combination"], d["to"]))
    for kind in ("normal", "reduction"):
        for k in range(COMBINATIONS):
            combo = g.cell(kind).combinations[k]
            reached = {t for c, kk, t in targets if (c, kk) == (kind, k)}
            assert reached | set(combo.inputs) == set(range(k + 2))
            if combo.inputs[0] == combo.inputs[1]:
                assert combo.inputs[0] not in reached  # the mutation always changes the input


def test_mutation_settings():
    s = evo.search_space("amoebanet")
    g = AMOEBANET_A
    child, records = s.mutate(g, random.Random(1), n=6, config={"weights": {OP: 0, IDENTITY: 0}})
    assert [r["name"] for r in records] == [HIDDEN_STATE] * 6 and child != g
    a = s.mutate(g, random.Random(7), n=4)
    assert a == s.mutate(g, random.Random(7), n=4)
    assert s.mutate(g, random.Random(7), n=0) == (g, [])
    # settings of the real2017 mutations are ignored, names of unknown mutations are not
    assert s.mutate(g, random.Random(7), n=4, config={"max_channels": 64}) == a
    for bad, word in [({"allowed": ["ADD-SKIP"]}, "unknown amoebanet mutations"),
                      ({"weights": {OP: -1}}, "finite number >= 0"),
                      ({"allowed": []}, "no amoebanet mutation can be drawn"),
                      ({"allowed": "OP"}, "list of names"),
                      ({"allowed": [["OP"]]}, "list of names"),
                      ("OP", "must be an object"), ([OP], "must be an object")]:
        with pytest.raises(ValueError, match=word):
            s.mutate(g, random.Random(0), config=bad)
    with pytest.raises(GenomeError, match=">= 0"):
        s.mutate(g, random.Random(0), n=-1)
    # the settings read once (as a worker does) work as well as the dict
    settings = s.mutation_config({"allowed": [OP, IDENTITY], "weights": {IDENTITY: 0}})
    assert s.mutate(g, random.Random(2), n=3, config=settings) == \
        s.mutate(g, random.Random(2), n=3, config={"allowed": [OP]})


# ------------------------------------------------------------------------------ cost and shapes
def test_stack_plan_of_the_paper():
    plan = plan_stack(AMOEBANET_A, 3, 24)
    kinds = [c.kind for c in plan.cells]
    assert kinds == ["normal"] * 3 + ["reduction"] + ["normal"] * 3 + ["reduction"] + ["normal"] * 3
    assert [c.channels for c in plan.cells] == [24] * 3 + [48] * 4 + [96] * 4
    assert plan.stem_channels == 72
    assert plan.cells[0].in_shapes == ((72, 32, 32), (72, 32, 32))
    assert plan.cells[4].pre0 == "factorized" and plan.cells[4].in_shapes[0][1:] == (32, 32)
    assert plan.cells[3].out_shape == (3 * 48, 16, 16)
    assert plan.cells[-1].out_shape == (3 * 96, 8, 8) and plan.head_in == 288
    odd = plan_stack(AMOEBANET_A, 1, 8, (3, 7, 9))
    assert odd.cells[-1].out_shape[1:] == (2, 3)  # ceil(7/2)=4 -> 2, ceil(9/2)=5 -> 3


def test_amoebanet_a_has_the_papers_size():
    # Real et al. 2019: AmoebaNet-A with N=6, F=36 has 3.2M parameters
    s = evo.search_space("amoebanet", N=6, F=36)
    assert abs(s.params(AMOEBANET_A) - 3.2e6) / 3.2e6 < 0.03
    assert count_params(AMOEBANET_A, 6, 36) == s.params(AMOEBANET_A)
    small = evo.search_space("amoebanet", N=3, F=24)
    assert small.params(AMOEBANET_A) < s.params(AMOEBANET_A)
    assert small.flops(AMOEBANET_A, (3, 16, 16)) < small.flops(AMOEBANET_A, (3, 32, 32))
    assert small.train_flops(AMOEBANET_A) < 3 * small.flops(AMOEBANET_A)


def test_describe_counts_ops_per_cell():
    s = evo.search_space("amoebanet")
    d = s.describe(AMOEBANET_A)
    assert d["n_cells"] == 11 and isinstance(d["depth"], int) and d["depth"] > 11
    assert d["normal_avg_pool_3x3"] == 3 and d["normal_sep_3x3"] == 3 and d["normal_identity"] == 2
    assert d["reduction_max_pool_3x3"] == 3 and d["reduction_conv_1x7_7x1"] == 1
    assert d["normal_outputs"] == 3 and d["reduction_outputs"] == 3
    for kind in ("normal", "reduction"):
        assert sum(d[f"{kind}_{op}"] for op in OPS) == 2 * COMBINATIONS
    pools = Genome(*(Cell((Combination((0, 1), ("max_pool_3x3", "avg_pool_3x3")),) * 5),) * 2)
    assert stack_depth(pools, plan_stack(pools, 1, 4)) < d["depth"]


# ------------------------------------------------------------------------------ drawing
def test_dot_draws_both_cells():
    s = evo.search_space("amoebanet", N=2, F=16)
    text = s.draw(AMOEBANET_A, title="individual 7")
    assert text.startswith("digraph") and "cluster_normal" in text and "cluster_reduction" in text
    assert "individual 7" in text and "N=2 F=16" in text
    assert text.count("->") == 2 * (2 * 2 * COMBINATIONS) + 3 + 3
    assert "sep_7x7 /2" in text and "conv_1x7_7x1 /2" in text  # reduction ops on the cell inputs
    assert 'normal_add2 -> normal_out' in text and 'normal_add1 -> normal_out' not in text
    if shutil.which("dot"):
        out = subprocess.run(["dot", "-Tsvg"], input=text.encode(), capture_output=True, check=True)
        assert b"<svg" in out.stdout


def test_tables_show_each_cell_and_the_stack():
    s = evo.search_space("amoebanet", N=2, F=16)
    normal, reduction, stack = s.tables(AMOEBANET_A)
    assert normal["title"] == "normal cell" and len(normal["columns"]) == len(normal["rows"][0])
    assert normal["rows"][0] == ["2", "h[i-2]", "avg_pool_3x3", "h[i-1]", "max_pool_3x3", ""]
    assert [r[0] for r in normal["rows"] if r[-1] == "yes"] == ["4", "5", "6"]
    assert reduction["rows"][1] == ["3", "h[i-2]", "max_pool_3x3 /2", "2", "sep_7x7", "yes"]
    assert [r[0] for r in stack["rows"]] == list(range(3 * 2 + 2))
    assert stack["rows"][-1][4] == "x".join(map(str, plan_stack(AMOEBANET_A, 2, 16).cells[-1].out_shape))
    json.dumps([normal, reduction, stack])
    real = evo.search_space("real2017")
    assert [t["title"] for t in real.tables(real.seed((3, 8, 8), 10))] == ["vertices", "edges"]
