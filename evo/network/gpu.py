"""Several children per GPU: one training process per child, sharing a GPU.

Early in an evolution every child is seed-sized, and one child leaves a large GPU nearly idle however fast
its step is. The simplest way to fill it is several worker processes per GPU, each training its own child
(with the CUDA MPS daemon, when the cluster runs it, their kernels also run concurrently instead of
time-sliced). :func:`share_gpu` prepares one such process: a cap on its share of the GPU memory, so that K
processes fit side by side and one large child cannot starve the others (a child that needs more fails as out
of memory: an unfit individual, not a dead worker), and its share of the CPU threads. :func:`slot_device`
says which GPU the k-th worker of a node uses.
"""
from __future__ import annotations

import os
from typing import Any

import torch

__all__ = ["share_gpu", "slot_device", "mps_active"]

HEADROOM = 0.05  # of the GPU memory left to the CUDA contexts of the processes themselves


def mps_active() -> bool:
    """Whether this process talks to a CUDA MPS daemon (its pipe directory is set or at its default place)."""
    pipe = os.environ.get("CUDA_MPS_PIPE_DIRECTORY", "/tmp/nvidia-mps")
    return os.path.exists(os.path.join(pipe, "control"))


def slot_device(slot: int, children_per_gpu: int, gpus: int | None = None) -> str:
    """The device of a node's ``slot``-th worker when each GPU trains ``children_per_gpu`` children at once:
    slots 0..K-1 on GPU 0, K..2K-1 on GPU 1, ... (``cpu`` without a GPU)."""
    if children_per_gpu < 1:
        raise ValueError(f"children_per_gpu={children_per_gpu}: must be at least 1")
    n = torch.cuda.device_count() if gpus is None else gpus
    if n == 0:
        return "cpu"
    return f"cuda:{(slot // children_per_gpu) % n}"


def share_gpu(children_per_gpu: int, device: str | torch.device = "cuda", *,
              cpu_threads: bool = True) -> dict[str, Any]:
    """Make this process one of ``children_per_gpu`` training processes on ``device``.

    Caps the process's CUDA memory at ``(1 - HEADROOM) / children_per_gpu`` of the GPU, and (``cpu_threads``)
    sets torch's intra-op threads to its share of this process's CPUs. Returns what was set. A no-op for one
    child per GPU, and on the CPU.
    """
    if not isinstance(children_per_gpu, int) or children_per_gpu < 1:
        raise ValueError(f"children_per_gpu={children_per_gpu!r}: must be an integer >= 1")
    device = torch.device(device)
    info: dict[str, Any] = {"children_per_gpu": children_per_gpu, "device": str(device),
                            "memory_fraction": None, "threads": torch.get_num_threads(), "mps": False}
    if children_per_gpu == 1 or device.type != "cuda":
        return info
    index = device.index if device.index is not None else torch.cuda.current_device()
    fraction = (1.0 - HEADROOM) / children_per_gpu
    torch.cuda.set_per_process_memory_fraction(fraction, index)
    info.update(memory_fraction=fraction, mps=mps_active())
    if cpu_threads:
        try:
            cpus = len(os.sched_getaffinity(0))
        except (AttributeError, OSError):
            cpus = os.cpu_count() or 1
        torch.set_num_threads(max(1, cpus // children_per_gpu))
        info["threads"] = torch.get_num_threads()
    return info
