"""The training settings (torch-free): what the trainer does, checked before any worker starts.

:class:`TrainConfig` says how a child is trained; the learning rate is part of the DNA (Real et al. 2017), except
in a search space whose genome carries none (the cell space of Real et al. 2019): there it is the setting
``lr``. The population layer stores a population's settings as a plain dict (``config.train``) and checks it
at ``evo init`` with :func:`check_train_settings`, so that a typo fails once on the login node instead of in
every worker. This module imports no torch.

Two recipes (``recipe``):

``paper`` (the default): Real et al. 2017 -- SGD with momentum 0.9, batch 50, weight decay 1e-4, a constant
learning rate, 4-pixel pad + random crop and random horizontal flips; the weights at the last step are
evaluated.

``fast``: what the fastest CIFAR-10 trainers (airbench) add that applies to any evolved graph -- label
smoothing (``label_smoothing``, 0.2), Nesterov momentum, a learning rate that warms up linearly during the
first ``warmup`` fraction of the child's own steps and then decays linearly to ``final_lr`` times its peak at
the last step (:meth:`TrainConfig.lr_factor`), the learning rate scaled linearly with the batch size
(``batch_size / 50``: the DNA's rate keeps the meaning it has at the paper's batch), an exponential moving
average of the weights (``ema``) that is what gets evaluated and kept, derandomised ("alternating") flips
(each image is flipped in every other epoch, starting from a random side), no random crop in the first
epoch (``crop_first_epoch``, false: a training shorter than an epoch shows no image twice, so a crop only
adds noise there; crops start with an image's second presentation), and test-time flip averaging (the
logits of an image and of its mirror image are summed) at evaluation.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping

__all__ = [
    "DEVICE_FORMS",
    "RECIPES",
    "WORKER_SET",
    "SettingsError",
    "TrainConfig",
    "check_train_settings",
    "parse_device",
]

RECIPES = ("paper", "fast")
REFERENCE_BATCH = 50  # the paper's batch: the DNA's learning rate is the rate at this batch size
# set by the worker from the population's own fields (steps_per_child, seed, the GPU, checkpoint_every_s)
WORKER_SET = ("steps", "seed", "device", "checkpoint_every_s")


class SettingsError(ValueError):
    """A training setting of the wrong type or out of range; the message names the setting and the fix."""


#: the devices evo trains on, as a user writes them (``--device``, ``train.device``)
DEVICE_FORMS = "auto, cpu, cuda, cuda:N (N = 0, 1, ...) or mps"


def parse_device(value: Any, what: str = "--device") -> tuple[str, int | None]:
    """``(kind, index)`` of a device string: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``
    (``index`` is N for ``cuda:N``, else None), checked without torch: the one parser behind the
    CLI's ``--device``, :meth:`TrainConfig.validate` and the worker's check on its node.
    Raises :class:`SettingsError` naming ``what`` and the forms that are accepted."""
    text = value if isinstance(value, str) else None
    if text in ("auto", "cpu", "cuda", "mps"):
        return text, None
    if text is not None and text.startswith("cuda:") and text[5:].isdigit() and text[5:].isascii():
        return "cuda", int(text[5:])
    raise SettingsError(f"{what} {value!r}: not a device evo can use; fix: use {DEVICE_FORMS}")


@dataclasses.dataclass
class TrainConfig:
    """How to train (the learning rate comes from the DNA; ``lr`` only where the genome carries none).

    ``steps``: total SGD steps (the paper: 25,600), counted across resumptions.
    ``recipe``: ``"paper"`` or ``"fast"`` (module docstring); the fast recipe's parts are the fields below it.
    ``check_every``: steps between the NaN/inf checks of the loss (the only host syncs in the loop on CUDA).
    ``poll_every``: steps between calls of ``should_stop``.
    ``checkpoint_every_s`` / ``checkpoint_every_steps``: when ``on_checkpoint`` is called (either; None: never).
    ``augment_mode``: ``"zero"`` or ``"reflect"`` padding for the random crop.
    ``device``: ``"auto"`` (CUDA when there is one, else the CPU), ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...
    ``amp``: bf16 autocast on CUDA (ignored on the CPU, which trains in float32 and is bit-reproducible).
    ``channels_last``: NHWC memory layout for images and convolution weights (faster with cuDNN and with
    oneDNN on the CPU).
    ``cuda_graph``: capture the training step in a CUDA graph when the device and the network allow it
    (``"auto"``), never (``"off"``); the training result says which step ran and why.
    ``lr``: the learning rate of a search space whose genome carries none (``amoebanet``; Real et al. 2019
    keep it a training setting), at the paper's batch of 50 like a DNA's rate; refused for ``real2017``,
    whose DNA has its own.
    """

    steps: int = 25600
    batch_size: int = 50
    momentum: float = 0.9
    weight_decay: float = 1e-4
    augment: bool = True
    augment_pad: int = 4
    augment_mode: str = "zero"
    eval_batch_size: int = 500
    seed: int = 0
    check_every: int = 50
    poll_every: int = 10
    checkpoint_every_s: float | None = 600.0
    checkpoint_every_steps: int | None = None
    device: str = "auto"
    amp: bool = True
    channels_last: bool = True
    cuda_graph: str = "auto"
    recipe: str = "paper"
    lr: float = 0.1
    # the fast recipe's parts (ignored by the paper recipe)
    label_smoothing: float = 0.2
    warmup: float = 0.2
    final_lr: float = 0.05
    ema: float = 0.99
    crop_first_epoch: bool = False
    tta: bool = True

    # ------------------------------------------------------------------------------------------ reading
    @classmethod
    def from_dict(cls, settings: Mapping[str, Any] | None, *, user: bool = False) -> "TrainConfig":
        """A config from a dict of settings (unknown names refused); ``user``: the settings a population's
        ``train`` may hold (refuses those in :data:`WORKER_SET`). Call :meth:`validate` to check values."""
        settings = dict(settings or {})
        known = [f.name for f in dataclasses.fields(cls)]
        allowed = [k for k in known if not (user and k in WORKER_SET)]
        reserved = sorted(k for k in settings if k in known and k not in allowed)
        if reserved:
            raise SettingsError(f"training setting {', '.join(reserved)} is set by the worker from the "
                                f"population's config, not by train; fix: remove it (use the config's own field)")
        unknown = sorted(k for k in settings if k not in known)
        if unknown:
            raise SettingsError(f"unknown training settings {', '.join(map(repr, unknown))}; "
                                f"fix: use one of {', '.join(allowed)}")
        return cls(**settings)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    # ------------------------------------------------------------------------------------------ checking
    def validate(self) -> "TrainConfig":
        """Raise :class:`SettingsError` (one line naming the setting and the fix) for a wrong type or range."""
        def bad(name: str, want: str) -> SettingsError:
            value = getattr(self, name)
            return SettingsError(f"training setting {name}={value!r} is invalid: it must be {want}; "
                                 f"fix: --train-opt {name}=<{want}> or remove it")

        def is_int(v: Any) -> bool:
            return isinstance(v, int) and not isinstance(v, bool)

        def is_num(v: Any) -> bool:
            return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))

        for name, lo in (("steps", 1), ("batch_size", 1), ("eval_batch_size", 1), ("check_every", 1),
                         ("poll_every", 1), ("augment_pad", 0), ("seed", 0)):
            v = getattr(self, name)
            if not is_int(v) or v < lo:
                raise bad(name, f"an integer >= {lo}")
        if self.checkpoint_every_steps is not None and (not is_int(self.checkpoint_every_steps)
                                                        or self.checkpoint_every_steps < 1):
            raise bad("checkpoint_every_steps", "an integer >= 1 or null")
        if self.checkpoint_every_s is not None and (not is_num(self.checkpoint_every_s)
                                                    or self.checkpoint_every_s <= 0):
            raise bad("checkpoint_every_s", "a number > 0 or null")
        for name in ("momentum", "label_smoothing", "final_lr", "ema"):
            v = getattr(self, name)
            if not is_num(v) or not 0 <= v < 1:
                raise bad(name, "a number in [0, 1)")
        if not is_num(self.warmup) or not 0 <= self.warmup <= 1:
            raise bad("warmup", "a number in [0, 1]")
        if not is_num(self.weight_decay) or self.weight_decay < 0:
            raise bad("weight_decay", "a number >= 0")
        if not is_num(self.lr) or self.lr <= 0:
            raise bad("lr", "a number > 0")
        for name in ("augment", "amp", "channels_last", "crop_first_epoch", "tta"):
            if not isinstance(getattr(self, name), bool):
                raise bad(name, "true or false")
        choices = {"augment_mode": ("zero", "reflect"), "recipe": RECIPES, "cuda_graph": ("auto", "off")}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise bad(name, " or ".join(allowed))
        try:
            parse_device(self.device, "training setting device")
        except SettingsError:
            raise bad("device", DEVICE_FORMS) from None
        return self

    # ------------------------------------------------------------------------------------------ the recipe
    @property
    def fast(self) -> bool:
        return self.recipe == "fast"

    @property
    def evaluation(self) -> dict[str, bool]:
        """How this recipe measures an accuracy (the keywords of ``evo.network.evaluation.evaluate``):
        bf16 autocast on CUDA, channels_last, and test-time flips in the fast recipe only. A child's
        fitness is measured so, and so is every later measurement of its kept weights (``evo evaluate``,
        ensembles), so that they agree."""
        return {"amp": self.amp, "channels_last": self.channels_last, "tta": self.fast and self.tta}

    @property
    def eval_passes(self) -> int:
        """Forward passes per image at evaluation: 2 with the fast recipe's test-time flips (the image and
        its mirror), else 1; the worker counts each in a child's FLOPs."""
        return 2 if self.fast and self.tta else 1

    def crops(self, epoch: int) -> bool:
        """Whether the batches of epoch ``epoch`` (0-based) are randomly cropped: always in the paper's
        recipe (with ``augment``); in the fast one from the second epoch on, unless ``crop_first_epoch``."""
        return self.augment and (not self.fast or self.crop_first_epoch or epoch > 0)

    def lr_at(self, lr: float, step: int) -> float:
        """The learning rate of step ``step`` (0-based) for a DNA's rate ``lr``: the paper's is constant; the
        fast recipe's is ``lr * batch_size / 50 * lr_factor(step)``."""
        if not self.fast:
            return lr
        return lr * (self.batch_size / REFERENCE_BATCH) * self.lr_factor(step)

    def lr_factor(self, step: int) -> float:
        """The fast recipe's schedule over the child's own ``steps``: with ``W = round(warmup * steps)``,
        step ``s < W`` has ``(s + 1) / W`` (a linear warm-up that reaches 1 at step W-1), and step ``s >= W``
        decays linearly from 1 to ``final_lr`` at the last step ``steps - 1``."""
        total = max(1, int(self.steps))
        w = int(round(self.warmup * total))
        if step < w:
            return (step + 1) / w
        tail = total - 1 - w
        if tail <= 0:
            return 1.0
        frac = min(1.0, (step - w) / tail)
        return 1.0 + (self.final_lr - 1.0) * frac

    def ema_decay(self, step: int) -> float:
        """Decay of the weight average after step ``step`` (1-based count of steps done): ``ema``, but no more
        than ``(1 + step) / (10 + step)``, so that the average forgets the start quickly in short trainings."""
        return min(float(self.ema), (1.0 + step) / (10.0 + step))


def check_train_settings(settings: Mapping[str, Any] | None, space: Any = None) -> TrainConfig:
    """Check a population's ``train`` dict at ``evo init`` (its ``mutations`` entry belongs to the search
    space and is checked there); returns the config it describes (worker-set fields at their defaults).
    ``space`` (the population's search space): ``lr`` is refused where the genome carries its own rate."""
    opts = {k: v for k, v in dict(settings or {}).items() if k != "mutations"}
    config = TrainConfig.from_dict(opts, user=True).validate()
    if "lr" in opts and space is not None and space.learning_rate(space.seed((3, 32, 32), 10)) is not None:
        raise SettingsError(f"training setting lr does nothing in search space {space.name!r}, whose genome "
                            f"carries its own learning rate; fix: remove it")
    return config
