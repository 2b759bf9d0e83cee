"""Validation accuracy of an ensemble of a population's models (torch, imported when called).

The paper reports, besides its best model, the ensemble of its top models: the average of
their softmax probabilities.  The search-efficiency summary measures it on the *validation*
split, the one evolution selected on (the test split stays for ``evo evaluate``).
"""

from __future__ import annotations

import json
from typing import Any, Sequence

__all__ = ["ensemble_val_accuracy"]

_DATASETS: dict[str, Any] = {}


def _dataset(h: Any) -> Any:
    from evo.network.data import load_dataset

    key = json.dumps([h.config.dataset, dict(h.config.dataset_kwargs)], sort_keys=True, default=str)
    if key not in _DATASETS:
        _DATASETS[key] = load_dataset(h.config.dataset, **dict(h.config.dataset_kwargs))
    return _DATASETS[key]


def ensemble_val_accuracy(h: Any, ids: Sequence[int], batch_size: int = 500) -> float:
    """Validation accuracy of the mean softmax of the models ``ids`` of the loaded population ``h``
    (an :class:`evo.analysis.History`).  Raises :class:`evo.analysis.NoCheckpointError` when a
    model's weights were not kept."""
    import torch

    from evo import analysis
    from evo.network.data import normalize

    if not ids:
        raise ValueError("an ensemble needs at least one model")
    ds = _dataset(h)
    x, y = ds.val_x, ds.val_y
    nets = [analysis.load_individual_model(h, int(i)) for i in ids]
    correct = 0
    with torch.no_grad():
        for k in range(0, len(x), batch_size):
            xb = normalize(x[k:k + batch_size], ds.mean, ds.std)
            p = None
            for net in nets:
                q = torch.softmax(net(xb).float(), dim=1)
                q = torch.where(torch.isfinite(q), q, torch.zeros_like(q))
                p = q if p is None else p + q
            correct += int((p.argmax(1) == y[k:k + batch_size]).sum().item())
    return correct / max(1, len(x))
