"""Corrupt and torn files: warnings, never crashes; fsck finds them and --repair fixes them."""

import os
import random
import time

import pytest

from evo.population import CorruptFileWarning, Population, WorkerInfo, fsck
from popkit import fill, make, put, train_one


def test_truncated_fitness_is_a_warning_and_fsck_requeues_it(tmp_path):
    pop = make(tmp_path, population_size=4)
    me, rng = WorkerInfo.from_env(), random.Random(14)
    fill(pop, me, rng)
    victim = sorted(os.listdir(os.path.join(pop.root, "alive")))[0]
    fpath = os.path.join(pop.root, "alive", victim, "fitness.json")
    with open(fpath, "rb") as f:
        data = f.read()
    put(fpath, data[: len(data) // 2])
    fresh = Population.open(pop.root)
    with pytest.warns(CorruptFileWarning, match=victim):
        task, res = train_one(fresh, me, rng)
    assert res.status == "committed"
    assert task.parent_id != int(victim)
    rep = fsck(pop.root)
    assert not rep.ok and any(p.code == "fitness" for p in rep.problems)
    rep = fsck(pop.root, repair=True)
    assert rep.ok, rep.summary()
    assert os.path.isdir(os.path.join(pop.root, "pending", victim))
    assert os.listdir(os.path.join(pop.root, "quarantine"))
    t = pop.next_task(me, rng)
    assert t.kind == "retrain" and t.child_id == int(victim)
    assert fsck(pop.root).ok


@pytest.mark.filterwarnings("ignore::evo.population.StoreWarning")
def test_torn_lease_control_state_task_files(tmp_path):
    pop = make(tmp_path, population_size=3, lease_ttl_s=0.3, heartbeat_s=0.1)
    me, rng = WorkerInfo.from_env(), random.Random(16)
    task = pop.next_task(me, rng)
    put(os.path.join(task.lease.path, "lease.json"), '{"tok')
    with pytest.warns(CorruptFileWarning, match="lease.json"):
        assert pop.recover_expired() == []  # young directory: not expired yet
    time.sleep(0.4)
    with pytest.warns(CorruptFileWarning):
        assert pop.recover_expired() == [task.child_id]
    put(os.path.join(pop.root, "control.json"), "{")
    with pytest.warns(CorruptFileWarning, match="control.json"):
        assert pop.read_control().mutations_per_child == 1
    put(os.path.join(pop.root, "state.json"), "")
    with pytest.warns(CorruptFileWarning):
        st = pop.read_state()
    assert st["trained"] == 0
    put(os.path.join(pop.root, "pending", "2", "task.json"), "[1,")
    assert pop.next_task(me, rng).child_id == 1  # the recovered child
    with pytest.warns(CorruptFileWarning, match="task.json"):
        t = pop.next_task(me, rng)
    assert t and t.child_id == 3
    rep = fsck(pop.root, repair=True)
    assert rep.ok, rep.summary()
    rep = fsck(pop.root)
    assert rep.clean, rep.summary()


def test_fsck_repairs_orphans_stale_locks_missing_events(tmp_path):
    pop = make(tmp_path, population_size=3, lease_ttl_s=0.2, heartbeat_s=0.05, lock="soft", lock_ttl_s=0.2)
    me, rng = WorkerInfo.from_env(), random.Random(17)
    fill(pop, me, rng)
    train_one(pop, me, rng)
    os.mkdir(os.path.join(pop.root, "tmp", "resv-dead"))
    put(os.path.join(pop.root, "alive", os.listdir(os.path.join(pop.root, "alive"))[0], ".dna.json.tmp-x"), "")
    task = pop.next_task(me, rng)  # will expire
    put(os.path.join(pop.root, "lock.soft"), '{"token": "zz", "pid": 1}')
    # a death whose event was lost (crash between the rename and the append)
    with open(os.path.join(pop.root, "events.jsonl")) as f:
        lines = f.read().splitlines()
    dead_ev = [l for l in lines if '"death"' in l][-1]
    put(os.path.join(pop.root, "events.jsonl"), "\n".join(l for l in lines if l != dead_ev) + "\n")
    time.sleep(0.3)
    rep = fsck(pop.root)
    codes = {p.code for p in rep.problems}
    assert {"stale-lock", "orphan-tmp", "expired-lease", "events-missing"} <= codes, rep.summary()
    rep = fsck(pop.root, repair=True)
    assert rep.ok, rep.summary()
    assert all(p.repaired for p in rep.problems if p.severity != "info"), rep.summary()
    rep = fsck(pop.root)
    assert rep.clean, rep.summary()
    assert not os.path.exists(os.path.join(pop.root, "lock.soft"))
    assert os.path.isdir(os.path.join(pop.root, "pending", str(task.child_id)))


def test_fsck_leaves_a_young_temporary_alone(tmp_path):
    # a step's temporary younger than the lease may belong to a running worker: no problem, and
    # --repair keeps it; older, it is an orphan and is removed
    pop = make(tmp_path, population_size=2, lease_ttl_s=30.0)
    p = os.path.join(pop.root, "tmp", "resv-young")
    os.mkdir(p)
    rep = fsck(pop.root, repair=True)
    assert rep.clean and os.path.isdir(p), rep.summary()
    old = time.time() - 31
    os.utime(p, (old, old))
    rep = fsck(pop.root, repair=True)
    assert [q.code for q in rep.problems if q.repaired] == ["orphan-tmp"] and not os.path.exists(p)
