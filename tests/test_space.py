"""The search-space seam's contract, for the real2017 space (Real et al. 2017's DNA graphs)."""

from __future__ import annotations

import json
import random
import subprocess
import sys

import pytest

import evo
from evo.genome import GenomeError, MutationError, SearchSpace, search_space, space_names

SHAPE = (3, 16, 16)


@pytest.fixture
def space() -> SearchSpace:
    return search_space("real2017")


def evolved(space: SearchSpace, seed: int, steps: int = 20):
    rng = random.Random(seed)
    dna = space.seed(SHAPE, 10, rng)
    for _ in range(steps):
        dna, _ = space.mutate(dna, rng)
    return dna


def test_import_evo_and_the_genome_layer_without_torch():
    code = ("import evo, evo.genome, evo.genome.real2017.space; import sys; "
            "evo.search_space('real2017').seed((3, 8, 8), 10); assert 'torch' not in sys.modules, 'torch'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_registry_names_real2017_as_the_default(space):
    assert "real2017" in space_names()
    assert search_space() == space and search_space().name == "real2017"
    assert evo.search_space("real2017") == space
    assert repr(space) == "search_space('real2017')"
    with pytest.raises(GenomeError, match="unknown search space 'nope'"):
        search_space("nope")
    with pytest.raises(GenomeError, match="has no option 'N'"):
        search_space("real2017", N=3)


def test_seed_is_the_papers_trivial_model(space):
    dna = space.seed(SHAPE, 10, random.Random(0))
    assert space.validate(dna, SHAPE, 10) is dna
    assert space.describe(dna)["depth"] == 0 and space.describe(dna)["n_convs"] == 0
    assert space.learning_rate(dna) == 0.1
    # only the pooled image feeds the classifier: 3 channels x 10 classes, two FLOPs a multiply-add
    assert space.flops(dna, SHAPE) == 2 * 3 * 10
    assert space.params(dna, SHAPE) == 3 * 10 + 10
    assert dna == evo.seed_dna(SHAPE, 10)


def test_mutate_returns_a_valid_child_and_json_ready_records(space):
    rng = random.Random(1)
    dna = space.seed(SHAPE, 10, rng)
    for _ in range(30):
        child, record = space.mutate(dna, rng, n=2)
        assert len(record) == 2 and all(isinstance(r["name"], str) for r in record)
        assert json.loads(json.dumps(record)) == record
        space.validate(child, SHAPE, 10)
        assert space.resets_weights(record) == any(r["name"] == "RESET-WEIGHTS" for r in record)
        dna = child
    assert space.mutate(dna, random.Random(5), n=3) == evo.mutate(dna, random.Random(5), n=3)


def test_mutation_settings_are_read_and_checked(space):
    cfg = space.mutation_config({"allowed": ["INSERT-CONVOLUTION"]})
    dna = space.seed(SHAPE, 10)
    child, record = space.mutate(dna, random.Random(0), n=1, config=cfg)
    assert record[0]["name"] == "INSERT-CONVOLUTION" and space.describe(child)["n_convs"] == 1
    # a dict works as well as the parsed settings
    assert space.mutate(dna, random.Random(0), config={"allowed": ["INSERT-CONVOLUTION"]})[0] == child
    with pytest.raises(ValueError, match="unknown mutation names"):
        space.mutation_config({"allowed": ["FLY"]})
    with pytest.raises(ValueError, match="must be an object"):
        space.mutation_config(["IDENTITY"])
    with pytest.raises(MutationError, match="none of the allowed mutations"):
        space.mutate(dna, random.Random(0), config={"allowed": ["REMOVE-SKIP"]})


def test_random_architectures_for_the_baseline(space):
    rng = random.Random(2)
    for _ in range(10):
        dna, record = space.random(SHAPE, 10, rng)
        space.validate(dna, SHAPE, 10)
        assert not any(r["name"] in ("IDENTITY", "RESET-WEIGHTS") for r in record)


def test_validate_names_the_fault_and_the_data_set_mismatch(space):
    dna = evolved(space, 3)
    with pytest.raises(GenomeError, match="expects input"):
        space.validate(dna, (3, 32, 32), 10)
    with pytest.raises(GenomeError, match="classes"):
        space.validate(dna, SHAPE, 100)
    d = space.to_dict(space.seed(SHAPE, 10))
    d["edges"][0].update(type="CONV", channels=4, kernel=[2, 2], stride=1)
    with pytest.raises(GenomeError, match="odd"):
        space.from_dict(d)
    with pytest.raises(GenomeError, match="expects a DNA"):
        space.validate({"not": "a DNA"})
    with pytest.raises(GenomeError):
        space.from_dict([1, 2])


def test_json_round_trip_is_exact_and_ignores_unknown_keys(space):
    for s in range(5):
        dna = evolved(space, s)
        assert space.from_json(space.to_json(dna)) == dna
        d = space.to_dict(dna)
        assert space.from_dict(json.loads(json.dumps(d))) == dna
        assert space.from_dict({**d, "written_by": "a newer evo"}) == dna
    with pytest.raises(GenomeError, match="JSON"):
        space.from_json("{torn")
    with pytest.raises(GenomeError, match="JSON object"):
        space.from_json("[1, 2]")


def test_build_and_flops_match_the_models_own_count(space):
    torch = pytest.importorskip("torch")
    from torch.utils.flop_counter import FlopCounterMode

    for s in range(6):
        dna = evolved(space, s, steps=25)
        net = space.build(dna).eval()
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            out = net(torch.randn(1, *SHAPE))
        assert out.shape == (1, 10)
        assert space.flops(dna, SHAPE) == counter.get_total_flops()
        assert space.params(dna, SHAPE) == sum(p.numel() for p in net.parameters())
        assert space.flops(dna, SHAPE) < space.train_flops(dna, SHAPE) <= 3 * space.flops(dna, SHAPE)


def test_inherit_through_the_seam_copies_what_matches(space):
    torch = pytest.importorskip("torch")
    rng = random.Random(4)
    parent = evolved(space, 4)
    child, record = space.mutate(parent, rng, config={"allowed": ["IDENTITY"]})
    pnet, cnet = space.build(parent), space.build(child)
    report = space.inherit(cnet, pnet.state_dict(), parent=parent, child=child, mutations=record)
    assert not report["fresh"] and not report["mismatched"] and report["copied"]
    x = torch.randn(2, *SHAPE)
    assert torch.equal(pnet.eval()(x), cnet.eval()(x))


def test_draw_names_every_vertex_and_edge(space):
    dna = evolved(space, 5)
    dot = space.draw(dna, title="individual 7")
    assert dot.startswith("digraph") and "individual 7" in dot
    for v in dna.vertices:
        assert f"v{v.id} [" in dot
    for e in dna.edges:
        assert f"v{e.src} -> v{e.dst}" in dot


def test_describe_counts_the_architecture(space):
    d = space.to_dict(space.seed(SHAPE, 10))
    d["vertices"] += [{"id": 3, "type": "BN_RELU"}]
    d["edges"] = [
        {"id": 2, "src": 0, "dst": 3, "type": "CONV", "channels": 8, "kernel": [3, 3], "stride": 2, "skip": False},
        {"id": 4, "src": 3, "dst": 1, "type": "CONV", "channels": 16, "kernel": [1, 1], "stride": 1, "skip": False},
        {"id": 5, "src": 0, "dst": 1, "type": "IDENTITY", "skip": True},
    ]
    d["next_id"] = 6
    stats = space.describe(space.from_dict(d))
    assert stats == {"depth": 2, "n_convs": 2, "n_skips": 1, "n_strided": 1, "downsampling": 2,
                     "max_channels": 16, "learning_rate": 0.1}


def test_tables_show_the_vertices_with_shapes_and_the_edges(space):
    d = space.to_dict(space.seed(SHAPE, 10))
    d["vertices"] += [{"id": 3, "type": "BN_RELU"}]
    d["edges"] = [
        {"id": 2, "src": 0, "dst": 3, "type": "CONV", "channels": 8, "kernel": [3, 3], "stride": 2, "skip": False},
        {"id": 4, "src": 3, "dst": 1, "type": "IDENTITY", "skip": False},
        {"id": 5, "src": 0, "dst": 1, "type": "IDENTITY", "skip": True},
    ]
    d["next_id"] = 6
    vertices, edges = space.tables(space.from_dict(d))
    assert vertices["columns"] == ["id", "type", "role", "shape (CxHxW)"]
    assert {r[0]: r[2:] for r in vertices["rows"]} == {0: ["input", "3x16x16"], 1: ["output", "8x8x8"],
                                                       3: ["", "8x8x8"]}
    assert edges["rows"] == [[2, 0, 3, "CONV", 8, "3x3", 2, ""], [4, 3, 1, "IDENTITY", "-", "-", "-", ""],
                             [5, 0, 1, "IDENTITY", "-", "-", "-", "skip"]]
    json.dumps([vertices, edges])


def test_an_exported_model_records_its_space_and_loads_through_it(space, tmp_path):
    torch = pytest.importorskip("torch")
    from evo.network.export import export_model, load_model

    dna = evolved(space, 6)
    net = space.build(dna).eval()
    path = export_model(tmp_path / "m.pt", dna, net.state_dict(), [0.5] * 3, [0.25] * 3, space=space)
    payload = torch.load(path, weights_only=True)
    assert payload["search_space"] == {"name": "real2017", "options": {}}
    model = load_model(path)
    assert model.dna == dna
    x = torch.rand(2, *SHAPE)
    assert torch.allclose(model(x), net((x - 0.5) / 0.25))
