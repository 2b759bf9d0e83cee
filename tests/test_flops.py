import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from evo.genome.real2017.dna import seed_dna
from evo.genome.real2017.flops import count_flops
from evo.network.real2017 import build_model
from genomes import evolved, small_convnet


def measured(model, shape, backward=False):
    x = torch.randn(2, *shape)
    with FlopCounterMode(display=False) as fc:
        y = model(x)
        if backward:
            y.sum().backward()
    return fc.get_total_flops() / 2


def test_forward_flops_match_torch_counter_on_evolved_dnas():
    checked = 0
    for s in range(40):
        d = evolved(s, steps=30)
        cost = count_flops(d)
        m = build_model(d)
        assert cost.forward_flops == pytest.approx(measured(m, d.input_shape), rel=0.02)
        assert cost.train_flops_per_image == pytest.approx(measured(m, d.input_shape, backward=True), rel=0.02)
        checked += d.depth() > 0
    assert checked >= 20  # most of them really have convolutions


def test_by_hand():
    d = small_convnet()
    c = count_flops(d, batch_size=50, steps=100, validation_images=1000)
    conv1 = 2 * 3 * 8 * 9 * 32 * 32
    conv2 = 2 * 8 * 16 * 15 * 16 * 16
    head = 2 * 16 * 10
    assert c.forward_flops == conv1 + conv2 + head
    # conv1 reads the image: no input gradient
    assert c.train_flops_per_image == 2 * conv1 + 3 * conv2 + 3 * head
    assert c.total_flops == c.train_flops_per_image * 50 * 100 + c.forward_flops * 1000


def test_input_shape_override():
    d = seed_dna(input_shape=(3, 32, 32))
    assert count_flops(d, (3, 8, 8)).forward_flops == count_flops(d).forward_flops  # pooling first
    conv = small_convnet()
    assert count_flops(conv, (3, 16, 16)).forward_flops < count_flops(conv).forward_flops
