"""Tests of evo.network.data.synthetic: the embedded task, deterministic, hard for linear models."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from evo.network.data import load_dataset, make_synthetic
from evo.network.train import TrainConfig, train

SMALL = dict(n_train=600, n_val=200, n_test=100)

pytestmark = pytest.mark.usefixtures("one_thread")


def _splits(d):
    return [d.train_x, d.train_y, d.val_x, d.val_y, d.test_x, d.test_y]


def test_synthetic_is_deterministic_and_seed_dependent():
    a = load_dataset("synthetic", **SMALL)
    b = load_dataset("synthetic", **SMALL)
    for ta, tb in zip(_splits(a), _splits(b)):
        assert torch.equal(ta, tb)
    assert a.train_x.dtype == torch.uint8 and a.train_y.dtype == torch.int64
    assert a.train_x.shape == (600, 3, 16, 16) and a.val_x.shape == (200, 3, 16, 16)
    assert a.test_x.shape == (100, 3, 16, 16)
    assert a.num_classes == 10 and a.input_shape == (3, 16, 16)
    c = load_dataset("synthetic", seed=1, **SMALL)
    assert not torch.equal(a.train_x, c.train_x)
    # another split seed: same images, divided differently
    s = load_dataset("synthetic", split_seed=1, **SMALL)
    assert not torch.equal(a.val_x, s.val_x)
    assert s.info["split_hash"] != a.info["split_hash"]
    x1, y1 = make_synthetic(1500, seed=3)
    x2, y2 = make_synthetic(1500, seed=3)
    assert np.array_equal(x1, x2) and np.array_equal(y1, y2)
    assert not np.array_equal(x1[:500], x1[1000:])  # chunks differ
    counts = torch.bincount(a.train_y, minlength=10)
    assert counts.min() > 30


def test_synthetic_mean_colour_carries_no_class_information():
    d = load_dataset("synthetic", n_train=4000, n_val=100, n_test=0)
    m = d.train_x.float().mean(dim=(2, 3))  # per-image mean colour
    per_class = torch.stack([m[d.train_y == k].mean(0) for k in range(10)])
    se = torch.stack([m[d.train_y == k].std(0) / (d.train_y == k).sum().sqrt() for k in range(10)])
    z = (per_class - m.mean(0)) / se
    assert z.abs().max() < 4.5, z  # class means differ by sampling noise only
    assert d.test_x is None


def _linear(shape):
    return nn.Sequential(nn.Flatten(), nn.Linear(int(np.prod(shape)), 10))


def _convnet(w=16):
    return nn.Sequential(
        nn.Conv2d(3, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU(),
        nn.Conv2d(w, 2 * w, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(2 * w), nn.ReLU(),
        nn.Conv2d(2 * w, 2 * w, 3, padding=1, bias=False), nn.BatchNorm2d(2 * w), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2 * w, 10))


def test_synthetic_defeats_linear_models_and_a_small_convnet_learns_it():
    # 400 steps of batch 50 (2 epochs): a linear model on pixels stays near chance, the seed model (global
    # pooling + linear) at chance, a 3-layer convnet learns the task
    d = load_dataset("synthetic")
    cfg = TrainConfig(steps=400, batch_size=50, device="cpu", seed=0)
    torch.manual_seed(0)
    linear = train(_linear(d.input_shape), d, 0.05, cfg)
    torch.manual_seed(0)
    seed_model = train(nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 10)), d, 0.1, cfg)
    torch.manual_seed(0)
    conv = train(_convnet(), d, 0.05, cfg)
    assert linear.outcome == "ok" and linear.fitness < 0.5, linear
    assert seed_model.fitness < 0.2, seed_model
    assert conv.outcome == "ok" and conv.fitness > 0.85, conv
