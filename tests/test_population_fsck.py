"""Corrupt and torn files: warnings, never crashes; fsck finds them and --repair fixes them."""

import json
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


# ------------------------------------------------------------------ every invariant, and a repair that converges
def zip_writer(data: bytes = b"weights" * 100):
    """A checkpoint in the zip container torch.save writes."""
    import zipfile

    def write(path):
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("archive/data.pkl", data)

    return write


def _filled(tmp_path, **kw):
    pop = make(tmp_path, population_size=4, **kw)
    me, rng = WorkerInfo.from_env(id="me"), random.Random(7)
    while os.listdir(os.path.join(pop.root, "pending")):
        t = pop.next_task(me, rng)
        pop.commit(t, {"seed": t.child_id}, {"fitness": rng.random()}, checkpoint=zip_writer())
    for _ in range(3):
        t = pop.next_task(me, rng)
        pop.commit(t, {"child": t.child_id}, {"fitness": rng.random(), "mutations": [{"name": "IDENTITY"}]},
                   checkpoint=zip_writer())
    return pop, me, rng


def _converges(pop):
    """One repair, then fsck is OK (exit 0); returns the repair's report."""
    rep = fsck(pop.root, repair=True)
    after = fsck(pop.root)
    assert after.ok, after.summary()
    return rep


def _alive(pop):
    return sorted(int(n) for n in os.listdir(os.path.join(pop.root, "alive")))


def _quarantined(pop):
    return sorted(os.listdir(os.path.join(pop.root, "quarantine")))


def test_a_truncated_alive_checkpoint_is_found_and_its_individual_retrained(tmp_path):
    pop, me, rng = _filled(tmp_path)
    i = _alive(pop)[-1]
    rec = json.load(open(os.path.join(pop.alive_path(i), "fitness.json")))
    ck = os.path.join(pop.alive_path(i), "checkpoint.pt")
    with open(ck, "rb") as f:
        data = f.read()
    put(ck, data[: len(data) // 2])
    rep = fsck(pop.root)
    assert not rep.ok and any(p.code == "checkpoint" and p.path == ck for p in rep.problems), rep.summary()
    _converges(pop)
    assert any(q.startswith(f"{i}.alive.") for q in _quarantined(pop))
    tj = json.load(open(os.path.join(pop.root, "pending", str(i), "task.json")))
    assert tj["kind"] == "retrain" and tj["parent_id"] == rec["parent_id"]
    t = pop.next_task(me, rng)
    assert t.kind == "retrain" and t.child_id == i


def test_a_checkpoint_check_can_be_given_to_fsck(tmp_path):
    pop, me, rng = _filled(tmp_path)
    seen = []

    def check(path, dna):
        seen.append((path, dna))
        if len(seen) == 1:
            raise ValueError("its shapes do not match its DNA")

    rep = fsck(pop.root, check_checkpoint=check)
    assert seen and not rep.ok
    assert any(p.code == "checkpoint" and "do not match" in p.message for p in rep.problems), rep.summary()


def test_an_alive_dna_that_fails_validation_is_found_and_quarantined(tmp_path):
    pop, me, rng = _filled(tmp_path)
    i = _alive(pop)[0]
    put(os.path.join(pop.alive_path(i), "dna.json"), json.dumps({"invalid": True, "unknown_key": 1}))
    rep = fsck(pop.root)
    assert not rep.ok and any(p.code == "dna" for p in rep.problems), rep.summary()
    _converges(pop)
    assert i not in _alive(pop) and any(q.startswith(f"{i}.alive.") for q in _quarantined(pop))
    assert fsck(pop.root).counts["quarantined"] == 1


def test_a_stray_entry_in_inflight_is_found_and_moved_aside(tmp_path):
    pop, me, rng = _filled(tmp_path)
    put(os.path.join(pop.root, "inflight", "notes.txt"), "x")
    os.mkdir(os.path.join(pop.root, "inflight", "junk"))
    rep = fsck(pop.root)
    assert not rep.ok and sum(p.code == "stray" for p in rep.problems) == 2, rep.summary()
    _converges(pop)
    assert os.listdir(os.path.join(pop.root, "inflight")) == []
    assert len(_quarantined(pop)) == 2


def test_a_non_numeric_fitness_clears_after_one_repair(tmp_path):
    pop, me, rng = _filled(tmp_path)
    i = _alive(pop)[0]
    p = os.path.join(pop.alive_path(i), "fitness.json")
    rec = json.load(open(p))
    rec["fitness"] = "high"
    put(p, json.dumps(rec))
    assert not fsck(pop.root).ok
    _converges(pop)
    tj = json.load(open(os.path.join(pop.root, "pending", str(i), "task.json")))
    assert tj["kind"] == "retrain" and tj["parent_id"] == rec["parent_id"]
    assert len(_alive(pop)) == 3 and fsck(pop.root).ok


def test_a_torn_dead_record_clears_after_one_repair_and_keeps_its_lineage(tmp_path):
    pop, me, rng = _filled(tmp_path)
    dead = sorted(int(n) for n in os.listdir(os.path.join(pop.root, "dead", "0")))
    i = max(dead)
    p = os.path.join(pop.dead_path(i), "fitness.json")
    parent = json.load(open(p))["parent_id"]
    put(p, open(p).read()[:20])
    assert not fsck(pop.root).ok
    _converges(pop)
    rec = json.load(open(p))
    assert rec["id"] == i and rec["parent_id"] == parent and rec["outcome"] == "lost" and rec["fitness"] is None
    assert any(q.startswith(f"{i}.dead.") for q in _quarantined(pop))


def test_what_needs_a_person_is_said_with_the_file_and_why(tmp_path):
    pop, me, rng = _filled(tmp_path)
    i = _alive(pop)[0]
    d = pop.dead_path(i)
    os.makedirs(os.path.dirname(d), exist_ok=True)
    import shutil

    shutil.copytree(pop.alive_path(i), d)  # the same id alive and dead
    fsck(pop.root, repair=True)
    rep = fsck(pop.root)
    assert not rep.ok
    (p,) = [q for q in rep.problems if q.severity == "error"]
    assert p.code == "duplicate-id" and "needs a person" in p.message and str(i) in p.path
