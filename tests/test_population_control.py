"""Run control: the knobs and the weight reset."""

import json
import os
import random

import pytest

from evo.population import ConfigError, Population, WorkerInfo, fsck, read_events
from popkit import fill, jload, make, put, train_one, writer


def test_control_knobs_take_effect_at_next_step(tmp_path):
    pop = make(tmp_path, population_size=3)
    other = Population.open(pop.root)  # e.g. the CLI in another process
    me, rng = WorkerInfo.from_env(), random.Random(3)
    fill(pop, me, rng)
    other.set_mutations_per_child(5)
    task, _ = train_one(pop, me, rng)
    assert task.num_mutations == 5
    other.set_mutations_per_child(1)
    other.pause()
    w = pop.next_task(me, rng)
    assert not w and w.reason == "paused" and not w.done
    other.resume()
    other.stop()
    w = pop.next_task(me, rng)
    assert w.reason == "stopped" and w.done
    other.resume()
    assert pop.next_task(me, rng)
    with pytest.raises(ConfigError):
        other.set_control(mutations_per_child=-1)
    with pytest.raises(ConfigError):
        other.set_control(population_size=3)
    kinds = [e["event"] for e in read_events(pop.root)]
    assert kinds.count("control") == 6


def test_reset_weights_retrains_every_living_individual(tmp_path):
    pop = make(tmp_path, population_size=3, keep_checkpoints="all")
    me, rng = WorkerInfo.from_env(), random.Random(10)
    fill(pop, me, rng)
    for _ in range(3):
        train_one(pop, me, rng)
    alive = sorted(int(n) for n in os.listdir(os.path.join(pop.root, "alive")))
    before = {i: jload(os.path.join(pop.alive_path(i), "fitness.json")) for i in alive}
    assert Population.open(pop.root).reset_all_weights() == 3
    assert os.listdir(os.path.join(pop.root, "alive")) == []
    seen = []
    for _ in range(3):
        task = pop.next_task(me, rng)
        assert task.kind == "retrain" and task.dna == {"parent": before[task.child_id]["parent_id"],
                                                       "n": task.child_id} or task.dna
        assert not task.inherit and task.generation == 1
        seen.append(task.child_id)
        assert pop.commit(task, task.dna, {"fitness": 0.01}, checkpoint=writer(b"fresh")).status == "committed"
    assert sorted(seen) == alive
    for i in alive:
        d = pop.alive_path(i)
        rec = jload(os.path.join(d, "fitness.json"))
        assert rec["fitness"] == 0.01 and rec["generation"] == 1 and rec["kind"] == "retrain"
        old = jload(os.path.join(d, "fitness.g0.json"))
        assert old["fitness"] == before[i]["fitness"]
        assert os.path.exists(os.path.join(d, "checkpoint.g0.pt"))
    # the selection cache sees the new fitness values
    task = pop.next_task(me, rng)
    assert task.kind == "child"
    assert pop.read_control().reset_generation == 1
    assert [e for e in read_events(pop.root) if e["event"] == "reset"][0]["queued"] == 3
    assert fsck(pop.root).clean


def test_finished_says_why_once_no_work_is_left(tmp_path):
    pop = make(tmp_path, population_size=2, max_individuals=3)
    me, rng = WorkerInfo.from_env(), random.Random(4)
    assert pop.finished() is None                        # seeds pending
    fill(pop, me, rng)
    assert pop.finished() is None                        # budget left
    task = pop.next_task(me, rng)
    assert task and pop.finished() is None               # the last child in flight
    pop.commit(task, {"n": task.child_id}, {"fitness": 0.5}, checkpoint=writer(b"w"))
    assert pop.finished() == "budget of 3 individuals reached"
    other = make(tmp_path, "other", population_size=2)
    assert other.finished() is None
    other.stop()
    assert "stopped" in other.finished()
    other.resume()
    assert other.finished() is None


def test_a_spent_flops_budget_finishes_a_run_with_retraining_left_unstarted(tmp_path):
    """reset-weights queues every living individual; when the FLOPs budget is spent before they are
    retrained, the workers leave them (next_task takes no unstarted work past a FLOPs budget) and
    the run is over, not waiting for work nobody will take; a resume is still finished first."""
    pop = make(tmp_path, population_size=3, max_flops=3.0)
    me, rng = WorkerInfo.from_env(), random.Random(5)
    fill(pop, me, rng)
    assert pop.reset_all_weights() == 3
    for _ in range(2):  # two retrainings of 2 FLOPs each: the budget of 3 is spent
        task, _ = train_one(pop, me, rng)
        assert task.kind == "retrain"
    assert len(os.listdir(os.path.join(pop.root, "pending"))) == 1
    assert pop.read_state()["flops"] >= 3.0
    wait = pop.next_task(me, rng)
    assert not wait and wait.done and wait.reason == "budget"
    assert "budget" in pop.finished() and "FLOPs" in pop.finished()
    # a retraining that was started (a resume) is still work: the run is not over before it ends
    p = os.path.join(pop.root, "pending", sorted(os.listdir(os.path.join(pop.root, "pending")))[0], "task.json")
    tj = jload(p)
    put(p, json.dumps({**tj, "attempts": 1}))
    assert pop.finished() is None

