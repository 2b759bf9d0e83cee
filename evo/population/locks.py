"""The population lock: one base class (the acquire loop with its timeout, re-entrancy and the
context manager), and the flock, soft (owner token, heartbeat, time-to-live) and null locks.

The lock only keeps the critical sections serial so that races are rare and counters exact;
correctness rests on atomic renames (see :mod:`evo.population.protocol`).  Which lock a
population uses is chosen from the file system (:func:`detect_lock_kind`): flock where it is
cluster-wide or local, the soft lock elsewhere.  ``filelock.BaseFileLock`` is the model of
:class:`BaseLock`.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import random
import socket
import threading
import time
from typing import Any

from evo.base.files import dumps_json, read_bytes, unlink_quiet
from evo.population.layout import FLOCK_FILE, SOFT_LOCK_FILE, LockTimeout, StoreError, new_token, warn

__all__ = ["BaseLock", "FlockLock", "NullLock", "SoftLock", "detect_lock_kind", "filesystem_of", "open_lock"]

#: a waiter says it is still waiting this often
NOTE_EVERY_S = 30.0

_FLOCK_FS = frozenset(
    {"ext2", "ext3", "ext4", "xfs", "btrfs", "tmpfs", "ramfs", "gpfs", "zfs", "f2fs",
     "overlay", "jfs", "reiserfs", "apfs", "hfs", "ufs", "bcachefs"}
)
SOFT_FS = frozenset({"nfs", "nfs4", "cifs", "smb3", "smbfs", "fuse.sshfs", "9p", "virtiofs"})
_REFUSED = (errno.ENOSYS, errno.ENOLCK, errno.EOPNOTSUPP)
_DENIED = (errno.EPERM, errno.EACCES, errno.EROFS)


# --------------------------------------------------------------------------------------------
# Which lock: the file system
# --------------------------------------------------------------------------------------------


def _unescape_mount(s: str) -> str:
    return s.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")


def filesystem_of(path: str) -> tuple[str, str, list[str]]:
    """(fstype, mount point, mount options) of ``path`` from /proc/mounts, or ('unknown', '', [])."""
    real = os.path.realpath(path)
    best: tuple[str, str, list[str]] = ("unknown", "", [])
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
    if fstype in SOFT_FS or fstype.startswith("nfs"):
        return "soft", f"{fstype} at {mnt}: flock may be node-local"
    return "soft", f"file system {fstype!r} at {mnt or '?'} not known to support cluster-wide flock"


# --------------------------------------------------------------------------------------------
# The base class
# --------------------------------------------------------------------------------------------


class BaseLock:
    """A lock on ``path``: :meth:`acquire` with a timeout, re-entrant within a process, and a
    context manager.  Subclasses implement :meth:`_attempt` (one try, never blocking),
    :meth:`_release`, and may override :meth:`_wait` (how to wait between tries: by default a
    short randomized back-off) and :meth:`_abandon` (a wait given up at the deadline)."""

    kind = ""

    def __init__(self, path: str) -> None:
        self.path = path
        self._depth = 0
        self._depth_pid = 0  # a forked child does not hold its parent's lock
        self._delay = 0.0

    @property
    def is_locked(self) -> bool:
        """Whether this process holds the lock (through this object)."""
        return self._depth > 0 and self._depth_pid == os.getpid()

    def acquire(self, timeout: float | None = None) -> None:
        """Take the lock, waiting at most ``timeout`` seconds (None or < 0: forever); raise
        :class:`LockTimeout` naming the lock and its holder after that.  Re-entrant: a holder
        that acquires again only counts (and must release as often)."""
        pid = os.getpid()
        if self._depth and self._depth_pid == pid:
            self._depth += 1
            return
        deadline = None if timeout is None or timeout < 0 else time.monotonic() + timeout
        started = time.monotonic()
        next_note = started + NOTE_EVERY_S
        self._delay = 0.0005
        while not self._attempt():
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                if self._abandon():
                    break
                raise LockTimeout(self._timeout_message(now - started))
            if now >= next_note:
                warn(self._waiting_message(now - started))
                next_note = now + NOTE_EVERY_S
            if self._wait(min(math.inf if deadline is None else deadline, next_note)):
                break
        self._depth, self._depth_pid = 1, pid

    def release(self) -> None:
        """Release once (the lock is let go when every acquisition is released)."""
        if not self.is_locked:
            return
        self._depth -= 1
        if self._depth == 0:
            self._release()

    def __enter__(self) -> "BaseLock":
        self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()

    def holder(self) -> str | None:
        """Who holds the lock, when the lock knows."""
        return None

    # -- what subclasses provide -------------------------------------------------------------
    def _attempt(self) -> bool:
        raise NotImplementedError

    def _release(self) -> None:
        raise NotImplementedError

    def _wait(self, until: float) -> bool:
        """Wait a little (at most until the monotonic time ``until``) before the next attempt;
        True if the lock was taken meanwhile."""
        pause = self._delay * (0.5 + random.random())
        time.sleep(max(0.0, min(pause, until - time.monotonic())))
        self._delay = min(self._delay * 2, 0.008)
        return False

    def _abandon(self) -> bool:
        """Give up a wait at the deadline; True if the lock turned out to be ours after all."""
        return False

    def _timeout_message(self, waited: float) -> str:
        return f"could not acquire the lock {self.path} within {waited:.3g} s"

    def _waiting_message(self, waited: float) -> str:
        return f"still waiting for the lock {self.path} after {waited:.0f} s"


class NullLock(BaseLock):
    """No mutual exclusion (lock mode ``none``): the renames alone keep the population correct."""

    kind = "none"

    def _attempt(self) -> bool:
        return True

    def _release(self) -> None:
        pass


# --------------------------------------------------------------------------------------------
# flock
# --------------------------------------------------------------------------------------------


class _KernelWait:
    """A blocking ``flock(LOCK_EX)`` in a helper thread: the kernel hands the lock to it as soon as
    the holder lets go.  If the waiter is abandoned first, the helper releases the lock at once
    when it gets it, and closes the descriptor, which is then its own."""

    def __init__(self, fcntl: Any, fd: int) -> None:
        self.done = threading.Event()
        self.error: BaseException | None = None
        self._fcntl, self._fd = fcntl, fd
        self._abandoned = False
        self._mutex = threading.Lock()
        threading.Thread(target=self._run, name="evo-flock-wait", daemon=True).start()

    def _run(self) -> None:
        f = self._fcntl
        try:
            f.flock(self._fd, f.LOCK_EX)
        except BaseException as e:  # noqa: BLE001 -- handed to the caller
            self.error = e
            self.done.set()
            return
        with self._mutex:
            if not self._abandoned:
                self.done.set()
                return
        with contextlib.suppress(OSError):
            f.flock(self._fd, f.LOCK_UN)
        with contextlib.suppress(OSError):
            os.close(self._fd)

    def abandon(self) -> bool:
        """True if abandoned (the helper owns the descriptor now); False if it finished first."""
        with self._mutex:
            if self.done.is_set():
                return False
            self._abandoned = True
            return True


class FlockLock(BaseLock):
    """flock(2) on the lock file, waited for in the kernel.

    The descriptor is opened once per process (again after a fork, or when the file was
    replaced) and kept open: taking a free lock is one ``flock`` and one ``stat`` (the check that
    the descriptor still names the file at ``path``, so that a lock file deleted or replaced
    under us never splits the lock).  A contended acquisition waits with a blocking
    ``flock(LOCK_EX)`` in a helper thread (:class:`_KernelWait`) while the caller waits, with
    the timeout, for it to succeed.  The lock file is never deleted, so it interoperates with
    ``filelock.FileLock`` on the same path (which is what is used where ``fcntl`` is missing).
    """

    kind = "flock"

    def __init__(self, path: str):
        super().__init__(path)
        self._fd: int | None = None
        self._pid = 0
        self._id: tuple[int, int] | None = None
        self._waiter: _KernelWait | None = None
        try:
            import fcntl
        except ImportError:  # not Unix: filelock's portable lock, polled
            fcntl = None
        self._fcntl: Any = fcntl
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
        if e.errno in _DENIED:
            return StoreError(f"{self.path}: cannot open the population's flock lock file ({e.strerror}). "
                              f"Fix: give this user write access to {os.path.dirname(self.path)}")
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
        self._waiter = None
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)  # O_CLOEXEC by default
        except OSError as e:
            if e.errno in _DENIED:
                raise self._refused(e) from e
            raise
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

    def _confirm(self) -> bool:
        """Holding the descriptor's lock: keep it if the descriptor names the file at ``path``,
        else let it go (the file was deleted or replaced: lock the one at path next)."""
        if self._current():
            return True
        self._drop()
        return False

    def _try(self, fd: int) -> bool:
        f = self._fcntl
        try:
            f.flock(fd, f.LOCK_EX | f.LOCK_NB)
            return True
        except OSError as e:
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                return False
            if e.errno in _REFUSED:
                raise self._refused(e) from e
            raise

    # -- the hooks of the acquire loop --------------------------------------------------------
    def _attempt(self) -> bool:
        if self._filelock is not None:
            try:
                self._filelock.acquire(timeout=0)
                return True
            except self._timeout_error:
                return False
            except OSError as e:
                if e.errno in _REFUSED:
                    raise self._refused(e) from e
                raise
        w = self._waiter
        if w is not None and self._pid == os.getpid():
            if not w.done.is_set():
                return False
            self._waiter = None
            if w.error is not None:
                if isinstance(w.error, OSError) and w.error.errno in _REFUSED:
                    raise self._refused(w.error) from w.error
                raise w.error
            return self._confirm()
        fd = self._open()
        return self._try(fd) and self._confirm()

    def _wait(self, until: float) -> bool:
        if self._filelock is not None:
            return super()._wait(until)
        if self._waiter is None:
            self._waiter = _KernelWait(self._fcntl, self._open())
        self._waiter.done.wait(max(0.0, min(until - time.monotonic(), NOTE_EVERY_S)))
        return self._attempt()

    def _abandon(self) -> bool:
        w, self._waiter = self._waiter, None
        if w is None:
            return False
        if w.abandon():
            self._fd = None  # the helper owns (and will close) that descriptor now
            return False
        self._waiter = w  # it finished just now: the lock is ours (or it failed)
        return self._attempt()

    def _release(self) -> None:
        if self._filelock is not None:
            self._filelock.release()
            return
        if self._fd is not None and self._pid == os.getpid():
            self._fcntl.flock(self._fd, self._fcntl.LOCK_UN)

    def _timeout_message(self, waited: float) -> str:
        return (f"could not acquire the population lock {self.path} within {waited:.3g} s; a process "
                f"that holds it is hung (find it with `lsof {self.path}`)")

    def _waiting_message(self, waited: float) -> str:
        return f"still waiting for the population lock {self.path} after {waited:.0f} s"


# --------------------------------------------------------------------------------------------
# the soft lock
# --------------------------------------------------------------------------------------------


class SoftLock(BaseLock):
    """A lock file created with O_CREAT|O_EXCL, carrying an owner token, kept alive by a
    heartbeat (its mtime), and broken by others only after ``ttl`` seconds without heartbeat.

    Breaking renames the lock file to a unique name, re-checks that it is the same stale lock,
    then unlinks it; if the renamed file turns out to be alive it is put back.  A holder's
    heartbeat thread refreshes the mtime every ``ttl / 4`` seconds while it holds the lock, so a
    live holder is never evicted however long it holds.
    """

    kind = "soft"

    def __init__(self, path: str, ttl: float = 60.0, *, owner: dict | None = None):
        super().__init__(path)
        self.ttl = float(ttl)
        self.owner = dict(owner or {})
        self._token: str | None = None
        self._held = threading.Event()
        self._thread: threading.Thread | None = None
        self._mutex = threading.Lock()
        self.broken_count = 0

    # -- holder side -------------------------------------------------------------------------
    def _attempt(self) -> bool:
        if self._try_create():
            return True
        return self._maybe_break() and self._try_create()

    def _try_create(self) -> bool:
        token = new_token()
        info = dict(self.owner)
        info.update(token=token, host=socket.gethostname(), pid=os.getpid(), acquired_at=time.time())
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            return False
        except OSError as e:
            if e.errno in _DENIED:
                raise StoreError(
                    f"{self.path}: cannot create the soft lock file ({e.strerror}); this population uses "
                    f"lock mode 'soft'. Fix: give this user write access to {os.path.dirname(self.path)}, "
                    f"or, where the file system supports it, open it with lock 'flock'") from e
            raise
        try:
            os.write(fd, dumps_json(info))
        finally:
            os.close(fd)
        self._token = token
        self._held.set()
        self._ensure_heartbeat_thread()
        return True

    def _release(self) -> None:
        token, self._token = self._token, None
        self._held.clear()
        if token is None:
            return
        with self._mutex:
            cur = self._read(self.path)
            if cur is not None and cur.get("token") != token:
                warn(f"the soft lock {self.path} was broken while this process held it "
                     f"(now held by {cur.get('host')}:{cur.get('pid')}); raise lock_ttl_s")
                return
            unlink_quiet(self.path)

    def _timeout_message(self, waited: float) -> str:
        return (f"could not acquire the soft lock {self.path} within {waited:.0f} s; held by "
                f"{self.holder() or 'an unknown owner'}, which is still heartbeating. If that "
                f"process is gone, delete the file or run `evo fsck --repair`")

    def _waiting_message(self, waited: float) -> str:
        return f"still waiting for the soft lock {self.path} after {waited:.0f} s; held by {self.holder()}"

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
        aside = f"{self.path}.broken-{new_token()}"
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return False
        after = self._read(aside)
        age2 = self._age(aside)
        if after is not None and after.get("token") == seen.get("token") and age2 is not None and age2 > self.ttl:
            unlink_quiet(aside)
            self.broken_count += 1
            warn(f"broke the stale soft lock {self.path} held by {seen.get('host')}:{seen.get('pid')} "
                 f"(no heartbeat for {age2:.0f} s > lock_ttl_s={self.ttl:.0f})")
            return True
        # We moved a live lock (a new holder got in between): put it back.
        try:
            os.link(aside, self.path)
        except OSError:
            warn(f"could not restore the live soft lock {self.path} moved aside by mistake")
        unlink_quiet(aside)
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


def open_lock(root: str, mode: str, *, lock_ttl_s: float, detected: str | None = None) -> tuple[BaseLock, str]:
    """The lock of the population at ``root`` for lock mode ``mode`` (``auto`` picks by file
    system) and the reason for the kind chosen."""
    reason = f"configured lock = {mode}"
    if mode == "auto":
        mode, reason = detect_lock_kind(root)
        if detected and detected != mode:
            warn(f"{root}: lock auto-detection gives {mode} here ({reason}) but {detected} where the "
                 f"population was created; set lock explicitly")
    if mode == "flock":
        return FlockLock(os.path.join(root, FLOCK_FILE)), reason
    if mode == "soft":
        return SoftLock(os.path.join(root, SOFT_LOCK_FILE), lock_ttl_s), reason
    return NullLock(os.path.join(root, FLOCK_FILE)), reason
