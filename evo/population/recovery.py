"""Work that did not finish the ordinary way: the children of workers that died (SIGKILL, a lost
node), children finished but not committed, and work that cannot be used.

* An expired in-flight directory whose ``fitness.json`` is complete is committed on its
  worker's behalf; any other goes back to ``pending/`` to be resumed from its last checkpoint,
  or, after ``max_attempts`` failures (or with a torn task record), is abandoned to ``dead/``.
* Pending work that is already finished (a child handed back after a commit that could not take
  the lock) is committed as it is, by the next selection step of any worker: a trained child is
  never trained again, and never loses its parent.
* A task the worker cannot use (:meth:`Recovery.quarantine_task`: its genome, or its parent's,
  fails validation) counts as a failed attempt; an unusable parent and an unreadable task
  record are moved to ``quarantine/`` (:mod:`evo.population.quarantine`).
"""

from __future__ import annotations

import contextlib
import errno
import os
import time
from typing import Callable

from evo.base.files import atomic_write_json, unlink_quiet
from evo.population.layout import (
    DNA_FILE,
    FITNESS_FILE,
    LEASE_FILE,
    RESUME_FILE,
    TASK_FILE,
    CorruptFileError,
    CorruptFileWarning,
    load_json,
    load_json_or_none,
    warn,
)
from evo.population.leases import CommitResult, Lease, Task, WorkerInfo
from evo.population.quarantine import quarantine
from evo.population.reading import Reading
from evo.population.records import fitness_record, task_from_record

__all__ = ["Recovery", "finished_record", "run_post"]


def finished_record(d: str, tj: dict | None) -> dict | None:
    """The fitness record of the work in directory ``d`` if its training finished: a valid
    ``fitness.json`` of the same unit of work as the task record ``tj`` (any, when the task record
    is gone or unreadable) beside a readable ``dna.json``; else None."""
    rec = load_json_or_none(os.path.join(d, FITNESS_FILE), warn=False)
    if rec is None or (tj and rec.get("task_uid") != tj.get("task_uid")):
        return None
    if load_json_or_none(os.path.join(d, DNA_FILE), warn=False) is None:
        return None
    return rec


class Recovery(Reading):
    """Recovering expired leases, committing finished work, and setting unusable work aside."""

    def _finalize(self, cid: int, d: str, rec: dict, worker: WorkerInfo, via: str,
                  post: list, sink: list | None = None) -> CommitResult:
        raise NotImplementedError  # the protocol's commit (Population)

    # ---------------------------------------------------------------------- expired leases
    def expired_leases(self, now: float | None = None) -> list[tuple[int, str, str]]:
        now = time.time() if now is None else now
        out = []
        for cid, tok, d in self._list_inflight():
            exp = self._lease_expiry(tok, d)
            if exp is not None and now > exp:
                out.append((cid, tok, d))
        return out

    def recover_expired(self, now: float | None = None) -> list[int]:
        """Recover children whose lease expired: a completed one is committed on its worker's
        behalf, the others go back to pending/ to be resumed from their last checkpoint (or are
        abandoned to dead/ after ``max_attempts`` crashes)."""
        expired = self.expired_leases(now)
        if not expired:
            return []
        done = []
        post: list[Callable[[], None]] = []
        with self.locked():
            now2 = time.time() if now is None else now
            for cid, tok, d in expired:
                exp = self._lease_expiry(tok, d)
                if exp is None or now2 <= exp:
                    continue
                if self._recover_one(cid, tok, d, now2 - exp, post):
                    done.append(cid)
        run_post(post)
        return done

    def _recover_one(self, cid: int, tok: str, d: str, overdue: float, post: list) -> bool:
        lease = load_json_or_none(os.path.join(d, LEASE_FILE), warn=False) or {}
        has_task = os.path.exists(os.path.join(d, TASK_FILE))
        tj = load_json_or_none(os.path.join(d, TASK_FILE)) or {}
        owner = (lease.get("worker") or tj.get("worker") or {}).get("id")
        rec = finished_record(d, tj)
        if rec is not None:
            res = self._commit_finished(cid, d, rec, post, None, owner=owner, overdue=overdue)
            return res.status == "committed"
        failures = int(tj.get("failures", 0)) + 1
        torn = has_task and not tj  # the work order itself is torn (a crash of the machine)
        if torn or failures >= self.config.max_attempts:
            tj["failures"] = failures
            reason = (f"its task.json ({os.path.join(d, TASK_FILE)}) is torn; it cannot be resumed"
                      if torn else f"worker died {failures} times training it (max_attempts)")
            res = self._abandon(cid, tok, d, tj, owner, reason, post)
            if res.status == "committed":
                self.log.append([{"event": "recover", "id": cid, "action": "abandon",
                                  "from_worker": owner, "overdue_s": overdue}])
            return res.status == "committed"
        dst = os.path.join(self._pending, str(cid))
        if not self._move_to_pending(cid, d, dst):
            return False
        self._requeue_fixup(dst, failure=True, worker=owner)
        self.log.append([{"event": "recover", "id": cid, "action": "resume", "from_worker": owner,
                          "overdue_s": overdue, "worker": WorkerInfo.from_env(id="recovery").id,
                          "checkpoint": os.path.exists(os.path.join(dst, RESUME_FILE))}])
        return True

    # ---------------------------------------------------------------------- shared steps
    def _move_to_pending(self, cid: int, d: str, dst: str) -> bool:
        """Under the lock: ``rename d -> pending/<cid>``; False if ``d`` is gone or ``dst`` exists."""
        try:
            self._rename_into(d, dst)
        except (FileNotFoundError, NotADirectoryError):
            return False
        except OSError as e:
            if e.errno in (errno.ENOTEMPTY, errno.EEXIST):
                warn(f"cannot move child {cid} back to {dst}: it exists; run `evo fsck`")
                return False
            raise
        return True

    def _commit_finished(self, cid: int, d: str, rec: dict, post: list, events: list | None, *,
                         owner: str | None, overdue: float | None = None) -> CommitResult:
        """Under the lock: commit finished work (``rec`` from :func:`finished_record`) as it is."""
        worker = WorkerInfo(id=str(rec.get("worker") or owner), host="", pid=0)
        res = self._finalize(cid, d, rec, worker, "recovery", post, events)
        if res.status == "committed":
            ev = {"event": "recover", "id": cid, "action": "commit", "from_worker": owner, "overdue_s": overdue}
            if events is None:
                self.log.append([ev])
            else:
                events.append(ev)
        return res

    def _abandon(self, cid: int, tok: str, d: str, tj: dict, owner: str | None, reason: str,
                 post: list) -> CommitResult:
        """Under the lock: commit the work in ``d`` to dead/ with ``outcome: abandoned``."""
        dna = load_json_or_none(os.path.join(d, DNA_FILE)) or tj.get("dna") or {}
        task = Task(kind=tj.get("kind", "child"), child_id=cid, parent_id=tj.get("parent_id"),
                    num_mutations=int(tj.get("mutations", 0)),
                    lease=Lease(self, cid, tok, WorkerInfo(id=str(owner), host="", pid=0)),  # type: ignore[arg-type]
                    task_uid=tj.get("task_uid") or tok, generation=int(tj.get("generation", 0)),
                    attempt=int(tj.get("attempts", 0)), born_at=float(tj.get("born_at", 0.0)))
        rec = fitness_record(task, dna, {"fitness": None, "outcome": "abandoned", "reason": reason})
        try:
            atomic_write_json(os.path.join(d, FITNESS_FILE), rec)
            if not os.path.exists(os.path.join(d, DNA_FILE)):
                atomic_write_json(os.path.join(d, DNA_FILE), dna)
        except OSError:
            return CommitResult("lease_lost", cid, None)
        return self._finalize(cid, d, rec, task.lease.worker, "recovery", post)

    def _requeue_fixup(self, pdir: str, *, failure: bool, worker: str | None) -> dict:
        """Work just moved back to ``pending/``: count the attempt (and the failure).  A task
        record that is gone or torn is rebuilt from a finished child's fitness record, so that no
        trained child ever loses its lineage."""
        tpath = os.path.join(pdir, TASK_FILE)
        tj = load_json_or_none(tpath)
        if not tj:
            rec = finished_record(pdir, None)
            tj = task_from_record(rec) if rec is not None else {}
        tj["attempts"] = int(tj.get("attempts", 0)) + 1
        if failure:
            tj["failures"] = int(tj.get("failures", 0)) + 1
        tj["last_worker"] = worker
        with contextlib.suppress(OSError):
            atomic_write_json(tpath, tj, sync_dir=False)
        unlink_quiet(os.path.join(pdir, LEASE_FILE))
        return tj

    # ---------------------------------------------------------------------- pending work
    def _pending_task(self, i: int, pdir: str, post: list, events: list) -> dict | None:
        """Under the lock: the task record of pending work ``i``, or None when there is none to
        hand out: finished work is committed as it is, and an unreadable task record is moved to
        quarantine/ (one that is missing, only when its directory is older than a lease)."""
        try:
            tj: dict | None = load_json(os.path.join(pdir, TASK_FILE))
            torn = None
        except (FileNotFoundError, NotADirectoryError):
            if not os.path.isdir(pdir):
                return None  # taken by another worker
            tj, torn = None, "its task.json is missing"
        except CorruptFileError as e:
            warn(str(e), CorruptFileWarning)
            tj, torn = None, f"its task.json is torn or not JSON ({e})"
        if os.path.exists(os.path.join(pdir, FITNESS_FILE)):
            rec = finished_record(pdir, tj)
            if rec is not None:
                self._commit_finished(i, pdir, rec, post, events, owner=(tj or {}).get("last_worker"))
                return None
        if torn is None:
            return tj
        try:
            old = time.time() - os.stat(pdir).st_ctime > self.config.lease_ttl_s
        except OSError:
            return None
        if tj is None and (old or "torn" in torn):
            self._set_aside(pdir, f"pending work {i} cannot be used: {torn}", i, events)
        return None

    def _set_aside(self, path: str, reason: str, i: int | None, events: list) -> str | None:
        """Under the lock: move ``path`` into quarantine/ with ``reason`` (an event says so)."""
        try:
            entry = quarantine(self.root, path, reason, i=i)
        except OSError as e:
            warn(f"could not move {path} to quarantine ({e}); run `evo fsck --repair`")
            return None
        if i is not None:
            self.alive.drop(i)
        events.append({"event": "quarantine", "id": i, "path": os.path.relpath(entry, self.root),
                       "origin": os.path.relpath(path, self.root), "reason": reason})
        return entry

    # ---------------------------------------------------------------------- unusable work
    def quarantine_task(self, task: Task, *, reason: str, parent: bool = False) -> str:
        """The worker cannot use ``task``: its genome (or, with ``parent``, its parent's) fails
        validation.  With ``parent``, the parent's directory ``alive/<parent_id>`` is moved to
        quarantine/ (never selected again; kept with its weights and record).  The attempt counts
        as a failure: the task goes back to pending/ with ``failures + 1``, or, at
        ``max_attempts`` failures, is abandoned to dead/ with the reason.  Returns
        ``"requeued"``, ``"abandoned"`` or ``"lost"`` (the lease was lost meanwhile)."""
        post: list[Callable[[], None]] = []
        events: list[dict] = []
        with self.locked():
            if parent and task.parent_id is not None and os.path.isdir(self.alive_path(task.parent_id)):
                self._set_aside(self.alive_path(task.parent_id),
                                f"the parent of child {task.child_id}: {reason}", task.parent_id, events)
            d = task.lease.path
            tj = load_json_or_none(os.path.join(d, TASK_FILE), warn=False) or {}
            failures = int(tj.get("failures", 0)) + 1
            who = task.lease.worker.id
            if not os.path.isdir(d):
                outcome = "lost"
            elif failures >= self.config.max_attempts:
                tj["failures"] = failures
                res = self._abandon(task.child_id, task.lease.token, d, tj, who,
                                    f"it cannot be used: {reason} ({failures} attempts)", post)
                outcome = "abandoned" if res.status == "committed" else "lost"
            elif self._move_to_pending(task.child_id, d, os.path.join(self._pending, str(task.child_id))):
                self._requeue_fixup(os.path.join(self._pending, str(task.child_id)), failure=True, worker=who)
                events.append({"event": "release", "id": task.child_id, "reason": f"cannot be used: {reason}",
                               "worker": who, "failed": True})
                outcome = "requeued"
            else:
                outcome = "lost"
            task.lease.mark_lost()
            if events:
                self.log.append(events)
        run_post(post)
        return outcome


def run_post(post: list[Callable[[], None]]) -> None:
    """Run the work a critical section left for after the lock (never fatal)."""
    for fn in post:
        with contextlib.suppress(OSError):
            fn()
