"""The fixed outer stack of the cell space (NASNet CIFAR; Real et al. 2019), planned from the genome alone.

``stem conv 3x3 (STEM_MULTIPLIER * F channels) -> N normal cells -> reduction -> N normal ->
reduction -> N normal -> global average pooling -> linear``.  The cells of stage ``s`` have
``F * 2**s`` channels per hidden state; a reduction cell already has the doubled count.

Each cell receives h_{i-2} and h_{i-1} (the first cell gets the stem's output twice) and brings
them to its channel count (NASNet's ``_cell_base``): h_{i-1} by ReLU-1x1 conv-BN; h_{i-2} by a
factorized reduction when its spatial size is larger (the previous cell was a reduction), else by
ReLU-1x1 conv-BN when its channels differ, else unchanged.  Its output concatenates its unused
hidden states; in a reduction cell an unused cell input is brought down by a factorized
reduction first.  Stride 2 maps a size ``h`` to ``ceil(h / 2)`` for every operation.

The network builder (``evo.network.amoebanet``) and the FLOPs/parameter counts read this one
plan, so the two cannot disagree about a shape.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

from evo.genome.amoebanet.genome import INPUTS, Genome
from evo.genome.space import GenomeError

__all__ = ["STEM_MULTIPLIER", "CellPlan", "StackPlan", "check_options", "plan_stack", "reduced"]

#: the stem's channels are this many times F (NASNet's CIFAR stem)
STEM_MULTIPLIER = 3
#: number of reduction cells in the stack
REDUCTIONS = 2

Shape = tuple[int, int, int]


def reduced(size: int) -> int:
    """Spatial size after a stride-2 operation (every operation of the space pads to ``ceil(size / 2)``)."""
    return (size + 1) // 2


@dataclasses.dataclass(frozen=True)
class CellPlan:
    """One cell of the stack: its kind, channels, the shapes it receives and how it adapts them.

    ``pre0`` is ``"factorized"``, ``"conv1x1"`` or ``"none"`` (for h_{i-2}); ``pre1`` is
    always ``"conv1x1"`` (for h_{i-1}).  ``concat`` lists the hidden states of the output.
    """

    index: int
    kind: str
    channels: int
    in_shapes: tuple[Shape, Shape]
    pre0: str
    pre1: str
    concat: tuple[int, ...]

    @property
    def reduction(self) -> bool:
        return self.kind == "reduction"

    @property
    def in_size(self) -> tuple[int, int]:
        """(height, width) of the two cell inputs after the preprocessing (hidden states 0 and 1)."""
        return self.in_shapes[1][1], self.in_shapes[1][2]

    @property
    def out_size(self) -> tuple[int, int]:
        """(height, width) of the combinations' outputs and of the cell's output."""
        h, w = self.in_size
        return (reduced(h), reduced(w)) if self.reduction else (h, w)

    @property
    def out_shape(self) -> Shape:
        return (self.channels * len(self.concat), *self.out_size)

    def stride(self, state: int) -> int:
        """The stride of an operation applied to hidden state ``state`` in this cell."""
        return 2 if self.reduction and state < INPUTS else 1


@dataclasses.dataclass(frozen=True)
class StackPlan:
    """The whole network: input shape, stem channels, every cell, the classifier's input and output."""

    input_shape: Shape
    stem_channels: int
    cells: tuple[CellPlan, ...]
    num_classes: int

    @property
    def head_in(self) -> int:
        """Channels entering global pooling and the linear classifier."""
        return self.cells[-1].out_shape[0] if self.cells else self.stem_channels


def check_options(N: Any, F: Any) -> None:
    """Raise :class:`GenomeError` unless ``N`` >= 1 and ``F`` >= 2 are ints (a factorized reduction halves F)."""
    if isinstance(N, bool) or not isinstance(N, int) or N < 1:
        raise GenomeError(f"amoebanet option N (normal cells per stage) must be an int >= 1, got {N!r}; "
                          "set it with --space-opt N=3")
    if isinstance(F, bool) or not isinstance(F, int) or F < 2:
        raise GenomeError(f"amoebanet option F (filters of the first stage) must be an int >= 2, got {F!r}; "
                          "set it with --space-opt F=24")


def plan_stack(genome: Genome, N: int, F: int, input_shape: Sequence[int] | None = None) -> StackPlan:
    """The cell-by-cell plan of the network ``genome`` builds with ``N`` cells per stage and ``F`` filters."""
    check_options(N, F)
    shape = tuple(int(s) for s in (genome.input_shape if input_shape is None else input_shape))
    if len(shape) != 3 or min(shape) < 1:
        raise GenomeError(f"input_shape must be (channels, height, width) of positive ints, got {shape!r}")
    stem = STEM_MULTIPLIER * F
    kinds: list[tuple[str, int]] = []
    for stage in range(REDUCTIONS + 1):
        if stage:
            kinds.append(("reduction", F * 2 ** stage))
        kinds.extend(("normal", F * 2 ** stage) for _ in range(N))
    prev_prev: Shape = (stem, shape[1], shape[2])
    prev: Shape = prev_prev
    cells = []
    for i, (kind, channels) in enumerate(kinds):
        if prev_prev[1:] != prev[1:]:
            pre0 = "factorized"
        elif prev_prev[0] != channels:
            pre0 = "conv1x1"
        else:
            pre0 = "none"
        cell = CellPlan(i, kind, channels, (prev_prev, prev), pre0, "conv1x1", tuple(genome.cell(kind).unused()))
        cells.append(cell)
        prev_prev, prev = prev, cell.out_shape
    return StackPlan(shape, stem, tuple(cells), genome.num_classes)  # type: ignore[arg-type]
