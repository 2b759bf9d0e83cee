"""The one way evo reads a weights file: a child's checkpoint, a training state, an exported model.

Every file is read with ``torch.load(..., weights_only=True)``: plain containers and tensors only, so reading
a file never runs code from it. A missing, truncated or foreign file is one clear :class:`WeightsError` that
names the file and says what to do, whatever torch's own error was.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
from torch import nn

__all__ = ["WeightsError", "checkpoint_check", "copy_matching", "load_network", "load_weights", "load_state_dict"]


class WeightsError(Exception):
    """A weights file that cannot be read; the message names the file and the fix."""


def load_weights(path: str | os.PathLike, map_location: str | torch.device = "cpu", *,
                 fix: str = "delete it and train that network again",
                 error: type[WeightsError] = WeightsError) -> Any:
    """The object saved in ``path`` (``weights_only=True``).

    Raises ``error`` (a :class:`WeightsError`) naming the file when it is missing, torn or not a torch
    file; ``fix`` is the advice appended to the message.
    """
    path = Path(path)
    if not path.is_file():
        raise error(f"{path} does not exist (no such file); fix: {fix}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torn zip, truncated file, foreign pickle: all the same to the caller
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
        raise error(f"{path} is damaged, incomplete or not a weights file ({type(e).__name__}: {first}); "
                    f"fix: {fix}") from e


def load_state_dict(path: str | os.PathLike, map_location: str | torch.device = "cpu", *,
                    fix: str = "delete it and train that network again",
                    error: type[WeightsError] = WeightsError) -> dict[str, torch.Tensor]:
    """A network's ``state_dict`` from a weights file or from a full training state (its ``"model"``)."""
    state = load_weights(path, map_location, fix=fix, error=error)
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]  # a full training state
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise error(f"{path} holds no network weights (a {type(state).__name__}); fix: {fix}")
    return state


def load_network(space: Any, genome: Any, path: str | os.PathLike, map_location: str | torch.device = "cpu", *,
                 fix: str = "delete it and train that network again",
                 error: type[WeightsError] = WeightsError) -> nn.Module:
    """The network ``genome`` describes, built by its search space ``space``, with the weights of
    ``path`` loaded strictly (every tensor present, of its shape), in eval mode on ``map_location``.

    A file that cannot be read, or whose tensors do not fit the genome, raises ``error`` naming the
    file, what does not fit and ``fix``: the one way evo puts a kept checkpoint back into a network
    (``evo fsck``, the analysis, a grow run's final ensemble)."""
    state = load_state_dict(path, "cpu", fix=fix, error=error)
    net = space.build(genome)
    mismatch = _mismatch(net.state_dict(), state)
    if mismatch:
        raise error(f"{path} does not fit its genome ({mismatch}); fix: {fix}")
    net.load_state_dict(state, strict=True)
    return net.to(map_location).eval()


def copy_matching(net: nn.Module, state: Mapping[str, torch.Tensor]) -> dict[str, list[str]]:
    """Copy into ``net`` every tensor of ``state`` whose name and shape (and dtype) match; the rest
    of ``net`` keeps its fresh initialisation: the paper's weight inheritance, in every space.

    Parameters and batch-norm statistics alike.  Returns ``{"copied", "fresh", "mismatched"}``
    lists of tensor names (mismatched: the same name with another shape or dtype)."""
    own = net.state_dict()
    copied: list[str] = []
    fresh: list[str] = []
    mismatched: list[str] = []
    with torch.no_grad():
        for name, tensor in own.items():
            src = state.get(name)
            if src is None:
                fresh.append(name)
            elif tuple(src.shape) != tuple(tensor.shape) or src.dtype != tensor.dtype:
                mismatched.append(name)
            else:
                tensor.copy_(src.to(tensor.device))
                copied.append(name)
    return {"copied": copied, "fresh": fresh, "mismatched": mismatched}


def checkpoint_check(space: Any) -> Callable[[str, Mapping[str, Any]], None]:
    """``check_checkpoint(path, dna)`` for the population's fsck (which imports no torch): the
    checkpoint loads through :func:`load_network` into the network its ``dna.json`` describes in
    the population's search space ``space``; it raises to say why not."""
    def check(path: str, dna: Mapping[str, Any]) -> None:
        load_network(space, space.from_dict(dna), path)

    return check


def _mismatch(own: dict[str, torch.Tensor], state: dict[str, torch.Tensor]) -> str:
    """What keeps ``state`` from loading into a network whose state dict is ``own`` ("" if nothing)."""
    def some(names: list[str]) -> str:
        return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")

    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [f"{k} {tuple(state[k].shape)} instead of {tuple(own[k].shape)}" for k in own
              if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    parts = ([f"missing {some(missing)}"] if missing else []) + \
        ([f"unexpected {some(unexpected)}"] if unexpected else []) + ([f"shape of {some(shapes)}"] if shapes else [])
    return "; ".join(parts)
