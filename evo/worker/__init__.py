"""The worker: the evolution loop that joins the population and the network layers.

``evo.worker.signals`` is pure (its handlers go in before torch is imported); the loop's names
are loaded on first use, so importing this package imports no torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["EXIT_DONE", "EXIT_ERROR", "EXIT_INTERRUPTED", "EXIT_NEEDS_FIX", "Worker", "run_worker"]


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module 'evo.worker' has no attribute {name!r}")
    return getattr(importlib.import_module("evo.worker.loop"), name)
