"""An ensemble of trained models in one file: the end of a run (Real et al. 2017, section 4: the
ensemble of the top models by validation accuracy averages their softmax probabilities).

The file is a ``torch.save`` of plain containers, like a single exported model (``evo-model``), with
the marker ``evo-ensemble`` and one member per model (DNA, weights, normalisation).
:func:`evo.load_model` reads either kind; for an ensemble it returns an :class:`EnsembleModel`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from evo.base.files import atomic_write
from evo.genome import GenomeError, SearchSpace, search_space, space_of
from evo.network.export import ExportedModel, ExportError

__all__ = ["ENSEMBLE_FORMAT", "EnsembleModel", "ensemble_from_payload", "export_ensemble"]

ENSEMBLE_FORMAT = "evo-ensemble"
ENSEMBLE_VERSION = 1


class EnsembleModel(nn.Module):
    """Several trained networks; ``forward`` returns the mean of their softmax probabilities.

    Takes what each member takes: loaded from a file, the members are
    :class:`~evo.network.export.ExportedModel` (float NCHW images in [0, 1], or uint8 in [0, 255],
    each member applying its own normalisation); bare networks take normalised images.
    """

    def __init__(self, members: Sequence[nn.Module], meta: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.members = nn.ModuleList(members)
        self.classes = getattr(members[0], "classes", None)
        self.meta = dict(meta or {})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([torch.softmax(m(x).float(), dim=1) for m in self.members]).mean(0)


def _member(m: Mapping[str, Any], space: SearchSpace) -> dict[str, Any]:
    dna = m["dna"]
    net = space.build(dna)
    missing, unexpected = net.load_state_dict(dict(m["state_dict"]), strict=False)
    if missing or unexpected:
        raise ExportError(f"weights do not fit the DNA: missing {missing}, unexpected {unexpected}")
    return {
        "dna": space.to_json(dna),
        "state_dict": {k: v.detach().cpu() for k, v in net.state_dict().items()},
        "mean": [float(x) for x in m["mean"]],
        "std": [float(x) for x in m["std"]],
        "classes": None if m.get("classes") is None else [str(c) for c in m["classes"]],
        "meta": dict(m.get("meta") or {}),
    }


def export_ensemble(path: str | os.PathLike[str], members: Sequence[Mapping[str, Any]],
                    meta: Mapping[str, Any] | None = None, space: SearchSpace | None = None) -> Path:
    """Write several models (each a mapping with ``dna`` (a genome of ``space``, ``real2017`` when
    not given), ``state_dict``, ``mean``, ``std`` and optional ``classes`` and ``meta``) as one
    ensemble file (atomically); check that it loads and that the members agree on their input."""
    if not members:
        raise ExportError("an ensemble needs at least one member")
    space = space or search_space("real2017")
    payload = {"format": ENSEMBLE_FORMAT, "version": ENSEMBLE_VERSION, "search_space": space.spec(),
               "members": [_member(m, space) for m in members], "meta": dict(meta or {})}
    probe = {(tuple(m["mean"]), tuple(m["std"])) for m in payload["members"]}
    if len(probe) != 1:
        raise ExportError("the members normalise their inputs differently; an ensemble's members come "
                          "from one population")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        _check_outputs(ensemble_from_payload(payload, path))
    except ExportError:
        raise
    except (RuntimeError, ValueError) as exc:
        raise ExportError(f"the members do not make one ensemble ({str(exc).splitlines()[0][:200]})") from None
    return atomic_write(path, lambda f: torch.save(payload, f))


def _check_outputs(ens: "EnsembleModel") -> None:
    """Every member takes the same images and gives the same number of classes (checked where the
    genomes know their input shape)."""
    shapes = {tuple(getattr(getattr(m, "dna", None), "input_shape", None) or ()) for m in ens.members}
    if len(shapes) != 1:
        raise ExportError(f"the members take different inputs {sorted(shapes)}; an ensemble's members "
                          "come from one population")
    if not all(shapes):
        return
    x = torch.rand(1, *next(iter(shapes)))
    with torch.no_grad():
        classes = {m(x).shape[-1] for m in ens.members}
    if len(classes) != 1:
        raise ExportError(f"the members give different numbers of classes {sorted(classes)}; an ensemble's "
                          "members come from one population")


def ensemble_from_payload(payload: Mapping[str, Any], path: str | os.PathLike[str],
                          map_location: str | torch.device = "cpu") -> EnsembleModel:
    """The :class:`EnsembleModel` of a loaded ``evo-ensemble`` file (``evo.load_model`` calls it)."""
    if int(payload.get("version", 0)) > ENSEMBLE_VERSION:
        raise ExportError(f"{path}: written by a newer evo (version {payload['version']}); upgrade evo")
    members = payload.get("members")
    if not isinstance(members, list) or not members:
        raise ExportError(f"{path}: an ensemble file without members; write it again with "
                          f"`evo export POPDIR --top K --ensemble -o {path}`")
    try:  # the members' genomes, read by the search space the file records
        space = space_of({"search_space": payload.get("search_space")})
        dnas = [space.from_json(m["dna"]) for m in members]
    except GenomeError as exc:
        raise ExportError(f"{path}: an architecture cannot be read ({exc})") from None
    nets = []
    for m, dna in zip(members, dnas):
        net = space.build(dna)
        net.load_state_dict(m["state_dict"])
        nets.append(ExportedModel(net, m["mean"], m["std"], m.get("classes"), m.get("meta"), dna=dna))
    return EnsembleModel(nets, payload.get("meta")).to(map_location).eval()
