"""Build the network of a cell-space genome (NASNet, Zoph et al. 2018; Real et al. 2019) in torch.

The outer stack and the shapes come from :func:`evo.genome.amoebanet.stack.plan_stack`.  The
operations follow NASNet's ReLU-conv-BN order (as DARTS re-implemented them in PyTorch):

* ``identity``: nothing at stride 1; ReLU-1x1 conv (stride 2)-BN at stride 2;
* ``sep_3x3`` / ``sep_5x5`` / ``sep_7x7``: ReLU, depthwise k x k (with the stride), pointwise
  1x1, BN, applied twice (the second time with stride 1);
* ``dil_sep_3x3``: the same with a 3x3 depthwise kernel of dilation 2;
* ``avg_pool_3x3`` (padding not counted) and ``max_pool_3x3``, padding 1;
* ``conv_1x7_7x1``: ReLU, 1x7 conv (stride along the width), 7x1 conv (stride along the height), BN.

Convolutions have no bias.  A factorized reduction is ReLU, two stride-2 1x1 convolutions (the
second on the input shifted by one pixel) concatenated, BN.

Tensor names depend only on the position in the stack and the operation there
(``cells.<i>.ops.c<k><a|b>_<op>.*``), so :func:`inherit` is a name-and-shape match: a position whose
operation changed starts fresh.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from evo.genome.amoebanet.genome import Genome
from evo.genome.amoebanet.stack import CellPlan, StackPlan, plan_stack
from evo.network.weights import copy_matching

__all__ = ["CellNet", "FactorizedReduce", "build", "inherit", "make_op"]


def _relu_conv_bn(cin: int, cout: int, kernel: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.ReLU(), nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=False),
                         nn.BatchNorm2d(cout))


def _sep_conv(c: int, k: int, stride: int, dilation: int = 1) -> nn.Sequential:
    """A depthwise-separable convolution applied twice (NASNet's ``_stacked_separable_conv``)."""
    layers: list[nn.Module] = []
    for s in (stride, 1):
        layers += [nn.ReLU(),
                   nn.Conv2d(c, c, k, stride=s, padding=dilation * (k // 2), dilation=dilation, groups=c, bias=False),
                   nn.Conv2d(c, c, 1, bias=False),
                   nn.BatchNorm2d(c)]
    return nn.Sequential(*layers)


class FactorizedReduce(nn.Module):
    """Halve the spatial size and set the channels: two stride-2 1x1 convolutions, one shifted by a pixel."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        half = cout // 2
        self.conv1 = nn.Conv2d(cin, half, 1, stride=2, bias=False)
        self.conv2 = nn.Conv2d(cin, cout - half, 1, stride=2, bias=False)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(x)
        shifted = F.pad(x, (0, 1, 0, 1))[:, :, 1:, 1:]
        return self.bn(torch.cat([self.conv1(x), self.conv2(shifted)], dim=1))


def make_op(op: str, channels: int, stride: int) -> nn.Module:
    """The module of operation ``op`` (a name of ``evo.genome.amoebanet.genome.OPS``) on ``channels``."""
    c = channels
    if op == "identity":
        return nn.Identity() if stride == 1 else _relu_conv_bn(c, c, 1, stride)
    if op in ("sep_3x3", "sep_5x5", "sep_7x7"):
        return _sep_conv(c, int(op[-1]), stride)
    if op == "dil_sep_3x3":
        return _sep_conv(c, 3, stride, dilation=2)
    if op == "avg_pool_3x3":
        return nn.AvgPool2d(3, stride=stride, padding=1, count_include_pad=False)
    if op == "max_pool_3x3":
        return nn.MaxPool2d(3, stride=stride, padding=1)
    if op == "conv_1x7_7x1":
        return nn.Sequential(nn.ReLU(),
                             nn.Conv2d(c, c, (1, 7), stride=(1, stride), padding=(0, 3), bias=False),
                             nn.Conv2d(c, c, (7, 1), stride=(stride, 1), padding=(3, 0), bias=False),
                             nn.BatchNorm2d(c))
    raise ValueError(f"unknown amoebanet op {op!r}")


def _pre(kind: str, cin: int, cout: int) -> nn.Module:
    if kind == "factorized":
        return FactorizedReduce(cin, cout)
    if kind == "conv1x1":
        return _relu_conv_bn(cin, cout, 1, 1)
    return nn.Identity()


class Cell(nn.Module):
    """One normal or reduction cell: adapt both inputs, five pairwise combinations, concatenate the unused."""

    def __init__(self, genome: Genome, plan: CellPlan) -> None:
        super().__init__()
        c = plan.channels
        self.pre0 = _pre(plan.pre0, plan.in_shapes[0][0], c)
        self.pre1 = _pre(plan.pre1, plan.in_shapes[1][0], c)
        self.ops = nn.ModuleDict()
        self._plan: list[tuple[int, str, int, str]] = []
        for k, combo in enumerate(genome.cell(plan.kind).combinations):
            keys = []
            for side, state, op in zip("ab", combo.inputs, combo.ops):
                key = f"c{k}{side}_{op}"
                self.ops[key] = make_op(op, c, plan.stride(state))
                keys.append(key)
            self._plan.append((combo.inputs[0], keys[0], combo.inputs[1], keys[1]))
        self.concat = list(plan.concat)
        self.reduce = nn.ModuleDict({f"s{s}": FactorizedReduce(c, c) for s in self.concat
                                     if plan.reduction and s < 2})

    def forward(self, s0: torch.Tensor, s1: torch.Tensor) -> torch.Tensor:
        states = [self.pre0(s0), self.pre1(s1)]
        for ia, ka, ib, kb in self._plan:
            states.append(self.ops[ka](states[ia]) + self.ops[kb](states[ib]))
        outs = [self.reduce[f"s{s}"](states[s]) if f"s{s}" in self.reduce else states[s] for s in self.concat]
        return torch.cat(outs, dim=1)


class CellNet(nn.Module):
    """The fixed stack: stem, N normal, reduction, N normal, reduction, N normal, pooling, linear."""

    def __init__(self, genome: Genome, plan: StackPlan) -> None:
        super().__init__()
        self.genome = genome
        self.plan = plan
        self.stem = nn.Sequential(nn.Conv2d(plan.input_shape[0], plan.stem_channels, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(plan.stem_channels))
        self.cells = nn.ModuleList(Cell(genome, cp) for cp in plan.cells)
        self.head = nn.Linear(plan.head_in, plan.num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Activations of the last cell (before pooling)."""
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1)
        return s1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean(dim=(2, 3)))


def build(space: Any, genome: Genome) -> CellNet:
    """A freshly initialised network for ``genome`` with the space's options ``N`` and ``F``."""
    space.validate(genome)
    return CellNet(genome, plan_stack(genome, space.options["N"], space.options["F"]))


def inherit(space: Any, child_net: nn.Module, parent_state: Mapping[str, torch.Tensor],
            **_options: Any) -> dict[str, Any]:
    """``space.inherit(...)`` for the cell space: every parent tensor whose name and shape match is
    copied, the rest stays fresh (:func:`evo.network.weights.copy_matching`, the paper's inheritance).
    Options of other spaces' inheritance are accepted and ignored."""
    return copy_matching(child_net, parent_state)
