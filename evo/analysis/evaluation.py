"""Test-split evaluation of evolved individuals and of their ensembles, and its record on disk.

The only place where evo touches the test split.  As in Real et al. 2017, "best" is chosen by
validation accuracy and then evaluated on the test split; an ensemble averages the softmax
probabilities of its members (:class:`evo.network.ensemble.EnsembleModel`).  Accuracy is measured
by the network layer's own evaluation (:mod:`evo.network.evaluation`, as the population's training
settings say), the one that computes every child's validation accuracy, so that a test accuracy
means the same as a fitness: in particular an image whose output is not finite counts as wrong.
torch is imported only when :func:`evaluate_test` is called.

Results are appended to ``POPDIR/evaluations.jsonl`` (one JSON object per line).
"""

from __future__ import annotations

import os
import socket
import time
from typing import Any, Sequence

from evo.analysis.errors import NoTestSplitError
from evo.analysis.history import History
from evo.analysis.loading import history_of
from evo.analysis.models import checkpoint_of, load_individual_model, load_population_dataset
from evo.base.files import append_jsonl, read_jsonl

__all__ = ["EVALUATIONS_FILE", "evaluate_test", "record_evaluation", "read_evaluations"]

#: Where :func:`record_evaluation` appends test-set results (one JSON object per line).
EVALUATIONS_FILE = "evaluations.jsonl"


def evaluate_test(pop: str | os.PathLike | History, ids: Sequence[int], *, ensemble: bool = False,
                  device: str | None = None, batch_size: int = 500, dataset: Any = None) -> dict[str, Any]:
    """Test-set accuracy of each individual in ``ids`` and, with ``ensemble``, of their
    ensemble (the average of their softmax probabilities, as in the paper).

    Each accuracy is measured as the population's workers measure a fitness (its training
    settings' :attr:`~evo.network.settings.TrainConfig.evaluation`).  Returns ``{"dataset",
    "n_test", "models": [{"id", "fitness", "test_accuracy"}], "ensemble": {"ids",
    "test_accuracy"} or None, ...}``.
    """
    import torch

    from evo.network.evaluation import evaluate_ensemble, evaluate_split
    from evo.network.settings import check_train_settings

    h = history_of(pop)
    ids = [int(i) for i in ids]
    for i in ids:
        checkpoint_of(h, i)  # fail before the (slow) data set load
    ds = dataset if dataset is not None else load_population_dataset(h)
    if ds.test_x is None or len(ds.test_x) == 0:
        raise NoTestSplitError(f"data set {h.config.dataset!r} ({dict(h.config.dataset_kwargs)}) has no test split; "
                               f"evo evaluate needs one (synthetic: n_test > 0; imagefolder: test_root=DIR)")
    how = check_train_settings(h.config.train).evaluation
    if device in (None, "", "auto"):
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    nets = [load_individual_model(h, i, device=str(dev)) for i in ids]
    ens = None
    if ensemble and nets:
        acc, singles = evaluate_ensemble(nets, ds, "test", batch_size, **how)
        ens = {"ids": ids, "test_accuracy": acc}
    else:
        singles = [evaluate_split(net, ds, "test", batch_size, **how) for net in nets]
    models = [{"id": i, "fitness": h[i].fitness, "test_accuracy": acc} for i, acc in zip(ids, singles)]
    return {"popdir": h.root, "dataset": h.config.dataset, "dataset_kwargs": dict(h.config.dataset_kwargs),
            "n_test": int(len(ds.test_x)), "split_seed": getattr(ds, "split_seed", None), "models": models,
            "ensemble": ens, "device": str(dev)}


def record_evaluation(popdir: str | os.PathLike, result: dict[str, Any]) -> str:
    """Append a test-set result to ``POPDIR/evaluations.jsonl`` (one JSON object per line,
    with the time ``t`` and ``host``); returns the file's path."""
    path = os.path.join(os.fspath(popdir), EVALUATIONS_FILE)
    line = {"t": time.time(), "host": socket.gethostname(), **result}
    append_jsonl(path, [line], default=str)
    return path


def read_evaluations(popdir: str | os.PathLike) -> list[dict[str, Any]]:
    """Every result recorded by :func:`record_evaluation` (torn lines skipped)."""
    return read_jsonl(os.path.join(os.fspath(popdir), EVALUATIONS_FILE))
