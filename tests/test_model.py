import random

import pytest
import torch

from evo.genome.real2017.dna import seed_dna
from evo.network.real2017 import build_model, inherit_weights
from evo.genome.real2017.mutations import MutationConfig, mutate
from genomes import evolved, small_convnet


def test_seed_model_is_pool_plus_linear():
    m = build_model(seed_dna())
    assert [n for n, _ in m.named_parameters()] == ["head.weight", "head.bias"]
    x = torch.randn(4, 3, 32, 32)
    expected = m.head(x.mean(dim=(2, 3)))
    torch.testing.assert_close(m(x), expected)


def test_convs_have_no_bias_and_he_init():
    m = build_model(small_convnet().replace(input_shape=(3, 32, 32)))
    for conv in m.convs.values():
        assert conv.bias is None
    w = m.convs["e5"].weight  # 8 -> 16 channels, 5x3
    fan_in = 8 * 5 * 3
    assert w.std().item() == pytest.approx((2 / fan_in) ** 0.5, rel=0.25)


def test_skip_is_resized_and_padded():
    m = build_model(small_convnet())
    x = torch.randn(2, 3, 32, 32)
    out = m.features(x)
    assert out.shape == (2, 16, 16, 16)
    assert m(x).shape == (2, 10)


def test_random_evolved_dnas_build_and_run():
    for s in range(30):
        d = evolved(s)
        m = build_model(d)
        y = m(torch.randn(2, *d.input_shape))
        assert y.shape == (2, 10)
        assert torch.isfinite(y).all()
        # the builder's parameter count is the DNA's
        from evo.genome.real2017.flops import count_params
        assert sum(p.numel() for p in m.parameters()) == count_params(d)


def test_identity_mutation_inherits_everything_and_same_function():
    d = evolved(3)
    parent = build_model(d)
    parent.train()
    parent(torch.randn(8, *d.input_shape))  # move the BN running statistics
    parent.eval()
    child_dna, _ = mutate(d, random.Random(0), config=MutationConfig(allowed=["IDENTITY"]))
    child = build_model(child_dna).eval()
    report = inherit_weights(child, parent.state_dict())
    assert not report["fresh"] and not report["mismatched"]
    x = torch.randn(3, *d.input_shape)
    torch.testing.assert_close(child(x), parent(x))


def test_filter_size_loses_only_the_changed_filter():
    d = small_convnet()
    parent = build_model(d)
    child_dna, rec = mutate(d, random.Random(2), config=MutationConfig(allowed=["FILTER-SIZE"]))
    changed = rec[0]["detail"]["edge"]
    child = build_model(child_dna)
    report = inherit_weights(child, parent.state_dict())
    assert report["mismatched"] == [f"convs.e{changed}.weight"]
    assert not report["fresh"]
    for name, t in child.state_dict().items():
        if name != f"convs.e{changed}.weight":
            assert torch.equal(t, parent.state_dict()[name]), name


def test_insert_convolution_keeps_old_tensors_and_inits_the_new_one():
    d = small_convnet()
    parent = build_model(d)
    child_dna, rec = mutate(d, random.Random(5), config=MutationConfig(allowed=["INSERT-CONVOLUTION"]))
    child = build_model(child_dna)
    report = inherit_weights(child, parent.state_dict())
    new_edge = rec[0]["detail"]["edge"]
    assert f"convs.e{new_edge}.weight" in report["fresh"]
    assert set(parent.state_dict()) <= set(report["copied"])


def test_batchnorm_running_statistics_are_inherited():
    d = small_convnet()
    parent = build_model(d)
    parent.train()
    for _ in range(3):
        parent(torch.randn(16, 3, 32, 32) * 3 + 1)
    child = build_model(d)
    inherit_weights(child, parent.state_dict())
    assert torch.equal(child.bns["v1"].running_mean, parent.bns["v1"].running_mean)
    assert child.bns["v1"].num_batches_tracked.item() == 3
