"""The amoebanet cell space's network (torch): every operation, both cells, random evolved genomes,
FLOPs and parameters against torch's own counts, forward/backward, inheritance."""

import random

import pytest

torch = pytest.importorskip("torch")
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

import evo  # noqa: E402
from evo.genome.amoebanet.cost import op_cost  # noqa: E402
from evo.genome.amoebanet.genome import OPS, Cell, Combination, Genome  # noqa: E402
from evo.genome.amoebanet.known import AMOEBANET_A  # noqa: E402
from evo.genome.amoebanet.stack import plan_stack  # noqa: E402
from evo.genome.space import GenomeError  # noqa: E402
from evo.network.amoebanet import CellNet, FactorizedReduce, make_op  # noqa: E402


def counted_flops(module, *inputs, backward=False):
    """FLOPs torch's counter sees for one forward (and, if asked, backward) pass."""
    with FlopCounterMode(display=False) as counter:
        out = module(*inputs)
        if backward:
            out.sum().backward()
    return counter.get_total_flops(), out


def n_params(module):
    return sum(p.numel() for p in module.parameters())


def evolved(seed, steps, space):
    rng = random.Random(seed)
    g = space.seed((3, 32, 32), 10, rng)
    for _ in range(steps):
        g, _ = space.mutate(g, rng)
        space.validate(g)
    return g


def cell_outputs(net, x):
    """The output shape of every cell of ``net`` for input ``x``."""
    shapes = []
    hooks = [c.register_forward_hook(lambda m, i, o: shapes.append(tuple(o.shape[1:]))) for c in net.cells]
    try:
        y = net(x)
    finally:
        for h in hooks:
            h.remove()
    return shapes, y


@pytest.mark.parametrize("op", OPS)
def test_every_operation_builds_with_its_cost(op):
    for stride in (1, 2):
        for size in ((8, 8), (7, 9)):
            m = make_op(op, 6, stride)
            flops, y = counted_flops(m, torch.randn(2, 6, *size))
            want = size if stride == 1 else tuple((s + 1) // 2 for s in size)
            assert tuple(y.shape) == (2, 6, *want)
            f, p = op_cost(op, 6, size, stride)
            assert flops == 2 * f and n_params(m) == p
    if op.startswith(("sep", "dil")):
        convs = [m for m in make_op(op, 6, 1).modules() if isinstance(m, torch.nn.Conv2d)]
        assert len(convs) == 4 and [c.groups for c in convs] == [6, 1, 6, 1]  # applied twice
        assert all(c.bias is None for c in convs)
        assert convs[0].dilation == ((2, 2) if op.startswith("dil") else (1, 1))
    if op != "identity" and "pool" not in op:
        assert isinstance(make_op(op, 6, 1)[0], torch.nn.ReLU)  # ReLU-conv-BN
        assert isinstance(make_op(op, 6, 1)[-1], torch.nn.BatchNorm2d)


def test_factorized_reduction_halves_any_size():
    for size in ((8, 8), (7, 5), (1, 1)):
        y = FactorizedReduce(5, 7)(torch.randn(2, 5, *size))
        assert tuple(y.shape) == (2, 7, (size[0] + 1) // 2, (size[1] + 1) // 2)


def test_both_cell_kinds_and_the_stack_match_the_plan():
    space = evo.search_space("amoebanet", N=2, F=4)
    net = space.build(AMOEBANET_A)
    assert isinstance(net, CellNet)
    plan = plan_stack(AMOEBANET_A, 2, 4)
    shapes, y = cell_outputs(net, torch.randn(2, 3, 32, 32))
    assert shapes == [c.out_shape for c in plan.cells]
    assert shapes[2] == (3 * 8, 16, 16) and shapes[5] == (3 * 16, 8, 8)  # the reduction cells: 2F, 4F
    assert tuple(y.shape) == (2, 10)
    assert n_params(net) == space.params(AMOEBANET_A)
    assert net.head.in_features == plan.head_in
    # the unused cell inputs of a reduction cell are brought down before the concatenation
    keep_inputs = Cell(tuple(Combination((k + 1, k + 1), ("sep_3x3", "max_pool_3x3")) for k in range(5)))
    g = Genome(keep_inputs, keep_inputs)
    assert keep_inputs.unused() == [0, 6]
    shapes, _ = cell_outputs(space.build(g), torch.randn(1, 3, 32, 32))
    assert shapes == [c.out_shape for c in plan_stack(g, 2, 4).cells]


def test_random_genomes_after_long_mutation_chains():
    space = evo.search_space("amoebanet", N=1, F=4)
    for seed in range(3):
        g = evolved(seed, 300, space)
        assert space.from_json(space.to_json(g)) == g
        net = space.build(g)
        flops, _ = counted_flops(net, torch.randn(2, 3, 32, 32))
        assert abs(flops / 2 - space.flops(g)) <= 0.02 * space.flops(g)
        assert n_params(net) == space.params(g)
        shapes, y = cell_outputs(net, torch.randn(1, 3, 32, 32))
        assert shapes == [c.out_shape for c in plan_stack(g, 1, 4).cells] and tuple(y.shape) == (1, 10)
    other = space.seed((1, 28, 28), 3, random.Random(9))
    flops, y = counted_flops(space.build(other), torch.randn(2, 1, 28, 28))
    assert tuple(y.shape) == (2, 3) and abs(flops / 2 - space.flops(other)) <= 0.02 * space.flops(other)


def test_train_flops_match_the_counter_without_grouped_convolutions():
    # torch's counter charges a grouped convolution's backward as if it were dense, so the
    # check uses ops without depthwise convolutions: pooling, identities and 1x7-then-7x1
    space = evo.search_space("amoebanet", N=1, F=4)
    cell = Cell((Combination((0, 1), ("conv_1x7_7x1", "identity")), Combination((2, 1), ("max_pool_3x3", "identity")),
                 Combination((3, 0), ("avg_pool_3x3", "conv_1x7_7x1")), Combination((4, 2), ("identity", "identity")),
                 Combination((5, 1), ("conv_1x7_7x1", "max_pool_3x3"))))
    g = Genome(cell, cell)
    flops, _ = counted_flops(space.build(g), torch.randn(2, 3, 32, 32), backward=True)
    assert abs(flops / 2 - space.train_flops(g)) <= 0.02 * space.train_flops(g)


def test_forward_backward_of_a_small_network():
    torch.manual_seed(0)
    space = evo.search_space("amoebanet", N=1, F=8)
    net = space.build(AMOEBANET_A)
    x, labels = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 3])
    loss = torch.nn.functional.cross_entropy(net(x), labels)
    loss.backward()
    assert torch.isfinite(loss)
    for name, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert any(p.grad.abs().sum() > 0 for p in net.cells[0].parameters())
    net.eval()
    with torch.no_grad():
        torch.testing.assert_close(net(x), net(x))


def test_inherit_copies_what_matches_by_name_and_shape():
    space = evo.search_space("amoebanet", N=1, F=4)
    parent = space.build(AMOEBANET_A).eval()
    # the same architecture: every tensor copied, the same function
    twin = space.build(AMOEBANET_A).eval()
    summary = space.inherit(twin, parent.state_dict(), parent=AMOEBANET_A, child=AMOEBANET_A, mutations=[])
    assert summary["fresh"] == [] and summary["mismatched"] == []
    assert set(summary["copied"]) == set(parent.state_dict())
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(twin(x), parent(x))
    # an op changed (normal cell, combination 0, first op): that op starts fresh, the rest is copied
    combo = AMOEBANET_A.normal.combinations[0]
    new = Combination(combo.inputs, ("sep_5x5", combo.ops[1]))
    child_genome = AMOEBANET_A.replace_cell("normal", AMOEBANET_A.normal.replace_combination(0, new))
    child = space.build(child_genome)
    summary = space.inherit(child, parent.state_dict())
    fresh = {n for n in child.state_dict() if ".ops.c0a_sep_5x5." in n}
    assert {n.split(".")[1] for n in fresh} == {"0", "2", "4"}  # the three normal cells of N=1
    assert set(summary["fresh"]) == fresh and summary["mismatched"] == []
    assert set(summary["copied"]) == set(child.state_dict()) - fresh
    torch.testing.assert_close(child.state_dict()["head.weight"], parent.state_dict()["head.weight"])
    with pytest.raises(GenomeError, match="expects a cell genome"):
        space.build(evo.search_space("real2017").seed((3, 32, 32), 10))
