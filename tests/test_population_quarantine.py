"""Quarantine: what cannot be used is set aside (kept, counted, reported), and the evolution goes on."""

import json
import os
import random
import time

import pytest

from evo.population import Population, WorkerInfo, fsck, read_events
from popkit import fill, jload, make, put, train_one, writer


def _why(entry_dir):
    return jload(os.path.join(entry_dir, "why.json"))


def test_an_unusable_parent_is_quarantined_and_the_attempt_counts_as_a_failure(tmp_path):
    pop = make(tmp_path, population_size=3, max_attempts=2)
    me, rng = WorkerInfo.from_env(id="me"), random.Random(1)
    fill(pop, me, rng)
    task = pop.next_task(me, rng)
    parent = task.parent_id
    assert pop.quarantine_task(task, reason="filter sizes must be odd", parent=True) == "requeued"
    assert not os.path.exists(pop.alive_path(parent))
    (entry,) = os.listdir(os.path.join(pop.root, "quarantine"))
    q = os.path.join(pop.root, "quarantine", entry)
    assert entry.startswith(f"{parent}.alive.")
    assert sorted(os.listdir(os.path.join(q, str(parent)))) == ["checkpoint.pt", "dna.json", "fitness.json"]
    why = _why(q)
    assert why["id"] == parent and why["origin"] == f"alive/{parent}" and "odd" in why["reason"]
    assert pop.status()["quarantined"] == 1
    from evo.analysis import status as evo_status  # what `evo status` prints

    shown = evo_status(pop.root)
    assert shown["counts"]["quarantined"] == 1
    assert any("quarantine/" in w and f"alive/{parent}" in w for w in shown["warnings"]), shown["warnings"]
    rep = fsck(pop.root)
    assert rep.ok and rep.counts["quarantined"] == 1 and any(p.code == "quarantined" for p in rep.problems)
    assert "quarantine" in str(rep)
    # the child went back with one failure; the next attempt fails again and it is abandoned
    tj = jload(os.path.join(pop.root, "pending", str(task.child_id), "task.json"))
    assert tj["failures"] == 1 and tj["parent_id"] == parent
    again = pop.next_task(me, rng)
    assert again.child_id == task.child_id and again.kind == "resume"
    assert pop.quarantine_task(again, reason="filter sizes must be odd", parent=True) == "abandoned"
    rec = jload(os.path.join(pop.dead_path(task.child_id), "fitness.json"))
    assert rec["outcome"] == "abandoned" and "odd" in rec["reason"] and rec["parent_id"] == parent
    # the parent is never selected again, and the evolution goes on
    for _ in range(6):
        t, res = train_one(pop, me, rng)
        assert res.status == "committed" and t.parent_id != parent
    assert any(e["event"] == "quarantine" and e["id"] == parent for e in read_events(pop.root))
    assert fsck(pop.root).ok


def test_an_unusable_task_is_abandoned_after_max_attempts_and_the_rest_is_trained(tmp_path):
    pop = make(tmp_path, population_size=3, max_individuals=3, max_attempts=2)
    me, rng = WorkerInfo.from_env(id="me"), random.Random(2)
    task = pop.next_task(me, rng)
    assert pop.quarantine_task(task, reason="the seed's genome has a cycle") == "requeued"
    task = pop.next_task(me, rng)
    assert task.child_id == 1 and task.kind == "resume"
    assert pop.quarantine_task(task, reason="the seed's genome has a cycle") == "abandoned"
    while True:
        t, res = train_one(pop, me, rng)
        if not t:
            break
    st = pop.status()
    assert st["alive"] == 2 and st["pending"] == 0 and st["inflight"] == 0
    assert jload(os.path.join(pop.dead_path(1), "fitness.json"))["outcome"] == "abandoned"
    assert fsck(pop.root).clean


def test_a_torn_pending_task_is_quarantined_by_the_next_step_not_skipped_forever(tmp_path):
    pop = make(tmp_path, population_size=3)
    me, rng = WorkerInfo.from_env(id="me"), random.Random(3)
    put(os.path.join(pop.root, "pending", "1", "task.json"), '{"kind": "se')
    with pytest.warns(Warning):
        t = pop.next_task(me, rng)
    assert t.child_id == 2
    assert not os.path.exists(os.path.join(pop.root, "pending", "1"))
    (entry,) = os.listdir(os.path.join(pop.root, "quarantine"))
    assert entry.startswith("1.pending.") and "task.json" in _why(os.path.join(pop.root, "quarantine", entry))["reason"]
    assert pop.status()["quarantined"] == 1


def test_readers_ignore_unknown_keys_in_a_parents_dna(tmp_path):
    pop = make(tmp_path, population_size=2)
    me, rng = WorkerInfo.from_env(id="me"), random.Random(4)
    fill(pop, me, rng)
    for n in os.listdir(os.path.join(pop.root, "alive")):
        p = os.path.join(pop.root, "alive", n, "dna.json")
        d = jload(p)
        d["written_by_a_newer_evo"] = {"colour": "red"}
        put(p, json.dumps(d))
    t, res = train_one(pop, me, rng)
    assert res.status == "committed" and t.parent_dna["written_by_a_newer_evo"] == {"colour": "red"}
    assert fsck(pop.root).clean
