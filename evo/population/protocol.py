"""The selection and commit protocol: how many stateless workers evolve one population that
lives only in a directory on a shared file system (docs/format.md, "Protocol").

Correctness does not rest on the lock.  Every state change is one atomic ``rename``:

* kill: ``alive/<v>`` -> ``dead/<shard>/<v>``; if the source is gone another worker won and
  the step is given up and retried, so nobody is ever killed twice;
* reserve pending work: ``pending/<id>`` -> ``inflight/<id>.<token>``; the token is the lease
  owner's, so two workers never train the same child;
* commit: the worker writes dna.json, checkpoint.pt and finally fitness.json (the completion
  marker) into its in-flight directory, fsyncs them and the directory, then renames the whole
  directory to ``alive/<id>`` (or ``dead/...`` if training failed); a rename onto an existing
  individual fails, so a completed child is never overwritten and never lost;
* new ids are claimed in ``ids/`` (:mod:`evo.population.ids`), so they stay unique even when
  the ``next_id`` hint was updated without mutual exclusion.

The lock (:mod:`evo.population.locks`) only keeps the critical section serial so that races are
rare and counters exact.  It is held for O(1) work in the history (the dead are never listed or
read by a worker) and once per child: a commit and the worker's next selection step share one
critical section.  Whatever can be made ready without the lock is (reservation files, the new
lines of the event log that keep each worker's view of alive/ current); under it, a selection
step renames and writes files but creates none, except two hard links: the new child's id claim
(taken there so that a worker killed while waiting for the lock holds no id) and the link to the
parent's checkpoint.

The calls a worker makes (``evo/worker/loop.py``)::

    pop = Population.open(popdir)
    task = pop.next_task(me, rng)                 # a Task, or a falsy Wait (task.done: exit)
    with task.lease.keepalive():                  # heartbeat while training
        task.lease.save_dna(child_dna, mutations)  # then train, saving task.lease.save_checkpoint(...)
    result = pop.commit(task, child_dna, record, checkpoint=write, next_for=me, rng=rng)
    task = result.next                            # the next step was taken under the same lock

On SIGTERM the worker saves a checkpoint and calls ``pop.release(task)``; a worker killed with
SIGKILL leaves its lease to expire, and any worker recovers the child
(:mod:`evo.population.recovery`).  A failed training (NaN loss, ...) is committed like any other with ``outcome`` set to the
reason and ``fitness`` None: the individual goes straight to ``dead/`` and never competes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import os
import random
import time
from dataclasses import dataclass
from typing import Any, Callable

from evo.base.files import atomic_write_json, is_tmp_name, listdir_quiet, pwrite_all, rmtree_quiet, unlink_quiet
from evo.population import strategies
from evo.population.config import Control
from evo.population.control import RunControl
from evo.population.layout import (
    CHECKPOINT_FILE, DEATH_FILE, DNA_FILE, FITNESS_FILE, FORMAT_VERSION, LEASE_FILE, PARENT_CHECKPOINT_FILE,
    RESUME_FILE, TASK_FILE, TASK_KINDS, WORK_FILES, CorruptFileError, CorruptFileWarning, LockTimeout,
    StoreError, dumps, is_num, load_json, load_json_or_none, new_token, warn,
)
from evo.population.grow import Growth
from evo.population.leases import CommitResult, Lease, Task, Wait, WorkerInfo, no_space
from evo.population.quarantine import quarantine
from evo.population.records import fitness_record
from evo.population.recovery import Recovery, run_post

__all__ = ["Population"]


class _Retry:
    """A selection step given up (a race lost to another worker); ``claimed`` is the id kept."""

    __slots__ = ("claimed",)

    def __init__(self, claimed: int | None):
        self.claimed = claimed


@dataclass
class _Prep:
    """What a selection step needs that was made ready before the lock was taken."""

    worker: WorkerInfo
    rng: random.Random
    ctl: Control
    token: str
    resv: str
    fds: dict
    claimed: int | None
    t_start: float


class Population(RunControl, Recovery, Growth):
    """A population directory: the protocol's steps (selection, commit, release) on top of its
    files (:class:`~evo.population.directory.PopulationDir`).  Use :meth:`create` or :meth:`open`."""

    # ---------------------------------------------------------------------- next_task
    def next_task(self, worker: WorkerInfo, rng: random.Random | None = None) -> Task | Wait:
        """Hand out the next unit of work, or a :class:`Wait`.

        Under the lock, briefly: pending work first (seeds, children to resume, retrains), else
        one selection step of the configured strategy (the victim, if any, is killed now) and a
        new child reserved with a lease owned by ``worker``.  Everything that can be prepared
        without the lock (run control, expired leases, the new events, the new child's id and
        its reservation files) is done before it is taken.
        """
        prep = self._prepare(worker, rng or self._rng)
        if isinstance(prep, Wait):
            return prep
        return self._run_steps(prep, None)

    def _prepare(self, worker: WorkerInfo, rng: random.Random) -> "_Prep | Wait":
        t_start = time.perf_counter()
        ctl = self.read_control()
        poll = max(0.05, min(self.config.heartbeat_s, 5.0))
        if ctl.stopped:
            return Wait("stopped", True, poll, "the experiment was stopped (`evo resume` clears it)")
        if ctl.paused:
            return Wait("paused", False, poll, "the experiment is paused (`evo resume` to continue)")
        now = time.time()
        if now >= self._next_recovery:
            self._next_recovery = now + min(self.config.heartbeat_s, self.config.lease_ttl_s / 4) * (
                0.5 + self._rng.random())
            with contextlib.suppress(LockTimeout):
                self.recover_expired()
        self.alive.candidates(ctl)  # most of the new events are read outside the lock
        # the counters only feed the FLOPs budget, which may be read a step early
        self._state_snapshot = self.read_state() if self.config.max_flops is not None else {}
        prep = _Prep(worker, rng, ctl, new_token(), "", {}, None, t_start)
        prep.resv = os.path.join(self._tmp, f"resv-{prep.token}")
        self._make_reservation(prep)
        return prep

    def _make_reservation(self, prep: _Prep) -> None:
        """The reservation of a new child: a private directory with its (empty) task file,
        renamed into inflight/ under the lock.  Creating files is the costly part of writing
        small ones (on a network file system it is a round trip to the server), so it happens
        here, outside the lock; under it the files are only written."""
        try:
            os.mkdir(prep.resv)
        except FileNotFoundError:  # tmp/ was deleted: recreate it (or say which directory is missing)
            if not self._recreate(self._tmp):
                raise StoreError(f"{self._tmp}: the population's directory for temporaries is missing and "
                                 f"cannot be recreated. Fix: mkdir {self._tmp}") from None
            os.mkdir(prep.resv)
        prep.fds[TASK_FILE] = os.open(os.path.join(prep.resv, TASK_FILE),
                                      os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)

    def _close_reservation(self, prep: _Prep) -> None:
        # task.json is not fsynced: the worker's save_dna replaces it durably moments later.  A
        # crash of the machine before the kernel writes it back can leave it torn; the child
        # is then abandoned with a reason (one selection step lost), never resumed from garbage.
        fds, prep.fds = prep.fds, {}
        for fd in fds.values():
            with contextlib.suppress(OSError):
                os.close(fd)

    def _run_steps(self, prep: _Prep, first: "Task | Wait | _Retry | None") -> Task | Wait:
        """Run selection steps under the lock until one gives a task or a wait (a step that lost
        a race to another worker is given up and retried, as in the paper)."""
        out = first
        try:
            for _attempt in range(20):
                if out is None:
                    post: list[Callable[[], None]] = []
                    with self.locked():
                        out = self._step(prep, post)
                    run_post(post)
                if isinstance(out, _Retry):
                    prep.claimed = out.claimed
                    out = None
                    time.sleep(prep.rng.random() * 0.002)
                    continue
                if prep.claimed is not None and not (isinstance(out, Task) and out.child_id == prep.claimed):
                    self.ids.unclaim(prep.claimed)  # (a retry took pending work, or waits)
                    prep.claimed = None
                if self.keep_stats:
                    self.stats["next_task"].append(time.perf_counter() - prep.t_start)
                return out
            if prep.claimed is not None:
                self.ids.unclaim(prep.claimed)
                prep.claimed = None
            return Wait("contention", False, 0.1, "too many concurrent changes; try again")
        finally:
            self._close_reservation(prep)
            if os.path.lexists(prep.resv):
                rmtree_quiet(prep.resv)

    def _step(self, prep: _Prep, post: list, events: list | None = None) -> "Task | Wait | _Retry":
        """One step under the lock; its events are appended at the end (to ``events`` first,
        when given: those of the same critical section, appended in one write)."""
        events = [] if events is None else events
        try:
            return self._step_inner(prep, post, events)
        finally:
            if events:
                self.log.append(events)

    def _step_inner(self, prep: _Prep, post: list, events: list) -> "Task | Wait | _Retry":
        worker, rng, ctl, token, claimed = prep.worker, prep.rng, prep.ctl, prep.token, prep.claimed
        # the grow strategy ends a generation and plans the next as pending work (evo.population.grow)
        grow = self._grow_step(worker, events, post) if self.config.strategy == "grow" else None
        st = self._state_snapshot if self._state_snapshot is not None else self.read_state()
        pending = sorted(self._list_pending()) if self.alive.subdirs(self._pending) != 0 else []
        n_inflight = self.alive.subdirs(self._inflight)
        if n_inflight is None:
            n_inflight = len(self._list_inflight())
        flops_hit = self._flops_budget(st)
        poll = max(0.05, min(self.config.heartbeat_s, 5.0))

        # 1. pending work: resumes always (they finish what was started), the rest within budget
        for i in pending:
            pdir = os.path.join(self._pending, str(i))
            tj = self._pending_task(i, pdir, post, events)
            if tj is None:
                continue  # committed as it was finished, quarantined, or taken by another worker
            if self._past_budget(i, tj, flops_hit):
                continue
            task = self._reserve_pending(i, pdir, tj, worker, token, ctl)
            if task is not None:
                return task
        if flops_hit:
            return Wait("budget", not n_inflight, poll, flops_hit)
        nid = self.read_next_id() if claimed is None else claimed
        hit = self._individuals_budget(nid)
        if hit:
            return Wait("budget", not n_inflight, poll, hit)
        if grow is not None:  # no selection step: the generation's children are all planned
            return self._grow_wait(grow, n_inflight, poll)

        # 2. one selection step
        candidates = self.alive.candidates(ctl)
        P = self.config.population_size
        popn = len(candidates) + n_inflight + len(pending)
        strategy = self.config.strategy
        if popn > P and len(candidates) >= 2:  # overshoot (possible without mutual exclusion)
            _, v = strategies.select(strategy, candidates, rng, kill=True, sample_size=self.config.sample_size)
            if v is not None and self._kill(v, None, worker, "cull", events, post):
                candidates = [r for r in candidates if r.id != v]
                popn -= 1
        at_setpoint = popn >= P
        # every individual failed (say, all diverged) and nothing is under way: start again from a
        # seed individual rather than wait for parents that will never come
        extinct = not candidates and not n_inflight and not pending and strategy != "random"
        if not candidates and not extinct and (strategy != "random" or at_setpoint):
            return Wait("empty", False, poll, "no living individual to select from yet")
        if at_setpoint and len(candidates) < 2 and strategy != "random":
            return Wait("empty", False, poll, "the whole population is in flight")
        if extinct:
            parent, victim = None, None
        else:
            parent, victim = strategies.select(strategy, candidates, rng, kill=at_setpoint,
                                               sample_size=self.config.sample_size)
        if strategy == "random":
            parent = None
        if claimed is None:
            cid = prep.claimed = self.ids.claim(nid)
            self.ids.write_next(cid + 1)
        else:
            cid = claimed
        hit = self._individuals_budget(cid)
        if hit:
            return Wait("budget", not n_inflight, poll, hit)
        resv = prep.resv
        if not prep.fds:  # a retry after a given-up step
            self._make_reservation(prep)
        try:
            parent_dna = None
            parent_ckpt = None
            inherit = False
            if parent is not None:
                pdir = self.alive_path(parent)
                try:
                    parent_dna = load_json(os.path.join(pdir, DNA_FILE))
                except (FileNotFoundError, NotADirectoryError):
                    self.alive.drop(parent)
                    return self._give_up(prep)  # the parent was killed under us
                except CorruptFileError as e:
                    warn(str(e), CorruptFileWarning)
                    self.alive.drop(parent)
                    return self._give_up(prep)
                if self.config.inheritance != "none":
                    src = os.path.join(pdir, CHECKPOINT_FILE)
                    try:
                        os.link(src, os.path.join(resv, PARENT_CHECKPOINT_FILE))
                        inherit = True
                    except FileNotFoundError:
                        if not os.path.isdir(pdir):
                            return self._give_up(prep)
                    except OSError:  # no hard links here: point at the parent's own file
                        if os.path.exists(src):
                            parent_ckpt = src
                            inherit = True
            kind = "random" if strategy == "random" else ("seed" if extinct else "child")
            now = time.time()
            tj = {
                "format_version": FORMAT_VERSION, "kind": kind, "id": cid, "parent_id": parent,
                "task_uid": token, "mutations": ctl.mutations_per_child, "dna": None,
                "parent_dna": parent_dna, "parent_checkpoint": parent_ckpt,
                "generation": ctl.reset_generation, "born_at": now, "attempts": 0, "failures": 0,
                "victim_id": victim, "worker": worker.to_dict(),
            }
            pwrite_all(prep.fds[TASK_FILE], dumps(tj))
            # lease.json appears with the first heartbeat; until then the lease runs from the
            # directory's change time (a rename sets it), and task.json names the worker
            lease = Lease(self, cid, token, worker)
            if victim is not None:
                if not self._kill(victim, cid, worker, "selection", events, post):
                    return self._give_up(prep)
            self._rename_into(resv, lease.path)
        except BaseException:
            self._give_up(prep)
            raise
        events.append({"event": "start", "id": cid, "kind": kind, "parent": parent,
                       "mutations": ctl.mutations_per_child, "worker": worker.id, "lease": token})
        if inherit and parent_ckpt is None:
            parent_ckpt = os.path.join(lease.path, PARENT_CHECKPOINT_FILE)
        return Task(kind=kind, child_id=cid, parent_id=parent, num_mutations=ctl.mutations_per_child,
                    lease=lease, task_uid=token, dna=None, parent_dna=parent_dna,
                    parent_checkpoint=parent_ckpt, inherit=inherit,
                    steps=self.config.steps_per_child, generation=ctl.reset_generation,
                    born_at=now, victim_id=victim)

    def _give_up(self, prep: _Prep) -> _Retry:
        """Give up this step (a race lost to another worker): drop the reservation, keep the id."""
        self._close_reservation(prep)
        rmtree_quiet(prep.resv)
        return _Retry(prep.claimed)

    def _kill(self, v: int, by: int | None, worker: WorkerInfo, cause: str, events: list,
              post: list) -> bool:
        """Kill ``v`` by renaming alive/<v> into dead/.  False if someone else got there first."""
        fitness = self.alive.fitness_of(v)
        self._ensure_shard(self._dead, v)
        dst = self.dead_path(v)
        try:
            os.rename(self.alive_path(v), dst)
        except (FileNotFoundError, NotADirectoryError):
            self.alive.drop(v)
            return False
        except OSError as e:
            if e.errno in (errno.ENOTEMPTY, errno.EEXIST):
                warn(f"cannot kill {v}: {dst} already exists (duplicate id); run `evo fsck`")
                self.alive.drop(v)
                return False
            raise
        self.alive.drop(v)
        events.append({"event": "death", "id": v, "fitness": fitness, "by": by, "cause": cause,
                       "worker": worker.id})
        death = {"id": v, "died_at": time.time(), "killed_by": by, "cause": cause, "worker": worker.id}
        keep = self._keeps_checkpoint(v)

        def after() -> None:
            atomic_write_json(os.path.join(dst, DEATH_FILE), death, fsync=False, sync_dir=False)
            if not keep:
                unlink_quiet(os.path.join(dst, CHECKPOINT_FILE))

        post.append(after)
        return True

    def _keeps_checkpoint(self, i: int) -> bool:
        kc = self.config.keep_checkpoints
        if kc == "all":
            return True
        if kc == "alive":
            return False
        return any(entry[1] == i for entry in self.counters.top())

    def _reserve_pending(self, i: int, pdir: str, tj: dict, worker: WorkerInfo, token: str,
                         ctl: Control) -> Task | None:
        lease = Lease(self, i, token, worker)
        try:
            self._rename_into(pdir, lease.path)
        except (FileNotFoundError, NotADirectoryError):
            if not os.path.isdir(lease.path):
                return None  # another worker took it
        except OSError as e:
            if e.errno in (errno.ENOTEMPTY, errno.EEXIST):
                return None
            raise
        lease.write()
        d = lease.path
        attempts = int(tj.get("attempts", 0))
        kind = tj.get("kind", "child")
        if kind not in TASK_KINDS:
            kind = "child"
        dna = load_json_or_none(os.path.join(d, DNA_FILE)) if kind != "seed" or attempts else None
        if dna is None:
            dna = tj.get("dna")
        pck = os.path.join(d, PARENT_CHECKPOINT_FILE)
        parent_ckpt = pck if os.path.exists(pck) else tj.get("parent_checkpoint")
        rck = os.path.join(d, RESUME_FILE)
        resume_ckpt = rck if os.path.exists(rck) else None
        is_resume = attempts > 0
        inherit = (self.config.inheritance != "none" and kind == "child" and parent_ckpt is not None)
        task = Task(
            kind="resume" if is_resume else kind, child_id=i, parent_id=tj.get("parent_id"),
            num_mutations=int(tj.get("mutations", 0)), lease=lease, task_uid=tj.get("task_uid") or token,
            dna=dna, parent_dna=tj.get("parent_dna"), parent_checkpoint=parent_ckpt,
            resume_checkpoint=resume_ckpt, resume_of=kind if is_resume else None,
            mutations_applied=tj.get("mutations_applied"), inherit=inherit,
            steps=self.config.steps_per_child, generation=int(tj.get("generation", ctl.reset_generation)),
            attempt=attempts, born_at=float(tj.get("born_at", time.time())),
        )
        self.log.append([{"event": "start", "id": i, "kind": task.kind, "resume_of": task.resume_of,
                          "parent": task.parent_id, "attempt": attempts, "worker": worker.id,
                          "lease": token}])
        return task

    # ---------------------------------------------------------------------- commit
    def commit(self, task: Task, dna: dict, fitness: dict | float,
               checkpoint: str | os.PathLike | Callable[[str], Any] | None = None, *,
               next_for: WorkerInfo | None = None, rng: random.Random | None = None) -> CommitResult:
        """Commit a trained child: its DNA, fitness record and (optionally) model checkpoint.

        ``fitness`` is the fitness record (at least ``fitness``; also ``steps_trained``,
        ``flops``, ``params``, ``mutations``, ``outcome``, ``reason``; more keys are kept); the
        store adds ids, times, worker and Slurm ids, DNA hash and generation.  ``checkpoint`` is
        a callable ``write(path)`` or the path of a file to move in.  With ``outcome`` other
        than ``"ok"`` the individual goes straight to ``dead/``.

        ``next_for``: also take the next unit of work for this worker, in the same critical
        section as the commit (one lock acquisition per child instead of two); it is returned
        as ``result.next`` (a :class:`Task` or a :class:`Wait`, as from :meth:`next_task`).
        """
        t0 = time.perf_counter()
        d = task.lease.path
        rec = fitness_record(task, dna, fitness)
        try:
            if not os.path.isdir(d):
                return self._with_next(self._lost(task), next_for, rng)
            task.lease.write_result(task, dna, rec, checkpoint, keep_all=self.config.keep_checkpoints == "all")
        except (FileNotFoundError, NotADirectoryError):
            if not os.path.isdir(d):
                return self._with_next(self._lost(task), next_for, rng)
            raise
        except Exception as e:  # a full disk (ENOSPC, or a checkpoint writer's own error for it)
            full = no_space(getattr(e, "filename", None) or os.path.join(d, CHECKPOINT_FILE), e)
            if full is not None:
                raise full from full.__cause__
            raise
        # The result is complete (fitness.json with the task's task_uid): the files that only
        # training needed go now, outside the lock; without lease.json a recoverer times the lease
        # from the directory's mtime, which these unlinks refresh.  task.json stays until the
        # commit is done (it goes under the lock, with the rename): a commit that cannot take the
        # lock leaves a child that any worker, or this one again, commits as it is.
        task.lease.close()
        for name in (PARENT_CHECKPOINT_FILE, RESUME_FILE, LEASE_FILE):
            unlink_quiet(os.path.join(d, name))
        if task.attempt:  # temporaries of writers killed in an earlier attempt
            for name in listdir_quiet(d):
                if is_tmp_name(name):
                    unlink_quiet(os.path.join(d, name))
        prep = self._prepare(next_for, rng or self._rng) if next_for is not None else None
        post: list[Callable[[], None]] = []
        nxt: Task | Wait | _Retry | None = None
        try:
            with self.locked():
                if isinstance(prep, _Prep):
                    events: list[dict] = []
                    res = self._finalize(task.child_id, d, rec, task.lease.worker, "commit", post, events)
                    nxt = self._step(prep, post, events)
                else:
                    res = self._finalize(task.child_id, d, rec, task.lease.worker, "commit", post)
        except BaseException:
            if isinstance(prep, _Prep):  # the next step's reservation and id are not needed
                self._close_reservation(prep)
                rmtree_quiet(prep.resv)
                if prep.claimed is not None:
                    self.ids.unclaim(prep.claimed)
            raise
        run_post(post)
        if res.status == "lease_lost":
            res = self._lost(task)
        if self.keep_stats:
            self.stats["commit"].append(time.perf_counter() - t0)
        if isinstance(prep, _Prep):
            prep.t_start = time.perf_counter()
            return dataclasses.replace(res, next=self._run_steps(prep, nxt))
        if prep is not None:
            return dataclasses.replace(res, next=prep)
        return res

    def _with_next(self, res: CommitResult, next_for: WorkerInfo | None,
                   rng: random.Random | None) -> CommitResult:
        if next_for is None:
            return res
        return dataclasses.replace(res, next=self.next_task(next_for, rng))

    def _lost(self, task: Task) -> CommitResult:
        for p in (self.alive_path(task.child_id), self.dead_path(task.child_id)):
            rec = load_json_or_none(os.path.join(p, FITNESS_FILE), warn=False)
            if rec is not None and rec.get("task_uid") == task.task_uid and rec.get("worker") == task.lease.worker.id:
                return CommitResult("already_committed", task.child_id, p)
        task.lease.mark_lost()
        return CommitResult("lease_lost", task.child_id, None)

    def _finalize(self, cid: int, d: str, rec: dict, worker: WorkerInfo, via: str,
                  post: list, sink: list | None = None) -> CommitResult:
        """Under the lock: rename a completed in-flight directory into alive/ (or dead/)."""
        ok = rec.get("outcome") == "ok" and is_num(rec.get("fitness"))
        if ok:
            target = self.alive_path(cid)
        else:
            self._ensure_shard(self._dead, cid)
            target = self.dead_path(cid)
        try:
            self._rename_into(d, target)
        except (FileNotFoundError, NotADirectoryError):
            return CommitResult("lease_lost", cid, None)
        except OSError as e:
            if e.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
            existing = load_json_or_none(os.path.join(target, FITNESS_FILE), warn=False)
            if existing is not None and existing.get("task_uid") == rec.get("task_uid"):
                return CommitResult("already_committed", cid, target)
            with contextlib.suppress(OSError):
                q = quarantine(self.root, d, f"a second copy of individual {cid}, already at {target}", i=cid)
                warn(f"child {cid} was already committed at {target}; this copy was moved to {q}")
            return CommitResult("already_committed", cid, target)
        if via == "commit":  # the commit is done: its task record goes (the rest went before the lock)
            unlink_quiet(os.path.join(target, TASK_FILE))
        else:
            # a recovery commit: the work files go before anyone can kill it and move it on
            for name in WORK_FILES:
                unlink_quiet(os.path.join(target, name))
            for name in listdir_quiet(target):  # temporaries of writers killed in flight
                if is_tmp_name(name):
                    unlink_quiet(os.path.join(target, name))
        pushed = self.counters.count_training(cid, rec)
        ev = {"event": "birth", "id": cid, "parent": rec.get("parent_id"), "kind": rec.get("kind"),
              "fitness": rec.get("fitness"), "outcome": rec.get("outcome"), "flops": rec.get("flops"),
              "generation": rec.get("generation"), "worker": worker.id, "via": via}
        events = [ev]
        if not ok:
            events.append({"event": "death", "id": cid, "fitness": None, "by": None,
                           "cause": "failed", "outcome": rec.get("outcome"), "worker": worker.id})
        if sink is None:
            self.log.append(events)
        else:  # appended by the caller, with the events of the rest of its critical section
            sink.extend(events)
        if ok:  # selectable from now on (its birth event, read later, says the same)
            self.alive.add(cid, rec["fitness"])
        if self.config.strategy == "grow":  # the commit that completes a generation ends it
            grown: list[dict] = []
            self._grow_step(worker, grown, post)
            if grown and sink is not None:
                sink.extend(grown)
            elif grown:
                self.log.append(grown)

        def after() -> None:
            if not ok:
                atomic_write_json(os.path.join(target, DEATH_FILE), {
                    "id": cid, "died_at": time.time(), "killed_by": None, "cause": "failed",
                    "worker": worker.id}, fsync=False, sync_dir=False)
                if self.config.keep_checkpoints != "all":
                    unlink_quiet(os.path.join(target, CHECKPOINT_FILE))
            for j in pushed:
                if j != cid and os.path.isdir(self.dead_path(j)):
                    unlink_quiet(os.path.join(self.dead_path(j), CHECKPOINT_FILE))

        post.append(after)
        return CommitResult("committed", cid, target)

    # ---------------------------------------------------------------------- release
    def release(self, task: Task, reason: str = "released") -> bool:
        """Hand an in-flight child back (e.g. on SIGTERM): it goes to pending/ with its last
        checkpoint and DNA, and the next worker resumes it.  False if the lease was lost."""
        d = task.lease.path
        dst = os.path.join(self._pending, str(task.child_id))
        with self.locked():
            if not self._move_to_pending(task.child_id, d, dst):
                if not os.path.isdir(d):
                    task.lease.mark_lost()
                return False
            task.lease.mark_lost()
            self._requeue_fixup(dst, failure=False, worker=task.lease.worker.id)
            self.log.append([{"event": "release", "id": task.child_id, "reason": reason,
                              "worker": task.lease.worker.id,
                              "checkpoint": os.path.exists(os.path.join(dst, RESUME_FILE))}])
        return True

