"""One self-contained file per trained model: DNA, weights and input normalisation.

The evolved result of Large-Scale Evolution is a fully trained model, not only an
architecture; this module gets it out of the population.  The file is a ``torch.save``
of plain containers (strings, numbers, tensors) and is read back with
``torch.load(..., weights_only=True)``, so loading a model never runs code from the file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from evo.base.files import atomic_write
from evo.genome import GenomeError, SearchSpace, search_space, space_of
from evo.network.weights import WeightsError, load_weights

__all__ = ["EXPORT_FORMAT", "ExportedModel", "ExportError", "export_model", "load_model"]

EXPORT_FORMAT = "evo-model"
EXPORT_VERSION = 1


class ExportError(WeightsError, RuntimeError):
    """An exported model file that cannot be read; the message names the file."""


class ExportedModel(nn.Module):
    """A trained DNA network with its normalisation: takes images in [0, 1], returns logits."""

    def __init__(self, net: nn.Module, mean: Sequence[float], std: Sequence[float],
                 classes: Sequence[str] | None = None, meta: Mapping[str, Any] | None = None,
                 dna: Any = None) -> None:
        super().__init__()
        self.net = net
        self.dna = dna if dna is not None else getattr(net, "dna", None)
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32).view(1, -1, 1, 1))
        self.classes = list(classes) if classes is not None else None
        self.meta = dict(meta or {})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: float NCHW in [0, 1], or uint8 NCHW in [0, 255]."""
        if x.dtype == torch.uint8:
            x = x.float() / 255.0
        return self.net((x - self.mean) / self.std)


def export_model(
    path: str | os.PathLike[str],
    dna: Any,
    state_dict: Mapping[str, torch.Tensor],
    mean: Sequence[float],
    std: Sequence[float],
    classes: Sequence[str] | None = None,
    meta: Mapping[str, Any] | None = None,
    space: SearchSpace | None = None,
) -> Path:
    """Write DNA + weights + normalisation to ``path`` (atomically) and check it loads;
    ``space``: the genome's search space (``real2017`` when not given), recorded in the file."""
    space = space or search_space("real2017")
    net = space.build(dna)
    missing, unexpected = net.load_state_dict(dict(state_dict), strict=False)
    if missing or unexpected:
        raise ExportError(f"weights do not fit the DNA: missing {missing}, unexpected {unexpected}")
    payload = {
        "format": EXPORT_FORMAT,
        "version": EXPORT_VERSION,
        "dna": space.to_json(dna),
        "search_space": space.spec(),
        "state_dict": {k: v.detach().cpu() for k, v in net.state_dict().items()},
        "mean": [float(m) for m in mean],
        "std": [float(s) for s in std],
        "classes": None if classes is None else [str(c) for c in classes],
        "meta": dict(meta or {}),
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, lambda f: torch.save(payload, f))


def load_model(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> nn.Module:
    """A ready ``nn.Module`` in eval mode from a file written by :func:`export_model` (an
    :class:`ExportedModel`) or by :func:`evo.network.ensemble.export_ensemble` (an ``EnsembleModel``
    averaging its members' softmax)."""
    path = Path(path)
    payload = load_weights(path, map_location, error=ExportError,
                           fix=f"write it again with `evo export POPDIR --best -o {path}`")
    if isinstance(payload, dict) and payload.get("format") == "evo-ensemble":
        from evo.network.ensemble import ensemble_from_payload
        return ensemble_from_payload(payload, path, map_location)
    if not isinstance(payload, dict) or payload.get("format") != EXPORT_FORMAT:
        raise ExportError(f"{path}: not an evo model file (no '{EXPORT_FORMAT}' marker)")
    if int(payload.get("version", 0)) > EXPORT_VERSION:
        raise ExportError(f"{path}: written by a newer evo (version {payload['version']}); upgrade evo")
    try:  # files written before the space was recorded hold a real2017 DNA
        space = space_of({"search_space": payload.get("search_space")})
        dna = space.from_json(payload["dna"])
    except GenomeError as exc:
        raise ExportError(f"{path}: its architecture cannot be read ({exc})") from None
    net = space.build(dna)
    net.load_state_dict(payload["state_dict"])
    model = ExportedModel(net, payload["mean"], payload["std"], payload.get("classes"), payload.get("meta"),
                          dna=dna)
    return model.to(map_location).eval()
