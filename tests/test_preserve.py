"""Function-preserving inheritance: a grown child computes its parent's function at birth."""

import dataclasses
import math
import random

import pytest
import torch

import evo
from evo.genome.real2017.dna import DNA, Edge, EdgeType, Vertex, VertexType, seed_dna
from evo.genome.real2017.growth import deepen, larger_filter, widen
from evo.genome.real2017.mutations import MutationConfig, mutate
from evo.network.preserve import preserve_function
from evo.network.real2017 import build_model, inherit_weights

SHAPE = (3, 8, 8)
GROWTH = MutationConfig(weights={"WIDEN": 2, "DEEPEN": 2, "LARGER-FILTER": 1}, max_channels=32)
# mutations that cannot keep the function: their child must never be reported as exact
NEVER_EXACT = {"REMOVE-CONVOLUTION", "ALTER-STRIDE", "ADD-SKIP", "REMOVE-SKIP"}


def randomise(net: torch.nn.Module, g: torch.Generator) -> None:
    """Random weights and batch-norm statistics, as after some training."""
    with torch.no_grad():
        for name, t in net.state_dict().items():
            if not t.is_floating_point():
                continue
            if name.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=g) * 1.5 + 0.5)
            elif name.endswith("running_mean") or name.endswith("bias"):
                t.copy_(torch.randn(t.shape, generator=g) * 0.5)
            elif name.startswith("bns."):
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)
            else:
                t.copy_(torch.randn(t.shape, generator=g) * math.sqrt(2.0 / max(1, t[0].numel())))


def logits(dna: DNA, state: dict, x: torch.Tensor) -> torch.Tensor:
    net = build_model(dna)
    net.load_state_dict(state)
    net.eval()
    with torch.no_grad():
        return net(x)


def trained(dna: DNA, seed: int) -> dict:
    net = build_model(dna)
    randomise(net, torch.Generator().manual_seed(seed))
    return net.state_dict()


def three_convs(skip: bool = False) -> DNA:
    """input -conv-> v1 (BN-ReLU) -conv-> v2 (BN-ReLU) -conv-> out (LINEAR), optional skip v1 -> out."""
    edges = [Edge(4, 0, 1, EdgeType.CONV, channels=4, kernel=(3, 3), stride=1),
             Edge(5, 1, 2, EdgeType.CONV, channels=6, kernel=(3, 3), stride=2),
             Edge(6, 2, 3, EdgeType.CONV, channels=5, kernel=(1, 3), stride=1)]
    if skip:
        edges.append(Edge(7, 1, 3, EdgeType.IDENTITY, skip=True))
    return DNA(vertices=(Vertex(0), Vertex(1, VertexType.BN_RELU), Vertex(2, VertexType.BN_RELU), Vertex(3)),
               edges=tuple(edges), input_vertex=0, output_vertex=3, learning_rate=0.1,
               input_shape=SHAPE, next_id=8).validate()


def takes_over_batch_norm(dna: DNA, e: Edge) -> bool:
    """A BN-ReLU vertex inserted after ``e`` can take its destination's batch norm."""
    return e.is_conv and dna.vertex(e.dst).type is VertexType.BN_RELU and len(dna.in_edges(e.dst)) == 1


def test_random_mutation_chains_keep_the_function_where_reported():
    """Random chains over random DNAs: every exact report holds to 1e-4, non-preserving ones say so."""
    g = torch.Generator().manual_seed(0)
    exact_by_name: dict[str, list[bool]] = {}
    for chain in range(14):
        rng = random.Random(chain)
        dna = seed_dna(input_shape=SHAPE)
        for _ in range(rng.randint(0, 10)):
            dna, _ = mutate(dna, rng, config=GROWTH)
        state = trained(dna, chain)
        x = torch.randn(3, *SHAPE, generator=g)
        for _ in range(7):
            child, records = mutate(dna, rng, config=GROWTH)
            cstate, report = preserve_function(dna, state, child, noise=0.0, rng=rng, records=records)
            name, detail = records[0]["name"], records[0]["detail"]
            diff = (logits(child, cstate, x) - logits(dna, state, x)).abs().max().item()
            verdict = report["mutations"][0]["preserved"]
            exact_by_name.setdefault(name, []).append(report["exact"])
            if report["exact"]:
                assert diff < 1e-4, (chain, name, detail, diff, report["changes"])
            if name in NEVER_EXACT:
                assert not report["exact"] and not verdict, (name, report["changes"])
            if name == "RESET-WEIGHTS":
                assert not verdict
            # the mutations whose preservation needs no special structure are always exact
            always = (name in ("IDENTITY", "ALTER-LEARNING-RATE", "LARGER-FILTER")
                      or (name == "FILTER-SIZE" and detail["to"] > detail["from"])
                      or (name == "DEEPEN" and detail["after_relu"])
                      or (name in ("INSERT-CONVOLUTION", "INSERT-ONE-TO-ONE")
                          and detail.get("stride", 1) == 1 and detail["vertex_type"] == "LINEAR")
                      or (name in ("WIDEN", "ALTER-NUMBER-OF-CHANNELS") and detail["to"] > detail["from"]
                          and not any(e.skip for e in dna.edges))
                      or (name in ("INSERT-CONVOLUTION", "INSERT-ONE-TO-ONE") and detail.get("stride", 1) == 1
                          and takes_over_batch_norm(dna, dna.edge(detail["after_edge"]))))
            if always:
                assert report["exact"] and verdict, (name, detail, report["changes"])
            dna = child
            net = build_model(dna)
            randomise(net, g)  # the child trains before it becomes a parent
            state = net.state_dict()
    grown = exact_by_name.get("WIDEN", []) + exact_by_name.get("DEEPEN", [])
    assert len(grown) >= 10 and sum(grown) >= 0.6 * len(grown)


def test_a_new_gated_skip_starts_closed_and_gated_parents_keep_their_function():
    """With gated skips (function-preserving populations), ADD-SKIP is always exact, and chains
    over parents whose gates were trained to random values keep the function where reported."""
    cfg = dataclasses.replace(GROWTH, weights={**GROWTH.weights, "ADD-SKIP": 3}, gated_skips=True)
    g = torch.Generator().manual_seed(5)
    added = exact = 0
    for chain in range(8):
        rng = random.Random(500 + chain)
        dna = seed_dna(input_shape=SHAPE)
        for _ in range(rng.randint(2, 8)):
            dna, _ = mutate(dna, rng, config=cfg)
        state = trained(dna, chain)
        x = torch.randn(3, *SHAPE, generator=g)
        for _ in range(6):
            child, records = mutate(dna, rng, config=cfg)
            cstate, report = preserve_function(dna, state, child, noise=0.0, rng=rng, records=records)
            diff = (logits(child, cstate, x) - logits(dna, state, x)).abs().max().item()
            if report["exact"]:
                exact += 1
                assert diff < 1e-4, (chain, records, diff, report["changes"])
            if records[0]["name"] == "ADD-SKIP":
                added += 1
                e = records[0]["detail"]["edge"]
                assert next(x for x in child.edges if x.id == e).gate
                assert cstate[f"gates.e{e}"].item() == 0.0 and f"gates.e{e}" in report["built"]
                assert report["exact"] and report["mutations"][0]["preserved"], report["changes"]
            dna = child
            net = build_model(dna)
            randomise(net, g)  # trained: the gates too
            state = net.state_dict()
    assert added >= 5 and exact >= 20


def test_a_gated_skip_round_trips_and_only_an_identity_skip_has_one():
    dna = three_convs(skip=True)
    gated = dna.with_edges(dataclasses.replace(e, gate=True) if e.id == 7 else e for e in dna.edges)
    d = gated.to_dict()
    assert [e.get("gate") for e in d["edges"]] == [None, None, None, True]
    assert DNA.from_dict(d) == gated and "gate" not in three_convs(skip=True).to_dict()["edges"][3]
    assert [k for k in build_model(gated).state_dict() if k.startswith("gates.")] == ["gates.e7"]
    assert not [k for k in build_model(dna).state_dict() if k.startswith("gates.")]  # the paper's net
    d["edges"][0]["gate"] = True
    with pytest.raises(evo.DNAError, match="edge 4: only an identity skip edge can have a gate"):
        DNA.from_dict(d)


def test_chains_of_several_mutations_per_child():
    g = torch.Generator().manual_seed(1)
    seen_exact = 0
    for chain in range(6):
        rng = random.Random(100 + chain)
        dna = seed_dna(input_shape=SHAPE)
        for _ in range(6):
            dna, _ = mutate(dna, rng, config=GROWTH)
        state = trained(dna, chain)
        x = torch.randn(2, *SHAPE, generator=g)
        child, records = mutate(dna, rng, n=3, config=GROWTH)
        cstate, report = preserve_function(dna, state, child, noise=0.0, rng=rng, records=records)
        assert len(report["mutations"]) == 3
        if report["exact"]:
            seen_exact += 1
            assert (logits(child, cstate, x) - logits(dna, state, x)).abs().max().item() < 1e-4
    grown = MutationConfig(allowed=("WIDEN", "DEEPEN", "LARGER-FILTER"), max_channels=32)
    dna = three_convs()
    child, records = mutate(dna, random.Random(5), n=4, config=grown)
    cstate, report = preserve_function(dna, trained(dna, 9), child, noise=0.0, rng=1, records=records)
    x = torch.randn(2, *SHAPE, generator=g)
    assert report["exact"] and all(m["preserved"] for m in report["mutations"])
    assert (logits(child, cstate, x) - logits(dna, trained(dna, 9), x)).abs().max().item() < 1e-4


def test_widen_copies_channels_and_divides_the_consumers():
    dna = three_convs()
    state = trained(dna, 3)
    child, detail = widen(dna, random.Random(0), MutationConfig())
    eid = detail["edge"]
    cstate, report = preserve_function(dna, state, child, noise=0.0, rng=0)
    assert report["exact"] and [c["kind"] for c in report["changes"]] == ["more-channels"]
    old, new = state[f"convs.e{eid}.weight"], cstate[f"convs.e{eid}.weight"]
    n = old.shape[0]
    assert new.shape[0] == 2 * n
    torch.testing.assert_close(new[:n], old)
    copies = [next(i for i in range(n) if torch.equal(new[j], old[i])) for j in range(n, 2 * n)]
    consumer = next(e for e in child.out_edges(child.edge(eid).dst))
    key = f"convs.e{consumer.id}.weight" if consumer.is_conv else "head.weight"
    cw, pw = cstate[key], state[key]
    for i in range(n):
        times = 1 + copies.count(i)
        torch.testing.assert_close(cw[:, i], pw[:, i] / times)
    dst = child.edge(eid).dst
    bn = f"bns.v{dst}.running_mean"
    if bn in cstate:
        torch.testing.assert_close(cstate[bn][n:], state[bn][copies])
    # noise goes on the copies only; the function stays close
    noisy, rep = preserve_function(dna, state, child, noise=0.05, rng=0)
    torch.testing.assert_close(noisy[f"convs.e{eid}.weight"][:n], old)
    assert not torch.equal(noisy[f"convs.e{eid}.weight"][n:], new[n:])
    x = torch.randn(4, *SHAPE)
    gap = (logits(child, noisy, x) - logits(dna, state, x)).abs().max().item()
    assert 0 < gap < 0.5 and rep["noise"] == 0.05


def test_deepen_is_an_identity_convolution_with_a_self_undoing_batch_norm():
    dna = three_convs()
    state = trained(dna, 4)
    child, detail = deepen(dna, random.Random(0), MutationConfig())
    assert detail["after_relu"]
    cstate, report = preserve_function(dna, state, child, noise=0.0)
    assert report["exact"] and report["changes"][0]["kind"] == "new-convolution"
    w = cstate[f"convs.e{detail['edge']}.weight"]
    c = w.shape[0]
    assert torch.equal(w[:, :, 1, 1], torch.eye(c)) and w.abs().sum() == c
    key = f"bns.v{detail['vertex']}"
    var, mean = cstate[f"{key}.running_var"], cstate[f"{key}.running_mean"]
    assert (var > 0).all() and (mean > 0).all()  # the statistics of a ReLU's output
    torch.testing.assert_close(cstate[f"{key}.weight"], torch.sqrt(var + 1e-5))
    torch.testing.assert_close(cstate[f"{key}.bias"], mean)


def test_a_batch_norm_relu_inserted_after_a_convolution_takes_over_its_consumer_batch_norm():
    """INSERT-ONE-TO-ONE / INSERT-CONVOLUTION (stride 1) with a BN-ReLU vertex w on u -conv-> v, where v
    (BN-ReLU) has no other input: w takes v's batch norm and v's becomes the identity of a ReLU output."""
    dna = three_convs()
    state = trained(dna, 12)
    x = torch.randn(4, *SHAPE)
    for new_edge in (Edge(9, 8, 2, EdgeType.IDENTITY),
                     Edge(9, 8, 2, EdgeType.CONV, channels=6, kernel=(3, 3), stride=1)):
        moved = dataclasses.replace(dna.edge(5), dst=8)  # u=1 -conv e5-> w=8 -new-> v=2
        child = dna.replace(vertices=dna.vertices + (Vertex(8, VertexType.BN_RELU),),
                            edges=tuple(moved if e.id == 5 else e for e in dna.edges) + (new_edge,),
                            next_id=10).validate()
        cstate, report = preserve_function(dna, state, child, noise=0.0)
        assert report["exact"], report["changes"]
        assert (logits(child, cstate, x) - logits(dna, state, x)).abs().max().item() < 1e-4
        for f in ("weight", "bias", "running_mean", "running_var"):
            torch.testing.assert_close(cstate[f"bns.v8.{f}"], state[f"bns.v2.{f}"])
        var, mean = cstate["bns.v2.running_var"], cstate["bns.v2.running_mean"]
        assert (mean > 0).all()
        torch.testing.assert_close(cstate["bns.v2.weight"], torch.sqrt(var + 1e-5))
        torch.testing.assert_close(cstate["bns.v2.bias"], mean)


def test_a_trained_gate_of_either_sign_is_not_taken_for_a_non_negative_input():
    """v1 (BN-ReLU) reaches the linear output through a gated skip trained to a negative value: a
    BN-ReLU inserted after the output reads a signed sum and must not be reported exact."""
    dna = three_convs(skip=True)
    dna = dna.with_edges(dataclasses.replace(e, gate=True) if e.id == 7 else e for e in dna.edges)
    six = Edge(6, 2, 3, EdgeType.IDENTITY)  # out = v2 + gate * v1: both ReLU outputs, the gate signed
    dna = dna.with_edges(six if e.id == 6 else e for e in dna.edges).validate()
    state = trained(dna, 13)
    state["gates.e7"] = torch.tensor([-1.5])
    x = torch.randn(4, *SHAPE)
    # a new BN-ReLU vertex behind the gated sum
    tail = Edge(9, 3, 8, EdgeType.IDENTITY)
    child = dna.replace(vertices=dna.vertices + (Vertex(8, VertexType.BN_RELU),), edges=dna.edges + (tail,),
                        output_vertex=8, next_id=10).validate()
    cstate, report = preserve_function(dna, state, child, noise=0.0)
    diff = (logits(child, cstate, x) - logits(dna, state, x)).abs().max().item()
    assert not report["exact"] and diff > 1e-3


def test_larger_filter_is_zero_padded():
    dna = three_convs()
    state = trained(dna, 5)
    child, detail = larger_filter(dna, random.Random(2), MutationConfig())
    cstate, report = preserve_function(dna, state, child, noise=0.0)
    assert report["exact"]
    old, new = state[f"convs.e{detail['edge']}.weight"], cstate[f"convs.e{detail['edge']}.weight"]
    (kh, kw), (nh, nw) = detail["from"], detail["to"]
    oh, ow = (nh - kh) // 2, (nw - kw) // 2
    torch.testing.assert_close(new[:, :, oh:oh + kh, ow:ow + kw], old)
    assert new.abs().sum() == pytest.approx(old.abs().sum().item())


def test_what_cannot_be_preserved_falls_back_to_the_paper():
    dna = three_convs(skip=True)
    state = trained(dna, 6)
    stride = dataclasses.replace(dna.edge(5), stride=1)
    child = dna.with_edges(stride if e.id == 5 else e for e in dna.edges)
    cstate, report = preserve_function(dna, state, child, noise=0.0)
    assert not report["exact"]
    assert report["changes"] == [{"kind": "stride", "ids": [5], "preserved": False}]
    paper = build_model(child)
    inherit_weights(paper, state)
    for name, t in paper.state_dict().items():  # same shapes everywhere: the paper copies them all
        torch.testing.assert_close(cstate[name], t)
    # fewer channels: the shrunk layer is not built here; it keeps the paper's fresh weights
    fewer = dataclasses.replace(dna.edge(4), channels=2)
    child = dna.with_edges(fewer if e.id == 4 else e for e in dna.edges)
    cstate, report = preserve_function(dna, state, child, noise=0.0)
    assert not report["exact"] and "convs.e4.weight" not in report["built"]
    assert report["changes"][0]["kind"] == "fewer-channels" and not report["changes"][0]["preserved"]


def test_widening_into_a_skip_that_would_carry_the_copies_is_not_exact():
    """v1 (4 channels) feeds the 5-channel output through a skip: a 5th channel of v1 would leak in."""
    dna = three_convs(skip=True)
    state = trained(dna, 7)
    wide = dataclasses.replace(dna.edge(4), channels=8)
    child = dna.with_edges(wide if e.id == 4 else e for e in dna.edges)
    cstate, report = preserve_function(dna, state, child, noise=0.0)
    x = torch.randn(3, *SHAPE)
    assert not report["exact"]
    assert (logits(child, cstate, x) - logits(dna, state, x)).abs().max().item() > 1e-3


def test_mutation_verdicts_name_what_kept_the_function():
    dna = three_convs()
    state = trained(dna, 8)
    wide, w = widen(dna, random.Random(1), MutationConfig())
    skip = Edge(wide.next_id, 1, 3, EdgeType.IDENTITY, skip=True)
    child = wide.replace(edges=wide.edges + (skip,), next_id=wide.next_id + 1)
    records = [{"name": "WIDEN", "detail": w}, {"name": "ADD-SKIP", "detail": {"edge": skip.id}}]
    _, report = preserve_function(dna, state, child, noise=0.0, records=records)
    assert not report["exact"]
    assert report["mutations"] == [{"name": "WIDEN", "preserved": w["edge"] != 6},
                                   {"name": "ADD-SKIP", "preserved": False}]


def test_public_name_and_arguments():
    assert evo.preserve_function is preserve_function
    dna = three_convs()
    with pytest.raises(ValueError, match="noise"):
        preserve_function(dna, trained(dna, 0), dna, noise=-1)
    state, report = preserve_function(dna, trained(dna, 0), dna)
    assert report["exact"] and report["changes"] == []
    assert set(state) == set(build_model(dna).state_dict())


def test_the_search_space_seam_inherits_preserving_the_function():
    space = evo.search_space("real2017")
    dna = three_convs()
    state = trained(dna, 10)
    child, records = space.mutate(dna, random.Random(0), config={"allowed": ["DEEPEN"]})
    net = space.build(child)
    summary = space.inherit(net, state, parent=dna, child=child, mutations=records,
                            inheritance="function-preserving", noise=0.0)
    assert summary["mode"] == "function-preserving" and summary["exact"]
    assert summary["preserved"] == ["DEEPEN"] and summary["not_preserved"] == []
    x = torch.randn(2, *SHAPE)
    net.eval()
    with torch.no_grad():
        assert (net(x) - logits(dna, state, x)).abs().max().item() < 1e-4
    paper = space.inherit(space.build(child), state, parent=dna, child=child, mutations=records)
    assert set(paper) == {"copied", "fresh", "mismatched"}  # the paper's rule stays the default
