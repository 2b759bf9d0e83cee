"""What a worker holds: who it is (:class:`WorkerInfo`), the right to train one child
(:class:`Lease`), the unit of work (:class:`Task`), or why there is none (:class:`Wait`), and
how a commit ended (:class:`CommitResult`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import os
import socket
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

from evo.base import files
from evo.base.files import atomic_write_json, fsync_dir, fsync_file, place_file, unlink_quiet, write_new
from evo.base.slurm import slurm_job_id
from evo.population.layout import (
    CHECKPOINT_FILE,
    FITNESS_FILE,
    StoreError,
    DNA_FILE,
    INFLIGHT,
    LEASE_FILE,
    RESUME_FILE,
    TASK_FILE,
    LeaseLost,
    dumps,
    load_json_or_none,
    warn,
)

if TYPE_CHECKING:
    from evo.population.protocol import Population

__all__ = ["CommitResult", "Lease", "Task", "Wait", "WorkerInfo", "no_space"]

#: a writer's own error (torch.save's RuntimeError) with less free space than this is a full disk
LOW_SPACE = 64 << 20


def no_space(path: str, exc: BaseException) -> StoreError | None:
    """The one-line error for a write of ``path`` that failed because the file system is full
    (ENOSPC, EDQUOT, or a writer's own error while almost no space is left), else None.  Its cause
    is an OSError(ENOSPC) naming the file, whatever the writer raised."""
    if isinstance(exc, StoreError):
        return None
    if isinstance(exc, OSError):
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            return None
        cause: OSError = exc
    elif isinstance(exc, Exception) and files.free_bytes(os.path.dirname(path) or ".") < LOW_SPACE:
        first = (str(exc).splitlines() or [""])[0][:200]
        cause = OSError(errno.ENOSPC, f"No space left on device ({type(exc).__name__}: {first})", path)
    else:
        return None
    err = StoreError(f"{path}: no space left on the population's file system ({cause.strerror}); nothing is "
                     f"lost: the child is handed back. Fix: free space (or raise the quota), then any worker "
                     f"resumes it")
    err.__cause__ = cause
    return err


@dataclass(frozen=True)
class WorkerInfo:
    """Who a worker is: recorded in leases, fitness records and events."""

    id: str
    host: str
    pid: int
    slurm_job_id: str | None = None
    slurm_array_job_id: str | None = None
    slurm_array_task_id: str | None = None

    @classmethod
    def from_env(cls, id: str | None = None) -> "WorkerInfo":
        env = os.environ
        host = socket.gethostname()
        pid = os.getpid()
        job = env.get("SLURM_JOB_ID")
        ajob = env.get("SLURM_ARRAY_JOB_ID")
        atask = env.get("SLURM_ARRAY_TASK_ID")
        if id is None:
            name = slurm_job_id(job, ajob, atask)  # "12345_7", "12345", or None outside Slurm
            id = f"{name}@{host}:{pid}" if name else f"{host}:{pid}"
        return cls(id=id, host=host, pid=pid, slurm_job_id=job,
                   slurm_array_job_id=ajob, slurm_array_task_id=atask)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


class Lease:
    """The right to train one in-flight child, held by one worker.

    ``path`` is the child's in-flight directory ``inflight/<id>.<token>``; the lease file
    ``lease.json`` there holds the worker, host, pid, Slurm ids, heartbeat time and expiry.
    If the lease expires (no heartbeat for ``lease_ttl_s``) any worker may recover the child:
    the directory is renamed away, and every later call on this lease raises :class:`LeaseLost`.
    """

    def __init__(self, pop: "Population", child_id: int, token: str, worker: WorkerInfo):
        self._pop = pop
        self.child_id = child_id
        self.token = token
        self.worker = worker
        self.ttl = float(pop.config.lease_ttl_s)
        self.heartbeat_s = float(pop.config.heartbeat_s)
        self.path = os.path.join(pop.root, INFLIGHT, f"{child_id}.{token}")
        self.acquired_at = time.time()
        self.heartbeat_at = self.acquired_at
        self._lost = threading.Event()
        self._hb_mutex = threading.Lock()
        self._closed = False
        self.dna_saved: bytes | None = None  # what save_dna wrote (and fsynced) to dna.json

    @property
    def checkpoint_path(self) -> str:
        """Where the resumable training state lives (``resume.pt``; write it with
        :meth:`save_checkpoint`)."""
        return os.path.join(self.path, RESUME_FILE)

    @property
    def lost(self) -> bool:
        """True once the lease is known to be lost (set by :meth:`heartbeat` / keepalive)."""
        return self._lost.is_set()

    def mark_lost(self) -> None:
        self._lost.set()

    @property
    def expires_at(self) -> float:
        return self.heartbeat_at + self.ttl

    def _record(self, now: float) -> dict:
        return {
            "token": self.token,
            "id": self.child_id,
            "worker": self.worker.to_dict(),
            "acquired_at": self.acquired_at,
            "heartbeat_at": now,
            "expires_at": now + self.ttl,
            "ttl_s": self.ttl,
        }

    def write(self) -> None:
        """Write ``lease.json`` now (a heartbeat)."""
        now = time.time()
        atomic_write_json(os.path.join(self.path, LEASE_FILE), self._record(now), fsync=False, sync_dir=False)
        self.heartbeat_at = now

    def close(self) -> None:
        """Stop heartbeating (the commit is under way)."""
        with self._hb_mutex:
            self._closed = True

    def heartbeat(self) -> None:
        """Extend the lease.  Raises :class:`LeaseLost` if the child was taken away."""
        if self._lost.is_set():
            raise LeaseLost(f"lease on child {self.child_id} was lost earlier")
        try:
            with self._hb_mutex:
                if self._closed:
                    return
                self.write()
        except (FileNotFoundError, NotADirectoryError):
            self._lost.set()
            raise LeaseLost(
                f"lease on child {self.child_id} ({self.path}) was lost: it expired and another "
                f"worker recovered the child; stop training it"
            ) from None

    @contextlib.contextmanager
    def keepalive(self) -> Iterator["Lease"]:
        """Heartbeat from a background thread every ``heartbeat_s`` while the block runs.

        Check :attr:`lost` from the training loop to stop early when the lease is lost.
        """
        stop = threading.Event()

        def run() -> None:
            while not stop.wait(self.heartbeat_s):
                try:
                    self.heartbeat()
                except LeaseLost:
                    return
                except OSError as e:  # transient (ESTALE, EIO, ENOSPC): try again next period
                    warn(f"heartbeat of {self.path} failed: {e}; retrying")

        t = threading.Thread(target=run, name=f"evo-lease-{self.child_id}", daemon=True)
        t.start()
        try:
            yield self
        finally:
            stop.set()
            t.join(timeout=5)

    def save_checkpoint(self, source: str | os.PathLike | Callable[[str], Any]) -> str:
        """Atomically store the resumable training state at :attr:`checkpoint_path`.

        ``source``: a callable ``write(path)`` (e.g. ``lambda p: torch.save(state, p)``) or a
        path to move into place.  Raises :class:`LeaseLost` if the lease is gone.
        """
        try:
            place_file(source, self.checkpoint_path)
        except (FileNotFoundError, NotADirectoryError):
            if not os.path.isdir(self.path):
                self._lost.set()
                raise LeaseLost(f"lease on child {self.child_id} was lost; checkpoint not saved") from None
            raise
        except Exception as exc:
            full = no_space(self.checkpoint_path, exc)
            if full is not None:
                raise full from full.__cause__
            raise
        return self.checkpoint_path

    def save_dna(self, dna: dict, mutations: Sequence[Any] | None = None) -> None:
        """Record the child's DNA (and the mutations applied) so that a resume trains the same
        child.  Raises :class:`LeaseLost` if the lease is gone."""
        try:
            data = dumps(dna)
            written = {os.path.join(self.path, DNA_FILE): data}
            if mutations is not None:
                tpath = os.path.join(self.path, TASK_FILE)
                tj = load_json_or_none(tpath) or {}
                tj["mutations_applied"] = list(mutations)
                written[tpath] = dumps(tj)
            files.atomic_write_files(written)
            self.dna_saved = data
        except (FileNotFoundError, NotADirectoryError):
            self._lost.set()
            raise LeaseLost(f"lease on child {self.child_id} was lost; DNA not saved") from None
        except OSError as exc:
            full = no_space(os.path.join(self.path, DNA_FILE), exc)
            if full is not None:
                raise full from full.__cause__
            raise

    def to_dict(self) -> dict:
        return self._record(self.heartbeat_at)

    def write_result(self, task: "Task", dna: dict, rec: dict,
                     checkpoint: str | os.PathLike | Callable[[str], Any] | None, *, keep_all: bool) -> None:
        """The first half of a commit (no lock): write the child's DNA, weights and, last, its
        fitness record (the completion marker) into the in-flight directory and make them
        durable.  A retrain's or an earlier attempt's record of another unit of work is kept as
        ``fitness.g<G>.json`` (its weights as ``checkpoint.g<G>.pt`` when ``keep_all``)."""
        d = self.path
        if task.base_kind == "retrain" or task.attempt:
            old = load_json_or_none(os.path.join(d, FITNESS_FILE), warn=False)
            if old is not None and old.get("task_uid") != task.task_uid:
                gen = old.get("generation", 0)
                suffix = _free_suffix(d, gen)  # (a second retrain in one generation keeps both)
                os.rename(os.path.join(d, FITNESS_FILE), os.path.join(d, f"fitness.g{gen}{suffix}.json"))
                ck = os.path.join(d, CHECKPOINT_FILE)
                if os.path.exists(ck):
                    if keep_all:
                        os.rename(ck, os.path.join(d, f"checkpoint.g{gen}{suffix}.pt"))
                    else:
                        os.unlink(ck)
        # The directory is private to this lease until it is renamed into alive/, and
        # fitness.json -- the completion marker, written last -- is valid JSON only once
        # complete, so new files are written in place; existing ones (a resumed attempt's)
        # are replaced atomically.  All are written first and then fsynced, before the
        # directory is: on a journaling file system the first fsync commits them all, and
        # the others find nothing left to do.
        data = dumps(dna)
        unsynced: list[str] = []
        dpath = os.path.join(d, DNA_FILE)
        if self.dna_saved != data and write_new(dpath, data):  # (save_dna fsyncs)
            unsynced.append(dpath)
        if checkpoint is not None:
            cpath = os.path.join(d, CHECKPOINT_FILE)
            if callable(checkpoint) and not os.path.lexists(cpath):
                try:
                    checkpoint(cpath)
                except BaseException:
                    unlink_quiet(cpath)  # no half-written checkpoint is left behind
                    raise
                if not os.path.exists(cpath):
                    raise StoreError(f"the checkpoint writer did not create {cpath}")
                unsynced.append(cpath)
            else:
                place_file(checkpoint, cpath)
        fpath = os.path.join(d, FITNESS_FILE)
        if write_new(fpath, dumps(rec)):
            unsynced.append(fpath)
        for path in unsynced:
            fsync_file(path)
        fsync_dir(d)



def _free_suffix(d: str, gen: int) -> str:
    """``""``, or ``".1"``, ``".2"``... when ``fitness.g<gen>.json`` is taken in ``d``."""
    k = 0
    while os.path.exists(os.path.join(d, f"fitness.g{gen}{f'.{k}' if k else ''}.json")):
        k += 1
    return f".{k}" if k else ""


@dataclass
class Task:
    """One unit of work handed to a worker by :meth:`Population.next_task`."""

    kind: str  # seed | child | random | retrain | resume
    child_id: int
    parent_id: int | None
    num_mutations: int
    lease: Lease
    task_uid: str
    dna: dict | None = None
    parent_dna: dict | None = None
    parent_checkpoint: str | None = None
    resume_checkpoint: str | None = None
    resume_of: str | None = None
    mutations_applied: list | None = None
    inherit: bool = False
    steps: int = 0
    generation: int = 0
    attempt: int = 0
    born_at: float = 0.0
    victim_id: int | None = None

    @property
    def base_kind(self) -> str:
        """The kind of the original work (``resume_of`` for a resume)."""
        return self.resume_of or self.kind

    @property
    def path(self) -> str:
        return self.lease.path


@dataclass(frozen=True)
class Wait:
    """No task now.  Falsy, so ``if not task:`` works.

    ``reason``: stopped | paused | budget | empty | contention.  ``done`` is True when the
    worker should exit (nothing more will ever come without a user action).
    """

    reason: str
    done: bool
    retry_after_s: float
    message: str = ""

    def __bool__(self) -> bool:
        return False


@dataclass(frozen=True)
class CommitResult:
    """``status``: committed | already_committed (a recoverer finished the commit) | lease_lost."""

    status: str
    id: int
    path: str | None = None
    #: the next unit of work, when the commit was asked for one (``next_for``)
    next: "Task | Wait | None" = None

    def __bool__(self) -> bool:
        return self.status in ("committed", "already_committed")
