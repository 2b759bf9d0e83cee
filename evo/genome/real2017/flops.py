"""Parameters and FLOPs of an individual, from its DNA alone (pure Python).

The paper's cost of an individual (Real et al. 2017, section 4) is its training FLOPs per
step times the steps, plus the FLOPs of its single validation pass.  FLOPs here are those
of convolutions and the classifier (a multiply-add counts as 2), the convention of
``torch.utils.flop_counter.FlopCounterMode``; batch norm, ReLU, pooling and sums are a
few percent at most and are not counted.

A training step costs the forward pass plus the backward pass: the gradient of each
weight (as much as the forward) and the gradient of each input (as much again), except
where the input depends on no weight (the image, or identity paths from it).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from evo.genome.real2017.dna import DNA, edge_output_shape

__all__ = ["Cost", "count_flops", "count_params"]


@dataclasses.dataclass(frozen=True)
class Cost:
    """Size and compute of one individual; FLOPs are per image unless named per step."""

    params: int
    forward_flops: int
    train_flops_per_image: int
    batch_size: int
    train_flops_per_step: int
    steps: int
    validation_images: int
    total_flops: int

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def count_params(dna: DNA) -> int:
    """Trainable parameters: convolution kernels, batch-norm scale and shift, classifier."""
    shapes = dna.shapes()
    n = 0
    for e in dna.conv_edges:
        kh, kw = e.kernel or (1, 1)
        n += shapes[e.src][0] * int(e.channels or 0) * kh * kw
    for v in dna.vertices:
        if v.type.value == "BN_RELU" and v.id != dna.input_vertex:
            n += 2 * shapes[v.id][0]
    c_out = shapes[dna.output_vertex][0]
    return n + c_out * dna.num_classes + dna.num_classes


def count_flops(
    dna: DNA,
    input_shape: tuple[int, int, int] | None = None,
    *,
    batch_size: int = 50,
    steps: int = 0,
    validation_images: int = 0,
) -> Cost:
    """The paper's cost accounting for ``dna`` on images of ``input_shape`` (C, H, W).

    ``total_flops`` = training FLOPs per step x ``steps`` + forward FLOPs x ``validation_images``.
    """
    if input_shape is not None and tuple(input_shape) != tuple(dna.input_shape):
        dna = dna.replace(input_shape=tuple(int(s) for s in input_shape))
    shapes = dna.shapes()
    # does the activation at a vertex depend on trainable weights (so needs a gradient)?
    grad: dict[int, bool] = {}
    for vid in dna.topological_order():
        ins = dna.in_edges(vid)
        has_bn = dna.vertex(vid).type.value == "BN_RELU" and vid != dna.input_vertex
        grad[vid] = has_bn or any(e.is_conv or grad[e.src] for e in ins)
    forward = 0
    backward = 0
    for e in dna.conv_edges:
        kh, kw = e.kernel or (1, 1)
        cin = shapes[e.src][0]
        cout, hout, wout = edge_output_shape(e, shapes[e.src])
        f = 2 * cin * cout * kh * kw * hout * wout
        forward += f
        backward += 2 * f if grad[e.src] else f
    head = 2 * shapes[dna.output_vertex][0] * dna.num_classes
    forward += head
    backward += 2 * head if grad[dna.output_vertex] else head
    train_image = forward + backward
    per_step = train_image * batch_size
    return Cost(
        params=count_params(dna),
        forward_flops=forward,
        train_flops_per_image=train_image,
        batch_size=batch_size,
        train_flops_per_step=per_step,
        steps=steps,
        validation_images=validation_images,
        total_flops=per_step * steps + forward * validation_images,
    )
