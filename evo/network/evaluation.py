"""Evaluation: the accuracy that is a child's fitness (validation split) or its test score.

One path for every accuracy evo reports -- a child's fitness, ``evo evaluate``'s test accuracy, a grow
run's final ensemble, the search-efficiency summary: eval mode, no gradients, batches normalised on the
model's device, a non-finite output counted wrong. With ``tta`` (the fast recipe's test-time augmentation)
the logits of each image and of its mirror image are summed before the arg-max. How a population measures
(``amp``, ``channels_last``, ``tta``) is its training settings'
:attr:`~evo.network.settings.TrainConfig.evaluation`, so that a later measurement of a model's kept
weights gives its fitness again.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from evo.network.data import Dataset, DeviceData, normalize, to_device
from evo.network.ensemble import EnsembleModel

__all__ = ["evaluate", "evaluate_ensemble", "evaluate_split", "predict_logits", "model_device"]


def model_device(model: nn.Module) -> torch.device:
    """The device of a model's first parameter or buffer (the CPU for a model with neither)."""
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device("cpu")


def predict_logits(model: nn.Module, xb: torch.Tensor, *, tta: bool = False, amp: bool = True) -> torch.Tensor:
    """Float32 logits of one batch of model-ready images (with ``tta``: plus those of the mirrored batch)."""
    dev = xb.device
    with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp and dev.type == "cuda"):
        logits = model(xb).float()
        if tta:
            logits = logits + model(xb.flip(3)).float()
    return logits


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 500, *,
             mean: torch.Tensor | tuple | None = None, std: torch.Tensor | tuple | None = None,
             amp: bool = True, channels_last: bool = True, tta: bool = False) -> float:
    """Accuracy of ``model`` on ``(x, y)`` in eval mode without gradients.

    ``x``: float images ready for the model, or uint8 images together with ``mean``/``std`` (per channel,
    [0, 1] units) to normalise them batch by batch on the model's device. Non-finite logits count as wrong.
    ``tta``: average over each image and its horizontal mirror. ``channels_last``: images and the
    model's weights in that layout (as the trainer has them).
    """
    dev = model_device(model)
    if not x.is_floating_point():
        if mean is None or std is None:
            raise ValueError("uint8 images need mean= and std= to be normalised")
        mean = torch.as_tensor(mean, dtype=torch.float32, device=dev)
        std = torch.as_tensor(std, dtype=torch.float32, device=dev)
    was_training = model.training
    model.eval()
    mf = torch.channels_last if channels_last else torch.contiguous_format
    if channels_last:  # the trainer's layout: kept weights measured later give their fitness again
        model.to(memory_format=torch.channels_last)
    correct = torch.zeros((), dtype=torch.long, device=dev)
    try:
        for i in range(0, len(x), batch_size):
            xb = x[i:i + batch_size].to(dev, non_blocking=True)
            yb = y[i:i + batch_size].to(dev, non_blocking=True)
            if not xb.is_floating_point():
                xb = normalize(xb, mean, std, memory_format=mf)
            logits = predict_logits(model, xb, tta=tta, amp=amp)
            ok = (logits.argmax(1) == yb) & torch.isfinite(logits).all(1)
            correct += ok.sum()
    finally:
        model.train(was_training)
    return float(correct.item()) / max(1, len(x))


def evaluate_split(model: nn.Module, dataset: Dataset | DeviceData, split: str = "val",
                   batch_size: int = 500, *, amp: bool = True, channels_last: bool = True, tta: bool = False) -> float:
    """Accuracy on a data set's ``"train"``, ``"val"`` or ``"test"`` split (on the model's device);
    ``amp``, ``channels_last``, ``tta``: as :func:`evaluate` (a population's: ``TrainConfig.evaluation``)."""
    dd = to_device(dataset, model_device(model))
    x, y = dd.split(split)
    return evaluate(model, x, y, batch_size, mean=dd.mean, std=dd.std, amp=amp, channels_last=channels_last, tta=tta)


def evaluate_ensemble(members: Sequence[nn.Module], dataset: Dataset | DeviceData, split: str = "val",
                      batch_size: int = 500, *, amp: bool = True, channels_last: bool = True,
                      tta: bool = False) -> tuple[float, list[float]]:
    """(the ensemble's accuracy, each member's) on a split: the ensemble of Real et al. 2017 (the mean
    of the members' softmax probabilities, :class:`~evo.network.ensemble.EnsembleModel`; a member's
    non-finite output makes the image wrong), every accuracy measured by :func:`evaluate` like a fitness.
    The members are trained networks taking normalised images, on one device; they are left in eval mode."""
    if not members:
        raise ValueError("an ensemble needs at least one member")
    how = dict(amp=amp, channels_last=channels_last, tta=tta)
    singles = [evaluate_split(m, dataset, split, batch_size, **how) for m in members]
    ensemble = EnsembleModel(list(members)).eval()
    return evaluate_split(ensemble, dataset, split, batch_size, **how), singles
