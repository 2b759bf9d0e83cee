"""Id claims and the next-id hint."""

import errno
import os
import random
import signal
import time

from evo.population import Population, WorkerInfo, fsck
from popkit import FORK, fill, make, train_one


def test_ids_stay_unique_when_the_counter_goes_back(tmp_path):
    pop = make(tmp_path, population_size=3)
    me, rng = WorkerInfo.from_env(), random.Random(13)
    fill(pop, me, rng)
    t1, _ = train_one(pop, me, rng)
    pop.ids.write_next(1)  # a lost update without mutual exclusion
    t2, _ = train_one(pop, me, rng)
    assert t2.child_id == t1.child_id + 1


def test_id_claims_are_hard_links_or_files(tmp_path, monkeypatch):
    pop = make(tmp_path, population_size=3)
    me, rng = WorkerInfo.from_env(id="me"), random.Random(7)
    fill(pop, me, rng)
    task, _ = train_one(pop, me, rng)
    claim = os.path.join(pop.root, "ids", "0", str(task.child_id))
    assert os.path.samefile(claim, os.path.join(pop.root, "ids", "0", ".claim"))
    assert not pop.ids.try_claim(task.child_id)  # taken
    # a file system that refuses hard links: claims become empty files
    real_link = os.link

    def no_links(src, dst, *a, **k):
        raise OSError(errno.EPERM, "hard links refused", dst)

    monkeypatch.setattr(os, "link", no_links)
    pop.ids.link_claims = True
    task2, _ = train_one(pop, me, rng)
    monkeypatch.setattr(os, "link", real_link)
    assert task2.child_id > task.child_id and not pop.ids.link_claims
    claim2 = os.path.join(pop.root, "ids", "0", str(task2.child_id))
    assert os.path.isfile(claim2) and os.stat(claim2).st_nlink == 1
    assert fsck(pop.root).clean


def _wait_for_a_task(root):
    Population.open(root).next_task(WorkerInfo.from_env(id="doomed"), random.Random(1))


def test_a_worker_killed_while_waiting_for_the_lock_holds_no_id(tmp_path):
    """The individuals budget counts ids: an id claimed by a worker that dies before its step
    would be a budget slot lost. The claim is made inside the critical section."""
    pop = make(tmp_path, population_size=3)
    me, rng = WorkerInfo.from_env(id="me"), random.Random(11)
    fill(pop, me, rng)
    nid = pop.read_next_id()
    with pop.locked():
        proc = FORK.Process(target=_wait_for_a_task, args=(pop.root,))
        proc.start()
        time.sleep(1.0)  # it has prepared its step and waits for the lock
        assert proc.is_alive()
        os.kill(proc.pid, signal.SIGKILL)
        proc.join()
    task, _ = train_one(pop, me, rng)
    assert task.child_id == nid


def test_a_released_id_is_the_next_one_claimed(tmp_path):
    pop = make(tmp_path, population_size=3)
    me, rng = WorkerInfo.from_env(id="me"), random.Random(12)
    fill(pop, me, rng)
    nid = pop.read_next_id()
    with pop.locked():
        assert pop.ids.claim(nid) == nid
        pop.ids.write_next(nid + 1)
    pop.ids.unclaim(nid)  # the step that claimed it was given up
    task, _ = train_one(pop, me, rng)
    assert task.child_id == nid
    assert fsck(pop.root).clean
