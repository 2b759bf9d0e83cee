"""One training step, eager or replayed from a CUDA graph, and the weight average of the fast recipe.

A small evolved network's step is a few dozen tiny kernels: on a GPU the time goes to launching them, not to
running them. :class:`Stepper` captures the whole step (forward, loss, backward, the fused SGD update, the
summed loss) in a CUDA graph once the batch shape is fixed and replays it each step -- one launch instead of
hundreds -- and falls back to eager steps where capture is not possible (the CPU, ``cuda_graph="off"``, too
few steps, a network whose step synchronises with the host or otherwise fails to capture). ``kind`` and
``reason`` say which step ran and why.

The learning rate lives in a device tensor for a captured step (refilled before each replay, no host sync);
an eager step sets the optimizer's float rate, so that CPU training stays bit-reproducible.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from evo.network.settings import TrainConfig

__all__ = ["GRAPH_WARMUP_STEPS", "Stepper", "WeightAverage", "graph_plan", "make_optimizer", "set_lr"]

GRAPH_WARMUP_STEPS = 3  # eager steps on a side stream before capture (cuDNN autotuning, lazy allocations)


def graph_plan(cfg: TrainConfig, device: torch.device, steps_left: int) -> tuple[bool, str]:
    """Whether to try a CUDA-graph step, and if not, why not."""
    if device.type != "cuda":
        return False, f"eager: CUDA graphs need a CUDA device, this training runs on the {device.type.upper()}"
    if cfg.cuda_graph == "off":
        return False, "eager: cuda_graph=off"
    if steps_left <= GRAPH_WARMUP_STEPS + 1:
        return False, f"eager: {steps_left} steps left, too few to capture a graph"
    if not hasattr(torch.cuda, "CUDAGraph"):
        return False, "eager: this torch has no CUDA graphs"
    return True, ""


def make_optimizer(model: nn.Module, lr: float, cfg: TrainConfig, device: torch.device,
                   graph: bool = False) -> torch.optim.SGD:
    """SGD with momentum and weight decay (the paper's), Nesterov momentum in the fast recipe.

    ``graph``: a fused optimizer whose learning rate is a device tensor, so that the update can be captured.
    On CUDA the fused kernel is used when available; on the CPU the reference implementation (bit-stable).
    """
    params = [p for p in model.parameters() if p.requires_grad]
    kw = dict(momentum=cfg.momentum, weight_decay=cfg.weight_decay, nesterov=cfg.fast and cfg.momentum > 0)
    if graph:
        return torch.optim.SGD(params, lr=torch.tensor(float(lr), dtype=torch.float32, device=device),
                               fused=True, **kw)
    if device.type == "cuda":
        try:
            return torch.optim.SGD(params, lr=lr, fused=True, **kw)
        except (RuntimeError, TypeError, ValueError):
            pass
    return torch.optim.SGD(params, lr=lr, **kw)


def set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    """Set every group's learning rate (in place for a tensor rate: no new allocation, no host sync)."""
    for g in opt.param_groups:
        if isinstance(g["lr"], torch.Tensor):
            g["lr"].fill_(lr)
        else:
            g["lr"] = lr


class WeightAverage:
    """An exponential moving average of a network's floating-point weights and buffers (the fast recipe).

    :meth:`update` after each step; :meth:`apply` copies the average into the network (what is evaluated
    and kept). Integer buffers (BatchNorm's step counts) are left as they are.
    """

    def __init__(self, model: nn.Module) -> None:
        sd = model.state_dict()
        self.names = [k for k, t in sd.items() if t.is_floating_point()]
        self.live = [sd[k] for k in self.names]
        self.avg = [t.detach().clone() for t in self.live]

    @torch.no_grad()
    def update(self, decay: float) -> None:
        if self.avg:
            torch._foreach_lerp_(self.avg, self.live, 1.0 - float(decay))

    @torch.no_grad()
    def apply(self) -> None:
        for a, t in zip(self.avg, self.live):
            t.copy_(a)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {k: a.detach().to("cpu", copy=True) for k, a in zip(self.names, self.avg)}

    @torch.no_grad()
    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        if sorted(state) != sorted(self.names):
            raise ValueError("the weight average does not fit the network")
        for k, a in zip(self.names, self.avg):
            a.copy_(state[k])


class Stepper:
    """Runs training steps: eager, or (on CUDA, when possible) replays of one captured CUDA graph.

    Each step adds its loss to ``loss_sum`` on the device (read by the caller every few steps).
    """

    def __init__(self, model: nn.Module, opt: torch.optim.Optimizer, cfg: TrainConfig, device: torch.device,
                 try_graph: bool, reason: str) -> None:
        self.model, self.opt, self.device = model, opt, device
        self.use_amp = cfg.amp and device.type == "cuda"
        self.smoothing = float(cfg.label_smoothing) if cfg.fast else 0.0
        self.try_graph = try_graph
        self.kind = "eager"
        self.reason = reason
        self.loss_sum = torch.zeros((), dtype=torch.float32, device=device)
        self._warm = 0
        self._graph: torch.cuda.CUDAGraph | None = None
        self._x: torch.Tensor | None = None
        self._y: torch.Tensor | None = None
        self._side: torch.cuda.Stream | None = torch.cuda.Stream(device) if try_graph else None

    def _loss(self, x: torch.Tensor, y: torch.Tensor, cache: bool = True) -> torch.Tensor:
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.use_amp, cache_enabled=cache):
            logits = self.model(x)
        return F.cross_entropy(logits.float(), y, label_smoothing=self.smoothing)

    def _eager(self, x: torch.Tensor, y: torch.Tensor, lr: float) -> None:
        loss = self._loss(x, y)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        set_lr(self.opt, lr)
        self.opt.step()
        self.loss_sum += loss.detach()

    def _capture(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self._x = torch.empty_like(x)
        self._y = torch.empty_like(y)
        self._x.copy_(x)
        self._y.copy_(y)
        self.opt.zero_grad(set_to_none=True)
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g, capture_error_mode="thread_local"):  # other threads (a lease keep-alive) go on
            loss = self._loss(self._x, self._y, cache=False)
            loss.backward()
            self.opt.step()
            self.loss_sum += loss.detach()
        self._graph = g

    def __call__(self, x: torch.Tensor, y: torch.Tensor, lr: float) -> None:
        """One step on batch ``(x, y)`` with learning rate ``lr``."""
        if self._graph is not None:
            self._x.copy_(x)
            self._y.copy_(y)
            set_lr(self.opt, lr)
            self._graph.replay()
            return
        if not self.try_graph:
            self._eager(x, y, lr)
            return
        if self._warm < GRAPH_WARMUP_STEPS:  # real steps, on a side stream as capture requires
            self._side.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(self._side):
                self._eager(x, y, lr)
            torch.cuda.current_stream(self.device).wait_stream(self._side)
            self._warm += 1
            return
        set_lr(self.opt, lr)
        try:
            self._capture(x, y)
        except Exception as e:  # noqa: BLE001 - a step that cannot be captured is trained eagerly
            self._graph = None
            self.try_graph = False
            self.opt.zero_grad(set_to_none=True)
            torch.cuda.synchronize(self.device)
            first = (str(e).strip().splitlines() or [""])[0][:160]
            self.reason = f"eager: the step could not be captured ({type(e).__name__}: {first})"
            self._eager(x, y, lr)
            return
        self.kind = "cuda_graph"
        self.reason = "cuda_graph: the whole step is replayed from one captured graph"
        self._graph.replay()

    def release(self) -> None:
        """Free the graph and its memory pool (the gradients of the captured step are freed with it)."""
        self._graph = None
        self._x = self._y = None
        self.opt.zero_grad(set_to_none=True)

