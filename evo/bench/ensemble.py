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
    """The population's data set, loaded once per process for the runs of a suite that share it."""
    from evo.analysis.models import load_population_dataset

    key = json.dumps([h.config.dataset, dict(h.config.dataset_kwargs)], sort_keys=True, default=str)
    if key not in _DATASETS:
        _DATASETS[key] = load_population_dataset(h)
    return _DATASETS[key]


def ensemble_val_accuracy(h: Any, ids: Sequence[int], batch_size: int = 500) -> float:
    """Validation accuracy of the mean softmax of the models ``ids`` of the loaded population ``h``
    (an :class:`evo.analysis.History`), measured as their fitness was
    (:func:`evo.network.evaluation.evaluate_ensemble` with the population's training settings).
    Raises :class:`evo.analysis.NoCheckpointError` when a model's weights were not kept."""
    from evo import analysis
    from evo.network.evaluation import evaluate_ensemble
    from evo.network.settings import check_train_settings

    if not ids:
        raise ValueError("an ensemble needs at least one model")
    nets = [analysis.load_individual_model(h, int(i)) for i in ids]
    accuracy, _ = evaluate_ensemble(nets, _dataset(h), "val", batch_size,
                                    **check_train_settings(h.config.train).evaluation)
    return accuracy
