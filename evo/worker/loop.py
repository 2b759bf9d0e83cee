"""The stateless worker: the evolution loop of Real et al. 2017, one child at a time.

A worker owns nothing but its current lease.  Each step it asks the population for work
(``Population.next_task``: seeds, children to resume or retrain, else a selection step of
the configured strategy), then, outside the lock, builds the child (copy the parent,
mutate, inherit matching weights), trains it, checkpoints the training state every few
minutes, and commits the child's DNA, weights and fitness.  This module is where the
store (files, locks, leases) meets the torch layer (model, data, training); it knows the
genome only through the search-space seam (``evo.genome.search_space``, the space named in
the population's config).

Nothing one individual can do stops the worker: a parent or pending task whose genome cannot
be used is set aside (quarantined by the population layer, counted as a failed attempt) and the
worker goes on; a NaN loss or a network too large for the device is an unfit individual.

Exit codes (the contract of ``slurm/worker.sbatch``): 0 when the experiment is finished or
stopped, 3 when interrupted (SIGTERM, SIGUSR2, ``--time-limit``) after handing the
in-flight child back, 2 when a person must act first (the population's file system is full or
refuses writes, the mutation settings fit no individual: the one-line message says what and the
in-flight child was handed back), 1 on any other error.
"""

from __future__ import annotations

import errno
import logging
import math
import os
import random
import shutil
import time
from typing import Any, Callable

import torch

from evo.genome import GenomeError, MutationError, SearchSpace, search_space, space_of
from evo.network.data import Dataset, load_dataset
from evo.worker.signals import StopRequest
from evo.population import LeaseLost, Population, StoreError, Task, Wait, WorkerInfo
from evo.network.settings import SettingsError, parse_device
from evo.network.train import StateError, TrainConfig, TrainResult, load_state, save_state, train
from evo.network.weights import load_state_dict
from evo.worker.codes import EXIT_DONE, EXIT_ERROR, EXIT_INTERRUPTED, EXIT_NEEDS_FIX

__all__ = ["EXIT_DONE", "EXIT_ERROR", "EXIT_INTERRUPTED", "EXIT_NEEDS_FIX", "NeedsFix", "UnusableTask",
           "Worker", "random_dna", "run_worker"]

log = logging.getLogger("evo.worker")


class UnusableTask(Exception):
    """A task this worker cannot train: its genome, or its parent's, fails validation, or the task
    record itself is malformed.  ``parent``: the parent is the culprit (not the child's own work)."""

    def __init__(self, task: Task, why: str, *, parent: bool = False) -> None:
        whose = f"parent {task.parent_id} of child {task.child_id}" if parent else f"child {task.child_id}"
        super().__init__(f"{whose} ({task.kind}) cannot be used: {why}")
        self.task = task
        self.why = why
        self.parent = parent


class CommitPending(Exception):
    """A trained child whose files are complete but whose commit failed (the lock could not be
    taken, say): it stays in flight, and recovery commits it once its lease lapses."""

    def __init__(self, task: Task, cause: BaseException) -> None:
        super().__init__(f"child {task.child_id}: trained and recorded but not committed ({_first_line(cause)}); "
                         f"it stays in {task.lease.path} and is committed by recovery when its lease lapses")
        self.task = task
        self.cause = cause


class NeedsFix(Exception):
    """A problem no worker can get past until a person acts (a full disk, a read-only population,
    mutation settings that fit no individual); the message names the file or setting and the fix."""

    exit_code = EXIT_NEEDS_FIX


def pick_device(device: str | None) -> str:
    """``--device`` read by :func:`evo.network.settings.parse_device` and checked on this node
    (None or "auto": CUDA when there is one)."""
    if device in (None, ""):
        device = "auto"
    try:
        kind, index = parse_device(device)
    except SettingsError as exc:
        raise NeedsFix(str(exc)) from None
    if kind == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise NeedsFix(f"--device {device}: this node has no CUDA device. Fix: run on a GPU node, or use "
                           f"--device cpu")
        if index is not None and index >= torch.cuda.device_count():
            raise NeedsFix(f"--device {device}: this node has {torch.cuda.device_count()} CUDA device(s). Fix: "
                           f"use cuda:0 .. cuda:{torch.cuda.device_count() - 1}, or plain cuda")
    elif kind == "mps" and not torch.backends.mps.is_available():
        raise NeedsFix(f"--device {device}: MPS is not available here. Fix: use --device cpu")
    return str(device)


def random_dna(rng: random.Random, input_shape: tuple[int, int, int], num_classes: int,
               config: Any = None, max_mutations: int = 30,
               space: SearchSpace | None = None) -> tuple[Any, list[dict]]:
    """The random-search baseline's architecture: ``space.random`` (for ``real2017``, the seed
    after U(0, ``max_mutations``) random structural and learning-rate mutations)."""
    space = space or search_space("real2017")
    if max_mutations != 30:
        return space.random(input_shape, num_classes, rng, config, max_mutations=max_mutations)
    return space.random(input_shape, num_classes, rng, config)


def _finite(x: Any) -> Any:
    """JSON has no NaN: non-finite floats in a fitness record become null."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    return x


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0][:200]}" if text else type(exc).__name__


def _inheritance_record(report: dict[str, Any]) -> dict[str, Any]:
    """``space.inherit``'s report as the fitness record keeps it: the tensors copied, left fresh or
    mismatched counted (a space may report the names or the counts), anything else as it is."""
    return {k: len(v) if k in ("copied", "fresh", "mismatched") and isinstance(v, (list, tuple, set)) else v
            for k, v in report.items()}


def _load_weights(path: str) -> dict[str, torch.Tensor]:
    return load_state_dict(path, "cpu", error=StateError)


class Worker:
    """One worker process: the loop that a Slurm array task runs for its whole allocation."""

    def __init__(self, root: str, *, worker_id: str | None = None, time_limit_s: float | None = None,
                 device: str | None = None, max_children: int | None = None,
                 progress: Callable[[str], None] | None = None, stop: StopRequest | None = None) -> None:
        try:
            self.pop = Population.open(root)
        except StoreError as exc:  # not a population, an unreadable or newer config: as `evo status`
            raise NeedsFix(str(exc)) from None
        self.config = self.pop.config
        self.me = WorkerInfo.from_env(worker_id)
        self.deadline = None if time_limit_s is None else time.monotonic() + float(time_limit_s)
        self.device = pick_device(device)
        self.max_children = max_children
        self.progress = progress or (lambda msg: log.info(msg))
        self.stop = stop or StopRequest()
        self.rng = random.Random(f"{self.config.seed}/{self.me.id}/{time.time_ns()}")
        config_file = os.path.join(self.pop.root, "config.json")
        try:
            self.space = space_of(self.config)
            self.mutation_config = self.space.mutation_config(self.config.train.get("mutations"))
        except ValueError as exc:  # GenomeError included: an unknown space, a bad option or setting
            raise NeedsFix(f"{config_file}: {exc}") from None
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
    def _genome(self, task: Task, d: Any, *, parent: bool = False) -> Any:
        """A genome of the task read through the seam; :class:`UnusableTask` if it fails validation."""
        try:
            return self.space.from_dict(d)
        except GenomeError as exc:
            raise UnusableTask(task, str(exc), parent=parent) from None

    def child_genome(self, task: Task) -> tuple[Any, list[dict], Any]:
        """The genome a task asks for, the mutations that made it and its parent's genome (or None).

        Raises :class:`UnusableTask` for a genome (the child's or its parent's) that fails
        validation or does not fit the data set, or a malformed task record; :class:`NeedsFix`
        when the mutation settings allow no mutation that applies.
        """
        ds, space = self.dataset, self.space
        kind = task.base_kind  # a resume whose DNA was never saved starts its original work over
        parent = self._genome(task, task.parent_dna, parent=True) if task.parent_dna is not None else None
        try:
            if task.dna is not None:  # seed with a given DNA, retrain, or resume
                dna = self._genome(task, task.dna)
                mutations = list(task.mutations_applied or [])
                if not all(isinstance(m, dict) and isinstance(m.get("name"), str) for m in mutations):
                    raise TypeError(f"mutations_applied must be a list of {{'name': ...}} records, "
                                    f"got {task.mutations_applied!r:.200}")
            elif kind == "seed":
                base = self.config.seed_dna
                dna = self._genome(task, base) if base else space.seed(ds.input_shape, ds.num_classes, self.rng)
                mutations = []
            elif kind == "random":
                dna, mutations = space.random(ds.input_shape, ds.num_classes, self.rng, self.mutation_config)
            elif parent is not None:
                dna, mutations = space.mutate(parent, self.rng, n=int(task.num_mutations), config=self.mutation_config)
            else:
                raise UnusableTask(task, "its task.json names neither a DNA nor a parent")
            space.validate(dna, ds.input_shape, ds.num_classes)
        except MutationError as exc:
            raise NeedsFix(f"{exc} (train.mutations in {os.path.join(self.pop.root, 'config.json')})") from None
        except GenomeError as exc:
            raise UnusableTask(task, f"{exc} (data set {ds.name})") from None
        except (TypeError, ValueError) as exc:  # a task.json field of the wrong type
            raise UnusableTask(task, f"malformed task record ({type(exc).__name__}: {exc})") from None
        return dna, mutations, parent

    def make_child(self, task: Task) -> tuple[Any, list[dict], torch.nn.Module, dict | None, dict]:
        """Build the child a task asks for: (genome, mutations, model, resume state, inheritance)."""
        inherited: dict[str, Any] = {"copied": 0, "fresh": 0}
        dna, mutations, parent = self.child_genome(task)
        try:
            model = self.space.build(dna)
        except (MemoryError, RuntimeError) as exc:  # a hand-made genome far too large to allocate
            raise UnusableTask(task, f"its network cannot be built ({type(exc).__name__}: "
                                     f"{str(exc).splitlines()[0][:200] if str(exc) else ''})") from None
        state = None
        if task.resume_checkpoint and os.path.exists(task.resume_checkpoint):
            try:
                state = load_state(task.resume_checkpoint)
            except StateError as exc:
                self.progress(f"child {task.child_id}: cannot resume ({exc}); training from the start")
                state = None
        if state is None and task.inherit and task.parent_checkpoint and not self.space.resets_weights(mutations):
            weights = None
            try:
                weights = _load_weights(task.parent_checkpoint)
            except Exception as exc:  # noqa: BLE001 - any unreadable file: torn, truncated, foreign
                self.progress(f"child {task.child_id}: parent weights unreadable ({_first_line(exc)}); "
                              f"fresh weights")
            if weights is not None:
                try:
                    report = self.space.inherit(model, weights, parent=parent, child=dna, mutations=mutations,
                                                inheritance=getattr(self.config, "inheritance", "paper"),
                                                rng=self.rng)
                    inherited = _inheritance_record(report)
                except Exception as exc:  # noqa: BLE001 - a child that cannot inherit still trains, from scratch
                    model = self.space.build(dna)
                    inherited = {"copied": 0, "fresh": 0, "error": _first_line(exc)}
                    self.progress(f"child {task.child_id}: inheritance failed ({_first_line(exc)}); fresh weights")
        return dna, mutations, model, state, inherited

    # ----------------------------------------------------------------------------- writing
    def _cannot_write(self, path: str, exc: BaseException) -> NeedsFix:
        """The one-line error for a write into the population that failed (a full disk, most often)."""
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        where = os.path.dirname(path) or "."
        try:
            free: int | None = shutil.disk_usage(where).free
        except OSError:
            free = None
        code = getattr(exc, "errno", None)
        if code in (errno.ENOSPC, errno.EDQUOT) or (free is not None and free < (1 << 20)):
            left = "" if free is None else f", {free // (1 << 20)} MiB left"
            return NeedsFix(f"cannot write {path}: the file system is full (or over quota{left}). Fix: free "
                            f"space there, then start workers again; the child was handed back and resumes "
                            f"from its last checkpoint")
        return NeedsFix(f"cannot write {path} ({type(exc).__name__}: {first}). Fix: make the population "
                        f"directory writable (and check its free space), then start workers again; the "
                        f"child was handed back")

    def _writer(self, write: Callable[[str], Any]) -> Callable[[str], None]:
        """``write(path)`` (a ``torch.save``) whose failure (ENOSPC, or torch's ``RuntimeError`` for
        it) becomes :class:`NeedsFix`; a half-written file is removed."""

        def guarded(path: str) -> None:
            try:
                write(path)
            except (OSError, RuntimeError) as exc:
                try:
                    os.unlink(path)
                except OSError:
                    pass
                raise self._cannot_write(path, exc) from exc

        return guarded

    def run_task(self, task: Task) -> str:
        """Train one task's child and commit it; return "committed", "interrupted" or "lost"."""
        lease = task.lease
        t0 = time.time()
        space = self.space
        dna, mutations, model, state, inherited = self.make_child(task)
        try:
            lease.save_dna(space.to_dict(dna), mutations)
        except LeaseLost:
            raise
        except OSError as exc:
            raise self._cannot_write(os.path.join(lease.path, "dna.json"), exc) from exc
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
            lease.save_checkpoint(self._writer(lambda path: save_state(with_segments(st), path)))

        lr = space.learning_rate(dna)
        if lr is None:  # a genome without a learning rate (amoebanet): the training setting lr
            lr = float(cfg.lr)
        with lease.keepalive():
            try:
                result: TrainResult = train(model, self.dataset, lr, cfg, state=state,
                                            on_checkpoint=checkpoint,
                                            should_stop=lambda: self.should_stop() or lease.lost)
            except torch.cuda.OutOfMemoryError as exc:
                # a network too large for this device is an unfit individual, not a broken worker
                model = space.build(dna)  # drop the device copy
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
                result = TrainResult(None, int(state["step"]) if state else 0, "out_of_memory",
                                     reason=str(exc).splitlines()[0][:300])
        if lease.lost:
            self.progress(f"child {task.child_id}: lease lost (another worker recovered it); dropping it")
            return "lost"
        if result.outcome == "interrupted":
            try:
                lease.save_checkpoint(self._writer(lambda path: save_state(with_segments(result.state), path)))
            except LeaseLost:
                return "lost"
            self.pop.release(task, reason=f"interrupted: {self.stop.reason or 'stop'}")
            self.progress(f"child {task.child_id}: interrupted at step {result.steps_done} "
                          f"({self.stop.reason}); checkpoint saved, handed back")
            return "interrupted"
        ds = self.dataset
        # the paper's cost: training FLOPs per step x steps + one validation pass (two with the fast
        # recipe's test-time flips: each image and its mirror)
        forward = space.flops(dna, ds.input_shape)
        total = space.train_flops(dna, ds.input_shape) * cfg.batch_size * result.steps_done \
            + forward * len(ds.val_x) * cfg.eval_passes
        t_end = time.time()
        record = {
            "fitness": result.fitness if result.outcome == "ok" else None,
            "outcome": result.outcome,
            "reason": result.reason,
            "steps_trained": result.steps_done,
            "segments": prior + [[start, result.steps_done]],
            "flops": total,
            "params": space.params(dna, ds.input_shape),
            "forward_flops": forward,
            "mutations": mutations,
            "learning_rate": lr,
            "depth": space.describe(dna).get("depth"),
            "train_loss": result.train_loss,
            "train_wall_s": result.wall_s,
            "images_per_s": result.images_per_s,
            "recipe": cfg.recipe,
            "train_step": result.step_kind,
            "inherited": inherited,
            "device": str(self.device),
            "overhead_s": {"prepare": t_ready - t0},
        }
        weights = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        # the next unit of work is taken in the same critical section as this commit
        more = not self.should_stop() and (self.max_children is None or self.children + 1 < self.max_children)
        try:
            out = self.pop.commit(task, space.to_dict(dna), _finite(record),
                                  checkpoint=self._writer(lambda path: torch.save(weights, path)),
                                  next_for=self.me if more else None, rng=self.rng)
        except (LeaseLost, NeedsFix):
            raise
        except Exception as exc:
            cause = exc if isinstance(exc, OSError) else exc.__cause__
            if os.path.exists(os.path.join(lease.path, "fitness.json")):
                # trained and recorded: never handed back (it would be retrained as another child);
                # a later commit by recovery (any worker, once the lease lapses) finishes it
                raise CommitPending(task, exc) from exc
            if isinstance(exc, (OSError, StoreError)) and isinstance(cause, OSError):
                # fitness.json or dna.json could not be written
                raise self._cannot_write(getattr(cause, "filename", None) or lease.path, cause) from exc
            raise
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
    def _experiment_over(self) -> str | None:
        """Why the experiment is over (stopped, or a budget reached with nothing pending or in
        flight), read without the lock, else None.  A worker asked to stop while it holds no child
        exits 0 then, not 3: its Slurm task ends instead of being requeued for nothing."""
        try:
            return self.pop.finished()
        except Exception:  # noqa: BLE001 - unknown: the caller's interruption stands
            return None

    def _hand_back_next(self, reason: str) -> None:
        """Release a task taken with the last commit that this worker will not train."""
        nxt, self._next = self._next, None
        if isinstance(nxt, Task):
            try:
                self.pop.release(nxt, reason=reason)
            except Exception as exc:  # noqa: BLE001 - its lease expires and it is recovered
                self.progress(f"child {nxt.child_id}: could not hand it back ({exc})")

    def _set_aside(self, exc: UnusableTask) -> None:
        """Keep an unusable task (or its parent) out of the way, counted as a failed attempt, so
        that the evolution goes on: the population layer quarantines it (``evo status`` and ``evo
        fsck`` report it; after ``max_attempts`` the child is abandoned)."""
        task = exc.task
        quarantine = getattr(self.pop, "quarantine_task", None)
        if callable(quarantine):
            try:
                outcome = quarantine(task, reason=exc.why, parent=exc.parent)
            except Exception as err:  # noqa: BLE001 - the lapse below still sets it aside
                self.progress(f"{exc}; could not set it aside now ({_first_line(err)}): its lease lapses")
                return
            what = f"parent {task.parent_id} quarantined, " if exc.parent else ""
            self.progress(f"{exc}; set aside ({what}child {task.child_id} {outcome})")
            return
        # a population layer without quarantine: the lease is left to lapse (nothing renews it
        # outside training), so that recovery counts the attempt as a failure and abandons the
        # child after max_attempts; meanwhile this worker goes on with other work
        self.progress(f"{exc}; set aside (its lease lapses)")

    def _no_room(self, exc: BaseException, task: Task | None) -> NeedsFix | None:
        """:class:`NeedsFix` for a write the population's file system refused, else None."""
        cause = exc if isinstance(exc, OSError) else exc.__cause__
        if not isinstance(cause, OSError) or cause.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EROFS,
                                                                  errno.EACCES, errno.EPERM):
            return None
        where = cause.filename or (task.lease.path if task is not None else self.pop.root)
        return self._cannot_write(str(where), cause)

    def _give_back(self, task: Task | None, reason: str) -> None:
        """Hand ``task`` (and a task taken with the last commit) back to pending/ for another worker."""
        if task is not None:
            try:
                self.pop.release(task, reason=reason)
            except Exception as exc:  # noqa: BLE001 - its lease expires and it is recovered
                self.progress(f"child {task.child_id}: could not hand it back ({exc}); it is recovered "
                              f"when its lease expires")
        self._hand_back_next(reason)

    def _final_ensemble(self) -> None:
        """A grow run is over: measure its last survivors' ensemble once (never fatal)."""
        from evo.worker.final_ensemble import record_final_ensemble

        try:
            record_final_ensemble(self.pop, self.space, self.dataset, self.device, self.progress)
        except Exception as exc:  # noqa: BLE001 - the run's result is on disk; this is a summary of it
            self.progress(f"final ensemble not measured ({_first_line(exc)})")

    def run(self) -> int:
        """Work until the experiment ends (0) or an interruption (3); :class:`NeedsFix` (exit 2) when a
        person must act first, any other exception (exit 1) after handing the child back."""
        self.progress(f"worker {self.me.id} on {self.device} for {self.pop.root}")
        while True:
            if self.should_stop():
                self._hand_back_next(f"interrupted: {self.stop.reason}")
                over = self._experiment_over()
                if over:  # nothing is left to resume: a requeue would only find that out again
                    self.progress(f"stopping ({self.stop.reason}): nothing more to do: {over}")
                    return EXIT_DONE
                self.progress(f"stopping: {self.stop.reason}")
                return EXIT_INTERRUPTED
            if self.max_children is not None and self.children >= self.max_children:
                self._hand_back_next("worker done")
                return EXIT_DONE
            task, self._next = self._next, None
            if task is None:
                try:
                    task = self.pop.next_task(self.me, self.rng)
                except (OSError, StoreError) as exc:
                    fix = self._no_room(exc, None)
                    if fix is None:
                        raise
                    raise fix from exc
            if not task:
                if task.done:
                    self.progress(f"nothing more to do: {task.message or task.reason}")
                    if self.config.strategy == "grow":
                        self._final_ensemble()
                    return EXIT_DONE
                self.stop.event.wait(task.retry_after_s)
                continue
            try:
                status = self.run_task(task)
            except LeaseLost as exc:
                self.progress(str(exc))
                continue
            except UnusableTask as exc:
                self._set_aside(exc)
                continue
            except CommitPending as exc:
                self.progress(str(exc))
                self._hand_back_next("worker error")
                if isinstance(exc.cause, StoreError):  # a lock held too long: go on with other work
                    continue
                raise exc.cause from exc
            except NeedsFix as exc:
                self._give_back(task, f"cannot go on: {exc}")
                raise
            except BaseException as exc:
                # a bug or a broken child: hand it back so nothing is lost, then fail loudly
                self._give_back(task, "worker error")
                fix = self._no_room(exc, task) if isinstance(exc, (OSError, StoreError)) else None
                if fix is not None:
                    raise fix from exc
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
               stop: StopRequest | None = None, children_per_gpu: int = 1, slot: int | None = None) -> int:
    """Run one worker on the population at ``root``; returns the process exit code.

    ``stop`` carries a request made before the worker existed (the CLI installs its signal
    handlers before importing torch); ``handle_signals`` installs them here instead.  ``slot``: this
    worker is that member of a team with ``children_per_gpu`` per GPU (:mod:`evo.worker.team`).
    """
    from evo.worker.team import member_device, share_device

    limit_threads()
    if slot is not None:
        device = member_device(device, slot, children_per_gpu)
    w = Worker(root, worker_id=worker_id, time_limit_s=time_limit_s, device=device,
               max_children=max_children, progress=progress, stop=stop)
    if children_per_gpu > 1:
        w.progress(share_device(w.device, children_per_gpu))
    if handle_signals:
        w.install_signal_handlers()
    return w.run()
