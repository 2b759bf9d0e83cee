"""evo: Large-Scale Evolution of Image Classifiers on Slurm, coordinated through a shared file system.

The public API is re-exported here.  Names are loaded lazily, so that ``import evo`` and
the pure layers (``evo.genome``, ``evo.population``) stay fast and torch-free on a login node;
torch is imported only when a torch-backed name is used.  ``evo.search_space(name, **options)``
is the face of every genome (``"real2017"`` is the default); ``seed_dna``, ``mutate`` and
``build_model`` are those of ``real2017``.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "search_space": "evo.genome.space",
    "SearchSpace": "evo.genome.space",
    "GenomeError": "evo.genome.space",
    "DNA": "evo.genome.real2017.dna",
    "DNAError": "evo.genome.real2017.dna",
    "Vertex": "evo.genome.real2017.dna",
    "Edge": "evo.genome.real2017.dna",
    "VertexType": "evo.genome.real2017.dna",
    "EdgeType": "evo.genome.real2017.dna",
    "seed_dna": "evo.genome.real2017.dna",
    "mutate": "evo.genome.real2017.mutations",
    "MutationConfig": "evo.genome.real2017.mutations",
    "count_flops": "evo.genome.real2017.flops",
    "count_params": "evo.genome.real2017.flops",
    "build_model": "evo.network.real2017",
    "inherit_weights": "evo.network.real2017",
    "preserve_function": "evo.network.preserve",
    "load_dataset": "evo.network.data",
    "train": "evo.network.train",
    "evaluate": "evo.network.train",
    "TrainConfig": "evo.network.settings",
    "load_model": "evo.network.export",
    "export_model": "evo.network.export",
    "Population": "evo.population",
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
