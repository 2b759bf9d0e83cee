"""Training: the paper's recipe or the fast one, resumable exactly, and never raising on a diverged child.

The paper's recipe (Real et al. 2017): SGD with momentum 0.9, batch 50, weight decay 1e-4, a constant
learning rate taken from the DNA, standard augmentation (4-pixel pad + random crop, horizontal flip); fitness
is the validation accuracy, measured once at the end. The fast recipe (``recipe="fast"``, see
:mod:`evo.network.settings`) adds label smoothing, Nesterov momentum, a warm-up and decay of the learning rate
within the child's own steps (scaled with the batch size), a moving average of the weights that is what gets
evaluated and kept, alternating flips, no crop in the first epoch and test-time flip averaging. Its fitness is
the same measure (validation accuracy); :class:`TrainResult` says which recipe and which step ran.

How it is fast: the uint8 data set sits on the device once (:func:`evo.network.data.to_device`); each step
takes its batch as one gather from a padded copy of the training images (selection, crop and flip at once,
the indices a slice of a random permutation) and normalises it on the device -- no DataLoader, no per-image
Python. On CUDA it runs under bf16 autocast with channels_last tensors, replays the step from a CUDA graph
where the network allows (:mod:`evo.network.step`), and never synchronises with the host inside the loop
except every ``check_every`` steps, where the summed loss is read once to detect NaN/inf.

A resumed training continues exactly where it stopped (bit-identical on the CPU): the state holds the
weights, the optimizer, the data order and position, the generators, and for the fast recipe the weight
average, the epoch (the flips' parity) and each image's first flip; the schedule is a function of the step.

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
from torch import nn

from evo.base.files import atomic_write
from evo.network.data import Dataset, DeviceData, to_device
from evo.network.evaluation import evaluate, evaluate_split
from evo.network.settings import TrainConfig
from evo.network.step import Stepper, WeightAverage, graph_plan, make_optimizer
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
    "resolve_device",
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
    ``recipe``: ``"paper"`` or ``"fast"``. ``step_kind``: ``"eager"`` or ``"cuda_graph"`` (the step that ran
    last in this call), ``step_reason``: why.
    """

    fitness: float | None
    steps_done: int
    outcome: str
    reason: str = ""
    train_loss: float = float("nan")
    wall_s: float = 0.0
    images_per_s: float = 0.0
    state: dict | None = dataclasses.field(default=None, repr=False)
    recipe: str = "paper"
    step_kind: str = "eager"
    step_reason: str = ""


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


def _params_finite(model: nn.Module) -> bool:
    flags = [torch.isfinite(p).all() for p in model.parameters()]
    return bool(torch.stack(flags).all().item()) if flags else True


# ----------------------------------------------------------------------------------------------------------
# Training


@dataclasses.dataclass
class _Order:
    """Where the training is in its data: the permutation, the position in it, the epoch, the flips."""

    perm: torch.Tensor
    pos: int = 0
    epoch: int = 0
    first_flip: torch.Tensor | None = None  # fast recipe: each image's flip in even epochs


def _new_order(gen: torch.Generator, n: int, device: torch.device, alternate: bool) -> _Order:
    perm = torch.randperm(n, generator=gen, device=device)
    first = torch.randint(0, 2, (n,), generator=gen, device=device).bool() if alternate else None
    return _Order(perm, 0, 0, first)


def train(model: nn.Module, dataset: Dataset | DeviceData, lr: float, config: TrainConfig | None = None,
          state: dict | None = None, on_checkpoint: Callable[[dict], None] | None = None,
          should_stop: Callable[[], bool] | None = None) -> TrainResult:
    """Train ``model`` on ``dataset``'s train split with the DNA's learning rate ``lr``; fitness = val accuracy.

    ``state``: a training state from ``on_checkpoint``, an interrupted result or :func:`load_state`; training
    continues from it exactly (bit-identical on the CPU). ``on_checkpoint(state)`` is called every checkpoint
    interval with the full resumable state (CPU tensors, safe to keep). ``should_stop()`` is polled every
    ``config.poll_every`` steps; when it returns true the training stops and returns
    ``outcome="interrupted"`` with ``state``. A NaN/inf loss ends the training with fitness 0.0 and
    ``outcome="nan_loss"``; it never raises for that.

    The model is moved to ``config.device`` and left there, in train mode (with the fast recipe it holds the
    weight average at the end: the weights that were evaluated).
    """
    cfg = config or TrainConfig()
    t0 = time.perf_counter()
    device = resolve_device(cfg.device)
    fast = cfg.fast
    try:
        lr_value = float(lr)
    except (TypeError, ValueError):
        lr_value = float("nan")
    if not (math.isfinite(lr_value) and lr_value > 0):
        return TrainResult(0.0, 0 if state is None else int(state.get("step", 0)), "nan_loss",
                           reason=f"learning rate {lr!r} is not a positive finite number", recipe=cfg.recipe)
    lr = lr_value
    dd = to_device(dataset, device)
    cuda = device.type == "cuda"
    mf = torch.channels_last if cfg.channels_last else torch.contiguous_format
    model.to(device)
    if mf is torch.channels_last:
        model.to(memory_format=torch.channels_last)
    model.train()
    if cuda:
        torch.backends.cudnn.benchmark = True

    gen = torch.Generator(device=device)
    n = len(dd.train_x)
    bs = cfg.batch_size
    if n < bs:
        raise ValueError(f"training split has {n} images, fewer than one batch of {bs}")
    alternate = fast and cfg.augment
    step = 0 if state is None else int(state["step"])
    try_graph, why = graph_plan(cfg, device, cfg.steps - step)
    try:
        opt = make_optimizer(model, cfg.lr_at(lr, step), cfg, device, graph=try_graph)
    except (RuntimeError, TypeError, ValueError) as e:
        try_graph, why = False, f"eager: no capturable fused optimizer ({type(e).__name__}: {e})"
        opt = make_optimizer(model, cfg.lr_at(lr, step), cfg, device)
    if state is not None:
        if state.get("format") != STATE_FORMAT:
            raise StateError("training state has an unknown format")
        if state.get("recipe", "paper") != cfg.recipe:
            raise StateError(f"training state was made with recipe {state.get('recipe', 'paper')!r}, "
                             f"not {cfg.recipe!r}")
        model.load_state_dict(state["model"])
        # how this optimizer runs here (its rate: a device tensor for a captured step; fused or not) is
        # this device's choice, not the saved one's; the rate itself is set each step
        kept = [{k: g[k] for k in ("lr", "fused", "foreach") if k in g} for g in opt.param_groups]
        opt.load_state_dict(state["optimizer"])
        for g, k in zip(opt.param_groups, kept):
            g.update(k)
        if len(state["perm"]) != n:
            raise StateError(f"training state was made on {len(state['perm'])} training images, not {n}")
        try:
            gen.set_state(state["generator"].cpu())
            first = state.get("first_flip")
            order = _Order(state["perm"].to(device), int(state["pos"]), int(state.get("epoch", 0)),
                           None if first is None else first.to(device))
            if alternate and order.first_flip is None:
                raise StateError("training state has no flips for the fast recipe")
        except RuntimeError:
            # a state saved on another kind of device (CPU vs CUDA generators): continue with a fresh,
            # still deterministic, data order -- exact only when resumed on the same kind of device
            gen.manual_seed(int(cfg.seed) * 1_000_003 + step)
            order = _new_order(gen, n, device, alternate)
        model_rng = state.get("torch_rng")
    else:
        gen.manual_seed(int(cfg.seed))
        order = _new_order(gen, n, device, alternate)
        model_rng = None
    average = WeightAverage(model) if fast and cfg.ema > 0 else None
    if average is not None and state is not None and state.get("ema") is not None:
        average.load_state_dict(state["ema"])
    stepper = Stepper(model, opt, cfg, device, try_graph, why)

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
            out = {
                "format": STATE_FORMAT,
                "recipe": cfg.recipe,
                "step": step,
                "pos": order.pos,
                "epoch": order.epoch,
                "perm": order.perm.detach().to("cpu", copy=True),
                "generator": gen.get_state().to("cpu", copy=True),
                "torch_rng": rng,
                "model": _cpu_copy(model.state_dict()),
                "optimizer": _cpu_copy(opt.state_dict()),
                "lr": float(lr),
                "batch_size": bs,
            }
            if order.first_flip is not None:
                out["first_flip"] = order.first_flip.detach().to("cpu", copy=True)
            if average is not None:
                out["ema"] = average.state_dict()
            return out

        start_step = step
        loss_sum = stepper.loss_sum
        window = 0
        last_loss = float("nan")
        last_ckpt_t = time.monotonic()
        last_ckpt_step = step
        outcome, reason = "ok", ""
        t_loop = time.perf_counter()
        while step < cfg.steps:
            if order.pos + bs > n:
                order.perm = torch.randperm(n, generator=gen, device=device)
                order.pos = 0
                order.epoch += 1
            idx = order.perm[order.pos:order.pos + bs]
            order.pos += bs
            flips = None
            if order.first_flip is not None:  # alternating flips: each image changes side every epoch
                flips = order.first_flip.index_select(0, idx)
                if order.epoch % 2:
                    flips = ~flips
            xb = dd.batch(idx, gen if cfg.crops(order.epoch) else None, pad=cfg.augment_pad, mode=cfg.augment_mode,
                          flips=flips)
            yb = dd.train_y.index_select(0, idx)
            xb = dd.normalize(xb, memory_format=mf)
            stepper(xb, yb, cfg.lr_at(lr, step))
            step += 1
            if average is not None:
                average.update(cfg.ema_decay(step))
            window += 1

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
        stepper.release()
        done = dict(recipe=cfg.recipe, step_kind=stepper.kind, step_reason=stepper.reason)

        if outcome == "ok" and average is not None:
            average.apply()  # the average is what is evaluated and kept
        if outcome == "ok" and not _params_finite(model):
            outcome, reason = "nan_loss", f"weights became non-finite by step {step}"
        if outcome == "nan_loss":
            return TrainResult(0.0, step, outcome, reason, float("nan"), time.perf_counter() - t0, ips, **done)
        if outcome == "interrupted":
            return TrainResult(None, step, outcome, reason, last_loss, time.perf_counter() - t0, ips,
                               state=snapshot(), **done)

    fitness = evaluate(model, dd.val_x, dd.val_y, cfg.eval_batch_size, mean=dd.mean, std=dd.std, **cfg.evaluation)
    return TrainResult(fitness, step, "ok", "", last_loss, time.perf_counter() - t0, ips, **done)
