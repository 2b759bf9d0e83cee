"""The end of a grow run: the last survivors' ensemble measured on the validation split.

Real et al. 2017 ensemble the top models by validation accuracy (the mean of their softmax
probabilities); a grow run ends with its last generation's survivors, so the worker that finds the
run over measures their ensemble once and records it in ``grow.json``, where ``evo status`` shows
it.  Validation split only: the test split stays for ``evo evaluate``.
"""

from __future__ import annotations

import os
import time
from typing import Any, Callable

import torch

from evo.genome.space import SearchSpace
from evo.network.data import Dataset
from evo.network.evaluation import evaluate_ensemble
from evo.network.settings import check_train_settings
from evo.network.weights import load_network
from evo.population import Population
from evo.population.layout import CHECKPOINT_FILE, DNA_FILE, load_json

__all__ = ["record_final_ensemble"]


def record_final_ensemble(pop: Population, space: SearchSpace, dataset: Dataset, device: torch.device | str = "cpu",
                          progress: Callable[[str], None] = lambda msg: None) -> dict[str, Any] | None:
    """Measure and record the final ensemble of a finished grow run (nothing if not finished or
    already recorded); returns the record.  Each member is measured as its fitness was (the
    population's training settings: test-time flips in the fast recipe), so that a member's
    accuracy here is its fitness."""
    st = pop.grow_state()
    if st.get("phase") != "finished" or st.get("final_ensemble") or not st.get("survivors"):
        return None
    nets, ids = [], []
    for i in st["survivors"]:
        d = pop.alive_path(i)
        try:
            genome = space.from_dict(load_json(os.path.join(d, DNA_FILE)))
            nets.append(load_network(space, genome, os.path.join(d, CHECKPOINT_FILE), device))
        except Exception as exc:  # noqa: BLE001 - a member that cannot be read is left out, and said so
            progress(f"final ensemble: individual {i} left out ({type(exc).__name__}: {str(exc)[:200]})")
            continue
        ids.append(i)
    if not nets:
        return None
    how = check_train_settings(pop.config.train)
    accuracy, singles = evaluate_ensemble(nets, dataset, "val", how.eval_batch_size, **how.evaluation)
    record = {"ids": ids, "val_accuracy": accuracy, "members_val_accuracy": singles, "measured_at": time.time()}
    pop.record_final_ensemble(record)
    progress(f"final ensemble of {len(ids)}: validation accuracy {record['val_accuracy']:.4f} "
             f"(best member {max(singles):.4f})")
    return record
