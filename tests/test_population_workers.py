"""Real processes: concurrent workers, no mutual exclusion, SIGKILL fault injection."""

import os
import time

import pytest

from evo.population import fsck
from evo.population.quarantine import quarantined
from popkit import FORK, check_invariants, dir_ids, jload, make, read_log, run_workers, worker_main


@pytest.mark.parametrize("lock", ["flock", "soft", "none"])
def test_concurrent_workers_until_budget(tmp_path, lock):
    P = 16  # the paper's ratio: population = 4 x workers (here 2 x)
    pop = make(tmp_path, population_size=P, lock=lock, max_individuals=140, lease_ttl_s=30, heartbeat_s=0.5)
    log = run_workers(pop.root, tmp_path, 8, lock=lock, timeout=60)
    alive, dead, events = check_invariants(pop.root, log, population_size=P,
                                           exact_population=(lock != "none"))
    trained = len(alive) + len(dead)
    if lock == "none":  # a given-up step may leave an id gap when others' hints moved past it
        assert 130 <= trained <= 140
    else:
        assert trained == 140
    rep = fsck(pop.root)
    assert rep.ok, rep.summary()
    if lock != "none":
        assert rep.clean, rep.summary()
        assert pop.read_state()["trained"] == trained


@pytest.mark.parametrize("lock", ["flock", "none"])
def test_sigkill_workers_at_random_moments(tmp_path, lock):
    P = 16
    pop = make(tmp_path, population_size=P, lock=lock, max_individuals=300, lease_ttl_s=0.6,
               heartbeat_s=0.1, max_attempts=1000)
    log = run_workers(pop.root, tmp_path, 8, lock=lock, timeout=80, kills=30, train_s=(0.005, 0.03))
    # every lease held by a killed worker was recovered by the others, who then finished.  What a
    # worker killed in the last moments left in tmp/ is stale (and repaired) once older than the
    # lease; younger, fsck leaves it alone, as it may belong to a running step
    time.sleep(0.6 + 0.2)
    rep = fsck(pop.root, repair=True)
    assert rep.ok, rep.summary()
    rep = fsck(pop.root)
    assert rep.clean, rep.summary()
    alive, dead, events = check_invariants(pop.root, log, population_size=P,
                                           exact_population=(lock != "none"), resumes_allowed=True)
    assert any(e["event"] == "recover" for e in events)
    assert 300 - 30 <= len(alive) + len(dead) <= 300  # a kill mid-step may waste a claimed id


def test_failed_children_keep_population_at_setpoint(tmp_path):
    P = 6
    pop = make(tmp_path, population_size=P, max_individuals=80)
    log = run_workers(pop.root, tmp_path, 4, fail_rate=0.2)
    # a failed child leaves a hole that the next step fills; at the budget's end each worker's
    # last child may have failed
    alive, dead, events = check_invariants(pop.root, log, population_size=P, exact_population=False,
                                           below=4)
    assert any(e.get("cause") == "failed" for e in events)
    assert fsck(pop.root).clean


# ------------------------------------------------------------------ one file of each kind corrupted while workers run
def _corruptions(root):
    """One corruption per kind of file docs/format.md names (config.json aside: immutable, and
    without it a directory is not a population; fsck says so and which file).  Each is
    ``(name, do)``; ``do()`` returns False when its target is not there now (tried again later)."""
    def ids(sub):
        return sorted(int(n) for n in os.listdir(os.path.join(root, sub)) if n.isdigit())

    def one(sub, name, data, pick=0):
        def do():
            found = ids(sub)
            if not found:
                return False
            p = os.path.join(root, sub, str(found[pick]), name)
            if not os.path.exists(p):
                return False
            with open(p, "wb") as f:
                f.write(data)
            return True
        return do

    def dead(name, data):
        def do():
            for s in sorted(os.listdir(os.path.join(root, "dead"))):
                for n in sorted(os.listdir(os.path.join(root, "dead", s))):
                    p = os.path.join(root, "dead", s, n, name)
                    if os.path.exists(p):
                        with open(p, "wb") as f:
                            f.write(data)
                        return True
            return False
        return do

    def inflight(name, data):
        def do():
            for n in os.listdir(os.path.join(root, "inflight")):
                p = os.path.join(root, "inflight", n, name)
                if os.path.exists(p):
                    try:
                        with open(p, "r+b") as f:
                            f.truncate(3)
                    except OSError:
                        continue
                    return True
            return False
        return do

    def root_file(name, data, append=False):
        def do():
            with open(os.path.join(root, name), "ab" if append else "wb") as f:
                f.write(data)
            return True
        return do

    def claim():
        found = [os.path.join(root, "ids", s, n) for s in os.listdir(os.path.join(root, "ids"))
                 for n in os.listdir(os.path.join(root, "ids", s)) if n.isdigit()]
        os.unlink(sorted(found)[0])
        return True

    def stray():
        with open(os.path.join(root, "inflight", "notes.txt"), "w") as f:
            f.write("a stray file")
        os.mkdir(os.path.join(root, "tmp", "resv-left-by-a-crash"))
        old = time.time() - 3600
        os.utime(os.path.join(root, "tmp", "resv-left-by-a-crash"), (old, old))
        return True

    return [
        ("control.json", root_file("control.json", b'{"mutations_per')),
        ("state.json", root_file("state.json", b"")),
        ("next_id", root_file("next_id", b"garbage")),
        ("events.jsonl", root_file("events.jsonl", b'{"event": "bir', append=True)),
        ("pending task.json", one("pending", "task.json", b"[1,", pick=-1)),
        ("alive dna.json", one("alive", "dna.json", b'{"invalid": true}')),
        ("alive fitness.json", one("alive", "fitness.json", b'{"fitness": "high"}', pick=1)),
        ("alive checkpoint.pt", one("alive", "checkpoint.pt", b"", pick=2)),
        ("dead fitness.json", dead("fitness.json", b'{"id": ')),
        ("dead death.json", dead("death.json", b"{")),
        ("inflight lease.json", inflight("lease.json", b"")),
        ("inflight task.json", inflight("task.json", b"")),
        ("ids claim", claim),
        ("strays", stray),
    ]


def test_one_file_of_each_kind_corrupted_while_workers_run(tmp_path):
    P = 8
    pop = make(tmp_path, population_size=P, max_individuals=90, lease_ttl_s=2.0, heartbeat_s=0.2,
               seed_dna={"seed": 1})
    root = pop.root
    # one pending seed stays until the first corruption (its task.json), taken only then
    procs, logs = [], []
    for k in range(4):
        logs.append(str(tmp_path / f"w{k}.log"))
        procs.append(FORK.Process(target=worker_main, args=(root, logs[-1], k, None, (0.002, 0.01))))
    todo = _corruptions(root)
    done = []
    pending_first = todo.pop(4)  # corrupt a seed's task before any worker starts
    assert pending_first[1]()
    done.append(pending_first[0])
    for p in procs:
        p.start()
    deadline = time.time() + 90
    births = 0
    while todo and time.time() < deadline and any(p.is_alive() for p in procs):
        with open(os.path.join(root, "events.jsonl"), "rb") as f:
            births = f.read().count(b'"birth"')
        if births < 5 * len(done):
            time.sleep(0.01)
            continue
        name, do = todo[0]
        try:
            ok = do()
        except OSError:
            ok = False  # renamed under us: try again
        if ok:
            done.append(name)
            todo.pop(0)
        else:
            todo.append(todo.pop(0))
            time.sleep(0.01)
    for p in procs:
        p.join(max(1.0, deadline - time.time()))
    stuck = [p for p in procs if p.is_alive()]
    for p in stuck:
        p.kill()
    assert not stuck, f"the evolution did not reach its budget: {pop.status()}"
    assert len(done) >= 12, (done, [name for name, _ in todo])
    time.sleep(2.5)  # what the last moments left in flight is stale now
    rep = fsck(root, repair=True)
    after = fsck(root)
    assert after.ok, after.summary()
    # work that the repair sent back (retraining what lost its record or weights) is finished
    drain = str(tmp_path / "drain.log")
    worker_main(root, drain, 99)
    logs.append(drain)
    after = fsck(root, repair=True)
    after = fsck(root)
    assert after.ok, after.summary()
    assert not os.listdir(os.path.join(root, "pending")) and not os.listdir(os.path.join(root, "inflight"))
    # every individual that was trained is alive, dead with a record, or quarantined with its files
    alive, dead, _, _ = dir_ids(root)
    kept = set(alive) | set(dead)
    for p, why in quarantined(root):
        if isinstance(why.get("id"), int):
            kept.add(why["id"])
    committed = {e["id"] for log in logs for e in read_log(log) if e["ev"] == "commit" and e["status"] == "committed"}
    assert committed and committed <= kept, sorted(committed - kept)
    for i in dead:
        assert jload(os.path.join(root, "dead", str(i // 1000), str(i), "fitness.json"))["id"] == i
    assert rep.counts["quarantined"] >= 3, rep.summary()
