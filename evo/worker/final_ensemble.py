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
from evo.network.ensemble import EnsembleModel
from evo.network.evaluation import evaluate_split
from evo.network.weights import load_state_dict
from evo.population import Population
from evo.population.layout import CHECKPOINT_FILE, DNA_FILE, load_json

__all__ = ["record_final_ensemble"]


def record_final_ensemble(pop: Population, space: SearchSpace, dataset: Dataset, device: torch.device | str = "cpu",
                          progress: Callable[[str], None] = lambda msg: None) -> dict[str, Any] | None:
    """Measure and record the final ensemble of a finished grow run (nothing if not finished or
    already recorded); returns the record."""
    st = pop.grow_state()
    if st.get("phase") != "finished" or st.get("final_ensemble") or not st.get("survivors"):
        return None
    nets, ids = [], []
    for i in st["survivors"]:
        d = pop.alive_path(i)
        try:
            net = space.build(space.from_dict(load_json(os.path.join(d, DNA_FILE))))
            net.load_state_dict(load_state_dict(os.path.join(d, CHECKPOINT_FILE), "cpu"))
        except Exception as exc:  # noqa: BLE001 - a member that cannot be read is left out, and said so
            progress(f"final ensemble: individual {i} left out ({type(exc).__name__}: {str(exc)[:200]})")
            continue
        nets.append(net.to(device).eval())
        ids.append(i)
    if not nets:
        return None
    singles = [evaluate_split(n, dataset, "val") for n in nets]
    record = {"ids": ids, "val_accuracy": evaluate_split(EnsembleModel(nets).eval(), dataset, "val"),
              "members_val_accuracy": singles, "measured_at": time.time()}
    pop.record_final_ensemble(record)
    progress(f"final ensemble of {len(ids)}: validation accuracy {record['val_accuracy']:.4f} "
             f"(best member {max(singles):.4f})")
    return record
