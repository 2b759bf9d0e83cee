"""Tests of evo.network.gpu: several children per GPU (what can be checked without one)."""
from __future__ import annotations

import pytest
import torch

from evo.network.gpu import share_gpu, slot_device


def test_slots_fill_each_gpu_in_turn():
    assert [slot_device(s, 4, gpus=2) for s in range(9)] == ["cuda:0"] * 4 + ["cuda:1"] * 4 + ["cuda:0"]
    assert slot_device(3, 1, gpus=4) == "cuda:3"
    assert slot_device(0, 2, gpus=0) == "cpu"
    with pytest.raises(ValueError, match="children_per_gpu"):
        slot_device(0, 0, gpus=1)


def test_sharing_is_a_no_op_on_the_cpu_and_checks_its_argument():
    n = torch.get_num_threads()
    info = share_gpu(4, "cpu")
    assert info["memory_fraction"] is None and torch.get_num_threads() == n
    for bad in (0, -1, 2.5, "2"):
        with pytest.raises(ValueError, match="children_per_gpu"):
            share_gpu(bad, "cpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_sharing_caps_the_memory_of_this_process():
    info = share_gpu(4, "cuda", cpu_threads=False)
    try:
        assert info["memory_fraction"] == pytest.approx(0.95 / 4)
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)
