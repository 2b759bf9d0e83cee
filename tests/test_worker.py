"""The worker with real processes and real (tiny) training: budgets, kills, signals, bad files."""

from __future__ import annotations

import collections
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from evo.genome.real2017.dna import seed_dna
from evo.population import Population, WorkerInfo, fsck, read_events
from evo.worker.loop import EXIT_DONE, EXIT_INTERRUPTED, Worker, run_worker

#: this module's population (the rest: conftest's make_pop)
POP_DEFAULTS = dict(population_size=5, steps_per_child=20, max_individuals=30, lease_ttl_s=4.0, heartbeat_s=0.5,
                    checkpoint_every_s=0.3)


def spawn(root: Path, *extra: str, quiet: bool = True) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    args = [sys.executable, "-m", "evo", "worker", str(root), *(["-q"] if quiet else []), *extra]
    return subprocess.Popen(args,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)


def check_invariants(root: Path, pop: Population) -> dict:
    """What must hold whatever happened to the workers."""
    events = list(read_events(str(root)))
    births = collections.Counter(e["id"] for e in events if e["event"] == "birth")
    deaths = collections.Counter(e["id"] for e in events if e["event"] == "death")
    assert all(n == 1 for n in births.values()), f"born twice: {[i for i, n in births.items() if n > 1]}"
    assert all(n == 1 for n in deaths.values()), f"killed twice: {[i for i, n in deaths.items() if n > 1]}"
    inds = {ind.id: ind for ind in pop.individuals()}
    # the event log agrees with the directories
    assert set(births) == set(inds), (set(births) ^ set(inds))
    assert {i for i, ind in inds.items() if ind.status == "dead"} == set(deaths)
    for ind in inds.values():
        assert ind.record is not None
        assert (Path(ind.path) / "dna.json").exists()
    assert not list((root / "alive").glob("*/.*tmp*"))
    report = fsck(str(root))
    assert report.ok, str(report)
    return {"births": len(births), "deaths": len(deaths), "alive": sum(i.status == "alive" for i in inds.values())}


def test_eight_workers_reach_the_budget(tmp_path, make_pop):
    root = tmp_path / "pop"
    pop = make_pop(root, max_individuals=40, population_size=6)
    procs = [spawn(root) for _ in range(8)]
    codes = [p.wait(timeout=240) for p in procs]
    outs = [p.stdout.read().decode() for p in procs]
    assert codes == [EXIT_DONE] * 8, outs
    counts = check_invariants(root, pop)
    assert counts["births"] == 40
    assert counts["alive"] == 6
    st = pop.status()
    assert st["inflight"] == 0 and st["pending"] == 0
    # children really descend from parents and inherit their weights
    recs = [ind.record for ind in pop.individuals()]
    children = [r for r in recs if r.get("parent_id") is not None]
    assert children and any(r["inherited"]["copied"] > 0 for r in children)
    assert all(r["steps_trained"] == 20 for r in recs)


#: the storm of each search space: real2017 as always; amoebanet (its cells are slower to train
#: on a CPU) with a smaller budget, fewer kills, aging evolution and children from scratch
STORMS = {
    "real2017": dict(budget=30, steps=60, kills=6, config={}),
    "amoebanet": dict(budget=12, steps=20, kills=4, config=dict(
        search_space="amoebanet", space_options={"N": 1, "F": 4}, strategy="aging", sample_size=2,
        inheritance="none", train={"check_every": 5, "poll_every": 2, "batch_size": 16})),
}


@pytest.mark.parametrize("lock, space", [("flock", "real2017"), ("none", "real2017"), ("flock", "amoebanet")])
def test_sigkill_at_random_moments_loses_nothing(tmp_path, lock, space, make_pop):
    """Kill workers with SIGKILL again and again; the population must recover fully."""
    root = tmp_path / "pop"
    storm = STORMS[space]
    budget, steps, n_kills = storm["budget"], storm["steps"], storm["kills"]
    pop = make_pop(root, lock=lock, max_individuals=budget, steps_per_child=steps, **storm["config"])
    rng = random.Random(1234 if lock == "flock" else 99)
    procs = [spawn(root) for _ in range(3)]
    kills = 0
    t_end = time.time() + 60
    # the kills are paced by the births (spread over the first 70% of the budget), so that a
    # fast machine can't finish the budget first
    marks = sorted(rng.randrange(int(0.7 * budget)) for _ in range(n_kills))
    while time.time() < t_end and kills < n_kills:
        time.sleep(rng.uniform(0.05, 0.5))
        if sum(e["event"] == "birth" for e in read_events(str(root))) < marks[kills]:
            continue
        # kill a worker that holds a lease: mid-training, mid-checkpoint or mid-commit
        holders = {x["pid"] for x in pop.leases()}
        candidates = [p for p in procs if p.pid in holders and p.poll() is None]
        if not candidates:
            continue
        victim = rng.choice(candidates)
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        kills += 1
        procs.remove(victim)
        procs.append(spawn(root))
    # let the survivors (and a fresh worker) finish the budget, recovering expired leases
    procs.append(spawn(root))
    for p in procs:
        assert p.wait(timeout=300) == EXIT_DONE, p.stdout.read().decode()
    assert kills >= n_kills
    counts = check_invariants(root, pop)
    assert counts["births"] >= budget
    assert counts["alive"] == 5
    recovered = [e for e in read_events(str(root)) if e["event"] == "recover"]
    assert recovered, "no killed child was ever recovered"
    # a recovered child resumed from a checkpoint: its step segments start where a checkpoint left off
    resumed = [ind.record for ind in pop.individuals() if len(ind.record.get("segments", [])) > 1]
    for rec in resumed:
        assert rec["steps_trained"] == steps
        assert rec["segments"][-1][1] == steps
    assert pop.config.search_space == space
    if space == "amoebanet":  # every cell network trained, with the setting's learning rate
        assert {(ind.record["outcome"], ind.record["learning_rate"]) for ind in pop.individuals()} == {("ok", 0.1)}


def test_sigterm_hands_the_child_back_and_resume_finishes_it_exactly(tmp_path, make_pop):
    root = tmp_path / "pop"
    pop = make_pop(root, population_size=2, steps_per_child=1000, max_individuals=2,
                   checkpoint_every_s=100.0)
    p = spawn(root, "--max-children", "1", quiet=False)
    # wait until the first child is in flight and has trained a while
    deadline = time.time() + 60
    while time.time() < deadline and not pop.leases():
        time.sleep(0.1)
    assert pop.leases(), "no child started"
    time.sleep(0.2)
    p.send_signal(signal.SIGTERM)
    t0 = time.time()
    code = p.wait(timeout=30)
    out = p.stdout.read().decode()
    assert code == EXIT_INTERRUPTED, out
    assert time.time() - t0 < 30  # seconds, even on a loaded machine
    assert "handed back" in out
    st = pop.status()
    assert st["inflight"] == 0 and st["pending"] == 2
    # another worker resumes it and the seeds are finished with exactly the configured steps
    assert run_worker(str(root), handle_signals=False, progress=lambda m: None) == EXIT_DONE
    recs = [ind.record for ind in pop.individuals()]
    assert len(recs) == 2
    resumed = [r for r in recs if len(r["segments"]) == 2]
    assert len(resumed) == 1, recs
    (a, b), (c, d) = resumed[0]["segments"]
    assert a == 0 and b == c and d == 1000 and 0 < b < 1000
    assert all(r["steps_trained"] == 1000 for r in recs)


def test_time_limit_exits_3_after_handing_back(tmp_path, make_pop):
    root = tmp_path / "pop"
    make_pop(root, population_size=2, steps_per_child=100000, max_individuals=2)
    t0 = time.time()
    code = run_worker(str(root), time_limit_s=2.0, handle_signals=False, progress=lambda m: None)
    assert code == EXIT_INTERRUPTED
    assert time.time() - t0 < 20
    pop = Population.open(str(root))
    assert pop.status()["pending"] == 2
    resume = list((root / "pending").glob("*/resume.pt"))
    assert resume, "the interrupted child left no checkpoint"


def test_nan_loss_is_recorded_not_fatal(tmp_path, make_pop):
    root = tmp_path / "pop"
    bad = seed_dna((3, 8, 8), 10, learning_rate=1e30).to_dict()
    pop = make_pop(root, population_size=2, max_individuals=2, seed_dna=bad)
    assert run_worker(str(root), handle_signals=False, progress=lambda m: None) == EXIT_DONE
    recs = [ind for ind in pop.individuals()]
    assert len(recs) == 2
    assert all(ind.record["outcome"] == "nan_loss" and ind.status == "dead" for ind in recs)


def test_torn_resume_checkpoint_trains_from_the_start(tmp_path, make_pop):
    root = tmp_path / "pop"
    make_pop(root, population_size=2, steps_per_child=100000, max_individuals=2)
    assert run_worker(str(root), time_limit_s=1.5, handle_signals=False, progress=lambda m: None) == 3
    (ckpt,) = list((root / "pending").glob("*/resume.pt"))[:1]
    ckpt.write_bytes(ckpt.read_bytes()[:100])  # torn
    pop = Population.open(str(root))
    messages: list[str] = []
    w = Worker(str(root), progress=messages.append)
    task = pop.next_task(w.me, w.rng)
    assert task and task.resume_checkpoint
    dna, mutations, model, state, inherited = w.make_child(task)
    assert state is None
    assert any("cannot resume" in m for m in messages)
    pop.release(task)


def test_corrupt_parent_checkpoint_gives_fresh_weights(tmp_path, make_pop):
    root = tmp_path / "pop"
    make_pop(root, population_size=2, max_individuals=4)
    assert run_worker(str(root), max_children=2, handle_signals=False, progress=lambda m: None) == EXIT_DONE
    for ck in (root / "alive").glob("*/checkpoint.pt"):
        ck.write_bytes(b"garbage")
    messages: list[str] = []
    w = Worker(str(root), progress=messages.append)
    from evo.genome.real2017.mutations import MutationConfig

    w.mutation_config = MutationConfig(allowed=["IDENTITY"])  # a child that would inherit everything
    task = Population.open(str(root)).next_task(w.me, w.rng)
    assert task and task.kind == "child"
    dna, mutations, model, state, inherited = w.make_child(task)
    assert inherited["copied"] == 0
    assert any("parent weights unreadable" in m for m in messages)


def test_checkpoint_is_loadable_safely(tmp_path, make_pop):
    root = tmp_path / "pop"
    pop = make_pop(root, population_size=2, max_individuals=2)
    run_worker(str(root), handle_signals=False, progress=lambda m: None)
    for ind in pop.individuals():
        state = torch.load(ind.checkpoint, weights_only=True)
        assert "head.weight" in state
        assert json.loads((Path(ind.path) / "dna.json").read_text())["format_version"] == 1


def test_out_of_memory_is_an_unfit_individual_not_a_dead_worker(tmp_path, monkeypatch, make_pop):
    import evo.worker.loop as worker_mod

    def oom(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 80.00 GiB")

    monkeypatch.setattr(worker_mod, "train", oom)
    root = tmp_path / "pop"
    pop = make_pop(root, population_size=2, max_individuals=3)
    assert run_worker(str(root), handle_signals=False, progress=lambda m: None) == EXIT_DONE
    recs = [ind for ind in pop.individuals()]
    assert len(recs) == 3
    assert all(ind.record["outcome"] == "out_of_memory" and ind.status == "dead" for ind in recs)
    assert "80.00 GiB" in recs[0].record["reason"]


def test_worker_hands_back_a_task_taken_with_its_last_commit(tmp_path):
    """The next task comes with the commit's critical section; a worker interrupted right then
    hands it back untrained (pending/, a release event), it does not keep it in flight."""
    pop = Population.create(str(tmp_path / "pop"), population_size=2, lock="flock")
    w = Worker(pop.root, worker_id="w")
    me, rng = WorkerInfo.from_env(id="w"), random.Random(6)
    task = pop.next_task(me, rng)

    def write(path):
        with open(path, "wb") as f:
            f.write(b"w")

    res = pop.commit(task, {"n": 1}, {"fitness": 0.5}, checkpoint=write, next_for=me, rng=rng)
    w._next = res.next
    w.stop.request("SIGTERM")
    assert w.run() == EXIT_INTERRUPTED
    assert os.path.isdir(os.path.join(pop.root, "pending", str(res.next.child_id)))
    assert not os.listdir(os.path.join(pop.root, "inflight"))
    rel = [e for e in read_events(pop.root) if e["event"] == "release"]
    assert rel and rel[-1]["id"] == res.next.child_id


@pytest.mark.parametrize("sig", [signal.SIGUSR2, signal.SIGTERM])
def test_a_signal_after_the_last_child_does_not_turn_a_clean_exit_into_a_kill(tmp_path, sig, make_pop):
    """The batch script forwards Slurm's warning whenever it comes, also while a finished worker
    shuts down (torch's teardown takes a while): the worker must still exit 0, not die of it."""
    root = tmp_path / "pop"
    make_pop(root, population_size=2, steps_per_child=5, max_individuals=2)
    assert run_worker(str(root), handle_signals=False, progress=lambda m: None) == EXIT_DONE
    p = spawn(root, quiet=False)
    line = b""
    while b"nothing more to do" not in line:
        line = p.stdout.readline()
        assert line, f"the worker ended without saying it was done (exit code {p.wait()})"
    sent = 0
    while p.poll() is None:               # keep signalling until the process is gone
        try:
            p.send_signal(sig)
            sent += 1
        except ProcessLookupError:
            break
        time.sleep(0.002)
    code = p.wait(timeout=30)
    assert sent > 0
    assert code == EXIT_DONE, f"exit code {code} after {sent} signals: {p.stdout.read().decode()}"


def _catches(pid: int, sig: signal.Signals) -> bool:
    """Whether process ``pid`` has a handler installed for ``sig`` (Linux: SigCgt in /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) >> (sig - 1) & 1)
    return False


def _torch_loaded(pid: int) -> bool:
    return "libtorch" in Path(f"/proc/{pid}/maps").read_text()


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux's /proc")
def test_a_warning_during_start_up_is_kept_and_nothing_is_taken(tmp_path, make_pop):
    """SIGUSR2 while the worker still loads torch (seconds): kept; it exits 3 at once, claiming nothing."""
    root = tmp_path / "pop"
    pop = make_pop(root, population_size=2, steps_per_child=5, max_individuals=2)
    for attempt in range(3):                     # a loaded machine may finish loading before we look
        p = spawn(root, quiet=False)
        deadline = time.time() + 30
        while not _catches(p.pid, signal.SIGUSR2):
            assert p.poll() is None and time.time() < deadline, "the worker never installed its handlers"
            time.sleep(0.001)
        early = not _torch_loaded(p.pid)
        p.send_signal(signal.SIGUSR2)
        code = p.wait(timeout=60)
        out = p.stdout.read().decode()
        assert code == EXIT_INTERRUPTED, out
        assert "stopping: SIGUSR2" in out
        st = pop.status()
        assert st["pending"] == 2 and st["inflight"] == 0 and st["trained"] == 0, st
        if early:
            break
    assert early, "the worker's signal handlers went in only after torch was loaded, 3 times out of 3"


# ------------------------------------------------------------------ nothing one individual does stops the worker
def _invalid_conv(dna: dict) -> dict:
    """``dna`` with its first edge turned into a convolution of even filter size (fails validation)."""
    bad = json.loads(json.dumps(dna))
    bad["edges"][0].update(type="CONV", channels=4, kernel=[2, 2], stride=1)
    return bad


def _accounted(root: Path) -> set[int]:
    """Ids that are alive, dead (with a record) or quarantined: every individual that was ever born."""
    ids = {int(p.name) for p in (root / "alive").iterdir() if p.name.isdigit()}
    ids |= {int(p.name) for p in (root / "dead").glob("*/*") if p.name.isdigit()}
    if (root / "quarantine").is_dir():
        ids |= {int(p.name.split(".")[0]) for p in (root / "quarantine").rglob("*") if p.name.split(".")[0].isdigit()}
    return ids


def test_a_parent_whose_dna_fails_validation_does_not_stop_the_evolution(tmp_path, make_pop):
    root = tmp_path / "pop"
    pop = make_pop(root, population_size=3, max_individuals=10, lease_ttl_s=1.0, heartbeat_s=0.3,
                   max_attempts=2)
    assert run_worker(str(root), max_children=3, handle_signals=False, progress=lambda m: None) == EXIT_DONE
    alive = sorted((root / "alive").iterdir())
    assert len(alive) == 3
    for a in alive:  # every parent the selection can draw is unusable
        bad = a / "dna.json"
        bad.write_text(json.dumps(_invalid_conv(json.loads(bad.read_text()))))
    messages: list[str] = []
    assert run_worker(str(root), handle_signals=False, progress=messages.append) == EXIT_DONE
    assert any("cannot be used" in m and "filter sizes must be odd" in m for m in messages), messages
    st = pop.status()
    assert st["inflight"] == 0 and st["pending"] == 0
    assert len(_accounted(root)) >= 10
    if hasattr(Population, "quarantine_task"):  # a bad parent is kept aside, never drawn again
        bad = {int(a.name) for a in alive}
        held = {int(p.name) for p in (root / "quarantine").glob("*/*") if p.is_dir() and p.name.isdigit()}
        assert bad & held and not bad & held & {int(p.name) for p in (root / "alive").iterdir()}


@pytest.mark.parametrize("damage", ["invalid DNA", "malformed mutations"])
def test_a_pending_task_that_cannot_be_used_is_set_aside_and_the_rest_is_trained(tmp_path, damage, make_pop):
    root = tmp_path / "pop"
    pop = make_pop(root, population_size=3, max_individuals=3, lease_ttl_s=1.0, heartbeat_s=0.3, max_attempts=2)
    first = sorted((root / "pending").iterdir())[0]
    tj = json.loads((first / "task.json").read_text())
    if damage == "invalid DNA":
        tj["dna"] = _invalid_conv(seed_dna((3, 8, 8), 10).to_dict())
    else:
        tj["dna"], tj["mutations_applied"] = seed_dna((3, 8, 8), 10).to_dict(), "garbage"
    (first / "task.json").write_text(json.dumps(tj))
    messages: list[str] = []
    assert run_worker(str(root), handle_signals=False, progress=messages.append) == EXIT_DONE
    assert any(f"child {first.name} (seed) cannot be used" in m for m in messages), messages
    fits = {ind.id: ind.record for ind in pop.individuals()}
    good = [i for i, f in fits.items() if f.get("outcome") == "ok"]
    assert len(good) == 2 and int(first.name) not in good
    st = pop.status()
    assert st["inflight"] == 0 and st["pending"] == 0
    assert int(first.name) in _accounted(root)


def test_unknown_keys_in_a_parents_dna_are_ignored(tmp_path, make_pop):
    root = tmp_path / "pop"
    pop = make_pop(root, population_size=2, max_individuals=4)
    assert run_worker(str(root), max_children=2, handle_signals=False, progress=lambda m: None) == EXIT_DONE
    for p in (root / "alive").glob("*/dna.json"):
        d = json.loads(p.read_text())
        d["comment"] = "written by a newer evo"
        d["edges"][0]["colour"] = "red"
        p.write_text(json.dumps(d))
    assert run_worker(str(root), handle_signals=False, progress=lambda m: None) == EXIT_DONE
    children = [ind.record for ind in pop.individuals() if ind.record.get("parent_id") is not None]
    assert len(children) == 2 and all(r["outcome"] == "ok" for r in children)


def _fail_with(kind: str):
    import errno as _errno

    def fail(*args, **kwargs):
        if kind == "oserror":
            raise OSError(_errno.ENOSPC, "No space left on device")
        raise RuntimeError("[enforce fail at inline_container.cc:603] . unexpected pos 64 vs 0; "
                           "basic_ios::clear: iostream error")
    return fail


@pytest.mark.parametrize("kind", ["oserror", "runtimeerror"])
@pytest.mark.parametrize("when", ["checkpoint", "commit"])
def test_a_full_disk_hands_the_child_back_and_exits_with_one_line(tmp_path, monkeypatch, kind, when, make_pop):
    """torch.save failing for lack of space (ENOSPC, or torch's RuntimeError for it): the worker hands
    the child back and exits 2 with one line; once space is freed any worker finishes the child."""
    from click.testing import CliRunner

    from evo.cli import main
    import evo.worker.loop as worker_mod

    root = tmp_path / "pop"
    train = {"check_every": 5, "poll_every": 2, "checkpoint_every_steps": 10} if when == "checkpoint" \
        else {"check_every": 5, "poll_every": 2}
    pop = make_pop(root, population_size=2, max_individuals=2, steps_per_child=40, checkpoint_every_s=1e6,
                   train=train)
    if when == "checkpoint":
        monkeypatch.setattr(worker_mod, "save_state", _fail_with(kind))
    else:
        monkeypatch.setattr(worker_mod.torch, "save", _fail_with(kind))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    res = CliRunner().invoke(main, ["worker", str(root), "-q"])
    assert res.exit_code == 2, res.output
    err = res.stderr.strip()
    assert len(err.splitlines()) == 1 and "cannot write" in err and "handed back" in err, err
    assert "Traceback" not in res.output
    if kind == "oserror":
        assert "file system is full" in err
    st = pop.status()
    assert st["inflight"] == 0 and st["pending"] == 2 and st["trained"] == 0, st
    assert not list((root / "pending").glob("*/checkpoint.pt")), "a half-written checkpoint was left"
    monkeypatch.undo()                     # space is freed
    assert run_worker(str(root), handle_signals=False, progress=lambda m: None) == EXIT_DONE
    recs = [ind.record for ind in pop.individuals()]
    assert len(recs) == 2 and all(r["outcome"] == "ok" and r["steps_trained"] == 40 for r in recs)
    assert fsck(str(root)).ok


def test_a_bad_device_or_a_missing_population_is_one_line_and_exit_2(tmp_path, make_pop):
    from click.testing import CliRunner

    from evo.cli import main

    root = tmp_path / "pop"
    make_pop(root, population_size=2, max_individuals=2)
    res = CliRunner().invoke(main, ["worker", str(root), "--device", "tpu:7"])
    assert res.exit_code == 2 and "tpu:7" in res.stderr and "Traceback" not in res.output
    assert len(res.stderr.strip().splitlines()) == 1
    from evo.worker.loop import NeedsFix

    with pytest.raises(NeedsFix, match="tpu:7"):
        Worker(str(root), device="tpu:7")
    if not torch.cuda.is_available():
        res = CliRunner().invoke(main, ["worker", str(root), "--device", "cuda"])
        assert res.exit_code == 2 and "no CUDA device" in res.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    res = CliRunner().invoke(main, ["worker", str(empty)])
    assert res.exit_code == 2 and "not an evo population" in res.stderr, res.output
    assert Population.open(str(root)).status()["pending"] == 2


def test_the_child_inherits_through_the_seam_with_the_populations_mode(tmp_path, monkeypatch, make_pop):
    root = tmp_path / "pop"
    make_pop(root, population_size=2, max_individuals=4)
    assert run_worker(str(root), max_children=2, handle_signals=False, progress=lambda m: None) == EXIT_DONE
    w = Worker(str(root), progress=lambda m: None)
    seen = {}

    def inherit(net, state, **context):
        seen.update(context, state=state)
        return {"mode": "test", "copied": ["a", "b"], "fresh": 0, "exact": True}

    monkeypatch.setattr(w.space, "inherit", inherit)
    w.mutation_config = w.space.mutation_config({"allowed": ["IDENTITY"]})
    task = Population.open(str(root)).next_task(w.me, w.rng)
    assert task and task.kind == "child"
    dna, mutations, model, state, inherited = w.make_child(task)
    assert inherited == {"mode": "test", "copied": 2, "fresh": 0, "exact": True}
    assert seen["inheritance"] == "paper" and seen["child"] == dna and seen["mutations"] == mutations
    assert seen["parent"] == w.space.from_dict(task.parent_dna) and "head.weight" in seen["state"]

    def broken(net, state, **context):
        raise KeyError("no such layer")

    monkeypatch.setattr(w.space, "inherit", broken)
    dna, mutations, model, state, inherited = w.make_child(task)
    assert inherited["copied"] == 0 and "no such layer" in inherited["error"]


def test_a_commit_that_cannot_take_the_lock_keeps_the_trained_child_for_recovery(tmp_path, make_pop):
    """The lock held too long by another process when a trained child is committed: the worker must
    not hand the complete child back (it would be retrained as a parentless one); it goes on, and
    recovery commits the child with its parent and mutations once the lease lapses."""
    from evo.population import LockTimeout

    root = tmp_path / "pop"
    pop = make_pop(root, population_size=2, max_individuals=4, lease_ttl_s=1.0, heartbeat_s=0.3)
    assert run_worker(str(root), max_children=2, handle_signals=False, progress=lambda m: None) == EXIT_DONE
    messages: list[str] = []
    w = Worker(str(root), progress=messages.append)
    real_commit, real_locked = w.pop.commit, w.pop.locked
    state = {"in_commit": False, "failed": None}

    def locked(*args, **kwargs):
        if state["in_commit"] and state["failed"] is None:
            state["failed"] = True
            raise LockTimeout("could not take the population lock within lock_timeout_s (held by another process)")
        return real_locked(*args, **kwargs)

    def commit(task, *args, **kwargs):
        state["in_commit"] = state["failed"] is None
        try:
            return real_commit(task, *args, **kwargs)
        finally:
            state["in_commit"] = False

    w.pop.locked, w.pop.commit = locked, commit
    assert w.run() == EXIT_DONE
    assert state["failed"] and any("trained and recorded but not committed" in m for m in messages), messages
    recs = {ind.id: ind.record for ind in Population.open(str(root)).individuals()}
    assert len(recs) == 4
    children = [r for r in recs.values() if r["kind"] == "child"]
    assert len(children) == 2 and all(r["parent_id"] is not None and r["mutations"] for r in children)
    assert not list(root.rglob("fitness.g*.json")), "a trained child was retrained"
    st = pop.status()
    assert st["inflight"] == 0 and st["pending"] == 0
