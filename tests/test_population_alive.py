"""A worker's view of alive/: from the event log, checked against link counts."""

import os
import random

from evo.population import Population, WorkerInfo
from popkit import fill, make, put, selectable, train_one


def test_alive_view_follows_other_workers_through_the_event_log(tmp_path):
    a = make(tmp_path, population_size=8)
    me, rng = WorkerInfo.from_env(id="a"), random.Random(3)
    fill(a, me, rng)
    b = Population.open(a.root)
    assert b.alive.trust_nlink  # a local file system: link counts are used
    assert selectable(b) == list(range(1, 9))
    assert b.alive.nlink_ok and b.alive.offset is not None
    # another worker's steps reach b through the events only (no listing of alive/)
    for _ in range(5):
        train_one(a, me, rng)
    listed = []
    orig = b.alive.listing
    b.alive.listing = lambda ctl: listed.append(1) or orig(ctl)
    alive = sorted(int(n) for n in os.listdir(os.path.join(a.root, "alive")))
    assert selectable(b) == alive and not listed
    # a change that no event tells of (an append lost, lock none...): the link count disagrees
    # and the view is rebuilt from a listing
    os.makedirs(os.path.dirname(a.dead_path(alive[0])), exist_ok=True)
    os.rename(a.alive_path(alive[0]), a.dead_path(alive[0]))
    assert selectable(b) == alive[1:] and listed
    # a replaced (or shortened) event log: rebuilt from a listing as well
    os.rename(a.log.path, a.log.path + ".old")
    put(a.log.path, "")
    listed.clear()
    assert selectable(b) == alive[1:] and listed


def test_alive_view_without_trusted_link_counts_lists_every_step(tmp_path):
    pop = make(tmp_path, population_size=5)
    me, rng = WorkerInfo.from_env(id="a"), random.Random(4)
    fill(pop, me, rng)
    pop.alive.trust_nlink = pop.alive.nlink_ok = False  # as on NFS
    listed = []
    orig = pop.alive.listing
    pop.alive.listing = lambda ctl: listed.append(1) or orig(ctl)
    for _ in range(3):
        task, res = train_one(pop, me, rng)
        assert res.status == "committed"
    assert len(listed) >= 3 and not pop.alive.nlink_ok
    assert selectable(pop) == sorted(int(n) for n in os.listdir(os.path.join(pop.root, "alive")))
