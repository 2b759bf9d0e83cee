"""An individual's trained network: its weights, the model, and one self-contained export file.

The result of Large-Scale Evolution is a trained model, not only an architecture; these functions
get it out of a population.  torch is imported only when one of them is called, so that
``import evo.analysis`` stays torch-free.
"""

from __future__ import annotations

import os
import time
from typing import Any

from evo.analysis.errors import AnalysisError, NoCheckpointError
from evo.analysis.history import History
from evo.analysis.loading import history_of

__all__ = ["checkpoint_of", "load_individual_weights", "load_individual_model", "load_population_dataset",
           "export_individual", "export_ensemble"]


def checkpoint_of(h: History, i: int) -> str:
    """The trained weights of ``i``; :class:`NoCheckpointError` with the reason if gone."""
    r = h[i]
    p = h.checkpoint(i)
    if p is not None:
        return p
    kc = h.config.keep_checkpoints
    if r.status == "dead":
        why = (f"its weights were dropped when it died (keep_checkpoints={kc!r}; use 'all' or 'top:K' "
               f"to keep the best models' weights)")
    elif r.status == "retraining":
        why = "it is being retrained right now (reset-weights); try again when it is committed"
    else:
        why = "its checkpoint.pt is missing (run `evo fsck`)"
    alive = h.best(alive_only=True)
    hint = f"; the best living individual is {alive.id} ({alive.fitness:.4f})" if alive else ""
    raise NoCheckpointError(f"individual {i} has no trained weights: {why}{hint}")


def load_individual_weights(h: History, i: int) -> tuple[str, dict]:
    """(checkpoint path, state dict) of ``i``; an unreadable (torn, truncated) checkpoint is one
    :class:`AnalysisError` that names the file."""
    from evo.network.weights import WeightsError, load_state_dict

    ck = checkpoint_of(h, i)
    try:
        return ck, load_state_dict(ck, "cpu", fix=_fix(h))
    except WeightsError as exc:
        raise AnalysisError(str(exc)) from None


def _fix(h: History) -> str:
    return f"run `evo fsck --repair {h.root}` to retrain that individual, or choose another one"


def _genome(h: History, i: int) -> Any:
    """The genome of ``i`` read by the population's search space (``space_of(config)``)."""
    from evo.genome import space_of

    return space_of(h.config).from_dict(h.dna(i))


def load_individual_model(pop: str | os.PathLike | History, i: int, device: str = "cpu"):
    """Individual ``i`` as its trained network (built by the population's search space, eval mode).

    Expects normalised inputs; :func:`export_individual` writes a self-contained model
    that normalises its own inputs.
    """
    from evo.genome import space_of
    from evo.network.weights import WeightsError, load_network

    h = history_of(pop)
    ck = checkpoint_of(h, i)
    space = space_of(h.config)
    try:
        return load_network(space, space.from_dict(h.dna(i)), ck, device, fix=_fix(h))
    except WeightsError as exc:
        raise AnalysisError(str(exc)) from None


def load_population_dataset(h: History) -> Any:
    """The population's data set, as its workers load it (``config.dataset`` and its options)."""
    from evo.network.data import load_dataset

    return load_dataset(h.config.dataset, **dict(h.config.dataset_kwargs))


def export_individual(pop: str | os.PathLike | History, i: int, path: str | os.PathLike,
                      dataset: Any = None) -> dict[str, Any]:
    """Write individual ``i`` as one self-contained model file (:func:`evo.network.export.export_model`:
    DNA + weights + the data set's normalisation); read it back with ``evo.load_model``."""
    from evo.network.export import export_model

    h = history_of(pop)
    r = h[i]
    ck, weights = load_individual_weights(h, i)  # a damaged file fails before the data set is loaded
    ds = dataset if dataset is not None else load_population_dataset(h)
    meta = {"id": r.id, "fitness": r.fitness, "parent_id": r.parent_id, "popdir": h.root,
            "dataset": h.config.dataset, "dataset_kwargs": dict(h.config.dataset_kwargs),
            "params": r.params, "flops": r.flops, "exported_at": time.time()}
    from evo.genome import space_of

    out = export_model(path, _genome(h, i), weights, ds.mean, ds.std,
                       classes=(ds.info or {}).get("classes"), meta=meta, space=space_of(h.config))
    return {"id": r.id, "path": str(out), "fitness": r.fitness, "checkpoint": ck}


def export_ensemble(pop: str | os.PathLike | History, ids: list[int], path: str | os.PathLike,
                    dataset: Any = None) -> dict[str, Any]:
    """Write individuals ``ids`` as one ensemble file (:func:`evo.network.ensemble.export_ensemble`);
    ``evo.load_model`` returns a module averaging their softmax (the paper's ensemble of the top models)."""
    from evo.network.ensemble import export_ensemble as write_ensemble

    h = history_of(pop)
    loaded = [(i, *load_individual_weights(h, i)) for i in ids]  # a damaged file fails first
    ds = dataset if dataset is not None else load_population_dataset(h)
    classes = (ds.info or {}).get("classes")
    members = [{"dna": _genome(h, i), "state_dict": w, "mean": ds.mean, "std": ds.std, "classes": classes,
                "meta": {"id": i, "fitness": h[i].fitness, "params": h[i].params, "flops": h[i].flops}}
               for i, _, w in loaded]
    meta = {"ids": list(ids), "fitness": [h[i].fitness for i in ids], "popdir": h.root,
            "dataset": h.config.dataset, "dataset_kwargs": dict(h.config.dataset_kwargs),
            "exported_at": time.time()}
    from evo.genome import space_of

    out = write_ensemble(path, members, meta=meta, space=space_of(h.config))
    return {"ids": list(ids), "path": str(out), "fitness": meta["fitness"], "checkpoints": [c for _, c, _ in loaded]}
