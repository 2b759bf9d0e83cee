"""The population lock: which kind, the soft lock's heartbeat and breaking, flock's kernel wait."""

import json
import os
import time
import warnings

import pytest

from evo.population import LockTimeout, Population, SoftLock, StoreWarning, locks
from evo.population.locks import FlockLock
from popkit import FORK, jload, put


def test_lock_detection(monkeypatch, tmp_path):
    kind, _ = locks.detect_lock_kind(str(tmp_path))
    assert kind in ("flock", "soft")
    cases = {
        ("nfs4", ("rw",)): "soft",
        ("nfs", ("rw", "nolock")): "soft",
        ("lustre", ("rw", "flock")): "flock",
        ("lustre", ("rw", "localflock")): "soft",
        ("ext4", ("rw",)): "flock",
        ("gpfs", ("rw",)): "flock",
        ("weirdfs", ("rw",)): "soft",
    }
    for (fs, opts), want in cases.items():
        monkeypatch.setattr(locks, "filesystem_of", lambda p, fs=fs, opts=opts: (fs, "/x", list(opts)))
        assert locks.detect_lock_kind("/x/pop")[0] == want, fs
    # auto resolves per file system, an explicit mode wins
    monkeypatch.setattr(locks, "filesystem_of", lambda p: ("nfs4", "/x", ["rw"]))
    pop = Population.create(str(tmp_path / "a"), population_size=2, lock="auto")
    assert Population.open(pop.root).lock_kind == "soft"
    assert Population.open(pop.root, lock="none").lock_kind == "none"
    pop = Population.create(str(tmp_path / "b"), population_size=2, lock="flock")
    assert Population.open(pop.root).lock_kind == "flock"


def test_soft_lock_breaks_a_stale_lock(tmp_path):
    path = str(tmp_path / "lock.soft")
    put(path, json.dumps({"token": "dead", "host": "gone", "pid": 999999}))
    old = time.time() - 100
    os.utime(path, (old, old))
    lock = SoftLock(path, ttl=10.0)
    t = time.time()
    with pytest.warns(StoreWarning, match="broke the stale soft lock"):
        lock.acquire(timeout=30)
    assert time.time() - t < 5.0          # broken at once, not after waiting out a time-to-live
    assert jload(path)["token"] != "dead"
    lock.release()
    assert not os.path.exists(path)
    # a fresh lock without heartbeat is broken once its TTL passes
    put(path, json.dumps({"token": "crashed"}))
    t = time.time()
    with pytest.warns(StoreWarning):
        SoftLock(path, ttl=0.3).acquire(timeout=5)
    assert 0.25 < time.time() - t < 3


def _hold_soft_lock(path, ttl, hold_s, q):
    warnings.simplefilter("error")
    lock = SoftLock(path, ttl=ttl)
    lock.acquire(timeout=5)
    q.put("held")
    time.sleep(hold_s)
    try:
        lock.release()
        q.put("released cleanly")
    except StoreWarning as w:
        q.put(f"evicted: {w}")


def test_soft_lock_never_evicts_a_live_holder(tmp_path):
    path = str(tmp_path / "lock.soft")
    q = FORK.Queue()
    p = FORK.Process(target=_hold_soft_lock, args=(path, 0.3, 1.5, q))
    p.start()
    assert q.get(timeout=5) == "held"
    with pytest.raises(LockTimeout, match="heartbeating"):
        SoftLock(path, ttl=0.3).acquire(timeout=1.0)  # > 3 TTLs
    p.join(5)
    assert q.get(timeout=5) == "released cleanly"
    lock = SoftLock(path, ttl=0.3)
    lock.acquire(timeout=1)
    lock.release()


def _count_under(path, lock_kind, n, counter):
    pop_lock = SoftLock(path, ttl=5.0) if lock_kind == "soft" else FlockLock(path)
    for _ in range(n):
        pop_lock.acquire(timeout=30)
        v = int(open(counter).read() or 0)
        time.sleep(0.0005)
        put(counter, str(v + 1))
        pop_lock.release()


@pytest.mark.parametrize("kind", ["soft", "flock"])
def test_locks_give_mutual_exclusion(tmp_path, kind):
    counter = str(tmp_path / "counter")
    put(counter, "0")
    ps = [FORK.Process(target=_count_under, args=(str(tmp_path / "lk"), kind, 40, counter)) for _ in range(6)]
    for p in ps:
        p.start()
    for p in ps:
        p.join(60)
        assert p.exitcode == 0
    with open(counter) as f:
        assert int(f.read()) == 240


def _hold_flock(path, hold_s, q):
    lk = FlockLock(path)
    lk.acquire(timeout=10)
    q.put("held")
    time.sleep(hold_s)
    lk.release()
    q.put("released")


def test_flock_timeout_abandons_the_wait(tmp_path):
    path = str(tmp_path / "lock")
    q = FORK.Queue()
    p = FORK.Process(target=_hold_flock, args=(path, 3.0, q))
    p.start()
    assert q.get(timeout=10) == "held"
    lk = FlockLock(path)
    t0 = time.monotonic()
    with pytest.raises(LockTimeout, match="hung"):
        lk.acquire(timeout=0.2)
    assert time.monotonic() - t0 < 2.5        # gave up long before the holder let go (3 s)
    assert q.get(timeout=10) == "released"
    p.join(5)
    # the abandoned kernel wait gets the lock at the release and lets it go at once
    other = FlockLock(path)
    other.acquire(timeout=5)
    other.release()
    lk.acquire(timeout=5)
    lk.release()


def _acquire_inherited(lk, q):
    try:
        lk.acquire(timeout=0.3)
        q.put("acquired")
        lk.release()
    except LockTimeout:
        q.put("timeout")


def test_flock_after_fork_is_not_the_parents_lock(tmp_path):
    lk = FlockLock(str(tmp_path / "lock"))
    lk.acquire(timeout=1)
    q = FORK.Queue()
    p = FORK.Process(target=_acquire_inherited, args=(lk, q))  # inherits the open descriptor
    p.start()
    assert q.get(timeout=10) == "timeout"
    p.join(5)
    lk.release()


def test_flock_follows_a_replaced_lock_file(tmp_path):
    path = tmp_path / "lock"
    lk = FlockLock(str(path))
    lk.acquire(timeout=1)
    lk.release()
    os.unlink(path)  # deleted by hand while free; the next locker creates a new file
    other = FlockLock(str(path))
    other.acquire(timeout=1)
    with pytest.raises(LockTimeout):
        lk.acquire(timeout=0.2)  # its descriptor names the old file: it must not win there
    other.release()
    lk.acquire(timeout=1)
    lk.release()


def test_a_soft_lock_that_cannot_be_created_is_one_line_naming_the_mode_and_the_fix(tmp_path, monkeypatch):
    from evo.population import StoreError

    pop = Population.create(str(tmp_path / "pop"), population_size=2, lock="soft")
    real_open = os.open

    def refused(path, flags, *a):
        if str(path).endswith("lock.soft"):
            raise PermissionError(1, "Operation not permitted", str(path))
        return real_open(path, flags, *a)

    monkeypatch.setattr(os, "open", refused)
    with pytest.raises(StoreError) as e:
        pop.stop()
    msg = str(e.value)
    assert "lock.soft" in msg and "'soft'" in msg and "Fix:" in msg and "\n" not in msg
