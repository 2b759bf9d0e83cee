"""evo: Large-Scale Evolution of Image Classifiers on Slurm, coordinated through a shared file system.

The public API is re-exported here.  Names are loaded lazily, so that ``import evo`` and
the pure modules (``evo.dna``, ``evo.mutations``, ``evo.flops``, ``evo.store``) stay fast and
torch-free on a login node; torch is imported only when a torch-backed name is used.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "DNA": "evo.dna",
    "DNAError": "evo.dna",
    "Vertex": "evo.dna",
    "Edge": "evo.dna",
    "VertexType": "evo.dna",
    "EdgeType": "evo.dna",
    "seed_dna": "evo.dna",
    "mutate": "evo.mutations",
    "MutationConfig": "evo.mutations",
    "count_flops": "evo.flops",
    "count_params": "evo.flops",
    "build_model": "evo.model",
    "inherit_weights": "evo.model",
    "load_dataset": "evo.data",
    "train": "evo.train",
    "evaluate": "evo.train",
    "TrainConfig": "evo.train",
    "load_model": "evo.export",
    "export_model": "evo.export",
    "Population": "evo.store",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'evo' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
