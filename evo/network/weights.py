"""The one way evo reads a weights file: a child's checkpoint, a training state, an exported model.

Every file is read with ``torch.load(..., weights_only=True)``: plain containers and tensors only, so reading
a file never runs code from it. A missing, truncated or foreign file is one clear :class:`WeightsError` that
names the file and says what to do, whatever torch's own error was.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

__all__ = ["WeightsError", "load_weights", "load_state_dict"]


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
