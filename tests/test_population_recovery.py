"""Lease recovery: the children of dead workers are finished by the others."""

import os
import random
import time
import warnings

import pytest

from evo.population import LeaseLost, Population, WorkerInfo, fsck, read_events
from popkit import fill, jload, make, put, writer


def test_expired_lease_is_recovered_and_old_owner_learns(tmp_path):
    pop = make(tmp_path, population_size=3, lease_ttl_s=0.5, heartbeat_s=0.1)
    me, rng = WorkerInfo.from_env(id="slow"), random.Random(6)
    fill(pop, me, rng)
    task = pop.next_task(me, rng)
    task.lease.save_checkpoint(writer(b"half"))
    time.sleep(0.7)
    other = Population.open(pop.root)
    assert other.recover_expired() == [task.child_id]
    with pytest.raises(LeaseLost):
        task.lease.heartbeat()
    t2 = other.next_task(WorkerInfo.from_env(id="rescuer"), rng)
    assert t2.kind == "resume" and t2.child_id == task.child_id and t2.resume_checkpoint
    assert pop.commit(task, {}, {"fitness": 0.3}).status == "lease_lost"
    assert other.commit(t2, {"x": 1}, {"fitness": 0.4}).status == "committed"
    ev = [e for e in read_events(pop.root) if e["event"] == "recover"]
    assert ev and ev[0]["id"] == task.child_id and ev[0]["action"] == "resume" and ev[0]["from_worker"] == "slow"


def test_keepalive_keeps_a_slow_child(tmp_path):
    pop = make(tmp_path, population_size=2, lease_ttl_s=0.4, heartbeat_s=0.1)
    me, rng = WorkerInfo.from_env(), random.Random(7)
    task = pop.next_task(me, rng)
    with task.lease.keepalive():
        for _ in range(8):
            time.sleep(0.1)
            assert Population.open(pop.root).recover_expired() == []
    assert not task.lease.lost
    assert pop.commit(task, {}, {"fitness": 0.2}).status == "committed"


def test_completed_but_unfinalized_child_is_committed_by_recovery(tmp_path, monkeypatch):
    pop = make(tmp_path, population_size=3, lease_ttl_s=0.3, heartbeat_s=0.1)
    me, rng = WorkerInfo.from_env(), random.Random(8)
    fill(pop, me, rng)
    task = pop.next_task(me, rng)

    def crash(*a, **k):
        raise KeyboardInterrupt("killed right after writing the files")

    monkeypatch.setattr(Population, "_finalize", crash)
    with pytest.raises(KeyboardInterrupt):
        pop.commit(task, {"done": 1}, {"fitness": 0.9}, checkpoint=writer(b"w"))
    monkeypatch.undo()
    time.sleep(0.4)
    other = Population.open(pop.root)
    assert other.recover_expired() == [task.child_id]
    p = other.alive_path(task.child_id)
    assert jload(os.path.join(p, "fitness.json"))["fitness"] == 0.9
    assert pop.commit(task, {"done": 1}, {"fitness": 0.9}).status == "already_committed"
    assert fsck(pop.root).ok


def test_crash_looping_child_is_abandoned(tmp_path):
    pop = make(tmp_path, population_size=2, lease_ttl_s=0.2, heartbeat_s=0.05, max_attempts=2)
    me, rng = WorkerInfo.from_env(), random.Random(9)
    task = pop.next_task(me, rng)
    time.sleep(0.3)
    assert pop.recover_expired() == [1]
    task = pop.next_task(me, rng)
    assert task.child_id == 1 and task.kind == "resume"
    time.sleep(0.3)
    assert pop.recover_expired() == [1]
    rec = jload(os.path.join(pop.dead_path(1), "fitness.json"))
    assert rec["outcome"] == "abandoned" and rec["fitness"] is None
    assert fsck(pop.root).ok


def test_torn_task_of_an_expired_child_is_abandoned_not_resumed(tmp_path):
    pop = make(tmp_path, population_size=3, lease_ttl_s=0.2, heartbeat_s=0.05)
    me, rng = WorkerInfo.from_env(id="me"), random.Random(8)
    task = pop.next_task(me, rng)
    put(os.path.join(task.lease.path, "task.json"), "")  # never reached the disk
    time.sleep(0.3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert pop.recover_expired() == [task.child_id]
    rec = jload(os.path.join(pop.dead_path(task.child_id), "fitness.json"))
    assert rec["outcome"] == "abandoned" and "task.json" in rec["reason"]
