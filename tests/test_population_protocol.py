"""The selection and commit protocol, one process: what next_task hands out, what commit and
release write, the critical section's order of writes and fsyncs."""

import errno
import os
import random
import time

import pytest

from evo.base.hashing import dna_hash
from evo.population import LeaseLost, LockTimeout, Population, StoreError, Task, WorkerInfo, fsck, leases, read_events
from popkit import fill, jload, make, put, train_one, writer


def test_seed_then_selection_kills_at_selection_time(tmp_path):
    pop = make(tmp_path, population_size=4, keep_checkpoints="alive")
    me, rng = WorkerInfo.from_env(id="me"), random.Random(0)
    fill(pop, me, rng)
    assert len(os.listdir(os.path.join(pop.root, "alive"))) == 4
    task = pop.next_task(me, rng)
    assert task.kind == "child" and task.parent_id is not None and task.victim_id is not None
    assert task.num_mutations == 1 and task.inherit
    assert os.path.exists(task.parent_checkpoint) and task.parent_dna == {"seed": task.parent_id}
    # the victim died at selection time; its DNA and fitness are kept, its checkpoint is not
    dead = pop.dead_path(task.victim_id)
    assert os.path.isdir(dead) and not os.path.exists(pop.alive_path(task.victim_id))
    assert set(os.listdir(dead)) == {"dna.json", "fitness.json", "death.json"}
    assert jload(os.path.join(dead, "death.json"))["killed_by"] == task.child_id
    # the lease file appears with the first heartbeat; until then task.json names the worker
    assert not os.path.exists(os.path.join(task.lease.path, "lease.json"))
    assert jload(os.path.join(task.lease.path, "task.json"))["worker"]["id"] == "me"
    assert [x["worker"] for x in pop.leases()] == ["me"] and not pop.leases()[0]["expired"]
    task.lease.heartbeat()
    lease = jload(os.path.join(task.lease.path, "lease.json"))
    assert lease["worker"]["id"] == "me" and lease["expires_at"] > time.time()
    res = pop.commit(task, {"child": 1}, {"fitness": 0.5, "flops": 7.0, "params": 3, "steps_trained": 9,
                                          "mutations": ["IDENTITY"], "extra_key": 1},
                     checkpoint=writer(b"w"))
    assert res.status == "committed" and res.path == pop.alive_path(task.child_id)
    rec = jload(os.path.join(res.path, "fitness.json"))
    for k in ("id", "parent_id", "fitness", "steps_trained", "flops", "params", "mutations", "outcome",
              "reason", "born_at", "finished_at", "worker", "host", "slurm_job_id",
              "slurm_array_job_id", "slurm_array_task_id", "dna_hash", "generation"):
        assert k in rec, k
    assert rec["parent_id"] == task.parent_id and rec["extra_key"] == 1
    assert rec["dna_hash"] == dna_hash({"child": 1})
    assert sorted(os.listdir(res.path)) == ["checkpoint.pt", "dna.json", "fitness.json"]
    st = pop.read_state()
    assert st["trained"] == 5 and st["flops"] == 7.0 and pop.read_next_id() == task.child_id + 1


def test_failed_training_goes_straight_to_dead(tmp_path):
    pop = make(tmp_path, population_size=3)
    me, rng = WorkerInfo.from_env(), random.Random(1)
    fill(pop, me, rng)
    task, res = train_one(pop, me, rng, outcome="nan_loss")
    assert res.status == "committed" and res.path == pop.dead_path(task.child_id)
    evs = [e for e in read_events(pop.root) if e.get("id") == task.child_id]
    assert [e["event"] for e in evs] == ["start", "birth", "death"] and evs[-1]["cause"] == "failed"
    with pytest.raises(ValueError, match="outcome"):
        t = pop.next_task(me, rng)
        pop.commit(t, {}, {"fitness": float("nan")})


def test_aging_kills_oldest_and_random_has_no_parent(tmp_path):
    pop = make(tmp_path, "aging", population_size=4, strategy="aging", sample_size=2)
    me, rng = WorkerInfo.from_env(), random.Random(2)
    fill(pop, me, rng)
    for _ in range(6):
        alive = sorted(int(n) for n in os.listdir(os.path.join(pop.root, "alive")))
        task, res = train_one(pop, me, rng)
        assert task.victim_id == alive[0]
    pop = make(tmp_path, "random", population_size=3, strategy="random")
    fill(pop, me, rng)
    task, res = train_one(pop, me, rng)
    assert task.kind == "random" and task.parent_id is None and task.parent_dna is None


def test_budgets_individuals_and_flops(tmp_path):
    pop = make(tmp_path, "a", population_size=3, max_individuals=5)
    me, rng = WorkerInfo.from_env(), random.Random(4)
    n = 0
    while True:
        task, res = train_one(pop, me, rng)
        if not task:
            assert task.reason == "budget" and task.done
            break
        n += 1
    assert n == 5 and pop.read_state()["trained"] == 5
    pop = make(tmp_path, "b", population_size=3, max_flops=7.0)  # 2 FLOPs per child
    n = 0
    while train_one(pop, me, rng)[1]:
        n += 1
    assert n == 4 and pop.status()["flops"] == 8.0


def test_release_then_resume_with_checkpoint_and_dna(tmp_path):
    pop = make(tmp_path, population_size=3)
    me, rng = WorkerInfo.from_env(), random.Random(5)
    fill(pop, me, rng)
    task = pop.next_task(me, rng)
    task.lease.save_dna({"mutated": True}, ["INSERT-CONVOLUTION"])
    task.lease.save_checkpoint(writer(b"step 100"))
    assert pop.release(task, "SIGTERM")
    assert task.lease.lost
    with pytest.raises(LeaseLost):
        task.lease.heartbeat()
    assert pop.commit(task, {}, {"fitness": 0.1}).status == "lease_lost"
    t2 = pop.next_task(WorkerInfo.from_env(id="other"), rng)
    assert t2.kind == "resume" and t2.resume_of == "child" and t2.child_id == task.child_id
    assert t2.dna == {"mutated": True} and t2.mutations_applied == ["INSERT-CONVOLUTION"]
    with open(t2.resume_checkpoint, "rb") as f:
        assert f.read() == b"step 100"
    assert t2.parent_id == task.parent_id and t2.attempt == 1
    res = pop.commit(t2, t2.dna, {"fitness": 0.7}, checkpoint=writer(b"w"))
    assert res.status == "committed"
    rec = jload(os.path.join(res.path, "fitness.json"))
    assert rec["kind"] == "child" and rec["mutations"] == ["INSERT-CONVOLUTION"] and rec["attempts"] == 2


def test_keep_checkpoints_top_k(tmp_path):
    pop = make(tmp_path, population_size=2, keep_checkpoints="top:1", strategy="tournament")
    me, rng = WorkerInfo.from_env(), random.Random(11)
    fits = iter([0.9, 0.1] + [0.2] * 6)
    while True:
        task = pop.next_task(me, rng)
        if task.child_id > 8:
            break
        pop.commit(task, {"i": task.child_id}, {"fitness": next(fits)}, checkpoint=writer(b"w"))
    # individual 1 (fitness 0.9) is the best ever; the others' checkpoints go when they die
    st = pop.read_state()
    assert st["top"] == [[0.9, 1]]
    for i in range(2, 8):
        if os.path.isdir(pop.dead_path(i)):
            assert not os.path.exists(os.path.join(pop.dead_path(i), "checkpoint.pt"))


def test_enospc_during_commit_leaves_population_consistent(tmp_path):
    pop = make(tmp_path, population_size=3)
    me, rng = WorkerInfo.from_env(), random.Random(12)
    fill(pop, me, rng)
    task = pop.next_task(me, rng)

    def full(path):
        with open(path, "wb") as f:
            f.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(StoreError, match="no space left"):
        pop.commit(task, {"d": 1}, {"fitness": 0.5}, checkpoint=full)
    assert not [n for n in os.listdir(task.lease.path) if ".tmp-" in n]
    assert not os.path.exists(pop.alive_path(task.child_id))
    rep = fsck(pop.root)
    assert rep.ok, rep.summary()
    assert pop.commit(task, {"d": 1}, {"fitness": 0.5}, checkpoint=writer(b"w")).status == "committed"
    assert fsck(pop.root).clean


def test_commit_takes_the_next_task_in_the_same_critical_section(tmp_path):
    pop = make(tmp_path, population_size=4)
    pop.keep_stats = True
    me, rng = WorkerInfo.from_env(id="me"), random.Random(5)
    task = pop.next_task(me, rng)
    n = 0
    while task and n < 12:
        pop.stats["lock_held"].clear()
        res = pop.commit(task, task.dna or {"n": task.child_id}, {"fitness": rng.random()},
                         checkpoint=writer(b"w"), next_for=me, rng=rng)
        assert res.status == "committed"
        assert len(pop.stats["lock_held"]) == 1  # commit and next selection: one lock
        assert isinstance(res.next, Task) and res.next.child_id != task.child_id
        task = res.next
        n += 1
    assert task.kind == "child"
    events = [e["event"] for e in read_events(pop.root)]
    assert events.count("birth") == 12 and events.count("start") == 13
    pop.stop()
    res = pop.commit(task, {"n": 1}, {"fitness": 0.5}, checkpoint=writer(b"w"), next_for=me, rng=rng)
    assert res.status == "committed" and not res.next and res.next.done
    assert fsck(pop.root).clean


def test_commit_writes_every_file_before_the_first_fsync(tmp_path, monkeypatch):
    """A journaling file system then commits the child's files in one go: no fsync comes
    between two of its writes, and each written file is fsynced before the directory moves."""
    pop = make(tmp_path, population_size=3)
    me, rng = WorkerInfo.from_env(id="me"), random.Random(9)
    fill(pop, me, rng)
    task = pop.next_task(me, rng)
    log = []
    real_write_new, real_fsync_file, real_fsync_dir, real_rename = (
        leases.write_new, leases.fsync_file, leases.fsync_dir, os.rename)
    monkeypatch.setattr(leases, "write_new", lambda p, d: log.append(("write", os.path.basename(p)))
                        or real_write_new(p, d))
    monkeypatch.setattr(leases, "fsync_file", lambda p: log.append(("fsync", os.path.basename(p)))
                        or real_fsync_file(p))
    monkeypatch.setattr(leases, "fsync_dir", lambda p: log.append(("fsync-dir", p)) or real_fsync_dir(p))
    monkeypatch.setattr(os, "rename", lambda a, b: log.append(("rename", a)) or real_rename(a, b))

    def write_ckpt(path):
        log.append(("write", "checkpoint.pt"))
        put(path, b"weights")

    res = pop.commit(task, {"n": task.child_id}, {"fitness": 0.5}, checkpoint=write_ckpt)
    assert res.status == "committed"
    writes = [i for i, e in enumerate(log) if e[0] == "write"]
    fsyncs = [i for i, e in enumerate(log) if e[0] == "fsync"]
    assert {log[i][1] for i in writes} == {"dna.json", "checkpoint.pt", "fitness.json"}
    assert max(writes) < min(fsyncs)
    assert {log[i][1] for i in fsyncs} == {"dna.json", "checkpoint.pt", "fitness.json"}
    dir_sync = log.index(("fsync-dir", task.lease.path))
    assert max(fsyncs) < dir_sync < log.index(("rename", task.lease.path))


def test_save_dna_replaces_dna_and_task_together(tmp_path):
    pop = make(tmp_path, population_size=3)
    me, rng = WorkerInfo.from_env(id="me"), random.Random(10)
    fill(pop, me, rng)
    task = pop.next_task(me, rng)
    task.lease.save_dna({"n": 1}, ["INSERT-CONVOLUTION"])
    task.lease.save_dna({"n": 2}, ["ALTER-LEARNING-RATE"])
    d = task.lease.path
    assert jload(os.path.join(d, "dna.json")) == {"n": 2}
    tj = jload(os.path.join(d, "task.json"))
    assert tj["mutations_applied"] == ["ALTER-LEARNING-RATE"] and tj["task_uid"] == task.task_uid
    assert not [n for n in os.listdir(d) if ".tmp-" in n]


# ------------------------------------------------------------------ a finished child is never lost or retrained
def _finished_child_behind_a_held_lock(tmp_path):
    """A child trained to the end whose commit cannot take the lock (another process holds it past
    lock_timeout_s); returns (pop, task)."""
    pop = make(tmp_path, population_size=3, lock_timeout_s=0.3)
    me, rng = WorkerInfo.from_env(id="me"), random.Random(21)
    fill(pop, me, rng)
    task = pop.next_task(me, rng)
    assert task.kind == "child" and task.parent_id is not None
    task.lease.save_dna({"child": task.child_id}, [{"name": "INSERT-CONVOLUTION"}])
    with Population.open(pop.root).locked():  # held by another process meanwhile
        with pytest.raises(LockTimeout):
            pop.commit(task, {"child": task.child_id}, {"fitness": 0.9, "flops": 3.0},
                       checkpoint=writer(b"trained weights"))
    return pop, task


def _committed_as_trained(pop, task):
    p = pop.alive_path(task.child_id)
    rec = jload(os.path.join(p, "fitness.json"))
    assert rec["parent_id"] == task.parent_id and rec["kind"] == "child", rec
    assert rec["fitness"] == 0.9 and rec["mutations"] == [{"name": "INSERT-CONVOLUTION"}], rec
    assert open(os.path.join(p, "checkpoint.pt"), "rb").read() == b"trained weights"
    assert sorted(os.listdir(p)) == ["checkpoint.pt", "dna.json", "fitness.json"], os.listdir(p)
    births = [e for e in read_events(pop.root) if e["event"] == "birth" and e["id"] == task.child_id]
    assert len(births) == 1 and births[0]["parent"] == task.parent_id


def test_a_commit_that_cannot_take_the_lock_is_committed_by_the_next_worker_without_retraining(tmp_path):
    pop, task = _finished_child_behind_a_held_lock(tmp_path)
    assert pop.release(task, "worker error")  # the worker's error path hands the child back
    nxt = Population.open(pop.root).next_task(WorkerInfo.from_env(id="next"), random.Random(1))
    assert not (isinstance(nxt, Task) and nxt.child_id == task.child_id), "the finished child was handed out again"
    _committed_as_trained(pop, task)
    assert fsck(pop.root).clean


def test_a_commit_that_cannot_take_the_lock_can_be_committed_again(tmp_path):
    pop, task = _finished_child_behind_a_held_lock(tmp_path)
    assert os.path.exists(os.path.join(task.lease.path, "task.json")), "the task record went before the commit was done"
    res = pop.commit(task, {"child": task.child_id}, {"fitness": 0.9, "flops": 3.0},
                     checkpoint=writer(b"trained weights"))
    assert res.status == "committed"
    _committed_as_trained(pop, task)
    assert fsck(pop.root).clean


def test_a_commit_that_cannot_take_the_lock_is_committed_by_recovery(tmp_path):
    pop, task = _finished_child_behind_a_held_lock(tmp_path)
    assert pop.recover_expired(now=time.time() + 3600) == [task.child_id]
    _committed_as_trained(pop, task)


# ------------------------------------------------------------------ one-line store errors, nothing lost
def test_a_full_disk_in_save_dna_is_a_store_error_naming_the_file(tmp_path, monkeypatch):
    pop = make(tmp_path, population_size=2)
    task = pop.next_task(WorkerInfo.from_env(), random.Random(0))

    def full(files):
        raise OSError(errno.ENOSPC, "No space left on device", next(iter(files)))

    monkeypatch.setattr(leases.files, "atomic_write_files", full)
    with pytest.raises(StoreError, match="dna.json") as e:
        task.lease.save_dna({"n": 1}, [])
    assert "no space" in str(e.value).lower() and "Fix:" in str(e.value) and "\n" not in str(e.value)
    monkeypatch.undo()
    assert pop.release(task, "disk full")
    assert pop.next_task(WorkerInfo.from_env(), random.Random(0)).child_id == task.child_id


def test_a_full_disk_in_the_checkpoint_writer_is_a_store_error_and_the_child_is_handed_back(tmp_path, monkeypatch):
    from evo.base import files

    pop = make(tmp_path, population_size=3)
    me, rng = WorkerInfo.from_env(), random.Random(12)
    fill(pop, me, rng)
    task = pop.next_task(me, rng)
    task.lease.save_dna({"d": 1}, [])

    def torch_save_on_a_full_disk(path):  # what torch.save raises when the disk is full
        put(path, b"half")
        raise RuntimeError("[enforce fail at inline_container.cc:603] . unexpected pos 64 vs 0; basic_ios::clear")

    monkeypatch.setattr(files, "free_bytes", lambda path: 0, raising=False)
    with pytest.raises(StoreError, match="checkpoint.pt") as e:
        pop.commit(task, {"d": 1}, {"fitness": 0.5}, checkpoint=torch_save_on_a_full_disk)
    assert "no space" in str(e.value).lower()
    assert not os.path.exists(os.path.join(task.lease.path, "checkpoint.pt"))
    assert pop.release(task, "disk full")
    again = pop.next_task(me, rng)
    assert again.child_id == task.child_id and again.parent_id == task.parent_id and again.dna == {"d": 1}


@pytest.mark.parametrize("missing", ["tmp", "pending"])
def test_a_missing_directory_of_the_format_is_recreated(tmp_path, missing):
    pop = make(tmp_path, population_size=3)
    me, rng = WorkerInfo.from_env(), random.Random(3)
    task = pop.next_task(me, rng)
    os.rename(os.path.join(pop.root, missing), os.path.join(tmp_path, f"{missing}.gone"))
    if missing == "pending":
        assert pop.release(task, "SIGTERM")
        assert os.path.isdir(os.path.join(pop.root, "pending", str(task.child_id)))
    t2 = pop.next_task(me, rng)
    assert t2 and os.path.isdir(os.path.join(pop.root, missing))
