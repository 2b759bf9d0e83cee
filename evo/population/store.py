"""The population directory: on-disk format, locks, leases, event log, run control and fsck.

Pure Python (no torch).  Many stateless workers that never talk to each other evolve one
population that lives only in a directory on a shared file system.  The format is a public
contract described in ``docs/format.md``; this module is its reference implementation.

Layout (``POP`` is the population directory)::

    POP/config.json        immutable experiment config (format_version, strategy, budgets, ...)
    POP/control.json       mutable run-control knobs, replaced atomically (mutations_per_child,
                           paused, stopped, reset_generation, epoch)
    POP/state.json         running counters (trainings committed, total FLOPs, top K), at commit
    POP/next_id            the next individual id (a hint; ids/ claims are authoritative)
    POP/events.jsonl       append-only event log, one JSON object per line
    POP/alive/<id>/        living individuals: dna.json, fitness.json, checkpoint.pt
    POP/dead/<id//1000>/<id>/   dead individuals (DNA and fitness kept forever, + death.json)
    POP/pending/<id>/      work waiting for a worker (seeds, children to resume, retrains)
    POP/inflight/<id>.<token>/  a child being trained under the lease ``lease.json``
    POP/ids/<id//1000>/<id>     id claims (hard links to ids/<shard>/.claim, or empty files)
    POP/tmp/               reservations and other temporaries (safe to delete when old)
    POP/quarantine/        torn or corrupt files moved aside by fsck --repair
    POP/lock, POP/lock.soft     the population lock (flock file / soft-lock file)

Correctness does not rest on the lock.  Every state change is one atomic ``rename``:

* kill: ``alive/<v>`` -> ``dead/<shard>/<v>``; if the source is gone another worker won and
  the step is given up and retried, so nobody is ever killed twice;
* reserve pending work: ``pending/<id>`` -> ``inflight/<id>.<token>``; the token is the lease
  owner's, so two workers never train the same child;
* commit: the worker writes dna.json, checkpoint.pt and finally fitness.json (the completion
  marker) into its in-flight directory, fsyncs them and the directory, then renames the whole
  directory to ``alive/<id>`` (or ``dead/...`` if training failed); a rename onto an existing
  individual fails, so a completed child is never overwritten and never lost;
* new ids are claimed by creating ``ids/<shard>/<id>`` (a hard link to ``ids/<shard>/.claim``,
  or a file created with O_EXCL where links are refused), so they stay unique even when the
  ``next_id`` hint was updated without mutual exclusion.

The lock (flock, waited for in the kernel; or a soft lock with owner token, heartbeat and
time-to-live; or none) only keeps the critical section serial so that races are rare and
counters exact.  It is held for O(1) work in the history (the dead are never listed or read by
a worker) and once per child: a commit and the worker's next selection step share one critical
section.  Whatever can be made ready without the lock is (reservation files, the new lines of
the event log that keep each worker's view of alive/ current); under it, a selection step
renames and writes files but creates none, except two hard links: the new child's id claim
(taken there so that a worker killed while waiting for the lock holds no id) and the link to
the parent's checkpoint.

Worker protocol -- the exact calls a worker makes (``evo/worker.py``)::

    pop = Population.open(popdir)                 # clear errors if not a population
    me = WorkerInfo.from_env()                    # host, pid, Slurm job / array ids
    rng = random.Random(seed)
    while True:
        task = pop.next_task(me, rng)             # under the lock, briefly
        if not task:                              # a Wait: stopped, paused, budget, empty
            if task.done:
                break
            time.sleep(task.retry_after_s)
            continue
        lease = task.lease
        with lease.keepalive():                   # background heartbeat every heartbeat_s
            # task.kind: "seed" | "child" | "random" | "retrain" | "resume"
            # task.dna is the child's DNA when already known (seed, retrain, resume after
            # save_dna); otherwise mutate task.parent_dna with task.mutations mutations
            # (kind "random": build a random architecture).  Inherit weights from
            # task.parent_checkpoint when task.inherit.  Resume from
            # task.resume_checkpoint when it is not None.
            lease.save_dna(child_dna, mutations_applied)      # a resume reuses this child
            ... train task.steps steps; every config.checkpoint_every_s:
            lease.save_checkpoint(lambda path: torch.save(state, path))
            ... if lease.lost: stop training this child, it belongs to someone else now
        result = pop.commit(task, child_dna,
                            {"fitness": acc, "steps_trained": n, "flops": f, "params": p,
                             "mutations": mutations_applied, "outcome": "ok"},
                            checkpoint=lambda path: torch.save(weights, path),
                            next_for=me, rng=rng)  # optional: the next task, same lock
        # result.status: "committed" | "already_committed" | "lease_lost"
        # result.next: the next Task or Wait (with next_for); release() it if not trained

    # On SIGTERM / SIGUSR2 (preemption, time limit): save a checkpoint with
    # lease.save_checkpoint(...), then pop.release(task) and exit; another worker resumes it.
    # A worker killed with SIGKILL leaves its lease to expire after config.lease_ttl_s; any
    # worker then recovers the child (next_task does it periodically) from its last checkpoint.

A failed training (NaN loss, ...) is committed like any other with ``outcome`` set to the
reason and ``fitness`` None: the individual goes straight to ``dead/`` and never competes.

Run control (``set_control``, ``stop``, ``pause``, ``resume``, ``set_mutations_per_child``,
``reset_weights``) writes control.json / pending work; running workers see it at their next
step.  ``fsck(root, repair=False)`` checks every invariant and repairs what can be repaired
without ever deleting a completed individual.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import errno
import hashlib
import json
import math
import os
import random
import secrets
import shutil
import socket
import threading
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

from evo.population import strategies as _strategies
from evo.population.strategies import Record

__all__ = [
    "FORMAT_VERSION",
    "Config",
    "Control",
    "WorkerInfo",
    "Lease",
    "Task",
    "Wait",
    "CommitResult",
    "Individual",
    "Population",
    "SoftLock",
    "FsckReport",
    "Problem",
    "fsck",
    "read_events",
    "detect_lock_kind",
    "dna_hash",
    "StoreError",
    "ConfigError",
    "NotAPopulationError",
    "PopulationExistsError",
    "FormatVersionError",
    "LockTimeout",
    "LeaseLost",
    "CorruptFileError",
    "StoreWarning",
    "CorruptFileWarning",
]

#: Version of the on-disk format written by this module; readers refuse newer versions.
FORMAT_VERSION = 1

CONFIG_FILE = "config.json"
CONTROL_FILE = "control.json"
STATE_FILE = "state.json"
NEXT_ID_FILE = "next_id"
EVENTS_FILE = "events.jsonl"
ALIVE = "alive"
DEAD = "dead"
PENDING = "pending"
INFLIGHT = "inflight"
TMP = "tmp"
IDS = "ids"
QUARANTINE = "quarantine"
FLOCK_FILE = "lock"
SOFT_LOCK_FILE = "lock.soft"

DNA_FILE = "dna.json"
FITNESS_FILE = "fitness.json"
CHECKPOINT_FILE = "checkpoint.pt"
TASK_FILE = "task.json"
LEASE_FILE = "lease.json"
RESUME_FILE = "resume.pt"
PARENT_CHECKPOINT_FILE = "parent.pt"
DEATH_FILE = "death.json"

#: Individuals per shard directory in ``dead/`` and ``ids/``.
SHARD_SIZE = 1000

_SUBDIRS = (ALIVE, DEAD, PENDING, INFLIGHT, TMP, IDS, QUARANTINE)
_RETRY_ERRNOS = frozenset({errno.ESTALE, errno.EIO})
_IO_ATTEMPTS = 4
_TASK_KINDS = ("seed", "child", "random", "retrain")


# --------------------------------------------------------------------------------------------
# Errors and warnings
# --------------------------------------------------------------------------------------------


class StoreError(Exception):
    """Base class of the errors raised by the store; the message names the file and the fix."""


class ConfigError(StoreError, ValueError):
    """The experiment config is invalid (the message names the field and the fix)."""


class NotAPopulationError(StoreError):
    """The directory is not an evo population."""


class PopulationExistsError(StoreError):
    """Refusing to create a population over an existing directory."""


class FormatVersionError(StoreError):
    """The population was written by a newer evo."""


class LockTimeout(StoreError):
    """The population lock could not be acquired in time."""


class LeaseLost(StoreError):
    """The lease on an in-flight child was taken away (it expired and was recovered)."""


class CorruptFileError(StoreError):
    """A file is torn or not valid JSON; it is treated as not committed."""


class StoreWarning(UserWarning):
    """Something odd was found in the population and handled."""


class CorruptFileWarning(StoreWarning):
    """A torn or corrupt file was found and treated as not committed."""


def _warn(message: str, category: type[Warning] = StoreWarning) -> None:
    warnings.warn(message, category, stacklevel=3)


# --------------------------------------------------------------------------------------------
# Low-level I/O: retried reads, atomic writes, fsync
# --------------------------------------------------------------------------------------------


def _retry(fn: Callable[..., Any], *args: Any) -> Any:
    """Call ``fn(*args)``, retrying a few times on ESTALE / EIO (NFS)."""
    for attempt in range(_IO_ATTEMPTS):
        try:
            return fn(*args)
        except OSError as e:
            if e.errno not in _RETRY_ERRNOS or attempt == _IO_ATTEMPTS - 1:
                raise
            time.sleep(0.02 * (2**attempt))
    raise AssertionError("unreachable")


def _read_bytes_once(path: str) -> bytes:
    fd = os.open(path, os.O_RDONLY)
    try:
        chunks = []
        while True:
            b = os.read(fd, 1 << 16)
            if not b:
                break
            chunks.append(b)
        return b"".join(chunks)
    finally:
        os.close(fd)


def read_bytes(path: str) -> bytes:
    """Read a whole file, retrying ESTALE/EIO."""
    return _retry(_read_bytes_once, path)


def load_json(path: str) -> dict:
    """Load a JSON object.  Raises FileNotFoundError if missing, CorruptFileError if torn."""
    data = read_bytes(path)
    try:
        obj = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise CorruptFileError(
            f"{path}: torn or corrupt JSON ({len(data)} bytes: {e}); treated as not "
            f"committed; run `evo fsck --repair` on the population to quarantine it"
        ) from None
    if not isinstance(obj, dict):
        raise CorruptFileError(f"{path}: expected a JSON object, found {type(obj).__name__}")
    return obj


def load_json_or_none(path: str, *, warn: bool = True) -> dict | None:
    """Load a JSON object; None if missing, or torn (with a warning naming the file)."""
    try:
        return load_json(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except CorruptFileError as e:
        if warn:
            _warn(str(e), CorruptFileWarning)
        return None


def _tmp_path(path: str) -> str:
    d, b = os.path.split(path)
    return os.path.join(d, f".{b}.tmp-{secrets.token_hex(4)}")


def _is_tmp_name(name: str) -> bool:
    return name.startswith(".") and ".tmp-" in name


def _fsync_dir(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems refuse fsync on directories
        pass
    finally:
        os.close(fd)


def _fsync_file(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: str, data: bytes, *, fsync: bool = True, fsync_dir: bool = False) -> None:
    """Write ``data`` to a temporary name in the same directory, fsync, rename into place."""
    tmp = _tmp_path(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        try:
            view = memoryview(data)
            while view:
                n = os.write(fd, view)
                view = view[n:]
            if fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if fsync_dir:
        _fsync_dir(os.path.dirname(path) or ".")


def atomic_write_files(files: dict[str, bytes]) -> None:
    """Replace several files atomically, each as :func:`atomic_write_bytes` does; all are
    written before any is fsynced, so that a journaling file system commits them in one go."""
    tmps: list[tuple[str, str]] = []
    try:
        for path, data in files.items():
            tmp = _tmp_path(path)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            tmps.append((tmp, path))
            try:
                _pwrite_all(fd, data)
            finally:
                os.close(fd)
        for tmp, _ in tmps:
            _fsync_file(tmp)
        for tmp, path in tmps:
            os.replace(tmp, path)
    except BaseException:
        for tmp, _ in tmps:
            _unlink_quiet(tmp)
        raise


def _padded(data: bytes, size: int) -> bytes:
    """A JSON line padded with spaces to ``size`` bytes, so that rewriting a file of that size
    in place leaves no tail of the old content."""
    return data if len(data) >= size else data[:-1] + b" " * (size - len(data)) + b"\n"


def _pwrite_all(fd: int, data: bytes) -> None:
    """Write ``data`` at the start of the (empty, freshly created) file ``fd``."""
    view = memoryview(data)
    off = 0
    while off < len(data):
        off += os.pwrite(fd, view[off:], off)


def _write_new(path: str, data: bytes) -> bool:
    """Write a file in a directory that nobody else writes to: in place if it is new (no
    temporary, no rename; True: the caller fsyncs it), else replaced atomically and fsynced
    (False)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        atomic_write_bytes(path, data)
        return False
    try:
        _pwrite_all(fd, data)
    except BaseException:
        os.close(fd)
        _unlink_quiet(path)
        raise
    os.close(fd)
    return True


def _dumps(obj: Any, indent: int | None = 1) -> bytes:
    return (json.dumps(obj, indent=indent, sort_keys=True, allow_nan=False) + "\n").encode()


def atomic_write_json(path: str, obj: Any, *, fsync: bool = True, fsync_dir: bool = False) -> None:
    atomic_write_bytes(path, _dumps(obj), fsync=fsync, fsync_dir=fsync_dir)


def _place_file(source: str | os.PathLike | Callable[[str], Any], dst: str) -> None:
    """Put a file at ``dst`` atomically and durably.

    ``source`` is a callable ``write(path)`` that writes the file (it gets a temporary path in
    the destination directory), or the path of an existing file, which is moved (renamed) into
    place when it is on the same file system and copied otherwise.
    """
    tmp = _tmp_path(dst)
    try:
        if callable(source):
            source(tmp)
            if not os.path.exists(tmp):
                raise StoreError(f"the checkpoint writer did not create {tmp}")
        else:
            src = os.fspath(source)
            if os.path.abspath(src) == os.path.abspath(dst):
                _fsync_file(dst)
                return
            try:
                os.rename(src, tmp)
            except OSError as e:
                if e.errno != errno.EXDEV:
                    raise
                shutil.copyfile(src, tmp)
        _fsync_file(tmp)
        os.replace(tmp, dst)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _unlink_quiet(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


def _rmtree_quiet(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)


def dna_hash(dna: Any) -> str:
    """Content hash of a DNA dict (canonical JSON), as stored in fitness.json."""
    blob = json.dumps(dna, sort_keys=True, separators=(",", ":")).encode()
    return "sha256:" + hashlib.sha256(blob).hexdigest()


def _shard(i: int) -> str:
    return str(i // SHARD_SIZE)


def _new_token() -> str:
    return secrets.token_hex(6)


def _num(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


# --------------------------------------------------------------------------------------------
# Config, control, state
# --------------------------------------------------------------------------------------------

LOCK_MODES = ("auto", "flock", "soft", "none")
INHERITANCE_MODES = ("paper", "none")


@dataclass
class Config:
    """The experiment config, written once to ``config.json`` and never changed.

    See docs/format.md for the meaning of every field.
    """

    dataset: str = "cifar10"
    dataset_kwargs: dict = field(default_factory=dict)
    population_size: int = 1000
    strategy: str = "tournament"
    sample_size: int = 25
    steps_per_child: int = 25600
    mutations_per_child: int = 1
    max_individuals: int | None = None
    max_flops: float | None = None
    lock: str = "auto"
    inheritance: str = "paper"
    keep_checkpoints: str = "alive"
    seed: int = 0
    lease_ttl_s: float = 600.0
    heartbeat_s: float = 30.0
    checkpoint_every_s: float = 300.0
    lock_ttl_s: float = 60.0
    lock_timeout_s: float = 600.0
    max_attempts: int = 5
    seed_dna: dict | None = None
    train: dict = field(default_factory=dict)
    format_version: int = FORMAT_VERSION
    created_at: float | None = None
    lock_detected: str | None = None

    @classmethod
    def from_dict(cls, d: dict) -> "Config":
        if not isinstance(d, dict):
            raise ConfigError(f"config must be a JSON object, got {type(d).__name__}")
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = [k for k in d if k not in names]
        if unknown:
            k = unknown[0]
            close = difflib.get_close_matches(k, names, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ConfigError(
                f"config field '{k}': unknown field{hint}. Fix: remove it; known fields are "
                f"{', '.join(names)}"
            )
        return cls(**d)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @property
    def keep_top(self) -> int:
        """K of ``keep_checkpoints = "top:K"`` (0 otherwise)."""
        if self.keep_checkpoints.startswith("top:"):
            return int(self.keep_checkpoints[4:])
        return 0

    def validate(self) -> "Config":
        def bad(name: str, problem: str, fix: str) -> ConfigError:
            return ConfigError(
                f"config field '{name}': {problem}, got {getattr(self, name)!r}. Fix: {fix}"
            )

        def integer(name: str, lo: int, fix: str, optional: bool = False) -> None:
            v = getattr(self, name)
            if v is None and optional:
                return
            if not isinstance(v, int) or isinstance(v, bool) or v < lo:
                raise bad(name, f"must be an integer >= {lo}", fix)

        def positive(name: str, fix: str, optional: bool = False) -> None:
            v = getattr(self, name)
            if v is None and optional:
                return
            if not _num(v) or v <= 0:
                raise bad(name, "must be a positive number", fix)

        if self.format_version != FORMAT_VERSION:
            raise bad("format_version", f"this evo writes format {FORMAT_VERSION}", "leave it out")
        if not isinstance(self.dataset, str) or not self.dataset:
            raise bad("dataset", "must be a non-empty string", "name a dataset, e.g. cifar10")
        if not isinstance(self.dataset_kwargs, dict):
            raise bad("dataset_kwargs", "must be a JSON object", "pass a dict of keyword arguments")
        integer("population_size", 2, "use at least 2 (the paper uses 1000)")
        if self.strategy not in _strategies.STRATEGIES:
            raise bad("strategy", f"must be one of {', '.join(_strategies.STRATEGIES)}",
                      "pick tournament (Real 2017), aging (Real 2019) or random")
        integer("sample_size", 1, "use 1 <= sample_size (Real 2019 uses 25 for P=100)")
        integer("steps_per_child", 1, "use a positive number of training steps (paper: 25600)")
        integer("mutations_per_child", 0, "use 0 or more mutations per child (paper: 1)")
        integer("max_individuals", 1, "use a positive number or null for no limit", optional=True)
        positive("max_flops", "use a positive number of FLOPs or null for no limit", optional=True)
        if self.lock not in LOCK_MODES:
            raise bad("lock", f"must be one of {', '.join(LOCK_MODES)}",
                      "use auto unless you know the file system's locking")
        if self.inheritance not in INHERITANCE_MODES:
            raise bad("inheritance", "must be 'paper' or 'none'",
                      "paper = children inherit matching weights; none = train from scratch")
        kc = self.keep_checkpoints
        ok_kc = kc in ("all", "alive") or (
            isinstance(kc, str) and kc.startswith("top:") and kc[4:].isdigit() and int(kc[4:]) > 0
        )
        if not ok_kc:
            raise bad("keep_checkpoints", "must be 'all', 'alive' or 'top:K' with K > 0",
                      "e.g. top:10 keeps the 10 best models ever trained besides the living")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise bad("seed", "must be an integer", "pass an integer random seed")
        positive("lease_ttl_s", "use a time-to-live in seconds, several times heartbeat_s")
        positive("heartbeat_s", "use a heartbeat period in seconds")
        if self.heartbeat_s * 2 > self.lease_ttl_s:
            raise bad("heartbeat_s", f"must be at most half of lease_ttl_s ({self.lease_ttl_s})",
                      "heartbeat more often or raise lease_ttl_s")
        positive("checkpoint_every_s", "use a period in seconds")
        positive("lock_ttl_s", "use a time-to-live in seconds for the soft lock")
        positive("lock_timeout_s", "use a timeout in seconds")
        integer("max_attempts", 1, "use at least 1")
        if self.seed_dna is not None and not isinstance(self.seed_dna, dict):
            raise bad("seed_dna", "must be a DNA dict (DNA.to_dict()) or null", "pass DNA.to_dict()")
        if not isinstance(self.train, dict):
            raise bad("train", "must be a JSON object", "pass a dict of training settings")
        return self


@dataclass
class Control:
    """Mutable run-control knobs (``control.json``), re-read by workers at every step."""

    mutations_per_child: int = 1
    paused: bool = False
    stopped: bool = False
    reset_generation: int = 0
    epoch: int = 0
    updated_at: float = 0.0

    @classmethod
    def from_dict(cls, d: dict) -> "Control":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _default_state() -> dict:
    return {"trained": 0, "flops": 0.0, "top": [], "updated_at": time.time()}


# --------------------------------------------------------------------------------------------
# File-system detection and locks
# --------------------------------------------------------------------------------------------

_FLOCK_FS = frozenset(
    {"ext2", "ext3", "ext4", "xfs", "btrfs", "tmpfs", "ramfs", "gpfs", "zfs", "f2fs",
     "overlay", "jfs", "reiserfs", "apfs", "hfs", "ufs", "bcachefs"}
)
_SOFT_FS = frozenset({"nfs", "nfs4", "cifs", "smb3", "smbfs", "fuse.sshfs", "9p", "virtiofs"})


def _unescape_mount(s: str) -> str:
    return s.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")


def filesystem_of(path: str) -> tuple[str, str, list[str]]:
    """(fstype, mount point, mount options) of ``path`` from /proc/mounts, or ('unknown', '', [])."""
    real = os.path.realpath(path)
    best = ("unknown", "", [])
    try:
        with open("/proc/mounts") as f:
            lines = f.read().splitlines()
    except OSError:
        return best
    for line in lines:
        parts = line.split()
        if len(parts) < 4:
            continue
        mnt = _unescape_mount(parts[1])
        if real == mnt or real.startswith(mnt.rstrip("/") + "/") or mnt == "/":
            if len(mnt) >= len(best[1]):
                best = (parts[2], mnt, parts[3].split(","))
    return best


def detect_lock_kind(path: str) -> tuple[str, str]:
    """Pick the lock kind for a population directory: ``(kind, reason)``.

    flock where it is known to be cluster-wide or local (ext4, xfs, btrfs, tmpfs, gpfs, ...,
    Lustre mounted with ``-o flock``); soft elsewhere (NFS, Lustre with localflock/noflock,
    anything unknown).
    """
    fstype, mnt, opts = filesystem_of(path)
    if fstype == "lustre":
        if "flock" in opts:
            return "flock", f"lustre mounted with -o flock at {mnt}"
        return "soft", f"lustre at {mnt} without cluster-wide flock ({','.join(opts)})"
    if fstype in _FLOCK_FS:
        return "flock", f"{fstype} at {mnt}"
    if fstype in _SOFT_FS or fstype.startswith("nfs"):
        return "soft", f"{fstype} at {mnt}: flock may be node-local"
    return "soft", f"file system {fstype!r} at {mnt or '?'} not known to support cluster-wide flock"


class _NullLock:
    kind = "none"

    def acquire(self, timeout: float | None = None) -> None:
        pass

    def release(self) -> None:
        pass

    def holder(self) -> str | None:
        return None


class _FlockLock:
    """flock(2) on the lock file, waited for in the kernel.

    The descriptor is opened once per process (again after a fork, or when the file was
    replaced) and kept open: taking a free lock is one ``flock`` and one ``stat`` (the check that
    the descriptor still names the file at ``path``, so that a lock file deleted or replaced
    under us never splits the lock).  A contended acquisition waits with a blocking
    ``flock(LOCK_EX)`` in a helper thread while the caller waits, with the timeout, for it to
    succeed: the kernel hands the lock to a waiter as soon as the holder releases it, instead of
    leaving it idle until the next poll.  On timeout the attempt is abandoned: the helper keeps
    its own descriptor and, if it ever gets the lock, releases it and closes the descriptor at
    once.  The lock file is never deleted, so it interoperates with ``filelock.FileLock`` on the
    same path (which is what is used where ``fcntl`` is missing).
    """

    kind = "flock"

    def __init__(self, path: str):
        self.path = path
        self._fd: int | None = None
        self._pid = 0
        self._id: tuple[int, int] | None = None
        try:
            import fcntl
        except ImportError:  # not Unix: filelock's portable lock, polled
            fcntl = None
        self._fcntl = fcntl
        self._filelock: Any = None
        if fcntl is None:
            import filelock

            self._timeout_error = filelock.Timeout
            try:
                self._filelock = filelock.FileLock(path, fallback_to_soft=False, thread_local=False)
            except TypeError:  # filelock < 3.30 has no fallback option: it never falls back
                self._filelock = filelock.FileLock(path, thread_local=False)

    # -- descriptor ---------------------------------------------------------------------------
    def _refused(self, e: OSError) -> StoreError:
        return StoreError(f"{self.path}: the file system refuses flock ({e}). Fix: set lock to "
                          f"'soft' in the config (or 'auto')")

    def _open(self) -> int:
        pid = os.getpid()
        if self._fd is not None and self._pid == pid:
            return self._fd
        if self._fd is not None:  # inherited across fork: the parent's; never unlock it here
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)  # O_CLOEXEC by default
        st = os.fstat(fd)
        self._fd, self._pid, self._id = fd, pid, (st.st_dev, st.st_ino)
        return fd

    def _drop(self) -> None:
        """Forget the descriptor (it is closed; a lock it held is released with it)."""
        fd, self._fd = self._fd, None
        if fd is not None and self._pid == os.getpid():
            with contextlib.suppress(OSError):
                os.close(fd)

    def _current(self) -> bool:
        """True if our descriptor still names the file at ``path`` (checked while holding)."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return False
        return (st.st_dev, st.st_ino) == self._id

    def _try(self, fd: int) -> bool:
        f = self._fcntl
        try:
            f.flock(fd, f.LOCK_EX | f.LOCK_NB)
            return True
        except OSError as e:
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                return False
            if e.errno in (errno.ENOSYS, errno.ENOLCK, errno.EOPNOTSUPP):
                raise self._refused(e) from e
            raise

    # -- acquire / release --------------------------------------------------------------------
    def acquire(self, timeout: float | None = None) -> None:
        if self._filelock is not None:
            return self._acquire_polled(timeout)
        deadline = None if timeout is None or timeout < 0 else time.monotonic() + timeout
        started = time.monotonic()
        while True:
            fd = self._open()
            if not self._try(fd):
                if deadline is not None and time.monotonic() >= deadline:
                    raise self._timeout(started)
                self._wait(fd, deadline, started)
            if self._current():
                return
            self._drop()  # the file was deleted or replaced meanwhile: lock the one at path

    def _timeout(self, started: float) -> LockTimeout:
        return LockTimeout(f"could not acquire the population lock {self.path} within "
                           f"{time.monotonic() - started:.3g} s; a process that holds it is hung "
                           f"(find it with `lsof {self.path}`)")

    def _wait(self, fd: int, deadline: float | None, started: float) -> None:
        """Block in the kernel (in a helper thread) until the lock is ours, or raise
        LockTimeout at ``deadline``."""
        f = self._fcntl
        got = threading.Event()
        state = {"abandoned": False, "error": None}
        mutex = threading.Lock()

        def wait() -> None:
            try:
                f.flock(fd, f.LOCK_EX)
            except BaseException as e:  # noqa: BLE001 -- handed to the caller
                state["error"] = e
                got.set()
                return
            with mutex:
                if not state["abandoned"]:
                    got.set()
                    return
            # the caller gave up: release at once, and close the descriptor it left to us
            with contextlib.suppress(OSError):
                f.flock(fd, f.LOCK_UN)
            with contextlib.suppress(OSError):
                os.close(fd)

        t = threading.Thread(target=wait, name="evo-flock-wait", daemon=True)
        t.start()
        next_note = started + 30.0
        while not got.wait(max(0.0, min(next_note, deadline if deadline is not None else next_note)
                               - time.monotonic())):
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                with mutex:
                    if not got.is_set():
                        state["abandoned"] = True
                if state["abandoned"]:
                    self._fd = None  # the helper owns (and will close) that descriptor now
                    raise self._timeout(started)
                break
            if now >= next_note:
                _warn(f"still waiting for the population lock {self.path} after {now - started:.0f} s")
                next_note = now + 30.0
        err = state["error"]
        if err is not None:
            if isinstance(err, OSError) and err.errno in (errno.ENOSYS, errno.ENOLCK, errno.EOPNOTSUPP):
                raise self._refused(err) from err
            raise err

    def release(self) -> None:
        if self._filelock is not None:
            self._filelock.release()
            return
        if self._fd is not None and self._pid == os.getpid():
            self._fcntl.flock(self._fd, self._fcntl.LOCK_UN)

    def _acquire_polled(self, timeout: float | None) -> None:
        deadline = None if timeout is None or timeout < 0 else time.monotonic() + timeout
        delay = 0.0005
        while True:
            try:
                self._filelock.acquire(timeout=0)
                return
            except self._timeout_error:
                pass
            except OSError as e:
                if e.errno in (errno.ENOSYS, errno.ENOLCK, errno.EOPNOTSUPP):
                    raise self._refused(e) from e
                raise
            if deadline is not None and time.monotonic() >= deadline:
                raise self._timeout(deadline - (timeout or 0.0))
            time.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 0.008)

    def holder(self) -> str | None:
        return None


class SoftLock:
    """A lock file created with O_CREAT|O_EXCL, carrying an owner token, kept alive by a
    heartbeat (its mtime), and broken by others only after ``ttl`` seconds without heartbeat.

    Breaking renames the lock file to a unique name, re-checks that it is the same stale lock,
    then unlinks it; if the renamed file turns out to be alive it is put back.  A holder's
    heartbeat thread refreshes the mtime every ``ttl / 4`` seconds while it holds the lock, so a
    live holder is never evicted however long it holds.
    """

    kind = "soft"

    def __init__(self, path: str, ttl: float = 60.0, *, owner: dict | None = None):
        self.path = path
        self.ttl = float(ttl)
        self.owner = dict(owner or {})
        self._token: str | None = None
        self._held = threading.Event()
        self._thread: threading.Thread | None = None
        self._mutex = threading.Lock()
        self.broken_count = 0

    # -- holder side -------------------------------------------------------------------------
    def acquire(self, timeout: float | None = None) -> None:
        deadline = None if timeout is None or timeout < 0 else time.monotonic() + timeout
        delay = 0.0005
        started = time.monotonic()
        next_note = started + 30.0
        while True:
            if self._try_create():
                return
            self._maybe_break()
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                raise LockTimeout(
                    f"could not acquire the soft lock {self.path} within {timeout:.0f} s; held by "
                    f"{self.holder() or 'an unknown owner'}, which is still heartbeating. If that "
                    f"process is gone, delete the file or run `evo fsck --repair`"
                )
            if now >= next_note:
                _warn(f"still waiting for the soft lock {self.path} after {now - started:.0f} s; "
                      f"held by {self.holder()}")
                next_note = now + 30.0
            time.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 0.008)

    def _try_create(self) -> bool:
        token = _new_token()
        info = dict(self.owner)
        info.update(token=token, host=socket.gethostname(), pid=os.getpid(), acquired_at=time.time())
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        try:
            os.write(fd, _dumps(info, indent=None))
        finally:
            os.close(fd)
        self._token = token
        self._held.set()
        self._ensure_heartbeat_thread()
        return True

    def release(self) -> None:
        token, self._token = self._token, None
        self._held.clear()
        if token is None:
            return
        with self._mutex:
            cur = self._read(self.path)
            if cur is not None and cur.get("token") != token:
                _warn(f"the soft lock {self.path} was broken while this process held it "
                      f"(now held by {cur.get('host')}:{cur.get('pid')}); raise lock_ttl_s")
                return
            _unlink_quiet(self.path)

    def _ensure_heartbeat_thread(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        t = threading.Thread(target=self._heartbeat_loop, name="evo-softlock-heartbeat", daemon=True)
        self._thread = t
        t.start()

    def _heartbeat_loop(self) -> None:
        period = max(self.ttl / 4.0, 0.01)
        while True:
            self._held.wait()
            time.sleep(period)
            with self._mutex:
                if not self._held.is_set() or self._token is None:
                    continue
                cur = self._read(self.path)
                if cur is None or cur.get("token") != self._token:
                    continue  # reported at release
                with contextlib.suppress(OSError):
                    os.utime(self.path, None)

    # -- contender side ----------------------------------------------------------------------
    @staticmethod
    def _read(path: str) -> dict | None:
        try:
            data = read_bytes(path)
        except OSError:
            return None
        try:
            obj = json.loads(data)
            return obj if isinstance(obj, dict) else {}
        except ValueError:
            return {}  # being written, or torn: no owner token known

    def _age(self, path: str) -> float | None:
        try:
            return time.time() - os.stat(path).st_mtime
        except OSError:
            return None

    def _maybe_break(self) -> bool:
        age = self._age(self.path)
        if age is None or age <= self.ttl:
            return False
        seen = self._read(self.path)
        if seen is None:
            return False
        aside = f"{self.path}.broken-{_new_token()}"
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return False
        after = self._read(aside)
        age2 = self._age(aside)
        if after is not None and after.get("token") == seen.get("token") and age2 is not None and age2 > self.ttl:
            _unlink_quiet(aside)
            self.broken_count += 1
            _warn(f"broke the stale soft lock {self.path} held by {seen.get('host')}:{seen.get('pid')} "
                  f"(no heartbeat for {age2:.0f} s > lock_ttl_s={self.ttl:.0f})")
            return True
        # We moved a live lock (a new holder got in between): put it back.
        try:
            os.link(aside, self.path)
        except OSError:
            _warn(f"could not restore the live soft lock {self.path} moved aside by mistake")
        _unlink_quiet(aside)
        return False

    def holder(self) -> str | None:
        info = self._read(self.path)
        if info is None:
            return None
        age = self._age(self.path)
        return (f"{info.get('host', '?')}:{info.get('pid', '?')} "
                f"(worker {info.get('worker', '?')}, last heartbeat {age or 0:.0f} s ago)")

    def is_stale(self) -> bool:
        age = self._age(self.path)
        return age is not None and age > self.ttl

    def break_stale(self) -> bool:
        """Break the lock if it is stale (used by fsck --repair)."""
        return self._maybe_break()

    def __enter__(self) -> "SoftLock":
        self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()


# --------------------------------------------------------------------------------------------
# Worker-facing objects
# --------------------------------------------------------------------------------------------


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
            if ajob and atask:
                id = f"{ajob}_{atask}@{host}:{pid}"
            elif job:
                id = f"{job}@{host}:{pid}"
            else:
                id = f"{host}:{pid}"
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
        self._dna_saved: bytes | None = None  # what save_dna wrote (and fsynced) to dna.json

    @property
    def checkpoint_path(self) -> str:
        """Where the resumable training state lives (``resume.pt``; write it with
        :meth:`save_checkpoint`)."""
        return os.path.join(self.path, RESUME_FILE)

    @property
    def lost(self) -> bool:
        """True once the lease is known to be lost (set by :meth:`heartbeat` / keepalive)."""
        return self._lost.is_set()

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

    def _write(self) -> None:
        now = time.time()
        atomic_write_json(os.path.join(self.path, LEASE_FILE), self._record(now), fsync=False)
        self.heartbeat_at = now

    def _close(self) -> None:
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
                self._write()
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
                    _warn(f"heartbeat of {self.path} failed: {e}; retrying")

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
            _place_file(source, self.checkpoint_path)
        except (FileNotFoundError, NotADirectoryError):
            if not os.path.isdir(self.path):
                self._lost.set()
                raise LeaseLost(f"lease on child {self.child_id} was lost; checkpoint not saved") from None
            raise
        return self.checkpoint_path

    def save_dna(self, dna: dict, mutations: Sequence[str] | None = None) -> None:
        """Record the child's DNA (and the mutations applied) so that a resume trains the same
        child.  Raises :class:`LeaseLost` if the lease is gone."""
        try:
            data = _dumps(dna, indent=None)
            files = {os.path.join(self.path, DNA_FILE): data}
            if mutations is not None:
                tpath = os.path.join(self.path, TASK_FILE)
                tj = load_json_or_none(tpath) or {}
                tj["mutations_applied"] = list(mutations)
                files[tpath] = _dumps(tj, indent=None)
            atomic_write_files(files)
            self._dna_saved = data
        except (FileNotFoundError, NotADirectoryError):
            self._lost.set()
            raise LeaseLost(f"lease on child {self.child_id} was lost; DNA not saved") from None

    def to_dict(self) -> dict:
        return self._record(self.heartbeat_at)


@dataclass
class Task:
    """One unit of work handed to a worker by :meth:`Population.next_task`."""

    kind: str  # seed | child | random | retrain | resume
    child_id: int
    parent_id: int | None
    mutations: int
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


@dataclass
class Individual:
    """A committed individual as read by analysis tools."""

    id: int
    status: str  # alive | dead
    path: str
    fitness: dict | None

    def dna(self) -> dict:
        return load_json(os.path.join(self.path, DNA_FILE))

    @property
    def checkpoint(self) -> str | None:
        p = os.path.join(self.path, CHECKPOINT_FILE)
        return p if os.path.exists(p) else None

    @property
    def death(self) -> dict | None:
        return load_json_or_none(os.path.join(self.path, DEATH_FILE), warn=False)


class _Retry:
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


def read_events(root: str, *, warn: bool = True) -> Iterator[dict]:
    """Yield the events of ``events.jsonl``.  A torn last line is skipped silently (an append in
    progress or cut by a crash); an undecodable line in the middle is skipped with a warning."""
    path = os.path.join(root, EVENTS_FILE)
    try:
        data = read_bytes(path)
    except FileNotFoundError:
        return
    lines = data.split(b"\n")
    last = len(lines) - 1
    while last >= 0 and not lines[last].strip():
        last -= 1
    for n, line in enumerate(lines[: last + 1]):
        if not line.strip():
            continue
        try:
            ev = json.loads(line)
            if not isinstance(ev, dict):
                raise ValueError("not an object")
        except (ValueError, UnicodeDecodeError):
            if n != last and warn:
                _warn(f"{path}: line {n + 1} is torn or corrupt and was skipped", CorruptFileWarning)
            continue
        yield ev


# --------------------------------------------------------------------------------------------
# The population
# --------------------------------------------------------------------------------------------


class Population:
    """A population directory.  Use :meth:`create` or :meth:`open`."""

    def __init__(self, root: str, config: Config, *, lock: str | None = None):
        self.root = os.path.abspath(root)
        self.config = config
        self._alive = os.path.join(self.root, ALIVE)
        self._dead = os.path.join(self.root, DEAD)
        self._pending = os.path.join(self.root, PENDING)
        self._inflight = os.path.join(self.root, INFLIGHT)
        self._tmp = os.path.join(self.root, TMP)
        self._ids = os.path.join(self.root, IDS)
        self._events = os.path.join(self.root, EVENTS_FILE)
        self._state_path = os.path.join(self.root, STATE_FILE)
        self._control_path = os.path.join(self.root, CONTROL_FILE)
        mode = lock or config.lock
        self.lock_reason = f"configured lock = {mode}"
        if mode == "auto":
            mode, self.lock_reason = detect_lock_kind(self.root)
            if config.lock_detected and config.lock_detected != mode:
                _warn(f"{self.root}: lock auto-detection gives {mode} here ({self.lock_reason}) but "
                      f"{config.lock_detected} where the population was created; set lock explicitly")
        self.lock_kind = mode
        if mode == "flock":
            self._lock: Any = _FlockLock(os.path.join(self.root, FLOCK_FILE))
        elif mode == "soft":
            self._lock = SoftLock(os.path.join(self.root, SOFT_LOCK_FILE), config.lock_ttl_s)
        else:
            self._lock = _NullLock()
        self._lock_depth = 0
        # events.jsonl and next_id, opened once per critical section (closed before the
        # release, so that the next holder's open sees what was written, also over NFS)
        self._sec_fds: dict[str, int] = {}
        self._ev_clean: tuple[int, int] | None = None  # (inode, size) known to end in a newline
        self._state_snapshot: dict | None = None
        self._scan_entries = 0
        self._ev_offset: tuple[int, int] | None = None
        self._rebuild_at = 0.0
        self._nlink_ok = False
        self._unselectable = 0
        # st_nlink of directories is trusted only where attributes are coherent (not NFS & co.)
        fstype = filesystem_of(self.root)[0]
        self._trust_nlink = not (fstype in _SOFT_FS or fstype.startswith(("nfs", "fuse")))
        self._cache: dict[str, Record] = {}
        self._cache_key: tuple[int, int] | None = None
        self._known_shards: set[str] = set()
        self._next_recovery = 0.0
        self._rng = random.Random()
        self._link_claims = True
        #: Per-process timings (seconds) for benchmarks: lock_wait, lock_held, next_task, commit,
        #: and lock_at (time.monotonic() at each acquisition, to merge the lock's timeline).
        self.stats: dict[str, list[float]] = {"lock_wait": [], "lock_held": [], "lock_at": [],
                                              "next_task": [], "commit": []}
        self.keep_stats = False

    # ---------------------------------------------------------------------- create / open
    @classmethod
    def create(cls, root: str, config: Config | dict | None = None, **overrides: Any) -> "Population":
        """Create a new population at ``root`` (which must not exist, or be an empty directory),
        with ``population_size`` seed individuals planned as pending work."""
        if config is None:
            config = Config()
        elif isinstance(config, dict):
            config = Config.from_dict(config)
        else:
            config = dataclasses.replace(config)
        for k in overrides:
            if k not in {f.name for f in dataclasses.fields(Config)}:
                Config.from_dict({k: None})  # raises with a hint
        config = dataclasses.replace(config, **overrides)
        config.validate()
        root = os.path.abspath(root)
        if os.path.exists(root):
            if os.path.exists(os.path.join(root, CONFIG_FILE)):
                raise PopulationExistsError(
                    f"{root} already holds a population; refusing to overwrite it. Fix: choose "
                    f"another directory, or delete this one if you really want to start over"
                )
            if not os.path.isdir(root) or os.listdir(root):
                raise PopulationExistsError(
                    f"{root} exists and is not an empty directory; refusing to create a population "
                    f"there. Fix: choose a new directory"
                )
        parent = os.path.dirname(root)
        os.makedirs(parent, exist_ok=True)
        now = time.time()
        kind, _ = detect_lock_kind(parent)
        config = dataclasses.replace(config, created_at=now, lock_detected=kind)
        build = os.path.join(parent, f".{os.path.basename(root)}.creating-{_new_token()}")
        os.mkdir(build)
        try:
            for d in _SUBDIRS:
                os.mkdir(os.path.join(build, d))
            P = config.population_size
            os.mkdir(os.path.join(build, IDS, "0"))
            for i in range(1, P + 1):
                sd = os.path.join(build, IDS, _shard(i))
                if i % SHARD_SIZE == 0 or not os.path.isdir(sd):
                    os.makedirs(sd, exist_ok=True)
                open(os.path.join(sd, str(i)), "xb").close()
                pd = os.path.join(build, PENDING, str(i))
                os.mkdir(pd)
                atomic_write_json(os.path.join(pd, TASK_FILE), {
                    "format_version": FORMAT_VERSION, "kind": "seed", "id": i, "parent_id": None,
                    "task_uid": _new_token(), "mutations": 0, "dna": config.seed_dna,
                    "parent_dna": None, "generation": 0, "born_at": now, "attempts": 0,
                    "failures": 0,
                }, fsync=False)
            ctl = Control(mutations_per_child=config.mutations_per_child, updated_at=now)
            atomic_write_json(os.path.join(build, CONTROL_FILE), ctl.to_dict())
            atomic_write_json(os.path.join(build, STATE_FILE), _default_state())
            atomic_write_bytes(os.path.join(build, NEXT_ID_FILE), b"%-20d\n" % (P + 1))
            ev = {"t": now, "event": "create", "population_size": P, "strategy": config.strategy,
                  "seeds": [1, P], "format_version": FORMAT_VERSION, "host": socket.gethostname()}
            atomic_write_bytes(os.path.join(build, EVENTS_FILE), _dumps(ev, indent=None))
            atomic_write_json(os.path.join(build, CONFIG_FILE), config.to_dict(), fsync_dir=True)
            with contextlib.suppress(OSError):
                os.sync()
            if os.path.isdir(root):
                os.rmdir(root)  # empty (checked above)
            os.rename(build, root)
            _fsync_dir(parent)
        except BaseException:
            _rmtree_quiet(build)
            raise
        return cls(root, config)

    @classmethod
    def open(cls, root: str, *, lock: str | None = None) -> "Population":
        """Open an existing population.  ``lock`` overrides the config's lock mode (tools)."""
        root = os.path.abspath(root)
        cpath = os.path.join(root, CONFIG_FILE)
        if not os.path.isdir(root):
            raise NotAPopulationError(f"{root}: no such directory. Fix: create a population with `evo init {root}`")
        try:
            raw = load_json(cpath)
        except FileNotFoundError:
            raise NotAPopulationError(
                f"{root} is not an evo population (no {CONFIG_FILE}). Fix: check the path, or "
                f"create one with `evo init {root}`"
            ) from None
        except CorruptFileError as e:
            raise NotAPopulationError(f"{e} -- the experiment config is unreadable") from None
        ver = raw.get("format_version")
        if not isinstance(ver, int):
            raise NotAPopulationError(f"{cpath}: no format_version; not an evo population")
        if ver > FORMAT_VERSION:
            raise FormatVersionError(
                f"{root} uses on-disk format {ver}, newer than this evo reads (<= {FORMAT_VERSION}). "
                f"Fix: upgrade evo"
            )
        known = {f.name for f in dataclasses.fields(Config)}
        extra = sorted(k for k in raw if k not in known)
        if extra:
            _warn(f"{cpath}: ignoring unknown config fields {extra}")
        config = Config(**{k: v for k, v in raw.items() if k in known})
        if lock is not None and lock not in LOCK_MODES:
            raise ConfigError(f"lock override {lock!r}: must be one of {', '.join(LOCK_MODES)}")
        return cls(root, config, lock=lock)

    # ---------------------------------------------------------------------- lock
    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the population lock (re-entrant within this object)."""
        if self._lock_depth:
            self._lock_depth += 1
            try:
                yield
            finally:
                self._lock_depth -= 1
            return
        t0 = time.monotonic()
        self._lock.acquire(self.config.lock_timeout_s)
        t1 = time.monotonic()
        self._lock_depth = 1
        try:
            yield
        finally:
            self._lock_depth = 0
            fds, self._sec_fds = self._sec_fds, {}
            for fd in fds.values():
                with contextlib.suppress(OSError):
                    os.close(fd)
            t2 = time.monotonic()  # before the release: recorded intervals never overlap
            self._lock.release()
            if self.keep_stats:
                self.stats["lock_wait"].append(t1 - t0)
                self.stats["lock_held"].append(t2 - t1)
                self.stats["lock_at"].append(t1)  # system-wide clock: merged across processes

    # ---------------------------------------------------------------------- small files
    def read_control(self) -> Control:
        """The run-control knobs; defaults (with a warning) if control.json is unreadable."""
        d = load_json_or_none(self._control_path)
        if d is None:
            return Control(mutations_per_child=self.config.mutations_per_child)
        return Control.from_dict(d)

    def _write_control(self, ctl: Control) -> None:
        ctl.updated_at = time.time()
        atomic_write_json(self._control_path, ctl.to_dict(), fsync_dir=True)

    def read_state(self) -> dict:
        """The running counters: trained (trainings committed), flops, top (K best ever)."""
        d = load_json_or_none(self._state_path, warn=False)
        if d is None:  # read while being rewritten in place (a reader without the lock): again
            time.sleep(0.001)
            d = load_json_or_none(self._state_path)
        if d is None or not isinstance(d.get("trained"), int):
            _warn(f"{self._state_path} is missing or unreadable; rebuilding the counters by a full "
                  f"scan (slow, once)")
            d = _recount(self.root, self.config)
            d.pop("next_id", None)
            with contextlib.suppress(OSError):
                atomic_write_json(self._state_path, d)
        return d

    def read_next_id(self) -> int:
        """The next id hint (claims in ids/ make allocation safe even when it is stale)."""
        try:
            if self._lock_depth:
                data = os.pread(self._section_fd(NEXT_ID_FILE), 64, 0)
            else:
                data = read_bytes(os.path.join(self.root, NEXT_ID_FILE))
            return max(1, int(data.strip()))
        except (OSError, ValueError):
            return 1

    def _write_next_id(self, n: int) -> None:
        # overwritten in place (fixed width, one small write): a hint needs no rename
        with contextlib.suppress(OSError):
            if self._lock_depth:
                os.pwrite(self._section_fd(NEXT_ID_FILE), b"%-20d\n" % n, 0)
                return
            fd = os.open(os.path.join(self.root, NEXT_ID_FILE), os.O_WRONLY | os.O_CREAT, 0o644)
            try:
                os.pwrite(fd, b"%-20d\n" % n, 0)
            finally:
                os.close(fd)

    def _update_state(self, change: Callable[[dict], None]) -> None:
        """Under the lock: read state.json, apply ``change``, rewrite it in place (see
        :meth:`_write_state`), through one descriptor.  Never fatal: a write that fails leaves
        counters that ``evo fsck --repair`` recounts."""
        try:
            fd = os.open(self._state_path, os.O_RDWR)
        except OSError:
            fd = -1
        try:
            st = None
            if fd >= 0:
                raw = b""
                while True:
                    chunk = os.pread(fd, 1 << 16, len(raw))
                    raw += chunk
                    if len(chunk) < 1 << 16:
                        break
                with contextlib.suppress(ValueError):
                    st = json.loads(raw)
            if not isinstance(st, dict) or not isinstance(st.get("trained"), int):
                # missing, torn or foreign: the careful path (warns, recounts, replaces the file)
                st = self.read_state()
                change(st)
                self._write_state(st)
                return
            change(st)
            st["updated_at"] = time.time()
            _pwrite_all(fd, _padded(_dumps(st, indent=None), len(raw)))
        except OSError:
            pass
        finally:
            if fd >= 0:
                os.close(fd)

    def _write_state(self, st: dict) -> None:
        """Rewrite state.json in place (one ``pwrite``, padded with spaces to the old length, so
        that it never shrinks): replacing it would create and free a file on every commit.  It
        is not fsynced: the counters are derived data (``evo fsck --repair`` recounts them after
        a crash of the machine); the directories, which are fsynced, are the truth.  A file
        torn by a crash of the machine is detected when read, and recounted."""
        st["updated_at"] = time.time()
        data = _dumps(st, indent=None)
        fd = os.open(self._state_path, os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            _pwrite_all(fd, _padded(data, os.fstat(fd).st_size))
        finally:
            os.close(fd)

    def _append_events(self, events: Sequence[dict]) -> None:
        """Append events (one write).  Never fatal: a failure is a warning and fsck reconstructs
        the missing events from the directories.  Appends under the lock (every selection
        step and commit) are not fsynced: the log is derived from the directories, which are,
        and ``evo fsck --repair`` restores what a crash of the machine lost; the rarer appends
        outside it (control, fsck) are."""
        now = time.time()
        payload = b"".join(_dumps({"t": now, **e}, indent=None) for e in events)
        section = bool(self._lock_depth)
        try:
            fd = self._section_fd(EVENTS_FILE) if section else os.open(self._events, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                st = os.fstat(fd)
                if st.st_size and self._ev_clean != (st.st_ino, st.st_size) \
                        and os.pread(fd, 1, st.st_size - 1) != b"\n":
                    payload = b"\n" + payload  # a torn last line: start on a fresh line
                n = os.write(fd, payload)
                # (the next check trusts this only if the size is exactly what this write made)
                self._ev_clean = (st.st_ino, st.st_size + n) if n == len(payload) else None
                if not section:
                    os.fsync(fd)
            finally:
                if not section:
                    os.close(fd)
        except OSError as e:
            _warn(f"could not append to {self._events}: {e}; `evo fsck --repair` will restore "
                  f"the missing events")

    def _section_fd(self, name: str) -> int:
        """Under the lock: a file of the population (the event log: in append mode), opened
        once for the critical section."""
        fd = self._sec_fds.get(name)
        if fd is None:
            flags = os.O_RDWR | os.O_CREAT | (os.O_APPEND if name == EVENTS_FILE else 0)
            fd = self._sec_fds[name] = os.open(os.path.join(self.root, name), flags, 0o644)
        return fd

    def events(self) -> Iterator[dict]:
        return read_events(self.root)

    # ---------------------------------------------------------------------- paths
    def alive_path(self, i: int) -> str:
        return os.path.join(self._alive, str(i))

    def dead_path(self, i: int) -> str:
        return os.path.join(self._dead, _shard(i), str(i))

    def _ensure_shard(self, base: str, i: int) -> str:
        s = _shard(i)
        d = os.path.join(base, s)
        key = base + "/" + s
        if key not in self._known_shards:
            os.makedirs(d, exist_ok=True)
            self._known_shards.add(key)
        return d

    def _list_ids(self, d: str) -> list[int]:
        try:
            return [int(n) for n in os.listdir(d) if n.isdigit()]
        except FileNotFoundError:
            return []

    def _list_inflight(self) -> list[tuple[int, str, str]]:
        out = []
        try:
            names = os.listdir(self._inflight)
        except FileNotFoundError:
            return out
        for n in names:
            a, dot, tok = n.partition(".")
            if dot and a.isdigit() and tok:
                out.append((int(a), tok, os.path.join(self._inflight, n)))
        return out

    # ---------------------------------------------------------------------- alive records
    def _alive_records(self, ctl: Control) -> list[Record]:
        """The selectable living individuals.  One ``listdir`` of alive/ (names only) and set
        differences against the cache: only the fitness files of members not seen before are
        read.  Ids are never reused and a retrain changes the epoch (which clears the cache),
        so a name always stands for the same record."""
        key = (ctl.epoch, ctl.reset_generation)
        if key != self._cache_key:
            self._cache.clear()
            self._cache_key = key
        cache = self._cache
        names = os.listdir(self._alive)
        self._scan_entries = len(names)
        listed = set(names)
        for name in cache.keys() - listed:  # died or moved away
            del cache[name]
        for name in sorted(listed.difference(cache), key=lambda n: (len(n), n)):
            if not name.isdigit():
                continue
            i = int(name)
            fpath = os.path.join(self._alive, name, FITNESS_FILE)
            try:
                rec = load_json(fpath)
            except (FileNotFoundError, NotADirectoryError):
                continue  # killed meanwhile, or not a complete individual
            except CorruptFileError as err:
                _warn(str(err), CorruptFileWarning)
                continue
            f = rec.get("fitness")
            if not _num(f):
                _warn(f"{fpath}: alive individual without a numeric fitness; not selectable")
                continue
            cache[name] = Record(i, float(f), i)
        return list(cache.values())

    def _alive_view(self, ctl: Control) -> list[Record]:
        """The selectable living individuals, kept current without listing alive/.

        The event log says every birth (with its fitness) and death; the new lines since the
        last call are read (a few per step of every other worker) and applied to the cached
        records.  The result is checked against alive/'s link count (each member is a
        subdirectory, so ``st_nlink == 2 + members`` on ext4, xfs, Lustre, ...): any
        disagreement -- a lost append, a run without mutual exclusion, fsck moving things, a
        file system that does not count subdirectories -- and the view is rebuilt by listing
        alive/ (:meth:`_alive_records`).  It is rebuilt every ``_REBUILD_S`` seconds anyway, so
        that two errors that cancel out cannot hide a member for long.  A stale member costs
        nothing worse than a failed rename, after which the step is retried with a listing."""
        key = (ctl.epoch, ctl.reset_generation)
        now = time.monotonic()
        if (key != self._cache_key or not self._nlink_ok or self._ev_offset is None
                or now >= self._rebuild_at or not self._tail_events()):
            return self._rebuild_alive(ctl, now)
        try:
            nlink = os.stat(self._alive).st_nlink
        except OSError:
            return self._rebuild_alive(ctl, now)
        if nlink != 2 + len(self._cache) + self._unselectable:
            return self._rebuild_alive(ctl, now)
        return list(self._cache.values())

    _REBUILD_S = 30.0

    def _rebuild_alive(self, ctl: Control, now: float) -> list[Record]:
        self._ev_offset = None
        start = self._events_position()  # before the listing: later events are replayed
        try:
            st0 = os.stat(self._alive)
            recs = self._alive_records(ctl)
            st1 = os.stat(self._alive)
        except OSError:
            return self._alive_records(ctl)
        self._rebuild_at = now + self._REBUILD_S * (0.75 + 0.5 * self._rng.random())
        if (st0.st_mtime_ns, st0.st_nlink) == (st1.st_mtime_ns, st1.st_nlink):
            # does this file system count subdirectories in st_nlink?  (btrfs and some
            # network file systems do not: then every step lists alive/, as it must)
            self._nlink_ok = self._trust_nlink and st1.st_nlink == 2 + self._scan_entries
            self._unselectable = self._scan_entries - len(recs)  # torn or without fitness
        if self._nlink_ok and start is not None:
            self._ev_offset = start
            self._tail_events()
            recs = list(self._cache.values())
        return recs

    def _events_position(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self._events)
        except OSError:
            return None
        return (st.st_ino, st.st_size)

    def _tail_events(self) -> bool:
        """Apply the event log's new complete lines to the alive cache.  False if the log was
        replaced or shortened (then the caller rebuilds from a listing)."""
        ino, off = self._ev_offset  # type: ignore[misc]
        section = bool(self._lock_depth)
        try:
            fd = self._section_fd(EVENTS_FILE) if section else os.open(self._events, os.O_RDONLY)
        except OSError:
            return False
        try:
            st = os.fstat(fd)
            if st.st_ino != ino or st.st_size < off:
                return False
            if st.st_size == off:
                return True
            data = os.pread(fd, st.st_size - off, off)
        except OSError:
            return False
        finally:
            if not section:
                os.close(fd)
        end = data.rfind(b"\n") + 1  # complete lines only; a partial one is read next time
        self._ev_clean = (ino, off + len(data)) if end == len(data) else None
        if not end:
            return True
        self._ev_offset = (ino, off + end)
        cache = self._cache
        for line in data[:end].split(b"\n"):
            if b'"birth"' in line:
                try:
                    ev = json.loads(line)
                except ValueError:
                    continue
                if ev.get("event") == "birth" and ev.get("outcome", "ok") == "ok" and _num(ev.get("fitness")):
                    i = ev.get("id")
                    if isinstance(i, int):
                        cache[str(i)] = Record(i, float(ev["fitness"]), i)
            elif b'"death"' in line:
                try:
                    ev = json.loads(line)
                except ValueError:
                    continue
                if ev.get("event") == "death":
                    cache.pop(str(ev.get("id")), None)
            elif b'"reset"' in line:
                return False
        return True

    # ---------------------------------------------------------------------- ids
    def _try_claim(self, n: int) -> bool:
        """Claim id ``n``: True if it is ours now, False if someone else has it.

        A claim is a hard link ``ids/<shard>/<n>`` to the shard's ``.claim`` file: creating a
        link is atomic and exclusive (also on NFS) and, unlike creating a file, allocates
        nothing.  Where hard links are refused, an empty file created with O_EXCL."""
        d = os.path.join(self._ids, _shard(n))
        path = os.path.join(d, str(n))
        for _ in range(3):
            try:
                if self._link_claims:
                    os.link(os.path.join(d, ".claim"), path)
                else:
                    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
                return True
            except FileExistsError:
                return False
            except FileNotFoundError:  # a new shard, or its .claim file is not there yet
                os.makedirs(d, exist_ok=True)
                with contextlib.suppress(OSError):
                    os.close(os.open(os.path.join(d, ".claim"), os.O_WRONLY | os.O_CREAT, 0o644))
            except OSError as e:
                if e.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EMLINK, errno.EXDEV, errno.ENOSYS):
                    raise
                self._link_claims = False
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
        return True

    def _claim_id(self, hint: int) -> int:
        n = max(hint, 1)
        for _ in range(100000):
            if self._try_claim(n):
                return n
            try:
                taken = [int(x) for x in os.listdir(os.path.join(self._ids, _shard(n))) if x.isdigit()]
            except OSError:
                taken = []
            n = max([n] + taken) + 1
        raise StoreError(f"could not claim a new individual id under {self._ids}")

    def _unclaim(self, i: int) -> None:
        """Give back a claimed id that no individual got (the step was given up), moving the
        next-id hint back to it so that the next claim takes it: no id is skipped.  (A claim
        that then finds the hint's successors taken probes past them.)"""
        _unlink_quiet(os.path.join(self._ids, _shard(i), str(i)))
        if self.read_next_id() > i:
            self._write_next_id(i)

    # ---------------------------------------------------------------------- budgets
    # The individuals budget rests on id claims (robust without mutual exclusion): no individual
    # with an id above max_individuals is ever created.  The FLOPs budget reads the running
    # counter in state.json (exact under a lock; without one it may lose updates and fsck
    # --repair recomputes it).
    def _flops_budget(self, st: dict) -> str | None:
        c = self.config
        if c.max_flops is not None and float(st.get("flops", 0.0)) >= c.max_flops:
            return f"budget of {c.max_flops:g} FLOPs reached"
        return None

    def _individuals_budget(self, next_id: int) -> str | None:
        c = self.config
        if c.max_individuals is not None and next_id > c.max_individuals:
            return f"budget of {c.max_individuals} individuals reached"
        return None

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
        self._alive_view(ctl)  # most of the new events are read outside the lock
        # the counters only feed the FLOPs budget, which may be read a step early
        self._state_snapshot = self.read_state() if self.config.max_flops is not None else {}
        prep = _Prep(worker, rng, ctl, _new_token(), "", {}, None, t_start)
        prep.resv = os.path.join(self._tmp, f"resv-{prep.token}")
        self._make_reservation(prep)
        return prep

    def _make_reservation(self, prep: "_Prep") -> None:
        """The reservation of a new child: a private directory with its (empty) task and lease
        files, renamed into inflight/ under the lock.  Creating files is the costly part of
        writing small ones (on a network file system it is a round trip to the server), so it
        happens here, outside the lock; under it the files are only written."""
        os.mkdir(prep.resv)
        prep.fds[TASK_FILE] = os.open(os.path.join(prep.resv, TASK_FILE),
                                      os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)

    def _close_reservation(self, prep: "_Prep") -> None:
        # task.json is not fsynced: the worker's save_dna replaces it durably moments later.  A
        # crash of the machine before the kernel writes it back can leave it torn; the child
        # is then abandoned with a reason (one selection step lost), never resumed from garbage.
        fds, prep.fds = prep.fds, {}
        for fd in fds.values():
            with contextlib.suppress(OSError):
                os.close(fd)

    def _run_steps(self, prep: "_Prep", first: "Task | Wait | _Retry | None") -> Task | Wait:
        """Run selection steps under the lock until one gives a task or a wait (a step that lost
        a race to another worker is given up and retried, as in the paper)."""
        out = first
        try:
            for _attempt in range(20):
                if out is None:
                    post: list[Callable[[], None]] = []
                    with self.locked():
                        out = self._step(prep, post)
                    for fn in post:
                        with contextlib.suppress(OSError):
                            fn()
                if isinstance(out, _Retry):
                    prep.claimed = out.claimed
                    out = None
                    time.sleep(prep.rng.random() * 0.002)
                    continue
                if prep.claimed is not None and not (isinstance(out, Task) and out.child_id == prep.claimed):
                    self._unclaim(prep.claimed)  # (a retry took pending work, or waits)
                    prep.claimed = None
                if self.keep_stats:
                    self.stats["next_task"].append(time.perf_counter() - prep.t_start)
                return out
            if prep.claimed is not None:
                self._unclaim(prep.claimed)
                prep.claimed = None
            return Wait("contention", False, 0.1, "too many concurrent changes; try again")
        finally:
            self._close_reservation(prep)
            if os.path.lexists(prep.resv):
                _rmtree_quiet(prep.resv)

    def _step(self, prep: "_Prep", post: list, events: list | None = None) -> Task | Wait | _Retry:
        """One step under the lock; its events are appended at the end (to ``events`` first,
        when given: those of the same critical section, appended in one write)."""
        events = [] if events is None else events
        try:
            return self._step_inner(prep, post, events)
        finally:
            if events:
                self._append_events(events)

    def _dir_count(self, d: str) -> int | None:
        """Subdirectories of ``d`` from its link count, where that is known to be exact."""
        if not self._nlink_ok:
            return None
        try:
            n = os.stat(d).st_nlink - 2
        except OSError:
            return None
        return n if n >= 0 else None

    def _step_inner(self, prep: "_Prep", post: list, events: list) -> Task | Wait | _Retry:
        worker, rng, ctl, token, claimed = prep.worker, prep.rng, prep.ctl, prep.token, prep.claimed
        st = self._state_snapshot if self._state_snapshot is not None else self.read_state()
        pending = sorted(self._list_ids(self._pending)) if self._dir_count(self._pending) != 0 else []
        n_inflight = self._dir_count(self._inflight)
        if n_inflight is None:
            n_inflight = len(self._list_inflight())
        flops_hit = self._flops_budget(st)
        maxi = self.config.max_individuals
        poll = max(0.05, min(self.config.heartbeat_s, 5.0))

        # 1. pending work: resumes always (they finish what was started), the rest within budget
        for i in pending:
            pdir = os.path.join(self._pending, str(i))
            tj = load_json_or_none(os.path.join(pdir, TASK_FILE))
            if tj is None:
                continue  # torn or being created; fsck --repair handles it
            if not tj.get("attempts", 0):
                if flops_hit or (maxi is not None and tj.get("kind") == "seed" and i > maxi):
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

        # 2. one selection step
        records = self._alive_view(ctl)
        P = self.config.population_size
        popn = len(records) + n_inflight + len(pending)
        strategy = self.config.strategy
        if popn > P and len(records) >= 2:  # overshoot (possible without mutual exclusion)
            _, v = _strategies.select(strategy, records, rng, kill=True, sample_size=self.config.sample_size)
            if v is not None and self._kill(v, None, worker, "cull", events, post):
                records = [r for r in records if r.id != v]
                popn -= 1
        at_setpoint = popn >= P
        # every individual failed (say, all diverged) and nothing is under way: start again from a
        # seed individual rather than wait for parents that will never come
        extinct = not records and not n_inflight and not pending and strategy != "random"
        if not records and not extinct and (strategy != "random" or at_setpoint):
            return Wait("empty", False, poll, "no living individual to select from yet")
        if at_setpoint and len(records) < 2 and strategy != "random":
            return Wait("empty", False, poll, "the whole population is in flight")
        if extinct:
            parent, victim = None, None
        else:
            parent, victim = _strategies.select(strategy, records, rng, kill=at_setpoint,
                                                sample_size=self.config.sample_size)
        if strategy == "random":
            parent = None
        if claimed is None:
            cid = prep.claimed = self._claim_id(nid)
            self._write_next_id(cid + 1)
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
                    self._cache.pop(str(parent), None)
                    return self._give_up(prep)  # the parent was killed under us
                except CorruptFileError as e:
                    _warn(str(e), CorruptFileWarning)
                    self._cache.pop(str(parent), None)
                    return self._give_up(prep)
                if self.config.inheritance == "paper":
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
            _pwrite_all(prep.fds[TASK_FILE], _dumps(tj, indent=None))
            # lease.json appears with the first heartbeat; until then the lease runs from the
            # directory's change time (a rename sets it), and task.json names the worker
            lease = Lease(self, cid, token, worker)
            if victim is not None:
                if not self._kill(victim, cid, worker, "selection", events, post):
                    return self._give_up(prep)
            os.rename(resv, lease.path)
        except BaseException:
            self._give_up(prep)
            raise
        events.append({"event": "start", "id": cid, "kind": kind, "parent": parent,
                       "mutations": ctl.mutations_per_child, "worker": worker.id, "lease": token})
        if inherit and parent_ckpt is None:
            parent_ckpt = os.path.join(lease.path, PARENT_CHECKPOINT_FILE)
        return Task(kind=kind, child_id=cid, parent_id=parent, mutations=ctl.mutations_per_child,
                    lease=lease, task_uid=token, dna=None, parent_dna=parent_dna,
                    parent_checkpoint=parent_ckpt, inherit=inherit,
                    steps=self.config.steps_per_child, generation=ctl.reset_generation,
                    born_at=now, victim_id=victim)

    def _give_up(self, prep: "_Prep") -> _Retry:
        """Give up this step (a race lost to another worker): drop the reservation, keep the id."""
        self._close_reservation(prep)
        _rmtree_quiet(prep.resv)
        return _Retry(prep.claimed)

    def _kill(self, v: int, by: int | None, worker: WorkerInfo, cause: str, events: list,
              post: list) -> bool:
        """Kill ``v`` by renaming alive/<v> into dead/.  False if someone else got there first."""
        c = self._cache.get(str(v))
        fitness = c.fitness if c is not None else None
        self._ensure_shard(self._dead, v)
        dst = self.dead_path(v)
        try:
            os.rename(self.alive_path(v), dst)
        except (FileNotFoundError, NotADirectoryError):
            self._cache.pop(str(v), None)
            return False
        except OSError as e:
            if e.errno in (errno.ENOTEMPTY, errno.EEXIST):
                _warn(f"cannot kill {v}: {dst} already exists (duplicate id); run `evo fsck`")
                self._cache.pop(str(v), None)
                return False
            raise
        self._cache.pop(str(v), None)
        now = time.time()
        events.append({"event": "death", "id": v, "fitness": fitness, "by": by, "cause": cause,
                       "worker": worker.id})
        death = {"id": v, "died_at": now, "killed_by": by, "cause": cause, "worker": worker.id}
        keep = self._keeps_checkpoint(v)

        def after() -> None:
            atomic_write_json(os.path.join(dst, DEATH_FILE), death, fsync=False)
            if not keep:
                _unlink_quiet(os.path.join(dst, CHECKPOINT_FILE))

        post.append(after)
        return True

    def _keeps_checkpoint(self, i: int, top: Sequence | None = None) -> bool:
        kc = self.config.keep_checkpoints
        if kc == "all":
            return True
        if kc == "alive":
            return False
        if top is None:
            top = (load_json_or_none(self._state_path, warn=False) or {}).get("top", [])
        return any(entry[1] == i for entry in top)

    def _reserve_pending(self, i: int, pdir: str, tj: dict, worker: WorkerInfo, token: str,
                         ctl: Control) -> Task | None:
        lease = Lease(self, i, token, worker)
        try:
            os.rename(pdir, lease.path)
        except (FileNotFoundError, NotADirectoryError):
            if not os.path.isdir(lease.path):
                return None  # another worker took it
        except OSError as e:
            if e.errno in (errno.ENOTEMPTY, errno.EEXIST):
                return None
            raise
        lease._write()
        d = lease.path
        attempts = int(tj.get("attempts", 0))
        kind = tj.get("kind", "child")
        if kind not in _TASK_KINDS:
            kind = "child"
        dna = load_json_or_none(os.path.join(d, DNA_FILE)) if kind != "seed" or attempts else None
        if dna is None:
            dna = tj.get("dna")
        pck = os.path.join(d, PARENT_CHECKPOINT_FILE)
        parent_ckpt = pck if os.path.exists(pck) else tj.get("parent_checkpoint")
        rck = os.path.join(d, RESUME_FILE)
        resume_ckpt = rck if os.path.exists(rck) else None
        is_resume = attempts > 0
        inherit = (self.config.inheritance == "paper" and kind == "child" and parent_ckpt is not None)
        task = Task(
            kind="resume" if is_resume else kind, child_id=i, parent_id=tj.get("parent_id"),
            mutations=int(tj.get("mutations", 0)), lease=lease, task_uid=tj.get("task_uid") or token,
            dna=dna, parent_dna=tj.get("parent_dna"), parent_checkpoint=parent_ckpt,
            resume_checkpoint=resume_ckpt, resume_of=kind if is_resume else None,
            mutations_applied=tj.get("mutations_applied"), inherit=inherit,
            steps=self.config.steps_per_child, generation=int(tj.get("generation", ctl.reset_generation)),
            attempt=attempts, born_at=float(tj.get("born_at", time.time())),
        )
        self._append_events([{"event": "start", "id": i, "kind": task.kind, "resume_of": task.resume_of,
                              "parent": task.parent_id, "attempt": attempts, "worker": worker.id,
                              "lease": token}])
        return task

    # ---------------------------------------------------------------------- commit / release
    def _fitness_record(self, task: Task, dna: dict, fitness: dict | float) -> dict:
        if _num(fitness):
            fitness = {"fitness": float(fitness)}
        if not isinstance(fitness, dict):
            raise TypeError("fitness must be a dict (the fitness record) or a number")
        rec = dict(fitness)
        outcome = rec.get("outcome") or "ok"
        f = rec.get("fitness")
        if outcome == "ok" and not _num(f):
            raise ValueError(f"outcome 'ok' needs a finite numeric 'fitness', got {f!r}; "
                             f"commit a failed training with outcome='nan_loss' (or another reason)")
        if outcome != "ok" and f is not None and not _num(f):
            rec["fitness"] = None
        for k in ("flops", "params", "steps_trained"):
            if k in rec and rec[k] is not None and not _num(rec[k]):
                raise ValueError(f"fitness record field {k!r} must be a number, got {rec[k]!r}")
        tj = load_json_or_none(os.path.join(task.lease.path, TASK_FILE), warn=False) or {}
        w = task.lease.worker
        rec.update({
            "format_version": FORMAT_VERSION,
            "id": task.child_id,
            "parent_id": task.parent_id,
            "kind": task.base_kind,
            "outcome": outcome,
            "fitness": float(rec["fitness"]) if _num(rec.get("fitness")) else None,
            "reason": rec.get("reason"),
            "steps_trained": rec.get("steps_trained"),
            "flops": float(rec.get("flops") or 0.0),
            "params": rec.get("params"),
            "mutations": list(rec.get("mutations") or task.mutations_applied
                              or tj.get("mutations_applied") or []),
            "born_at": task.born_at,
            "finished_at": time.time(),
            "worker": w.id,
            "host": w.host,
            "pid": w.pid,
            "slurm_job_id": w.slurm_job_id,
            "slurm_array_job_id": w.slurm_array_job_id,
            "slurm_array_task_id": w.slurm_array_task_id,
            "dna_hash": dna_hash(dna),
            "generation": task.generation,
            "attempts": task.attempt + 1,
            "task_uid": task.task_uid,
        })
        return rec

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
        rec = self._fitness_record(task, dna, fitness)
        try:
            if not os.path.isdir(d):
                return self._with_next(self._lost(task), next_for, rng)
            if task.base_kind == "retrain" or task.attempt:
                old = load_json_or_none(os.path.join(d, FITNESS_FILE), warn=False)
                if old is not None and old.get("task_uid") != task.task_uid:
                    gen = old.get("generation", 0)
                    os.rename(os.path.join(d, FITNESS_FILE), os.path.join(d, f"fitness.g{gen}.json"))
                    ck = os.path.join(d, CHECKPOINT_FILE)
                    if os.path.exists(ck):
                        if self.config.keep_checkpoints == "all":
                            os.rename(ck, os.path.join(d, f"checkpoint.g{gen}.pt"))
                        else:
                            os.unlink(ck)
            # The directory is private to this lease until it is renamed into alive/, and
            # fitness.json -- the completion marker, written last -- is valid JSON only once
            # complete, so new files are written in place; existing ones (a resumed attempt's)
            # are replaced atomically.  All are written first and then fsynced, before the
            # directory is: on a journaling file system the first fsync commits them all, and
            # the others find nothing left to do.
            data = _dumps(dna, indent=None)
            unsynced: list[str] = []
            dpath = os.path.join(d, DNA_FILE)
            if task.lease._dna_saved != data and _write_new(dpath, data):  # (save_dna fsyncs)
                unsynced.append(dpath)
            if checkpoint is not None:
                cpath = os.path.join(d, CHECKPOINT_FILE)
                if callable(checkpoint) and not os.path.lexists(cpath):
                    checkpoint(cpath)
                    if not os.path.exists(cpath):
                        raise StoreError(f"the checkpoint writer did not create {cpath}")
                    unsynced.append(cpath)
                else:
                    _place_file(checkpoint, cpath)
            fpath = os.path.join(d, FITNESS_FILE)
            if _write_new(fpath, _dumps(rec, indent=None)):
                unsynced.append(fpath)
            for path in unsynced:
                _fsync_file(path)
            _fsync_dir(d)
        except (FileNotFoundError, NotADirectoryError):
            if not os.path.isdir(d):
                return self._with_next(self._lost(task), next_for, rng)
            raise
        except OSError as e:
            if e.errno in (errno.ENOSPC, errno.EDQUOT):
                raise StoreError(
                    f"no space left while committing child {task.child_id} into {d} ({e}); the "
                    f"population is unchanged and the child is still in flight. Fix: free space, "
                    f"then commit again, or release the task"
                ) from e
            raise
        # The result is complete (fitness.json with our task_uid): work files go now, outside the
        # lock.  Without task.json a recoverer treats a valid fitness.json as complete; without
        # lease.json it times the lease from the directory's mtime, which these unlinks refresh.
        task.lease._close()
        for name in (PARENT_CHECKPOINT_FILE, RESUME_FILE, TASK_FILE, LEASE_FILE):
            _unlink_quiet(os.path.join(d, name))
        if task.attempt:  # temporaries of writers killed in an earlier attempt
            for name in _listdir_quiet(d):
                if _is_tmp_name(name):
                    _unlink_quiet(os.path.join(d, name))
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
                _rmtree_quiet(prep.resv)
                if prep.claimed is not None:
                    self._unclaim(prep.claimed)
            raise
        for fn in post:
            with contextlib.suppress(OSError):
                fn()
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
        task.lease._lost.set()
        return CommitResult("lease_lost", task.child_id, None)

    def _finalize(self, cid: int, d: str, rec: dict, worker: WorkerInfo, via: str,
                  post: list, sink: list | None = None) -> CommitResult:
        """Under the lock: rename a completed in-flight directory into alive/ (or dead/)."""
        ok = rec.get("outcome") == "ok" and _num(rec.get("fitness"))
        if ok:
            target = self.alive_path(cid)
        else:
            self._ensure_shard(self._dead, cid)
            target = self.dead_path(cid)
        try:
            os.rename(d, target)
        except (FileNotFoundError, NotADirectoryError):
            return CommitResult("lease_lost", cid, None)
        except OSError as e:
            if e.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
            existing = load_json_or_none(os.path.join(target, FITNESS_FILE), warn=False)
            if existing is not None and existing.get("task_uid") == rec.get("task_uid"):
                return CommitResult("already_committed", cid, target)
            q = os.path.join(self.root, QUARANTINE, f"duplicate-{cid}-{_new_token()}")
            with contextlib.suppress(OSError):
                os.rename(d, q)
            _warn(f"child {cid} was already committed at {target}; this copy was moved to {q}")
            return CommitResult("already_committed", cid, target)
        if via != "commit":
            # a recovery commit: the work files go before anyone can kill it and move it on
            # (a worker's commit removed them before the rename)
            for name in (LEASE_FILE, TASK_FILE, PARENT_CHECKPOINT_FILE, RESUME_FILE):
                _unlink_quiet(os.path.join(target, name))
            for name in _listdir_quiet(target):  # temporaries of writers killed in flight
                if _is_tmp_name(name):
                    _unlink_quiet(os.path.join(target, name))
        pushed: list[int] = []
        K = self.config.keep_top

        def count(st: dict) -> None:
            st["trained"] = st.get("trained", 0) + 1
            st["flops"] = float(st.get("flops", 0.0)) + float(rec.get("flops") or 0.0)
            if K and ok:
                top = [e for e in st.get("top", []) if e[1] != cid]
                top.append([float(rec["fitness"]), cid])
                top.sort(key=lambda e: (-e[0], e[1]))
                pushed[:] = [e[1] for e in top[K:]]
                st["top"] = top[:K]

        self._update_state(count)
        ev = {"event": "birth", "id": cid, "parent": rec.get("parent_id"), "kind": rec.get("kind"),
              "fitness": rec.get("fitness"), "outcome": rec.get("outcome"), "flops": rec.get("flops"),
              "generation": rec.get("generation"), "worker": worker.id, "via": via}
        events = [ev]
        if not ok:
            events.append({"event": "death", "id": cid, "fitness": None, "by": None,
                           "cause": "failed", "outcome": rec.get("outcome"), "worker": worker.id})
        if sink is None:
            self._append_events(events)
        else:  # appended by the caller, with the events of the rest of its critical section
            sink.extend(events)
        if ok:  # selectable from now on (its birth event, read later, says the same)
            self._cache[str(cid)] = Record(cid, float(rec["fitness"]), cid)

        def after() -> None:
            if not ok:
                atomic_write_json(os.path.join(target, DEATH_FILE), {
                    "id": cid, "died_at": time.time(), "killed_by": None, "cause": "failed",
                    "worker": worker.id}, fsync=False)
                if self.config.keep_checkpoints != "all":
                    _unlink_quiet(os.path.join(target, CHECKPOINT_FILE))
            for j in pushed:
                if j != cid and os.path.isdir(self.dead_path(j)):
                    _unlink_quiet(os.path.join(self.dead_path(j), CHECKPOINT_FILE))

        post.append(after)
        return CommitResult("committed", cid, target)

    def release(self, task: Task, reason: str = "released") -> bool:
        """Hand an in-flight child back (e.g. on SIGTERM): it goes to pending/ with its last
        checkpoint and DNA, and the next worker resumes it.  False if the lease was lost."""
        d = task.lease.path
        dst = os.path.join(self._pending, str(task.child_id))
        with self.locked():
            try:
                os.rename(d, dst)
            except (FileNotFoundError, NotADirectoryError):
                task.lease._lost.set()
                return False
            except OSError as e:
                if e.errno in (errno.ENOTEMPTY, errno.EEXIST):
                    _warn(f"cannot release child {task.child_id}: {dst} exists; run `evo fsck`")
                    return False
                raise
            task.lease._lost.set()
            self._requeue_fixup(dst, failure=False, worker=task.lease.worker.id)
            self._append_events([{"event": "release", "id": task.child_id, "reason": reason,
                                  "worker": task.lease.worker.id,
                                  "checkpoint": os.path.exists(os.path.join(dst, RESUME_FILE))}])
        return True

    def _requeue_fixup(self, pdir: str, *, failure: bool, worker: str | None) -> dict:
        tpath = os.path.join(pdir, TASK_FILE)
        tj = load_json_or_none(tpath) or {}
        tj["attempts"] = int(tj.get("attempts", 0)) + 1
        if failure:
            tj["failures"] = int(tj.get("failures", 0)) + 1
        tj["last_worker"] = worker
        with contextlib.suppress(OSError):
            atomic_write_json(tpath, tj)
        _unlink_quiet(os.path.join(pdir, LEASE_FILE))
        return tj

    # ---------------------------------------------------------------------- lease recovery
    def _lease_expiry(self, tok: str, d: str) -> float | None:
        lease = load_json_or_none(os.path.join(d, LEASE_FILE))
        if lease is not None and lease.get("token") == tok and _num(lease.get("expires_at")):
            return float(lease["expires_at"])
        try:
            st = os.stat(d)
        except OSError:
            return None
        return max(st.st_mtime, st.st_ctime) + self.config.lease_ttl_s

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
                self._append_events([{"event": "recover", "id": cid, "action": "commit",
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
                             mutations=int(tj.get("mutations", 0)),
                             lease=Lease(self, cid, tok, WorkerInfo(id=str(owner), host="", pid=0)),
                             task_uid=tj.get("task_uid") or tok, generation=int(tj.get("generation", 0)),
                             attempt=int(tj.get("attempts", 0)), born_at=float(tj.get("born_at", 0.0)))
            arec = self._fitness_record(fake_task, dna, {
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
                self._append_events([{"event": "recover", "id": cid, "action": "abandon",
                                      "from_worker": owner, "overdue_s": overdue}])
            return res.status == "committed"
        dst = os.path.join(self._pending, str(cid))
        try:
            os.rename(d, dst)
        except (FileNotFoundError, NotADirectoryError):
            return False
        except OSError as e:
            if e.errno in (errno.ENOTEMPTY, errno.EEXIST):
                _warn(f"cannot recover child {cid}: {dst} exists; run `evo fsck`")
                return False
            raise
        self._requeue_fixup(dst, failure=True, worker=owner)
        self._append_events([{"event": "recover", "id": cid, "action": "resume", "from_worker": owner,
                              "overdue_s": overdue, "worker": me.id,
                              "checkpoint": os.path.exists(os.path.join(dst, RESUME_FILE))}])
        return True

    # ---------------------------------------------------------------------- run control
    def set_control(self, **changes: Any) -> Control:
        """Change run-control knobs (mutations_per_child, paused, stopped); running workers see
        the change at their next step."""
        allowed = {"mutations_per_child", "paused", "stopped"}
        for k, v in changes.items():
            if k not in allowed:
                raise ConfigError(f"control field '{k}': not a run-control knob; use one of {sorted(allowed)}")
            if k == "mutations_per_child" and (not isinstance(v, int) or isinstance(v, bool) or v < 0):
                raise ConfigError(f"control field 'mutations_per_child': must be an integer >= 0, got {v!r}")
            if k in ("paused", "stopped") and not isinstance(v, bool):
                raise ConfigError(f"control field '{k}': must be true or false, got {v!r}")
        with self.locked():
            ctl = self.read_control()
            for k, v in changes.items():
                setattr(ctl, k, v)
            self._write_control(ctl)
            self._append_events([{"event": "control", "changes": changes}])
        return ctl

    def set_mutations_per_child(self, n: int) -> Control:
        return self.set_control(mutations_per_child=n)

    def stop(self) -> Control:
        """Stop the experiment: workers take no new task and exit (in-flight children finish)."""
        return self.set_control(stopped=True)

    def pause(self) -> Control:
        """Pause: workers take no new task and wait (in-flight children finish)."""
        return self.set_control(paused=True)

    def resume(self) -> Control:
        """Clear both ``paused`` and ``stopped``."""
        return self.set_control(paused=False, stopped=False)

    def reset_weights(self) -> int:
        """Queue every living individual for retraining from scratch with its own DNA (the
        paper's escape from a plateau).  Returns how many were queued.  Their fitness is
        replaced when each retrain commits; the previous record is kept as fitness.g<G>.json."""
        n = 0
        with self.locked():
            ctl = self.read_control()
            gen = ctl.reset_generation + 1
            now = time.time()
            for i in sorted(self._list_ids(self._alive)):
                src = self.alive_path(i)
                rec = load_json_or_none(os.path.join(src, FITNESS_FILE)) or {}
                try:
                    atomic_write_json(os.path.join(src, TASK_FILE), {
                        "format_version": FORMAT_VERSION, "kind": "retrain", "id": i,
                        "parent_id": rec.get("parent_id"), "task_uid": _new_token(), "mutations": 0,
                        "dna": None, "parent_dna": None, "generation": gen, "born_at": now,
                        "attempts": 0, "failures": 0,
                    }, fsync=False)
                    os.rename(src, os.path.join(self._pending, str(i)))
                except (FileNotFoundError, NotADirectoryError):
                    continue
                n += 1
            ctl.reset_generation = gen
            ctl.epoch += 1
            self._write_control(ctl)
            self._append_events([{"event": "reset", "generation": gen, "queued": n}])
        return n

    # ---------------------------------------------------------------------- reading API
    def status(self) -> dict:
        """Counts and knobs; lock-free and cheap (dead individuals are counted by listing)."""
        st = load_json_or_none(self._state_path) or {}
        alive = self._list_ids(self._alive)
        dead = 0
        with contextlib.suppress(FileNotFoundError):
            for s in os.listdir(self._dead):
                with contextlib.suppress(OSError):
                    dead += sum(1 for n in os.listdir(os.path.join(self._dead, s)) if n.isdigit())
        leases = self.leases()
        best = None
        for i in alive:
            rec = load_json_or_none(os.path.join(self.alive_path(i), FITNESS_FILE), warn=False)
            if rec and _num(rec.get("fitness")) and (best is None or rec["fitness"] > best["fitness"]):
                best = {"id": i, "fitness": rec["fitness"]}
        c = self.config
        return {
            "root": self.root, "format_version": c.format_version, "strategy": c.strategy,
            "population_size": c.population_size, "alive": len(alive), "dead": dead,
            "pending": len(self._list_ids(self._pending)), "inflight": len(leases),
            "expired_leases": sum(1 for x in leases if x["expired"]),
            "trained": st.get("trained"), "flops": st.get("flops"), "next_id": self.read_next_id(),
            "budget": {"max_individuals": c.max_individuals, "max_flops": c.max_flops},
            "control": self.read_control().to_dict(), "lock": self.lock_kind,
            "lock_reason": self.lock_reason, "best_alive": best,
        }

    def leases(self) -> list[dict]:
        """Active leases (in-flight children), with ``expired`` flags."""
        now = time.time()
        out = []
        for cid, tok, d in sorted(self._list_inflight()):
            lease = load_json_or_none(os.path.join(d, LEASE_FILE), warn=False) or {}
            tj = load_json_or_none(os.path.join(d, TASK_FILE), warn=False) or {}
            exp = self._lease_expiry(tok, d)
            w = lease.get("worker") or tj.get("worker") or {}
            out.append({
                "id": cid, "token": tok, "path": d, "kind": tj.get("kind"), "parent_id": tj.get("parent_id"),
                "attempt": tj.get("attempts", 0), "worker": w.get("id"), "host": w.get("host"),
                "pid": w.get("pid"), "slurm_job_id": w.get("slurm_job_id"),
                "slurm_array_job_id": w.get("slurm_array_job_id"),
                "slurm_array_task_id": w.get("slurm_array_task_id"),
                "heartbeat_at": lease.get("heartbeat_at"), "expires_at": exp,
                "expired": exp is not None and now > exp,
                "has_checkpoint": os.path.exists(os.path.join(d, RESUME_FILE)),
            })
        return out

    def individuals(self, *, alive: bool = True, dead: bool = True,
                    with_fitness: bool = True) -> Iterator[Individual]:
        """Every committed individual (alive first, then dead by id).  Torn records are skipped
        with a warning."""
        if alive:
            for i in sorted(self._list_ids(self._alive)):
                p = self.alive_path(i)
                rec = load_json_or_none(os.path.join(p, FITNESS_FILE)) if with_fitness else None
                if with_fitness and rec is None:
                    continue
                yield Individual(i, "alive", p, rec)
        if dead:
            shards = sorted(int(s) for s in _listdir_quiet(self._dead) if s.isdigit())
            for s in shards:
                sd = os.path.join(self._dead, str(s))
                for i in sorted(int(n) for n in _listdir_quiet(sd) if n.isdigit()):
                    p = os.path.join(sd, str(i))
                    rec = load_json_or_none(os.path.join(p, FITNESS_FILE)) if with_fitness else None
                    if with_fitness and rec is None:
                        continue
                    yield Individual(i, "dead", p, rec)

    def individual(self, i: int) -> Individual | None:
        for status, p in (("alive", self.alive_path(i)), ("dead", self.dead_path(i))):
            if os.path.isdir(p):
                return Individual(i, status, p, load_json_or_none(os.path.join(p, FITNESS_FILE)))
        return None


def _listdir_quiet(d: str) -> list[str]:
    try:
        return os.listdir(d)
    except OSError:
        return []


# --------------------------------------------------------------------------------------------
# Counters recount (fsck and corrupt state.json)
# --------------------------------------------------------------------------------------------


def _records_in(d: str, current_uid: str | None) -> Iterator[dict]:
    """Fitness records of past trainings stored in an individual / work directory."""
    for n in _listdir_quiet(d):
        if n == FITNESS_FILE or (n.startswith("fitness.g") and n.endswith(".json")):
            rec = load_json_or_none(os.path.join(d, n), warn=False)
            if rec is None:
                continue
            if current_uid is not None and n == FITNESS_FILE and rec.get("task_uid") == current_uid:
                continue  # completed but not yet finalized: not counted yet
            yield rec


def _recount(root: str, config: Config) -> dict:
    st = _default_state()
    trained = 0
    flops = 0.0
    top: list[list] = []
    max_id = 0
    dirs: list[tuple[str, str | None]] = []
    for n in _listdir_quiet(os.path.join(root, ALIVE)):
        if n.isdigit():
            dirs.append((os.path.join(root, ALIVE, n), None))
            max_id = max(max_id, int(n))
    for s in _listdir_quiet(os.path.join(root, DEAD)):
        for n in _listdir_quiet(os.path.join(root, DEAD, s)):
            if n.isdigit():
                dirs.append((os.path.join(root, DEAD, s, n), None))
                max_id = max(max_id, int(n))
    for sub in (PENDING, INFLIGHT):
        for n in _listdir_quiet(os.path.join(root, sub)):
            a = n.partition(".")[0]
            if a.isdigit():
                d = os.path.join(root, sub, n)
                tj = load_json_or_none(os.path.join(d, TASK_FILE), warn=False) or {}
                dirs.append((d, tj.get("task_uid") or "?"))
                max_id = max(max_id, int(a))
    for s in _listdir_quiet(os.path.join(root, IDS)):
        for n in _listdir_quiet(os.path.join(root, IDS, s)):
            if n.isdigit():
                max_id = max(max_id, int(n))
    for d, uid in dirs:
        for rec in _records_in(d, uid):
            trained += 1
            flops += float(rec.get("flops") or 0.0)
            if rec.get("outcome") == "ok" and _num(rec.get("fitness")) and os.path.basename(d).isdigit() \
                    and os.path.dirname(os.path.dirname(d)) != os.path.join(root, PENDING):
                top.append([float(rec["fitness"]), int(os.path.basename(d))])
    st.update(next_id=max_id + 1, trained=trained, flops=flops)
    K = config.keep_top
    if K:
        best: dict[int, float] = {}
        for f, i in top:
            best[i] = max(f, best.get(i, -math.inf))
        st["top"] = sorted(([f, i] for i, f in best.items()), key=lambda e: (-e[0], e[1]))[:K]
    return st


# --------------------------------------------------------------------------------------------
# fsck
# --------------------------------------------------------------------------------------------


@dataclass
class Problem:
    code: str
    path: str
    message: str
    severity: str = "error"  # error | warning | info
    repaired: bool = False

    def __str__(self) -> str:
        tag = "repaired" if self.repaired else self.severity
        return f"[{tag}] {self.code}: {self.path}: {self.message}"


@dataclass
class FsckReport:
    root: str
    problems: list[Problem] = field(default_factory=list)
    counts: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """No unrepaired error (warnings and info may remain)."""
        return not any(p.severity == "error" and not p.repaired for p in self.problems)

    @property
    def clean(self) -> bool:
        """Nothing found at all, except info notes."""
        return not any(p.severity != "info" for p in self.problems)

    def add(self, *a: Any, **k: Any) -> Problem:
        p = Problem(*a, **k)
        self.problems.append(p)
        return p

    def summary(self) -> str:
        lines = [str(p) for p in self.problems if p.severity != "info" or p.repaired]
        head = (f"{self.root}: {'OK' if self.ok else 'PROBLEMS'} -- "
                + ", ".join(f"{k} {v}" for k, v in self.counts.items()))
        return "\n".join([head] + lines)

    __str__ = summary  # what `evo fsck` prints

    def to_dict(self) -> dict:
        return {"root": self.root, "ok": self.ok, "clean": self.clean, "counts": self.counts,
                "problems": [dataclasses.asdict(p) for p in self.problems]}


def fsck(root: str, repair: bool = False) -> FsckReport:
    """Check every invariant of the format; with ``repair=True`` fix what can be fixed (stale
    locks, expired leases, orphaned temporaries, torn files quarantined, missing events and
    claims, counters) without ever deleting a completed individual."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", StoreWarning)
        return _fsck(root, repair)


def _quarantine(root: str, path: str) -> str:
    rel = os.path.relpath(path, root).replace(os.sep, "__")
    q = os.path.join(root, QUARANTINE, f"{int(time.time())}-{_new_token()}-{rel}")
    os.makedirs(os.path.dirname(q), exist_ok=True)
    os.rename(path, q)
    return q


def _fsck(root: str, repair: bool) -> FsckReport:
    root = os.path.abspath(root)
    rep = FsckReport(root)
    pop = Population.open(root)
    cfg = pop.config
    now = time.time()
    pop_events: list[dict] = []

    for d in _SUBDIRS:
        p = os.path.join(root, d)
        if not os.path.isdir(p):
            pr = rep.add("missing-dir", p, "directory of the format is missing")
            if repair:
                os.makedirs(p, exist_ok=True)
                pr.repaired = True

    # control.json
    cpath = os.path.join(root, CONTROL_FILE)
    try:
        cd = load_json(cpath)
        if not isinstance(cd.get("mutations_per_child"), int):
            raise CorruptFileError("mutations_per_child missing")
    except (FileNotFoundError, CorruptFileError) as e:
        pr = rep.add("control", cpath, f"unreadable ({e})")
        if repair:
            gens = [ev.get("generation", 0) for ev in read_events(root, warn=False) if ev.get("event") == "reset"]
            ctl = Control(mutations_per_child=cfg.mutations_per_child,
                          reset_generation=max(gens, default=0), epoch=len(gens) + 1)
            if os.path.exists(cpath):
                _quarantine(root, cpath)
            pop._write_control(ctl)
            pr.repaired = True

    # locks
    soft = SoftLock(os.path.join(root, SOFT_LOCK_FILE), cfg.lock_ttl_s)
    if os.path.exists(soft.path) and soft.is_stale():
        pr = rep.add("stale-lock", soft.path, f"soft lock without heartbeat for > {cfg.lock_ttl_s} s "
                                              f"(held by {soft.holder()})")
        if repair and soft.break_stale():
            pr.repaired = True
    for n in _listdir_quiet(root):
        if n.startswith(SOFT_LOCK_FILE + ".broken-"):
            p = os.path.join(root, n)
            pr = rep.add("stale-lock", p, "left over from breaking a stale lock", severity="warning")
            if repair:
                _unlink_quiet(p)
                pr.repaired = True
        elif n.startswith(".") and ".creating-" in n:
            pass

    # individuals
    ids: dict[int, list[str]] = {}
    alive_ids: set[int] = set()
    dead_ids: set[int] = set()

    def check_tmp_files(d: str) -> None:
        for n in _listdir_quiet(d):
            if _is_tmp_name(n):
                p = os.path.join(d, n)
                pr = rep.add("orphan-tmp", p, "temporary file left by an interrupted write", severity="warning")
                if repair:
                    _unlink_quiet(p)
                    pr.repaired = True

    def check_individual(d: str, i: int, where: str) -> bool:
        """True if the individual is complete."""
        check_tmp_files(d)
        good = True
        dna_p = os.path.join(d, DNA_FILE)
        fit_p = os.path.join(d, FITNESS_FILE)
        dna_ok = True
        try:
            load_json(dna_p)
        except (FileNotFoundError, CorruptFileError) as e:
            dna_ok = good = False
            pr = rep.add("dna", dna_p, f"{where} individual {i} has no valid DNA ({type(e).__name__})")
            if repair and os.path.exists(dna_p):
                _quarantine(root, dna_p)
                pr.message += "; torn file quarantined"
        try:
            rec = load_json(fit_p)
            if rec.get("id") != i:
                good = False
                rep.add("fitness-id", fit_p, f"record id {rec.get('id')} != directory id {i}")
            elif where == "alive" and not (rec.get("outcome") == "ok" and _num(rec.get("fitness"))):
                good = False
                rep.add("fitness", fit_p, "alive individual without outcome ok and a numeric fitness")
        except (FileNotFoundError, CorruptFileError) as e:
            good = False
            pr = rep.add("fitness", fit_p, f"{where} individual {i} has no valid fitness ({type(e).__name__})")
            if repair:
                if os.path.exists(fit_p):
                    _quarantine(root, fit_p)
                if where == "alive" and dna_ok:
                    # not a completed individual: retrain it from its DNA
                    atomic_write_json(os.path.join(d, TASK_FILE), {
                        "format_version": FORMAT_VERSION, "kind": "retrain", "id": i, "parent_id": None,
                        "task_uid": _new_token(), "mutations": 0, "dna": None, "parent_dna": None,
                        "generation": pop.read_control().reset_generation, "born_at": now,
                        "attempts": 0, "failures": 0})
                    os.rename(d, os.path.join(root, PENDING, str(i)))
                    pr.message += "; queued for retraining from its DNA"
                    pr.repaired = True
                    return False
                pr.message += "; torn file quarantined (the record cannot be rebuilt)"
        if where == "alive" and not dna_ok and repair:
            q = _quarantine(root, d)
            rep.add("quarantined", q, f"alive individual {i} without DNA moved to quarantine",
                    severity="warning", repaired=True)
            return False
        for n in (LEASE_FILE, TASK_FILE, PARENT_CHECKPOINT_FILE, RESUME_FILE):
            p = os.path.join(d, n)
            if os.path.exists(p):
                pr = rep.add("leftover", p, "work file left in a committed individual", severity="warning")
                if repair:
                    _unlink_quiet(p)
                    pr.repaired = True
        return good

    for n in _listdir_quiet(os.path.join(root, ALIVE)):
        p = os.path.join(root, ALIVE, n)
        if not n.isdigit():
            if _is_tmp_name(n):
                continue
            rep.add("stray", p, "unexpected entry in alive/", severity="warning")
            continue
        i = int(n)
        if check_individual(p, i, "alive") or not repair or os.path.isdir(p):
            if os.path.isdir(p):
                ids.setdefault(i, []).append(p)
                alive_ids.add(i)
    for s in _listdir_quiet(os.path.join(root, DEAD)):
        sd = os.path.join(root, DEAD, s)
        if not s.isdigit():
            rep.add("stray", sd, "unexpected entry in dead/", severity="warning")
            continue
        for n in _listdir_quiet(sd):
            p = os.path.join(sd, n)
            if not n.isdigit():
                if not _is_tmp_name(n):
                    rep.add("stray", p, "unexpected entry in a dead shard", severity="warning")
                continue
            i = int(n)
            if _shard(i) != s:
                rep.add("shard", p, f"individual {i} belongs in shard {_shard(i)}")
            check_individual(p, i, "dead")
            ids.setdefault(i, []).append(p)
            dead_ids.add(i)

    # pending
    for n in _listdir_quiet(os.path.join(root, PENDING)):
        p = os.path.join(root, PENDING, n)
        if not n.isdigit():
            rep.add("stray", p, "unexpected entry in pending/", severity="warning")
            continue
        i = int(n)
        check_tmp_files(p)
        try:
            load_json(os.path.join(p, TASK_FILE))
        except (FileNotFoundError, CorruptFileError) as e:
            pr = rep.add("task", os.path.join(p, TASK_FILE), f"pending work {i} has no valid task ({type(e).__name__})")
            if repair:
                if load_json_or_none(os.path.join(p, DNA_FILE), warn=False) is not None:
                    atomic_write_json(os.path.join(p, TASK_FILE), {
                        "format_version": FORMAT_VERSION, "kind": "retrain", "id": i, "parent_id": None,
                        "task_uid": _new_token(), "mutations": 0, "dna": None, "parent_dna": None,
                        "generation": pop.read_control().reset_generation, "born_at": now,
                        "attempts": 0, "failures": 0})
                    pr.message += "; rewritten as a retrain of its DNA"
                else:
                    q = _quarantine(root, p)
                    pr.message += f"; moved to {q}"
                    pr.repaired = True
                    continue
                pr.repaired = True
        ids.setdefault(i, []).append(p)

    # inflight
    for n in _listdir_quiet(os.path.join(root, INFLIGHT)):
        p = os.path.join(root, INFLIGHT, n)
        a, dot, tok = n.partition(".")
        if not (dot and a.isdigit() and tok):
            rep.add("stray", p, "unexpected entry in inflight/", severity="warning")
            continue
        i = int(a)
        ids.setdefault(i, []).append(p)
        exp = pop._lease_expiry(tok, p)
        if exp is not None and now > exp:
            pr = rep.add("expired-lease", p, f"lease expired {now - exp:.0f} s ago")
            if repair:
                post: list[Callable[[], None]] = []
                with pop.locked():
                    ok = pop._recover_one(i, tok, p, now - exp, post)
                for fn in post:
                    with contextlib.suppress(OSError):
                        fn()
                if ok:
                    pr.repaired = True
                    ids[i].remove(p)
                    for where in (pop.alive_path(i), pop.dead_path(i), os.path.join(root, PENDING, str(i))):
                        if os.path.isdir(where):
                            ids[i].append(where)
                            if where == pop.alive_path(i):
                                alive_ids.add(i)
                            elif where == pop.dead_path(i):
                                dead_ids.add(i)
                            break

    # tmp/
    ttl = cfg.lease_ttl_s
    for n in _listdir_quiet(os.path.join(root, TMP)):
        p = os.path.join(root, TMP, n)
        try:
            age = now - os.lstat(p).st_mtime
        except OSError:
            continue
        if age > ttl:
            pr = rep.add("orphan-tmp", p, f"temporary left by an interrupted step ({age:.0f} s old)",
                         severity="warning")
            if repair:
                if os.path.isdir(p):
                    _rmtree_quiet(p)
                else:
                    _unlink_quiet(p)
                pr.repaired = True
    check_tmp_files(root)

    # id uniqueness and claims
    for i, places in sorted(ids.items()):
        if len(places) > 1:
            rep.add("duplicate-id", places[0], f"id {i} appears {len(places)} times: {places}")
        claim = os.path.join(root, IDS, _shard(i), str(i))
        if not os.path.exists(claim):
            pr = rep.add("claim", claim, f"id {i} has no claim file", severity="warning")
            if repair:
                os.makedirs(os.path.dirname(claim), exist_ok=True)
                open(claim, "ab").close()
                pr.repaired = True

    # event log
    epath = os.path.join(root, EVENTS_FILE)
    deaths: dict[int, int] = {}
    births: dict[int, int] = {}
    torn_middle = 0
    try:
        raw = read_bytes(epath)
    except FileNotFoundError:
        raw = b""
        rep.add("events", epath, "event log missing")
    lines = raw.split(b"\n")
    lastn = len(lines) - 1
    while lastn >= 0 and not lines[lastn].strip():
        lastn -= 1
    for k, line in enumerate(lines[: lastn + 1]):
        if not line.strip():
            continue
        try:
            ev = json.loads(line)
            if not isinstance(ev, dict):
                raise ValueError
        except (ValueError, UnicodeDecodeError):
            if k == lastn:
                pr = rep.add("events-torn-tail", epath, "last line is torn", severity="warning")
                if repair:
                    pr.repaired = True  # the next append starts on a fresh line
            else:
                torn_middle += 1
            continue
        i = ev.get("id")
        if isinstance(i, int):
            if ev.get("event") == "death":
                deaths[i] = deaths.get(i, 0) + 1
            elif ev.get("event") == "birth":
                births[i] = births.get(i, 0) + 1
    if torn_middle:
        rep.add("events-torn", epath, f"{torn_middle} torn line(s) in the middle of the log (skipped by readers)",
                severity="warning")
    for i, c in sorted(deaths.items()):
        if c > 1:
            rep.add("killed-twice", epath, f"individual {i} has {c} death events")
        if i in alive_ids:
            rep.add("death-alive", pop.alive_path(i), f"individual {i} is alive but has a death event")
    for i in sorted(dead_ids):
        if deaths.get(i, 0) == 0:
            pr = rep.add("events-missing", pop.dead_path(i), f"dead individual {i} has no death event",
                         severity="warning")
            if repair:
                death = load_json_or_none(os.path.join(pop.dead_path(i), DEATH_FILE), warn=False) or {}
                pop_events.append({"event": "death", "id": i, "cause": death.get("cause", "unknown"),
                                   "by": death.get("killed_by"), "repaired": True})
                pr.repaired = True
    for i in sorted(alive_ids | dead_ids):
        if births.get(i, 0) == 0:
            p = pop.alive_path(i) if i in alive_ids else pop.dead_path(i)
            pr = rep.add("events-missing", p, f"individual {i} has no birth event", severity="warning")
            if repair:
                rec = load_json_or_none(os.path.join(p, FITNESS_FILE), warn=False) or {}
                pop_events.append({"event": "birth", "id": i, "parent": rec.get("parent_id"),
                                   "kind": rec.get("kind"), "fitness": rec.get("fitness"),
                                   "outcome": rec.get("outcome"), "flops": rec.get("flops"),
                                   "repaired": True})
                pr.repaired = True
    if pop_events:
        pop._append_events(pop_events)

    # counters
    spath = os.path.join(root, STATE_FILE)
    want = _recount(root, cfg)
    have = load_json_or_none(spath, warn=False)
    if have is None:
        pr = rep.add("state", spath, "counters file missing or torn")
        if repair:
            atomic_write_json(spath, {k: v for k, v in want.items() if k != "next_id"})
            pr.repaired = True
    else:
        diffs = []
        if have.get("trained") != want["trained"]:
            diffs.append(f"trained {have.get('trained')} != {want['trained']}")
        if not math.isclose(float(have.get("flops") or 0.0), want["flops"], rel_tol=1e-9, abs_tol=1e-6):
            diffs.append(f"flops {have.get('flops')} != {want['flops']}")
        if cfg.keep_top and have.get("top") != want.get("top"):
            diffs.append("top-K list differs")
        if diffs:
            pr = rep.add("counters", spath, "; ".join(diffs) + " (lost updates or a crash mid-commit)",
                         severity="warning")
            if repair:
                atomic_write_json(spath, {k: v for k, v in want.items() if k != "next_id"})
                pr.repaired = True
    if pop.read_next_id() < want["next_id"]:
        pr = rep.add("next-id", os.path.join(root, NEXT_ID_FILE),
                     f"next id hint {pop.read_next_id()} < {want['next_id']}", severity="warning")
        if repair:
            pop._write_next_id(want["next_id"])
            pr.repaired = True

    rep.counts = {
        "alive": len(alive_ids), "dead": len(dead_ids),
        "pending": len(_listdir_quiet(os.path.join(root, PENDING))),
        "inflight": len(_listdir_quiet(os.path.join(root, INFLIGHT))),
        "trained": want["trained"],
    }
    return rep
