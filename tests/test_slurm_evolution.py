"""Real evolutions on the local Slurm cluster: slurm/worker.sbatch arrays, `evo submit` (submitit),
time limits with requeue, and scancel.  Every test trains real (tiny) networks to a budget and then
checks the population: births == budget, fsck clean, and every child trained for exactly its
configured number of steps, however often it was interrupted (the fitness record's ``segments``:
[start, end) of the steps each attempt trained).
"""

from __future__ import annotations

import collections
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from evo import launch
from evo.population import Population, fsck, read_events

pytestmark = pytest.mark.slurm

REPO = Path(__file__).resolve().parent.parent
WORKER_SBATCH = REPO / "slurm" / "worker.sbatch"
# one thread per worker: several workers share the node's few cores
THREADS = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


#: this module's population (the rest: conftest's make_pop)
POP_DEFAULTS = dict(population_size=4, steps_per_child=60, max_individuals=12, lease_ttl_s=10.0, heartbeat_s=1.0,
                    checkpoint_every_s=1.0)


@pytest.fixture(scope="module")
def evo_bin(tmp_path_factory) -> Path:
    """`evo` run by this interpreter, for worker.sbatch (EVO_BIN)."""
    path = tmp_path_factory.mktemp("bin") / "evo"
    path.write_text(f"#!/bin/sh\nexec {sys.executable} -m evo \"$@\"\n")
    path.chmod(0o755)
    return path


@pytest.fixture(scope="module")
def steps_per_second(tiny_data) -> float:
    """Training speed of a seed network on one thread here, to size children in seconds."""
    import torch

    from evo.network.data import load_dataset
    from evo.genome.real2017.dna import seed_dna
    from evo.network.real2017 import build_model
    from evo.network.train import TrainConfig, train

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        ds = load_dataset("synthetic", **tiny_data)
        cfg = dict(device="cpu", check_every=5, poll_every=2, checkpoint_every_s=None)
        train(build_model(seed_dna(ds.input_shape, ds.num_classes)), ds, 0.1, TrainConfig(steps=50, **cfg))
        rates = []
        for _ in range(2):          # the faster of two: a busy moment must not make children too short
            t = time.perf_counter()
            train(build_model(seed_dna(ds.input_shape, ds.num_classes)), ds, 0.1, TrainConfig(steps=1500, **cfg))
            rates.append(1500 / (time.perf_counter() - t))
        rate = max(rates)
    finally:
        torch.set_num_threads(threads)
    print(f"seed network: {rate:.0f} steps/s on one thread")
    return rate


def job_env(evo_bin: Path, **extra: str) -> dict[str, str]:
    return {**THREADS, "EVO_BIN": str(evo_bin), **extra}


def evo_cmd(*args: str | os.PathLike) -> list[str]:
    return [sys.executable, "-m", "evo", *map(str, args)]


def logs_of(root: Path, *more: Path) -> str:
    """Every log of the workers, for failure messages."""
    files = sorted((root / "logs").rglob("*.log")) + sorted((root / "logs").rglob("*.out")) + list(more)
    return "\n".join(f"===== {p}\n{p.read_text(errors='replace')[-4000:]}" for p in files if p.is_file())


def check_population(root: Path, pop: Population, budget: int) -> list[dict]:
    """What must hold after any run to the budget; returns the fitness records."""
    events = list(read_events(str(root)))
    births = collections.Counter(e["id"] for e in events if e["event"] == "birth")
    assert all(n == 1 for n in births.values()), births
    assert len(births) == budget, (len(births), budget)
    records = [ind.record for ind in pop.individuals()]
    assert sorted(r["id"] for r in records) == sorted(births)
    st = pop.status()
    assert st["inflight"] == 0 and st["expired_leases"] == 0, st
    assert st["trained"] == budget, st
    report = fsck(str(root))
    assert report.ok, str(report)
    return records


def check_segments(rec: dict, steps: int) -> list[list[int]]:
    """Every step trained exactly once: contiguous [start, end) segments from 0 to ``steps``."""
    segs = rec["segments"]
    assert rec["steps_trained"] == steps, rec
    assert segs and segs[0][0] == 0 and segs[-1][1] == steps, segs
    assert all(a[1] == b[0] for a, b in zip(segs, segs[1:])), f"steps lost or trained twice: {segs}"
    assert all(s[0] < s[1] for s in segs), segs
    return segs


def wait_until(predicate, timeout: float, what: str, poll: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    raise TimeoutError(f"{what} not within {timeout:.0f} s")


# -------------------------------------------------------------------- sbatch --array worker.sbatch
def test_sbatch_array_evolves_to_the_budget(slurm_cluster, tmp_path, evo_bin, make_pop):
    root = tmp_path / "pop"
    pop = make_pop(root, population_size=4, max_individuals=12, steps_per_child=60)
    t0 = time.monotonic()
    job = slurm_cluster.sbatch("--array=0-2", "--time=10", "-o", tmp_path / "slurm-%A_%a.out", WORKER_SBATCH, root,
                               env=job_env(evo_bin))
    states = slurm_cluster.wait_for_jobs(job, timeout=300)
    print(f"sbatch --array=0-2 worker.sbatch: 12 individuals in {time.monotonic() - t0:.1f} s")

    assert states == {f"{job}_{i}": "COMPLETED" for i in range(3)}, logs_of(root)
    records = check_population(root, pop, budget=12)
    assert all(r["steps_trained"] == 60 and r["outcome"] == "ok" for r in records)
    assert sum(r["parent_id"] is not None for r in records) == 8       # evolution, not only seeds
    assert {r["slurm_array_job_id"] for r in records} == {job}
    assert {r["slurm_array_task_id"] for r in records} <= {"0", "1", "2"}
    assert all(r["worker"].startswith(f"slurm-{job}_") for r in records)
    for i in range(3):
        log = (root / "logs" / f"worker-{job}_{i}.log").read_text()
        assert "the experiment is finished or stopped: this task ends" in log, log


def test_sbatch_array_evolves_amoebanet_cells_to_the_budget(slurm_cluster, tmp_path, evo_bin, make_pop):
    """The cell space of Real et al. 2019 on the cluster: aging evolution of random cells, children
    trained from scratch with the training setting's learning rate."""
    root = tmp_path / "pop"
    pop = make_pop(root, population_size=3, max_individuals=6, steps_per_child=20, search_space="amoebanet",
                   space_options={"N": 1, "F": 4}, strategy="aging", sample_size=2, inheritance="none",
                   train={"check_every": 5, "poll_every": 2, "batch_size": 16, "lr": 0.05})
    job = slurm_cluster.sbatch("--array=0-1", "--time=10", "-o", tmp_path / "slurm-%A_%a.out", WORKER_SBATCH, root,
                               env=job_env(evo_bin))
    states = slurm_cluster.wait_for_jobs(job, timeout=300)

    assert states == {f"{job}_{i}": "COMPLETED" for i in range(2)}, logs_of(root)
    records = check_population(root, pop, budget=6)
    assert all(r["outcome"] == "ok" and r["steps_trained"] == 20 and r["learning_rate"] == 0.05 for r in records)
    children = [r for r in records if r["parent_id"] is not None]
    assert len(children) == 3 and all(r["inherited"]["copied"] == 0 for r in children)
    assert {m["name"] for r in children for m in r["mutations"]} <= {"HIDDEN-STATE", "OP", "IDENTITY"}
    assert {r["slurm_array_job_id"] for r in records} == {job}
    dna = json.loads((Path(next(pop.individuals()).path) / "dna.json").read_text())
    assert dna["space"] == "amoebanet" and len(dna["normal"]) == len(dna["reduction"]) == 5


# -------------------------------------------------------------------- evo submit (submitit)
def test_evo_submit_array_is_recorded_visible_and_survives_usr2(slurm_cluster, tmp_path, steps_per_second, make_pop):
    """`evo submit` on the cluster: job ids printed and recorded, the live workers in `evo status`,
    and SIGUSR2 (what Slurm sends before the time limit) to a worker in training: it hands its child
    back and submitit requeues it; nothing is lost."""
    root = tmp_path / "pop"
    steps = max(500, int(steps_per_second * 5))                 # ~5 s per child
    pop = make_pop(root, population_size=2, max_individuals=4, steps_per_child=steps, checkpoint_every_s=0.5)
    env = {**os.environ, **THREADS}
    t0 = time.monotonic()
    proc = subprocess.Popen(evo_cmd("submit", root, "--workers", "2", "--time", "5", "--signal-delay", "30",
                                    "--wait", "--json"),
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        rec = wait_until(lambda: launch.recorded_jobs(root), 60, "the record in jobs.jsonl")[0]
        array = rec["job_id"]
        assert rec["executor"] == "slurm" and rec["job_ids"] == [f"{array}_0", f"{array}_1"]
        assert rec["parameters"]["time"] == 5 and rec["parameters"]["signal_delay_s"] == 30
        assert rec["folder"] == str(root / "logs" / "submitit")

        # evo status shows the live workers with their job ids
        def live_workers():
            out = subprocess.run(evo_cmd("status", root, "--json"), capture_output=True, text=True, env=env)
            assert out.returncode == 0, out.stderr
            return [w for w in json.loads(out.stdout)["workers"] if w.get("slurm_job")]
        workers = wait_until(live_workers, 120, "a live worker in evo status", poll=0.5)
        assert {w["slurm_job"] for w in workers} <= set(rec["job_ids"]), workers
        text = subprocess.run(evo_cmd("status", root), capture_output=True, text=True, env=env).stdout
        assert any(w["slurm_job"] in text for w in workers), text

        # SIGUSR2 to a task whose worker trains a child and has checkpointed it
        def training():
            return [x for x in pop.leases() if x["has_checkpoint"] and x["slurm_array_job_id"] == array]
        lease = wait_until(training, 120, "a checkpointed child in training")[0]
        victim = f"{array}_{lease['slurm_array_task_id']}"
        slurm_cluster.scancel(victim, signal="USR2")

        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    print(f"evo submit -n 2 with one SIGUSR2: {time.monotonic() - t0:.1f} s")

    assert proc.returncode == 0, out + err + logs_of(root)
    result = json.loads(out)
    assert result["job_ids"] == rec["job_ids"]
    assert result["states"] == {j: "COMPLETED" for j in rec["job_ids"]}, logs_of(root)
    # --wait returns once the results are written; Slurm's accounting follows a moment later
    assert slurm_cluster.wait_for_jobs(array, timeout=60) == {j: "COMPLETED" for j in rec["job_ids"]}
    runs = [r["state"] for r in slurm_cluster.sacct(victim, duplicates=True)]
    assert runs[0] == "REQUEUED" and runs[-1] == "COMPLETED", runs
    log = (root / "logs" / "submitit" / f"{victim}_0_log.out").read_text()
    assert "checkpointing and handing the child back" in log and "requeueing this task" in log, log
    assert f"job {victim} run 1:" in log, log                      # the requeued run started

    records = check_population(root, pop, budget=4)
    assert {r["slurm_array_job_id"] for r in records} == {array}
    assert all(r["worker"].startswith(f"submitit-{array}_") for r in records)
    resumed = [r for r in records if len(check_segments(r, steps)) > 1]
    assert resumed, [r["segments"] for r in records]
    released = [e for e in read_events(str(root)) if e["event"] == "release"]
    assert released and all("SIGUSR2" in e["reason"] and e["checkpoint"] for e in released), released


def test_evo_submit_reports_what_sbatch_refuses(slurm_cluster, tmp_path, make_pop):
    root = tmp_path / "pop"
    make_pop(root)
    out = subprocess.run(evo_cmd("submit", root, "-n", "2", "--gpus-per-worker", "1"), capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 2, out.stdout + out.stderr
    assert "sbatch refused the job" in out.stderr and "gres" in out.stderr and "Traceback" not in out.stderr
    assert launch.recorded_jobs(root) == []


# -------------------------------------------------------------------- time limits
@pytest.mark.slow
def test_one_minute_time_limit_loses_no_step(slurm_cluster, tmp_path, evo_bin, steps_per_second, make_pop):
    """--time=1 on children that need more than a minute of training each: every child is
    finished across several runs, each step trained exactly once."""
    root = tmp_path / "pop"
    steps = int(steps_per_second * 65)
    pop = make_pop(root, population_size=2, max_individuals=2, steps_per_child=steps, checkpoint_every_s=5.0,
                   lease_ttl_s=30.0, heartbeat_s=2.0)
    t0 = time.monotonic()
    # the signal comes 10 to 40 s before the limit (slurmctld checks time limits every 30 s); the
    # worker's own limit (EVO_TIME_MARGIN) only backs it up
    job = slurm_cluster.sbatch("--array=0-1", "--time=1", "--signal=B:USR2@10", "-o", tmp_path / "slurm-%A_%a.out",
                               WORKER_SBATCH, root, env=job_env(evo_bin, EVO_TIME_MARGIN="5"))
    states = slurm_cluster.wait_for_jobs(job, timeout=480, poll=1.0)
    elapsed = time.monotonic() - t0

    outs = "\n".join(p.read_text() for p in tmp_path.glob("slurm-*.out"))
    assert states == {f"{job}_0": "COMPLETED", f"{job}_1": "COMPLETED"}, logs_of(root) + outs
    runs = slurm_cluster.sacct(job, duplicates=True)
    requeues = sum(r["state"] == "REQUEUED" for r in runs)
    assert requeues >= 2, runs
    assert "DUE TO TIME LIMIT" not in outs, outs                  # every run ended before the limit
    text = "\n".join((root / "logs" / f"worker-{job}_{i}.log").read_text() for i in range(2))
    assert "got SIGUSR2: forwarding it to the worker" in text
    assert "interrupted before the experiment finished: requeued" in text

    records = check_population(root, pop, budget=2)
    segments = {r["id"]: check_segments(r, steps) for r in records}
    assert any(len(s) > 1 for s in segments.values()), segments
    print(f"--time=1: {len(records)} children of {steps} steps ({steps / steps_per_second:.0f} s each) "
          f"in {elapsed:.0f} s, {len(runs)} runs; segments {segments}")


# -------------------------------------------------------------------- scancel
def test_scancel_hands_the_child_back_and_another_worker_finishes_it(slurm_cluster, tmp_path, evo_bin,
                                                                      steps_per_second, make_pop):
    root = tmp_path / "pop"
    steps = max(1000, int(steps_per_second * 6))                # ~6 s per child
    pop = make_pop(root, population_size=2, max_individuals=2, steps_per_child=steps, checkpoint_every_s=0.5)
    env = {**os.environ, **THREADS}
    t0 = time.monotonic()
    sub = subprocess.run(evo_cmd("submit", root, "-n", "1", "--time", "5", "--signal-delay", "30", "--json"),
                         env=env, capture_output=True, text=True, timeout=120)
    assert sub.returncode == 0, sub.stdout + sub.stderr
    victim = json.loads(sub.stdout)["job_id"]
    assert launch.job_ids(root) == [victim]                      # one job: no array

    def training():
        return [x for x in pop.leases() if x["has_checkpoint"] and x["slurm_job_id"] == victim]
    (lease,) = wait_until(training, 120, "the victim training a checkpointed child")
    slurm_cluster.scancel(victim)
    assert slurm_cluster.wait_for_jobs(victim, timeout=60) == {victim: "CANCELLED"}

    # handed back at once on SIGTERM (the job may be accounted a moment before its last process
    # exits), not left to expire: that would take lease_ttl_s = 10 s and write no release event
    wait_until(lambda: pop.leases() == [], 8, "the hand-back")
    released = [e for e in read_events(str(root)) if e["event"] == "release"]
    assert [(e["id"], e["reason"], e["checkpoint"]) for e in released] == [
        (lease["id"], "interrupted: SIGTERM", True)], released
    log = (root / "logs" / "submitit" / f"{victim}_0_log.out").read_text()
    assert "got SIGTERM: handing the child back" in log, log

    # another worker (this time a worker.sbatch task) resumes it and finishes the experiment
    job = slurm_cluster.sbatch("--array=0", "--time=10", "-o", tmp_path / "slurm-%A_%a.out", WORKER_SBATCH, root,
                               env=job_env(evo_bin))
    assert slurm_cluster.wait_for_jobs(job, timeout=180) == {f"{job}_0": "COMPLETED"}, logs_of(root)
    print(f"scancel and recovery: {time.monotonic() - t0:.1f} s")

    records = {r["id"]: r for r in check_population(root, pop, budget=2)}
    for r in records.values():
        check_segments(r, steps)
        assert r["worker"].startswith(f"slurm-{job}_0-")
    segs = records[lease["id"]]["segments"]
    assert len(segs) == 2 and segs[0][1] < steps, segs              # resumed where the victim stopped


# -------------------------------------------------------------------- a grow run
def test_sbatch_array_grows_generations_to_the_end(slurm_cluster, tmp_path, evo_bin, make_pop):
    """strategy grow: generations of growth children, the barrier shared by the array's workers;
    the worker that finds the run over measures the last survivors' ensemble."""
    root = tmp_path / "pop"
    pop = make_pop(root, population_size=2, max_individuals=None, steps_per_child=40, strategy="grow",
                   grow={"children": 3, "survivors": 2, "generations": 2})
    job = slurm_cluster.sbatch("--array=0-1", "--time=10", "-o", tmp_path / "slurm-%A_%a.out", WORKER_SBATCH, root,
                               env=job_env(evo_bin))
    states = slurm_cluster.wait_for_jobs(job, timeout=300)
    assert states == {f"{job}_{i}": "COMPLETED" for i in range(2)}, logs_of(root)
    records = check_population(root, pop, budget=2 + 3 + 3)
    st = pop.grow_state()
    assert st["phase"] == "finished" and [h["generation"] for h in st["history"]] == [0, 1, 2]
    assert sorted(st["survivors"]) == sorted(i.id for i in pop.individuals() if i.status == "alive")
    assert st["final_ensemble"]["ids"] == st["survivors"]
    children = [r for r in records if r["kind"] == "child"]
    assert len(children) == 6 and all(r["inherited"]["mode"] == "function-preserving" for r in children)
