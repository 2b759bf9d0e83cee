"""Training and evaluation: the paper's recipe, fast, resumable, and never raising on a diverged child.

The recipe (Real et al. 2017): SGD with momentum 0.9, batch 50, weight decay 1e-4, a constant learning rate
taken from the DNA, standard augmentation (4-pixel pad + random crop, horizontal flip); fitness is the
validation accuracy, measured once at the end.

How it is fast: the uint8 data set sits on the device once (:func:`evo.data.to_device`); each step takes
its batch as one gather from a padded copy of the training images (selection, crop and flip at once, the
indices a slice of a random permutation) and normalises it on the device -- no DataLoader, no per-image
Python. On CUDA it runs under bf16 autocast with channels_last tensors and never synchronises with the host
inside the loop except every ``check_every`` steps, where the summed loss is read once to detect NaN/inf.

The trainer knows nothing of files, locks or populations; it takes any ``nn.Module`` mapping NCHW float
images to logits.
"""
from __future__ import annotations

import dataclasses
import math
import os
import time
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from evo.base.files import atomic_write
from evo.network.data import Dataset, DeviceData, normalize, to_device
from evo.network.settings import TrainConfig
from evo.network.weights import WeightsError, load_weights

__all__ = [
    "TrainConfig",
    "TrainResult",
    "StateError",
    "train",
    "evaluate",
    "evaluate_split",
    "save_state",
    "load_state",
    "default_device",
]

STATE_FORMAT = 1


class StateError(WeightsError):
    """A training state file cannot be read or does not fit; the message names the file."""


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_device(device: str) -> torch.device:
    """``TrainConfig.device`` as a torch device (``"auto"``: CUDA when there is one, else the CPU)."""
    return torch.device(default_device() if device == "auto" else device)


@dataclasses.dataclass
class TrainResult:
    """What one training produced.

    ``fitness``: validation accuracy in [0, 1]; 0.0 when the loss diverged; None when interrupted (not
    evaluated: resume from ``state``). ``outcome``: ``"ok"``, ``"nan_loss"`` or ``"interrupted"``.
    ``train_loss``: mean training loss over the last ``check_every`` steps. ``images_per_s``: training
    throughput of this call (evaluation excluded). ``state``: the resumable training state when interrupted.
    """

    fitness: float | None
    steps_done: int
    outcome: str
    reason: str = ""
    train_loss: float = float("nan")
    wall_s: float = 0.0
    images_per_s: float = 0.0
    state: dict | None = dataclasses.field(default=None, repr=False)


# ----------------------------------------------------------------------------------------------------------
# Training state


def _cpu_copy(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: _cpu_copy(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_cpu_copy(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_cpu_copy(v) for v in obj)
    return obj


def save_state(state: dict, path: str | os.PathLike) -> None:
    """Write a training state with ``torch.save``, atomically (temporary file, fsync, rename)."""
    atomic_write(path, lambda f: torch.save(state, f))


def load_state(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Read a training state written by :func:`save_state` (``weights_only=True``: no code is run).

    Raises :class:`StateError` naming the file when it is missing, torn or not a training state.
    """
    state = load_weights(path, map_location, error=StateError,
                         fix="delete it to restart that training from its beginning")
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT or "model" not in state:
        raise StateError(f"{path} is not an evo training state (format {STATE_FORMAT})")
    return state


# ----------------------------------------------------------------------------------------------------------
# Evaluation


def _model_device(model: nn.Module) -> torch.device:
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device("cpu")


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 500, *,
             mean: torch.Tensor | tuple | None = None, std: torch.Tensor | tuple | None = None,
             amp: bool = True, channels_last: bool = True) -> float:
    """Accuracy of ``model`` on ``(x, y)`` in eval mode without gradients.

    ``x``: float images ready for the model, or uint8 images together with ``mean``/``std`` (per channel,
    [0, 1] units) to normalise them batch by batch on the model's device. Non-finite logits count as wrong.
    """
    dev = _model_device(model)
    if not x.is_floating_point():
        if mean is None or std is None:
            raise ValueError("uint8 images need mean= and std= to be normalised")
        mean = torch.as_tensor(mean, dtype=torch.float32, device=dev)
        std = torch.as_tensor(std, dtype=torch.float32, device=dev)
    was_training = model.training
    model.eval()
    use_amp = amp and dev.type == "cuda"
    mf = torch.channels_last if channels_last else torch.contiguous_format
    correct = torch.zeros((), dtype=torch.long, device=dev)
    try:
        for i in range(0, len(x), batch_size):
            xb = x[i:i + batch_size].to(dev, non_blocking=True)
            yb = y[i:i + batch_size].to(dev, non_blocking=True)
            if not xb.is_floating_point():
                xb = normalize(xb, mean, std, memory_format=mf)
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=use_amp):
                logits = model(xb)
            ok = (logits.argmax(1) == yb) & torch.isfinite(logits).all(1)
            correct += ok.sum()
    finally:
        model.train(was_training)
    return float(correct.item()) / max(1, len(x))


def evaluate_split(model: nn.Module, dataset: Dataset | DeviceData, split: str = "val",
                   batch_size: int = 500) -> float:
    """Accuracy on a data set's ``"train"``, ``"val"`` or ``"test"`` split (on the model's device)."""
    dd = to_device(dataset, _model_device(model))
    x, y = dd.split(split)
    return evaluate(model, x, y, batch_size, mean=dd.mean, std=dd.std)


# ----------------------------------------------------------------------------------------------------------
# Training


def _make_optimizer(model: nn.Module, lr: float, cfg: TrainConfig, device: torch.device) -> torch.optim.SGD:
    params = [p for p in model.parameters() if p.requires_grad]
    kw = dict(lr=lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    if device.type == "cuda":
        try:
            return torch.optim.SGD(params, fused=True, **kw)
        except (RuntimeError, TypeError, ValueError):
            pass
    return torch.optim.SGD(params, **kw)


def _params_finite(model: nn.Module) -> bool:
    flags = [torch.isfinite(p).all() for p in model.parameters()]
    return bool(torch.stack(flags).all().item()) if flags else True


def train(model: nn.Module, dataset: Dataset | DeviceData, lr: float, config: TrainConfig | None = None,
          state: dict | None = None, on_checkpoint: Callable[[dict], None] | None = None,
          should_stop: Callable[[], bool] | None = None) -> TrainResult:
    """Train ``model`` on ``dataset``'s train split with constant learning rate ``lr``; fitness = val accuracy.

    ``state``: a training state from ``on_checkpoint``, an interrupted result or :func:`load_state`; training
    continues from it exactly (bit-identical on the CPU). ``on_checkpoint(state)`` is called every checkpoint
    interval with the full resumable state (CPU tensors, safe to keep). ``should_stop()`` is polled every
    ``config.poll_every`` steps; when it returns true the training stops and returns
    ``outcome="interrupted"`` with ``state``. A NaN/inf loss ends the training with fitness 0.0 and
    ``outcome="nan_loss"``; it never raises for that.

    The model is moved to ``config.device`` and left there, in train mode.
    """
    cfg = config or TrainConfig()
    t0 = time.perf_counter()
    device = resolve_device(cfg.device)
    try:
        lr_value = float(lr)
    except (TypeError, ValueError):
        lr_value = float("nan")
    if not (math.isfinite(lr_value) and lr_value > 0):
        return TrainResult(0.0, 0 if state is None else int(state.get("step", 0)), "nan_loss",
                           reason=f"learning rate {lr!r} is not a positive finite number")
    lr = lr_value
    dd = to_device(dataset, device)
    cuda = device.type == "cuda"
    use_amp = cfg.amp and cuda
    mf = torch.channels_last if cfg.channels_last else torch.contiguous_format
    model.to(device)
    if mf is torch.channels_last:
        model.to(memory_format=torch.channels_last)
    model.train()
    if cuda:
        torch.backends.cudnn.benchmark = True
    opt = _make_optimizer(model, lr, cfg, device)

    gen = torch.Generator(device=device)
    n = len(dd.train_x)
    bs = cfg.batch_size
    if n < bs:
        raise ValueError(f"training split has {n} images, fewer than one batch of {bs}")
    if state is not None:
        if state.get("format") != STATE_FORMAT:
            raise StateError("training state has an unknown format")
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        for g in opt.param_groups:
            g["lr"] = lr
        step = int(state["step"])
        if len(state["perm"]) != n:
            raise StateError(f"training state was made on {len(state['perm'])} training images, not {n}")
        try:
            gen.set_state(state["generator"].cpu())
            perm = state["perm"].to(device)
            pos = int(state["pos"])
        except RuntimeError:
            # a state saved on another kind of device (CPU vs CUDA generators): continue with a fresh,
            # still deterministic, data order -- exact only when resumed on the same kind of device
            gen.manual_seed(int(cfg.seed) * 1_000_003 + step)
            perm = torch.randperm(n, generator=gen, device=device)
            pos = 0
        model_rng = state.get("torch_rng")
    else:
        gen.manual_seed(int(cfg.seed))
        perm = torch.randperm(n, generator=gen, device=device)
        pos = 0
        step = 0
        model_rng = None

    # The global RNG (used by e.g. dropout inside a model) is forked, seeded and saved with the state, so
    # resuming reproduces it and the caller's global RNG is left untouched.
    fork_devices = [device.index if device.index is not None else torch.cuda.current_device()] if cuda else []
    with torch.random.fork_rng(devices=fork_devices):
        if model_rng is not None:
            torch.set_rng_state(model_rng["cpu"])
            if cuda and "cuda" in model_rng:
                torch.cuda.set_rng_state(model_rng["cuda"], device)
            elif cuda:
                torch.cuda.manual_seed(int(cfg.seed) + step)
        else:
            torch.manual_seed(int(cfg.seed) + 0x2545F491)

        def snapshot() -> dict:
            rng = {"cpu": torch.get_rng_state()}
            if cuda:
                rng["cuda"] = torch.cuda.get_rng_state(device)
            return {
                "format": STATE_FORMAT,
                "step": step,
                "pos": pos,
                "perm": perm.detach().to("cpu", copy=True),
                "generator": gen.get_state().to("cpu", copy=True),
                "torch_rng": rng,
                "model": _cpu_copy(model.state_dict()),
                "optimizer": _cpu_copy(opt.state_dict()),
                "lr": float(lr),
                "batch_size": bs,
            }

        start_step = step
        loss_sum = torch.zeros((), dtype=torch.float32, device=device)
        window = 0
        last_loss = float("nan")
        last_ckpt_t = time.monotonic()
        last_ckpt_step = step
        outcome, reason = "ok", ""
        t_loop = time.perf_counter()
        while step < cfg.steps:
            if pos + bs > n:
                perm = torch.randperm(n, generator=gen, device=device)
                pos = 0
            idx = perm[pos:pos + bs]
            pos += bs
            xb = dd.batch(idx, gen if cfg.augment else None, pad=cfg.augment_pad, mode=cfg.augment_mode)
            yb = dd.train_y.index_select(0, idx)
            xb = dd.normalize(xb, memory_format=mf)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                logits = model(xb)
            loss = F.cross_entropy(logits.float(), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += loss.detach()
            window += 1
            step += 1

            if window >= cfg.check_every or step >= cfg.steps:
                v = float(loss_sum.item()) / window  # the one host sync, every check_every steps
                loss_sum.zero_()
                window = 0
                if not math.isfinite(v):
                    outcome, reason = "nan_loss", f"training loss became {v} by step {step}"
                    break
                last_loss = v
            if should_stop is not None and step % cfg.poll_every == 0 and step < cfg.steps and should_stop():
                if window:
                    v = float(loss_sum.item()) / window
                    if not math.isfinite(v):
                        outcome, reason = "nan_loss", f"training loss became {v} by step {step}"
                        break
                outcome, reason = "interrupted", f"stopped at step {step} of {cfg.steps}"
                break
            if on_checkpoint is not None and step < cfg.steps:
                due = (cfg.checkpoint_every_steps is not None and step - last_ckpt_step >= cfg.checkpoint_every_steps) \
                    or (cfg.checkpoint_every_s is not None and time.monotonic() - last_ckpt_t >= cfg.checkpoint_every_s)
                if due:
                    on_checkpoint(snapshot())
                    last_ckpt_t = time.monotonic()
                    last_ckpt_step = step
        if cuda:
            torch.cuda.synchronize(device)
        loop_s = time.perf_counter() - t_loop
        ips = (step - start_step) * bs / loop_s if loop_s > 0 else 0.0

        if outcome == "ok" and not _params_finite(model):
            outcome, reason = "nan_loss", f"weights became non-finite by step {step}"
        if outcome == "nan_loss":
            return TrainResult(0.0, step, outcome, reason, float("nan"), time.perf_counter() - t0, ips)
        if outcome == "interrupted":
            return TrainResult(None, step, outcome, reason, last_loss, time.perf_counter() - t0, ips,
                               state=snapshot())

    fitness = evaluate(model, dd.val_x, dd.val_y, cfg.eval_batch_size, mean=dd.mean, std=dd.std, amp=cfg.amp,
                       channels_last=cfg.channels_last)
    return TrainResult(fitness, step, "ok", "", last_loss, time.perf_counter() - t0, ips)
