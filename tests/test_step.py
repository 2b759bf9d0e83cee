"""Tests of evo.network.step: the step's plan (graph or eager, and why), the optimizer, the weight average."""
from __future__ import annotations

import torch
from torch import nn

from evo.network.settings import TrainConfig
from evo.network.step import GRAPH_WARMUP_STEPS, WeightAverage, graph_plan, make_optimizer


def test_graph_plan_says_why_it_is_eager():
    cuda = torch.device("cuda", 0)
    assert graph_plan(TrainConfig(), cuda, 1000) == (True, "")
    assert graph_plan(TrainConfig(cuda_graph="off"), cuda, 1000) == (False, "eager: cuda_graph=off")
    ok, why = graph_plan(TrainConfig(), cuda, GRAPH_WARMUP_STEPS)
    assert not ok and "too few" in why
    ok, why = graph_plan(TrainConfig(), torch.device("cpu"), 1000)
    assert not ok and "CUDA device" in why and "CPU" in why


def test_the_fast_recipe_uses_nesterov_momentum():
    net = nn.Linear(3, 2)
    cpu = torch.device("cpu")
    assert make_optimizer(net, 0.1, TrainConfig(recipe="fast"), cpu).param_groups[0]["nesterov"] is True
    assert make_optimizer(net, 0.1, TrainConfig(), cpu).param_groups[0]["nesterov"] is False
    assert make_optimizer(net, 0.1, TrainConfig(recipe="fast", momentum=0.0), cpu).param_groups[0]["nesterov"] is False


def test_weight_average_follows_the_weights_and_restores():
    net = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    avg = WeightAverage(net)
    assert "1.num_batches_tracked" not in avg.names and "1.running_mean" in avg.names
    start = net[0].weight.detach().clone()
    with torch.no_grad():
        net[0].weight.add_(1.0)
    avg.update(0.75)  # avg = 0.75 * start + 0.25 * (start + 1)
    saved = avg.state_dict()
    torch.testing.assert_close(saved["0.weight"], start + 0.25)
    avg.apply()
    torch.testing.assert_close(net[0].weight.detach(), start + 0.25)
    other = WeightAverage(net)
    other.load_state_dict(saved)
    torch.testing.assert_close(other.state_dict()["0.weight"], start + 0.25)
