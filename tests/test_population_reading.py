"""The lock-free reading API."""

import random

from evo.population import WorkerInfo
from popkit import fill, make, train_one


def test_reading_api(tmp_path):
    pop = make(tmp_path, population_size=3)
    me, rng = WorkerInfo.from_env(), random.Random(18)
    fill(pop, me, rng)
    for _ in range(4):
        train_one(pop, me, rng)
    task = pop.next_task(me, rng)
    st = pop.status()
    assert st["alive"] + st["inflight"] == 3 and st["dead"] == 5 and st["trained"] == 7
    assert st["best_alive"]["fitness"] > 0
    (lease,) = pop.leases()
    assert lease["id"] == task.child_id and not lease["expired"] and lease["worker"] == me.id
    inds = list(pop.individuals())
    assert len(inds) == 7 and {i.status for i in inds} == {"alive", "dead"}
    assert inds[0].dna() and inds[0].record["id"] == inds[0].id and inds[0].fitness == inds[0].record["fitness"]
    dead = [i for i in inds if i.status == "dead"]
    assert dead[0].death["cause"] == "selection" and dead[0].checkpoint is None
    assert pop.individual(dead[0].id).status == "dead" and pop.individual(10 ** 6) is None
