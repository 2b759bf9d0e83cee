"""The grow strategy: generations planned as pending work, the barrier in grow.json, SIGKILL-safe."""

import collections
import json
import os
import random
import time

import pytest

from evo.population import Population, WorkerInfo, fsck, read_events
from evo.population.grow import GROW_FILE, GrowSettings, rank
from evo.population.layout import ConfigError
from popkit import check_invariants, make, run_workers, train_one

GROW = {"children": 5, "survivors": 3, "generations": 3}


def grown(tmp_path, **kw):
    kw.setdefault("population_size", 4)
    kw.setdefault("grow", dict(GROW))
    return make(tmp_path, strategy="grow", inheritance="function-preserving", **kw)


def run_in_process(pop, seed=0, fitness=None):
    """One fake worker until the run is over; returns the tasks it trained."""
    me, rng = WorkerInfo.from_env(id="w1"), random.Random(seed)
    tasks = []
    for _ in range(1000):
        task, res = train_one(pop, me, rng, fitness=None if fitness is None else fitness(rng))
        if res is None:
            assert task.done, task
            return tasks
        tasks.append(task)
    raise AssertionError("the run did not end")


def test_rank_and_settings():
    assert rank({5: 0.5, 2: 0.9, 7: None, 3: 0.5, 9: float("nan")}) == [2, 3, 5, 7, 9]
    pop_cfg = type("C", (), {"grow": {}, "population_size": 10})()
    assert GrowSettings.of(pop_cfg) == GrowSettings(20, 10, None)


@pytest.mark.parametrize("bad, word", [({"children": 0}, "grow.children"), ({"survivor": 2}, "survivor"),
                                       ({"generations": "3"}, "grow.generations"), ([], "JSON object")])
def test_bad_settings_are_refused(tmp_path, bad, word):
    with pytest.raises(ConfigError, match=word):
        grown(tmp_path, grow=bad)


def test_generations_of_children_keep_the_best(tmp_path):
    pop = grown(tmp_path)
    assert pop.config.inheritance == "function-preserving"
    tasks = run_in_process(pop)
    st = json.loads((tmp_path / "pop" / GROW_FILE).read_text())
    assert st["phase"] == "finished" and [h["generation"] for h in st["history"]] == [0, 1, 2, 3]
    assert [t.kind for t in tasks] == ["seed"] * 4 + ["child"] * 15
    alive = sorted(int(n) for n in os.listdir(tmp_path / "pop" / "alive"))
    assert sorted(st["survivors"]) == alive and len(alive) == 3
    events = read_events(pop.root)
    fitness = {e["id"]: e["fitness"] for e in events if e["event"] == "birth"}
    gens = [e for e in events if e["event"] == "generation"]
    assert [g["generation"] for g in gens] == [0, 1, 2, 3] and gens[-1]["finished"]
    survivors: list[int] = []
    members = [t.child_id for t in tasks[:4]]
    for h in st["history"]:  # one worker: the generations' members come in order, 5 at a time
        g = h["generation"]
        pool = sorted(set(survivors) | set(members))
        assert h["survivors"] == sorted(pool, key=lambda i: (-fitness[i], i))[:3]  # the best M2
        survivors = h["survivors"]
        children = tasks[4 + 5 * g:4 + 5 * (g + 1)]
        if g < 3:
            assert len(children) == 5 and all(t.inherit and t.parent_checkpoint for t in children)
            per_parent = collections.Counter(t.parent_id for t in children)
            assert set(per_parent) == set(survivors) and sorted(per_parent.values()) == [1, 2, 2]
            assert per_parent[survivors[0]] == 2  # the best first
        members = [t.child_id for t in children]
    killed = [e["id"] for e in events if e["event"] == "death"]
    assert len(killed) == len(set(killed)) == 4 + 15 - 3
    assert all(e["cause"] == "generation" for e in events if e["event"] == "death")


def test_the_barrier_waits_for_the_generation(tmp_path):
    pop = grown(tmp_path, population_size=2, grow={"children": 2, "survivors": 1, "generations": 2})
    me, rng = WorkerInfo.from_env(id="w1"), random.Random(0)
    a = pop.next_task(me, rng)
    b = pop.next_task(me, rng)
    assert a.kind == b.kind == "seed"
    wait = pop.next_task(me, rng)
    assert not wait and wait.reason == "generation" and not wait.done and "generation 0" in wait.message
    pop.commit(a, {"n": 1}, {"fitness": 0.3}, checkpoint=lambda p: open(p, "wb").close())
    assert pop.next_task(me, rng).reason == "generation"
    res = pop.commit(b, {"n": 2}, {"fitness": 0.6}, checkpoint=lambda p: open(p, "wb").close(), next_for=me)
    # the commit that completed generation 0 ended it and planned generation 1 in the same section
    st = pop.grow_state()
    assert st["generation"] == 1 and st["survivors"] == [b.child_id] and st["phase"] == "running"
    assert res.next and res.next.kind == "child" and res.next.parent_id == b.child_id
    assert res.next.parent_dna == {"n": 2} and res.next.inherit
    assert sorted(os.listdir(os.path.join(pop.root, "alive"))) == [str(b.child_id)]


def test_a_plan_cut_short_by_a_crash_is_finished_by_the_next_step(tmp_path, monkeypatch):
    pop = grown(tmp_path)
    me, rng = WorkerInfo.from_env(id="w1"), random.Random(0)
    for _ in range(3):
        train_one(pop, me, rng)
    task = pop.next_task(me, rng)
    real = Population._grow_child
    made = []

    def dies_after_two(self, cid, parent, generation, busy):
        if len(made) == 2:
            raise KeyboardInterrupt("killed")  # a worker killed half-way through the plan
        made.append(cid)
        return real(self, cid, parent, generation, busy)

    monkeypatch.setattr(Population, "_grow_child", dies_after_two)
    with pytest.raises(KeyboardInterrupt):
        pop.commit(task, {"n": 4}, {"fitness": 0.5}, checkpoint=lambda p: open(p, "wb").close())
    monkeypatch.setattr(Population, "_grow_child", real)
    st = pop.grow_state()
    assert st["phase"] == "planning" and len(st["plan"]) == 5 and len(st["kill"]) == 1
    assert sorted(int(n) for n in os.listdir(os.path.join(pop.root, "pending"))) == made
    other = Population.open(pop.root)
    t = other.next_task(WorkerInfo.from_env(id="w2"), random.Random(1))
    st = other.grow_state()
    assert st["phase"] == "running" and st["kill"] == [] and t.kind == "child"
    planned = sorted(int(n) for n in os.listdir(os.path.join(pop.root, "pending"))) + [t.child_id]
    assert sorted(planned) == sorted(st["members"]) and len(st["members"]) == 5
    assert len(os.listdir(os.path.join(pop.root, "alive"))) == 3
    dead = [n for d in os.listdir(os.path.join(pop.root, "dead")) for n in os.listdir(os.path.join(pop.root, "dead", d))]
    assert len(dead) == 1  # killed once, by the step that was cut short


@pytest.mark.parametrize("lock", ["flock", "soft"])
def test_sigkill_storm_keeps_the_invariants(tmp_path, lock):
    M2 = 4
    pop = make(tmp_path, population_size=6, strategy="grow", grow={"children": 8, "survivors": M2},
               lock=lock, max_individuals=70, lease_ttl_s=0.6, heartbeat_s=0.1, max_attempts=1000,
               lock_ttl_s=2.0)  # a soft lock whose holder was killed is broken after 2 s, not 60
    log = run_workers(pop.root, tmp_path, 6, lock=lock, timeout=120, kills=15, train_s=(0.005, 0.03))
    time.sleep(0.8)
    rep = fsck(pop.root, repair=True)
    assert rep.ok, rep.summary()
    assert fsck(pop.root).clean, fsck(pop.root).summary()
    alive, dead, events = check_invariants(pop.root, log, population_size=M2, resumes_allowed=True)
    st = pop.grow_state()
    assert st["phase"] == "finished" and sorted(st["survivors"]) == sorted(alive)
    gens = [h["generation"] for h in st["history"]]
    assert gens == list(range(len(gens))) and len(gens) >= 5
    assert 70 - 15 <= len(alive) + len(dead) <= 70
    assert any(e["event"] == "recover" for e in events)


def test_a_grow_run_defaults_to_growth_mutations_and_function_preserving_inheritance(tmp_path):
    pop = make(tmp_path, strategy="grow")
    assert pop.config.inheritance == "function-preserving"
    assert pop.config.train["mutations"] == {"allowed": ["WIDEN", "DEEPEN", "LARGER-FILTER"]}
    other = make(tmp_path, name="other", strategy="grow", inheritance="paper",
                 train={"mutations": {"weights": {"WIDEN": 1}}})
    assert other.config.inheritance == "paper" and other.config.train["mutations"] == {"weights": {"WIDEN": 1}}
    assert make(tmp_path, name="t").config.inheritance == "paper"  # other strategies: the paper's


def test_a_spent_flops_budget_ends_the_generation_with_what_was_trained(tmp_path):
    pop = grown(tmp_path, population_size=2, grow={"children": 4, "survivors": 2}, max_flops=5.0)
    me, rng = WorkerInfo.from_env(id="w1"), random.Random(0)
    for _ in range(2):
        train_one(pop, me, rng)  # 2 FLOPs each: generation 1 is planned (4 children)
    assert pop.grow_state()["generation"] == 1
    task, _ = train_one(pop, me, rng)  # 6 FLOPs: the budget is spent, three children never started
    assert task.kind == "child"
    wait = pop.next_task(me, rng)
    assert not wait and wait.done and wait.reason == "budget"
    st = pop.grow_state()
    assert st["phase"] == "finished" and st["history"][-1]["members"] == 4 and len(st["survivors"]) == 2
    assert os.listdir(os.path.join(pop.root, "pending")) == []
    assert len(os.listdir(os.path.join(pop.root, "alive"))) == 2
