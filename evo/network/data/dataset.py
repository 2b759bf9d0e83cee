"""A data set in memory: uint8 images split into train / validation / test, and the data errors."""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import torch

__all__ = ["DataError", "DatasetNotFoundError", "Dataset", "default_root"]


class DataError(Exception):
    """A data set cannot be loaded; the message names the file and the fix."""


class DatasetNotFoundError(DataError, FileNotFoundError):
    """The data set's files are not where they were looked for."""


@dataclasses.dataclass(eq=False)
class Dataset:
    """One data set, split into train / validation / (optional) test.

    Images are uint8 tensors NCHW (views of a memory-mapped cache where possible), labels int64.
    ``mean`` / ``std`` are per channel, in pixel units scaled to [0, 1], computed from the train split.
    """

    name: str
    num_classes: int
    input_shape: tuple[int, int, int]
    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor | None
    test_y: torch.Tensor | None
    mean: tuple[float, ...]
    std: tuple[float, ...]
    split_seed: int
    info: dict[str, Any] = dataclasses.field(default_factory=dict)
    _device_cache: dict = dataclasses.field(default_factory=dict, repr=False, compare=False)

    def __repr__(self) -> str:
        n_test = 0 if self.test_x is None else len(self.test_x)
        return (f"Dataset({self.name!r}, classes={self.num_classes}, shape={self.input_shape}, "
                f"train={len(self.train_x)}, val={len(self.val_x)}, test={n_test})")

    def split(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x, y)`` of the split ``"train"``, ``"val"`` or ``"test"``."""
        if name not in ("train", "val", "test"):
            raise ValueError(f"unknown split {name!r}: use 'train', 'val' or 'test'")
        x, y = getattr(self, f"{name}_x"), getattr(self, f"{name}_y")
        if x is None:
            raise DataError(f"data set {self.name!r} has no {name} split")
        return x, y


def default_root() -> Path:
    """``$EVO_DATA_ROOT`` when set, else ``~/.cache/evo/data``."""
    env = os.environ.get("EVO_DATA_ROOT")
    return Path(env) if env else Path.home() / ".cache" / "evo" / "data"
