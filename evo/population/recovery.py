"""Lease recovery: the children of workers that died (SIGKILL, a lost node) are finished by the
others.  An expired in-flight directory whose ``fitness.json`` is complete is committed on its
worker's behalf; any other goes back to ``pending/`` to be resumed from its last checkpoint, or,
after ``max_attempts`` failures (or with a torn task record), is abandoned to ``dead/``.
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
    load_json_or_none,
    warn,
)
from evo.population.leases import CommitResult, Lease, Task, WorkerInfo
from evo.population.reading import Reading
from evo.population.records import fitness_record

__all__ = ["Recovery"]


class Recovery(Reading):
    """Recovering expired leases, and the bookkeeping of work that goes back to ``pending/``."""

    def _finalize(self, cid: int, d: str, rec: dict, worker: WorkerInfo, via: str,
                  post: list, sink: list | None = None) -> CommitResult:
        raise NotImplementedError  # the protocol's commit (Population)

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
        for fn in post:
            with contextlib.suppress(OSError):
                fn()
        return done

    def _recover_one(self, cid: int, tok: str, d: str, overdue: float, post: list) -> bool:
        lease = load_json_or_none(os.path.join(d, LEASE_FILE), warn=False) or {}
        me = WorkerInfo.from_env(id="recovery")
        has_task = os.path.exists(os.path.join(d, TASK_FILE))
        tj = load_json_or_none(os.path.join(d, TASK_FILE)) or {}
        owner = (lease.get("worker") or tj.get("worker") or {}).get("id")
        rec = load_json_or_none(os.path.join(d, FITNESS_FILE))
        # complete: a valid fitness.json of this unit of work (task.json gone means the commit
        # had removed it after writing fitness.json)
        if rec is not None and (not has_task or (tj.get("task_uid") and rec.get("task_uid") == tj.get("task_uid"))) \
                and load_json_or_none(os.path.join(d, DNA_FILE)) is not None:
            res = self._finalize(cid, d, rec, WorkerInfo(id=str(rec.get("worker") or owner), host="", pid=0),
                                 "recovery", post)
            if res.status == "committed":
                self.log.append([{"event": "recover", "id": cid, "action": "commit",
                                  "from_worker": owner, "overdue_s": overdue}])
            return res.status == "committed"
        failures = int(tj.get("failures", 0)) + 1
        torn = has_task and not tj  # the work order itself is torn (a crash of the machine)
        if torn:
            failures = max(failures, self.config.max_attempts)  # it cannot be resumed
        if failures >= self.config.max_attempts:
            tj["failures"] = failures
            dna = load_json_or_none(os.path.join(d, DNA_FILE)) or tj.get("dna") or {}
            fake_task = Task(kind=tj.get("kind", "child"), child_id=cid, parent_id=tj.get("parent_id"),
                             num_mutations=int(tj.get("mutations", 0)),
                             lease=Lease(self, cid, tok, WorkerInfo(id=str(owner), host="", pid=0)),  # type: ignore[arg-type]
                             task_uid=tj.get("task_uid") or tok, generation=int(tj.get("generation", 0)),
                             attempt=int(tj.get("attempts", 0)), born_at=float(tj.get("born_at", 0.0)))
            arec = fitness_record(fake_task, dna, {
                "fitness": None, "outcome": "abandoned",
                "reason": (f"its task.json ({os.path.join(d, TASK_FILE)}) is torn; it cannot be resumed"
                           if torn else f"worker died {failures} times training it (max_attempts)")})
            try:
                atomic_write_json(os.path.join(d, FITNESS_FILE), arec)
                if not os.path.exists(os.path.join(d, DNA_FILE)):
                    atomic_write_json(os.path.join(d, DNA_FILE), dna)
            except OSError:
                return False
            res = self._finalize(cid, d, arec, fake_task.lease.worker, "recovery", post)
            if res.status == "committed":
                self.log.append([{"event": "recover", "id": cid, "action": "abandon",
                                  "from_worker": owner, "overdue_s": overdue}])
            return res.status == "committed"
        dst = os.path.join(self._pending, str(cid))
        try:
            os.rename(d, dst)
        except (FileNotFoundError, NotADirectoryError):
            return False
        except OSError as e:
            if e.errno in (errno.ENOTEMPTY, errno.EEXIST):
                warn(f"cannot recover child {cid}: {dst} exists; run `evo fsck`")
                return False
            raise
        self._requeue_fixup(dst, failure=True, worker=owner)
        self.log.append([{"event": "recover", "id": cid, "action": "resume", "from_worker": owner,
                          "overdue_s": overdue, "worker": me.id,
                          "checkpoint": os.path.exists(os.path.join(dst, RESUME_FILE))}])
        return True

    def _requeue_fixup(self, pdir: str, *, failure: bool, worker: str | None) -> dict:
        """Work just moved back to ``pending/``: count the attempt (and the failure)."""
        tpath = os.path.join(pdir, TASK_FILE)
        tj = load_json_or_none(tpath) or {}
        tj["attempts"] = int(tj.get("attempts", 0)) + 1
        if failure:
            tj["failures"] = int(tj.get("failures", 0)) + 1
        tj["last_worker"] = worker
        with contextlib.suppress(OSError):
            atomic_write_json(tpath, tj, sync_dir=False)
        unlink_quiet(os.path.join(pdir, LEASE_FILE))
        return tj
