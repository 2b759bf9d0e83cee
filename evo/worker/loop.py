"""The stateless worker: the evolution loop of Real et al. 2017, one child at a time.

A worker owns nothing but its current lease.  Each step it asks the population for work
(``Population.next_task``: seeds, children to resume or retrain, else a selection step of
the configured strategy), then, outside the lock, builds the child (copy the parent,
mutate, inherit matching weights), trains it, checkpoints the training state every few
minutes, and commits the child's DNA, weights and fitness.  This module is where the
store (files, locks, leases) meets the torch layer (model, data, training).

Exit codes (the contract of ``slurm/worker.sbatch``): 0 when the experiment is finished or
stopped, 3 when interrupted (SIGTERM, SIGUSR2, ``--time-limit``) after handing the
in-flight child back, 1 on an error.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import random
import time
from typing import Any, Callable

import torch

from evo.network.data import Dataset, load_dataset
from evo.genome.real2017.dna import DNA, seed_dna
from evo.genome.real2017.flops import count_flops
from evo.network.real2017 import build_model, inherit_weights
from evo.genome.real2017.mutations import IDENTITY, RESET_WEIGHTS, MutationConfig, mutate, resets_weights
from evo.worker.signals import StopRequest
from evo.population.store import LeaseLost, Population, Task, Wait, WorkerInfo
from evo.network.train import StateError, TrainConfig, TrainResult, load_state, save_state, train

__all__ = ["EXIT_DONE", "EXIT_ERROR", "EXIT_INTERRUPTED", "Worker", "random_dna", "run_worker"]

EXIT_DONE = 0
EXIT_ERROR = 1
EXIT_INTERRUPTED = 3

log = logging.getLogger("evo.worker")


def random_dna(rng: random.Random, input_shape: tuple[int, int, int], num_classes: int,
               config: MutationConfig | None = None, max_mutations: int = 30) -> tuple[DNA, list[dict]]:
    """The random-search baseline's architecture: the seed after U(0, max) random mutations.

    Only structural mutations and learning-rate changes are drawn (IDENTITY and
    RESET-WEIGHTS mean nothing for a model trained from scratch).
    """
    base = config or MutationConfig()
    allowed = [n for n, _ in base.candidates() if n not in (IDENTITY, RESET_WEIGHTS)]
    cfg = dataclasses.replace(base, allowed=tuple(allowed))
    return mutate(seed_dna(input_shape, num_classes), rng, n=rng.randint(0, max_mutations), config=cfg)


def _finite(x: Any) -> Any:
    """JSON has no NaN: non-finite floats in a fitness record become null."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    return x


def _load_weights(path: str) -> dict[str, torch.Tensor]:
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]  # a full training state
    if not isinstance(state, dict):
        raise StateError(f"{path}: not a weights file")
    return state


def check_train_settings(settings: dict) -> None:
    """Refuse, at ``evo init``, training settings that every worker would fail on."""
    import dataclasses as _dc

    opts = {k: v for k, v in settings.items() if k != "mutations"}
    known = {f.name for f in _dc.fields(TrainConfig)} - {"steps", "seed", "device", "checkpoint_every_s"}
    unknown = sorted(set(opts) - known)
    if unknown:
        raise ValueError(f"config field 'train': unknown training settings {unknown}; known: {sorted(known)}")
    try:
        TrainConfig(**opts)
        MutationConfig.from_dict(settings.get("mutations"))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"config field 'train': {exc}") from None


class Worker:
    """One worker process: the loop that a Slurm array task runs for its whole allocation."""

    def __init__(self, root: str, *, worker_id: str | None = None, time_limit_s: float | None = None,
                 device: str | None = None, max_children: int | None = None,
                 progress: Callable[[str], None] | None = None, stop: StopRequest | None = None) -> None:
        self.pop = Population.open(root)
        self.config = self.pop.config
        self.me = WorkerInfo.from_env(worker_id)
        self.deadline = None if time_limit_s is None else time.monotonic() + float(time_limit_s)
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.max_children = max_children
        self.progress = progress or (lambda msg: log.info(msg))
        self.stop = stop or StopRequest()
        self.rng = random.Random(f"{self.config.seed}/{self.me.id}/{time.time_ns()}")
        self.mutation_config = MutationConfig.from_dict(self.config.train.get("mutations"))
        self._dataset: Dataset | None = None
        self.children = 0
        self._next: Task | Wait | None = None  # taken together with the last commit

    # ----------------------------------------------------------------------------- signals
    def install_signal_handlers(self) -> None:
        """SIGTERM / SIGUSR2 / SIGINT: finish the step at hand quickly, hand the child back."""
        self.stop.install()

    def _out_of_time(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline

    def should_stop(self) -> bool:
        if self._out_of_time():
            self.stop.request("time limit")
        return self.stop.is_set()

    # ----------------------------------------------------------------------------- data
    @property
    def dataset(self) -> Dataset:
        if self._dataset is None:
            kw = dict(self.config.dataset_kwargs)
            t = time.perf_counter()
            self._dataset = load_dataset(self.config.dataset, **kw)
            self.progress(f"loaded {self._dataset!r} in {time.perf_counter() - t:.2f}s")
        return self._dataset

    def train_config(self, task: Task) -> TrainConfig:
        opts = {k: v for k, v in self.config.train.items() if k != "mutations"}
        return TrainConfig(**{**opts, "steps": int(task.steps or self.config.steps_per_child),
                              "seed": (self.config.seed * 1_000_003 + task.child_id) & 0x7FFFFFFF,
                              "checkpoint_every_s": float(self.config.checkpoint_every_s),
                              "device": self.device})

    # ----------------------------------------------------------------------------- the child
    def make_child(self, task: Task) -> tuple[DNA, list[dict], torch.nn.Module, dict | None, dict]:
        """Build the child a task asks for: (dna, mutations, model, resume state, inheritance)."""
        ds = self.dataset
        inherited: dict[str, Any] = {"copied": 0, "fresh": 0}
        kind = task.base_kind  # a resume whose DNA was never saved starts its original work over
        if task.dna is not None:  # seed with a given DNA, retrain, or resume
            dna = DNA.from_dict(task.dna)
            mutations = list(task.mutations_applied or [])
        elif kind == "seed":
            base = self.config.seed_dna
            dna = DNA.from_dict(base) if base else seed_dna(ds.input_shape, ds.num_classes)
            mutations = []
        elif kind == "random":
            dna, mutations = random_dna(self.rng, ds.input_shape, ds.num_classes, self.mutation_config)
        elif task.parent_dna is not None:
            parent = DNA.from_dict(task.parent_dna)
            dna, mutations = mutate(parent, self.rng, n=int(task.mutations), config=self.mutation_config)
        else:
            raise ValueError(f"task {task.child_id} ({task.kind}) names neither a DNA nor a parent")
        if tuple(dna.input_shape) != tuple(ds.input_shape) or dna.num_classes != ds.num_classes:
            raise ValueError(
                f"child {task.child_id}: its DNA expects input {dna.input_shape} and {dna.num_classes} classes "
                f"but the data set {ds.name} has {ds.input_shape} and {ds.num_classes}")
        model = build_model(dna)
        state = None
        if task.resume_checkpoint and os.path.exists(task.resume_checkpoint):
            try:
                state = load_state(task.resume_checkpoint)
            except StateError as exc:
                self.progress(f"child {task.child_id}: cannot resume ({exc}); training from the start")
                state = None
        if state is None and task.inherit and task.parent_checkpoint and not resets_weights(mutations):
            try:
                report = inherit_weights(model, _load_weights(task.parent_checkpoint))
                inherited = {k: len(v) for k, v in report.items()}
            except Exception as exc:  # noqa: BLE001 - any unreadable file: torn, truncated, foreign
                self.progress(f"child {task.child_id}: parent weights unreadable "
                              f"({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); fresh weights")
        return dna, mutations, model, state, inherited

    def run_task(self, task: Task) -> str:
        """Train one task's child and commit it; return "committed", "interrupted" or "lost"."""
        lease = task.lease
        t0 = time.time()
        dna, mutations, model, state, inherited = self.make_child(task)
        lease.save_dna(dna.to_dict(), mutations)
        names = ", ".join(m["name"] for m in mutations) or task.kind
        self.progress(f"child {task.child_id} ({task.kind}, parent {task.parent_id}): {names}; "
                      f"{'resuming at step ' + str(state['step']) if state else 'training'}")
        cfg = self.train_config(task)
        t_ready = time.time()
        # segments [start, end) of steps trained by each attempt, kept inside the training state so
        # that a resumed child's record shows how its steps were trained (a preemption loses none)
        prior = [list(map(int, seg)) for seg in (state or {}).get("segments", [])]
        start = int(state["step"]) if state else 0

        def with_segments(st: dict) -> dict:
            return {**st, "segments": prior + [[start, int(st["step"])]]}

        def checkpoint(st: dict) -> None:
            lease.save_checkpoint(lambda path: save_state(with_segments(st), path))

        with lease.keepalive():
            try:
                result: TrainResult = train(model, self.dataset, dna.learning_rate, cfg, state=state,
                                            on_checkpoint=checkpoint,
                                            should_stop=lambda: self.should_stop() or lease.lost)
            except torch.cuda.OutOfMemoryError as exc:
                # a network too large for this device is an unfit individual, not a broken worker
                model = build_model(dna)  # drop the device copy
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
                result = TrainResult(None, int(state["step"]) if state else 0, "out_of_memory",
                                     reason=str(exc).splitlines()[0][:300])
        if lease.lost:
            self.progress(f"child {task.child_id}: lease lost (another worker recovered it); dropping it")
            return "lost"
        if result.outcome == "interrupted":
            try:
                lease.save_checkpoint(lambda path: save_state(with_segments(result.state), path))
            except LeaseLost:
                return "lost"
            self.pop.release(task, reason=f"interrupted: {self.stop.reason or 'stop'}")
            self.progress(f"child {task.child_id}: interrupted at step {result.steps_done} "
                          f"({self.stop.reason}); checkpoint saved, handed back")
            return "interrupted"
        ds = self.dataset
        cost = count_flops(dna, batch_size=cfg.batch_size, steps=result.steps_done,
                           validation_images=len(ds.val_x))
        t_end = time.time()
        record = {
            "fitness": result.fitness if result.outcome == "ok" else None,
            "outcome": result.outcome,
            "reason": result.reason,
            "steps_trained": result.steps_done,
            "segments": prior + [[start, result.steps_done]],
            "flops": cost.total_flops,
            "params": cost.params,
            "forward_flops": cost.forward_flops,
            "mutations": mutations,
            "learning_rate": dna.learning_rate,
            "depth": dna.depth(),
            "train_loss": result.train_loss,
            "train_wall_s": result.wall_s,
            "images_per_s": result.images_per_s,
            "inherited": inherited,
            "device": str(self.device),
            "overhead_s": {"prepare": t_ready - t0},
        }
        weights = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        # the next unit of work is taken in the same critical section as this commit
        more = not self.should_stop() and (self.max_children is None or self.children + 1 < self.max_children)
        out = self.pop.commit(task, dna.to_dict(), _finite(record),
                              checkpoint=lambda path: torch.save(weights, path),
                              next_for=self.me if more else None, rng=self.rng)
        self._next = out.next
        self.children += 1
        if not out:
            self.progress(f"child {task.child_id}: not committed ({out.status})")
            return "lost"
        fit = f"{result.outcome}: {result.reason}" if record["fitness"] is None else f"fitness {result.fitness:.4f}"
        self.progress(f"child {task.child_id}: {fit} after {result.steps_done} steps in "
                      f"{result.wall_s:.1f}s (+{time.time() - t_end:.2f}s commit)")
        return "committed"

    # ----------------------------------------------------------------------------- the loop
    def _hand_back_next(self, reason: str) -> None:
        """Release a task taken with the last commit that this worker will not train."""
        nxt, self._next = self._next, None
        if isinstance(nxt, Task):
            try:
                self.pop.release(nxt, reason=reason)
            except Exception as exc:  # noqa: BLE001 - its lease expires and it is recovered
                self.progress(f"child {nxt.child_id}: could not hand it back ({exc})")

    def run(self) -> int:
        """Work until the experiment ends (0), an interruption (3), or an error (1)."""
        self.progress(f"worker {self.me.id} on {self.device} for {self.pop.root}")
        while True:
            if self.should_stop():
                self._hand_back_next(f"interrupted: {self.stop.reason}")
                self.progress(f"stopping: {self.stop.reason}")
                return EXIT_INTERRUPTED
            if self.max_children is not None and self.children >= self.max_children:
                self._hand_back_next("worker done")
                return EXIT_DONE
            task, self._next = self._next, None
            if task is None:
                task = self.pop.next_task(self.me, self.rng)
            if not task:
                if task.done:
                    self.progress(f"nothing more to do: {task.reason} {task.message}".rstrip())
                    return EXIT_DONE
                self.stop.event.wait(task.retry_after_s)
                continue
            try:
                status = self.run_task(task)
            except LeaseLost as exc:
                self.progress(str(exc))
                continue
            except BaseException:
                # a bug or a broken child: hand it back so nothing is lost, then fail loudly
                try:
                    self.pop.release(task, reason="worker error")
                except Exception:  # noqa: BLE001 - the original error matters more
                    pass
                self._hand_back_next("worker error")
                raise
            if status == "interrupted":
                return EXIT_INTERRUPTED


def limit_threads() -> None:
    """Use the CPUs Slurm allocated, not every core of a shared node (unless OMP_NUM_THREADS says)."""
    if "OMP_NUM_THREADS" in os.environ:
        return
    cpus = os.environ.get("SLURM_CPUS_PER_TASK")
    if cpus and cpus.isdigit() and int(cpus) > 0:
        torch.set_num_threads(int(cpus))


def run_worker(root: str, *, worker_id: str | None = None, time_limit_s: float | None = None,
               device: str | None = None, max_children: int | None = None,
               progress: Callable[[str], None] | None = None, handle_signals: bool = True,
               stop: StopRequest | None = None) -> int:
    """Run one worker on the population at ``root``; returns the process exit code.

    ``stop`` carries a request made before the worker existed (the CLI installs its signal
    handlers before importing torch); ``handle_signals`` installs them here instead.
    """
    limit_threads()
    w = Worker(root, worker_id=worker_id, time_limit_s=time_limit_s, device=device,
               max_children=max_children, progress=progress, stop=stop)
    if handle_signals:
        w.install_signal_handlers()
    return w.run()
