"""Parameters and forward FLOPs of a cell-space network, from its genome alone (pure Python).

The convention is that of ``evo.genome.real2017.flops`` and ``torch.utils.flop_counter.FlopCounterMode``:
convolutions (depthwise ones by their groups) and the classifier count, a multiply-add is 2 FLOPs;
batch norm, ReLU, pooling, sums and concatenations are not counted.  Parameters are convolution
kernels (no biases), batch-norm scale and shift, and the classifier's weights and bias.

Every operation follows ``evo.network.amoebanet`` (see its docstring); both read the shapes of
:func:`evo.genome.amoebanet.stack.plan_stack`.
"""

from __future__ import annotations

from typing import Sequence

from evo.genome.amoebanet.genome import INPUTS, Genome
from evo.genome.amoebanet.stack import CellPlan, StackPlan, plan_stack, reduced

__all__ = ["count_flops", "count_params", "count_train_flops", "op_cost", "op_depth", "stack_cost", "stack_depth"]

#: kernel size of each separable convolution (dil_sep_3x3 has dilation 2)
SEP_KERNELS = {"sep_3x3": 3, "sep_5x5": 5, "sep_7x7": 7, "dil_sep_3x3": 3}


def _conv(cin: int, cout: int, kh: int, kw: int, hw: int, groups: int = 1) -> tuple[int, int]:
    """(FLOPs, weights) of one bias-free convolution with ``hw`` output pixels."""
    weights = cout * (cin // groups) * kh * kw
    return 2 * weights * hw, weights


def op_cost(op: str, channels: int, size: tuple[int, int], stride: int) -> tuple[int, int]:
    """(FLOPs, parameters) of operation ``op`` on ``channels`` x ``size`` with ``stride``."""
    c = channels
    h, w = size
    ho, wo = (reduced(h), reduced(w)) if stride == 2 else (h, w)
    if op in ("avg_pool_3x3", "max_pool_3x3"):
        return 0, 0
    if op == "identity":
        if stride == 1:
            return 0, 0
        f, p = _conv(c, c, 1, 1, ho * wo)  # ReLU-1x1 conv (stride 2)-BN
        return f, p + 2 * c
    if op in SEP_KERNELS:
        k = SEP_KERNELS[op]
        f = p = 0
        for _ in range(2):  # applied twice, the first with the stride
            f1, p1 = _conv(c, c, k, k, ho * wo, groups=c)
            f2, p2 = _conv(c, c, 1, 1, ho * wo)
            f, p = f + f1 + f2, p + p1 + p2 + 2 * c
        return f, p
    if op == "conv_1x7_7x1":
        f1, p1 = _conv(c, c, 1, 7, h * wo)
        f2, p2 = _conv(c, c, 7, 1, ho * wo)
        return f1 + f2, p1 + p2 + 2 * c
    raise ValueError(f"unknown op {op!r}")


def _factorized(cin: int, cout: int, out_hw: int) -> tuple[int, int]:
    """Factorized reduction: two stride-2 1x1 convolutions (one shifted by a pixel) concatenated, BN."""
    half = cout // 2
    f1, p1 = _conv(cin, half, 1, 1, out_hw)
    f2, p2 = _conv(cin, cout - half, 1, 1, out_hw)
    return f1 + f2, p1 + p2 + 2 * cout


def _pre(kind: str, cin: int, cout: int, in_shape: tuple[int, int, int]) -> tuple[int, int]:
    _, h, w = in_shape
    if kind == "factorized":
        return _factorized(cin, cout, reduced(h) * reduced(w))
    if kind == "conv1x1":
        f, p = _conv(cin, cout, 1, 1, h * w)
        return f, p + 2 * cout
    return 0, 0


def cell_cost(genome: Genome, cell: CellPlan) -> tuple[int, int]:
    """(FLOPs, parameters) of one cell of the stack: preprocessing, operations, output adaptation."""
    c = cell.channels
    f0, p0 = _pre(cell.pre0, cell.in_shapes[0][0], c, cell.in_shapes[0])
    f1, p1 = _pre(cell.pre1, cell.in_shapes[1][0], c, cell.in_shapes[1])
    flops, params = f0 + f1, p0 + p1
    for combo in genome.cell(cell.kind).combinations:
        for state, op in zip(combo.inputs, combo.ops):
            size = cell.in_size if state < INPUTS else cell.out_size
            f, p = op_cost(op, c, size, cell.stride(state))
            flops, params = flops + f, params + p
    if cell.reduction:
        ho, wo = cell.out_size
        for state in cell.concat:
            if state < INPUTS:  # an unused cell input is reduced before the concatenation
                f, p = _factorized(c, c, ho * wo)
                flops, params = flops + f, params + p
    return flops, params


def stack_cost(genome: Genome, plan: StackPlan) -> tuple[int, int]:
    """(forward FLOPs per image, parameters) of the network of ``plan``."""
    cin, h, w = plan.input_shape
    flops, params = _conv(cin, plan.stem_channels, 3, 3, h * w)
    params += 2 * plan.stem_channels
    for cell in plan.cells:
        f, p = cell_cost(genome, cell)
        flops, params = flops + f, params + p
    flops += 2 * plan.head_in * plan.num_classes
    params += plan.head_in * plan.num_classes + plan.num_classes
    return flops, params


def count_flops(genome: Genome, N: int, F: int, input_shape: Sequence[int] | None = None) -> int:
    """Forward FLOPs per image of the network ``genome`` builds (multiply-add = 2)."""
    return stack_cost(genome, plan_stack(genome, N, F, input_shape))[0]


def count_params(genome: Genome, N: int, F: int, input_shape: Sequence[int] | None = None) -> int:
    """Trainable parameters of the network ``genome`` builds."""
    return stack_cost(genome, plan_stack(genome, N, F, input_shape))[1]


def count_train_flops(genome: Genome, N: int, F: int, input_shape: Sequence[int] | None = None) -> int:
    """FLOPs of one training image: the forward pass, the weight gradients (as much again) and the
    input gradients (as much again), except the stem's input gradient (the image needs none)."""
    plan = plan_stack(genome, N, F, input_shape)
    forward = stack_cost(genome, plan)[0]
    cin, h, w = plan.input_shape
    stem = _conv(cin, plan.stem_channels, 3, 3, h * w)[0]
    return 3 * forward - stem


def op_depth(op: str, stride: int) -> int:
    """Weighted layers an operation puts on a path: a separable convolution applied twice 2,
    1x7-then-7x1 2, a strided identity (1x1 conv) 1, pooling and identity 0."""
    if op in SEP_KERNELS or op == "conv_1x7_7x1":
        return 2
    if op == "identity":
        return 1 if stride == 2 else 0
    return 0


def stack_depth(genome: Genome, plan: StackPlan) -> int:
    """The most weighted layers on a path from the image to the classifier (stem and 1x1s included)."""
    d_pp = d_p = 1  # the stem convolution
    for cell in plan.cells:
        depth = [d_pp + (cell.pre0 != "none"), d_p + 1]
        for combo in genome.cell(cell.kind).combinations:
            depth.append(max(depth[s] + op_depth(op, cell.stride(s)) for s, op in zip(combo.inputs, combo.ops)))
        out = max(depth[s] + (1 if cell.reduction and s < INPUTS else 0) for s in cell.concat)
        d_pp, d_p = d_p, out
    return d_p
