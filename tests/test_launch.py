"""evo submit without a Slurm cluster: option parsing, --dry-run, the WorkerJob callable (its
SIGUSR2 checkpoint and hand-back), and a real run through submitit's local executor."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import cloudpickle
import pytest
from click.testing import CliRunner

from evo import launch
from evo.launch.plan import local_gpu_plan, slurm_parameters, submit_command
from evo.cli import main
from evo.population import fsck, read_events

#: this module's population (the rest: conftest's make_pop)
POP_DEFAULTS = dict(population_size=3, steps_per_child=40, max_individuals=6, lease_ttl_s=6.0, heartbeat_s=1.0,
                    checkpoint_every_s=0.5)


def check_segments(rec: dict, steps: int) -> list[list[int]]:
    """Every step trained exactly once: contiguous segments from 0 to ``steps``."""
    segs = rec["segments"]
    assert rec["steps_trained"] == steps, rec
    assert segs and segs[0][0] == 0 and segs[-1][1] == steps, segs
    assert all(a[1] == b[0] for a, b in zip(segs, segs[1:])), segs
    assert all(s[0] < s[1] for s in segs), segs
    return segs


# ------------------------------------------------------------------------------------ parsing
@pytest.mark.parametrize("text, minutes", [
    ("90", 90), (30, 30), ("1:30", 2), ("01:30:00", 90), ("4:00:00", 240), ("1-0", 1440),
    ("1-2:30", 1590), ("2-00:00:30", 2881), (0.5, 1),
])
def test_parse_time(text, minutes):
    assert launch.parse_time(text) == minutes


@pytest.mark.parametrize("bad", ["", "abc", "1:2:3:4", "-5", "0", "1h"])
def test_parse_time_rejects(bad):
    with pytest.raises(launch.LaunchError, match="time limit"):
        launch.parse_time(bad)


def test_parse_mem_and_sbatch_opts():
    assert launch.parse_mem("32G") == "32G"
    assert launch.parse_mem("32gb") == "32G"
    assert launch.parse_mem("500") == "500M"
    assert launch.parse_mem(" 2 T ") == "2T"
    for bad in ("", "G", "-3G", "0", "12X"):
        with pytest.raises(launch.LaunchError, match="memory"):
            launch.parse_mem(bad)
    assert launch.parse_sbatch_opts(["constraint=a100", "--exclusive", "mail-type=END,FAIL", "gres=shard:1"]) == {
        "constraint": "a100", "exclusive": True, "mail_type": "END,FAIL", "gres": "shard:1"}
    for bad in ("array=0-3", "output=x", "=3", "9x=1"):
        with pytest.raises(launch.LaunchError):
            launch.parse_sbatch_opts([bad])


def test_options_are_checked(tmp_path, make_pop):
    make_pop(tmp_path / "pop")
    with pytest.raises(launch.LaunchError, match="longer than the signal lead"):
        launch.plan(tmp_path / "pop", launch.SubmitOptions(workers=1, time_min=1, signal_delay_s=90))
    with pytest.raises(launch.LaunchError, match="only apply to --executor slurm"):
        launch.plan(tmp_path / "pop", launch.SubmitOptions(workers=1, executor="local", partition="gpu"))
    with pytest.raises(launch.LaunchError, match="at least one worker"):
        launch.plan(tmp_path / "pop", launch.SubmitOptions(workers=0))
    with pytest.raises(Exception, match="population"):
        launch.plan(tmp_path, launch.SubmitOptions(workers=1))


def test_a_read_only_population_or_folder_is_refused_before_submitting(read_only_dir, tmp_path, make_pop):
    make_pop(read_only_dir.parent / "src" / "pop")
    with pytest.raises(launch.LaunchError, match="cannot write into .*read-only or no permission"):
        launch.plan(read_only_dir / "pop", launch.SubmitOptions(workers=1))
    make_pop(tmp_path / "pop")
    with pytest.raises(launch.LaunchError, match=f"cannot write into {read_only_dir}"):
        launch.plan(tmp_path / "pop", launch.SubmitOptions(workers=1, folder=str(read_only_dir / "sub" / "mit")))
    r = CliRunner().invoke(main, ["submit", str(read_only_dir / "pop"), "-n", "1", "--dry-run"])
    assert r.exit_code == 2 and "cannot write into" in r.output and "Traceback" not in r.output


# ------------------------------------------------------------------------------------ dry run
def test_dry_run_prints_the_sbatch_script_and_submits_nothing(tmp_path, make_pop):
    root = tmp_path / "pop"
    make_pop(root)
    result = CliRunner().invoke(main, [
        "submit", str(root), "--workers", "6", "--max-running", "2", "--time", "1:30:00", "--partition", "gpu",
        "--gpus-per-worker", "1", "--cpus-per-worker", "8", "--mem", "32G", "--account", "proj", "--qos", "normal",
        "--sbatch-opt", "constraint=a100", "--sbatch-opt", "exclusive", "--setup", "module load cuda",
        "--signal-delay", "300", "--dry-run"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "dry run: nothing submitted" in out
    for line in ("#SBATCH --array=0-5%2", "#SBATCH --time=90", "#SBATCH --partition=gpu",
                 "#SBATCH --gpus-per-node=1", "#SBATCH --cpus-per-task=8", "#SBATCH --mem=32G",
                 "#SBATCH --account=proj", "#SBATCH --qos=normal", "#SBATCH --constraint=a100",
                 "#SBATCH --exclusive", "#SBATCH --requeue", "#SBATCH --signal=USR2@300",
                 "#SBATCH --job-name=evo-worker", "module load cuda", "-m submitit.core._submit"):
        assert line in out, line
    assert f"--output={root}/logs/submitit/%A_%a_0_log.out" in out
    assert not (root / launch.JOBS_FILE).exists()
    assert launch.recorded_jobs(root) == []
    assert not (root / "logs").exists()

    js = CliRunner().invoke(main, ["submit", str(root), "-n", "2", "--dry-run", "--json"])
    assert js.exit_code == 0, js.output
    plan = json.loads(js.output)
    assert plan["parameters"]["time"] == 240 and plan["parameters"]["array_parallelism"] == 2
    assert plan["parameters"]["additional_parameters"] == {"requeue": True}

    local = CliRunner().invoke(main, ["submit", str(root), "-n", "3", "--executor", "local", "--time", "10",
                                      "--dry-run", "--json"])
    assert local.exit_code == 0, local.output
    plan = json.loads(local.output)
    assert plan["executor"] == "local" and plan["script"] is None
    assert plan["parameters"]["timeout_min"] == 10 and plan["visible_gpus"] == [[], [], []]


@pytest.mark.parametrize("workers", [1, 6])
def test_dry_run_script_is_what_submitit_would_submit(workers):
    """evo writes the --dry-run script from the parameters (public API only); it must stay the
    script submitit generates for them."""
    from submitit.slurm import slurm as private  # the reference only: evo itself uses the public API

    make = getattr(private, "_make_sbatch_string", None)
    assert make is not None, "this submitit has no _make_sbatch_string to compare the dry-run script with"
    opts = launch.SubmitOptions(workers=workers, parallel=2, partition="gpu", time_min=90, gpus_per_worker=1,
                                cpus_per_worker=8, mem="32G", account="proj", qos="normal",
                                sbatch_opts={"constraint": "a100", "exclusive": True},
                                setup=["module load cuda"], signal_delay_s=300).validate()
    params = slurm_parameters(opts)
    folder = "/shared/my pop/logs/submitit"
    expected = make(command=submit_command(folder), folder=folder,
                    map_count=workers if workers > 1 else None, **params)
    assert launch.sbatch_script(folder, params, workers) == expected


def test_launch_uses_submitits_public_api_only():
    import ast

    nodes = [n for f in Path(launch.__file__).parent.glob("*.py") for n in ast.walk(ast.parse(f.read_text()))]
    assert nodes
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("submitit"):
            assert not any(part.startswith("_") for part in node.module.split(".")), node.module
            assert not any(a.name.startswith("_") for a in node.names), [a.name for a in node.names]
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "submitit":
            assert not node.attr.startswith("_"), node.attr


def test_bad_requests_are_one_line_errors(tmp_path, make_pop):
    root = tmp_path / "pop"
    make_pop(root)
    for args, msg in ((["--time", "soon"], "time limit"), (["--mem", "lots"], "memory"),
                      (["--sbatch-opt", "array=1"], "sets --array itself"),
                      (["--executor", "local", "--qos", "high"], "only apply to --executor slurm")):
        r = CliRunner().invoke(main, ["submit", str(root), "-n", "1", "--dry-run", *args])
        assert r.exit_code == 2, r.output
        assert msg in r.output and "Traceback" not in r.output


def test_local_gpu_plan(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2")
    opts = launch.SubmitOptions(workers=4, executor="local", gpus_per_worker=1)
    assert local_gpu_plan(opts) == [[0], [1], [2], [0]]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    with pytest.raises(launch.LaunchError, match="GPU"):
        local_gpu_plan(opts)


def test_recorded_jobs_skips_torn_lines(tmp_path):
    (tmp_path / launch.JOBS_FILE).write_text(
        json.dumps({"executor": "slurm", "job_id": "7", "job_ids": ["7_0", "7_1"]}) + "\n"
        + "{not json\n" + json.dumps({"executor": "local", "job_id": None, "job_ids": ["123"]}) + "\n"
        + '{"executor": "slurm", "job_')
    recs = launch.recorded_jobs(tmp_path)
    assert [r["job_ids"] for r in recs] == [["7_0", "7_1"], ["123"]]
    assert launch.job_ids(tmp_path) == ["7_0", "7_1", "123"]
    assert launch.recorded_jobs(tmp_path / "nowhere") == []


# ------------------------------------------------------------------------------------ WorkerJob
def test_worker_job_pickles_without_its_runtime_state(tmp_path):
    job = launch.WorkerJob(str(tmp_path), device="cpu", handback_timeout_s=7)
    job._thread = threading.Thread(target=lambda: None)      # not picklable
    clone = cloudpickle.loads(cloudpickle.dumps(job))
    assert clone._params() == {"popdir": str(tmp_path), "device": "cpu", "max_children": None,
                               "handback_timeout_s": 7.0, "children_per_gpu": 1, "members": None}
    assert clone._thread is None and clone._worker is None
    delayed = clone.checkpoint()           # not running: just a fresh job to requeue
    assert isinstance(delayed.function, launch.WorkerJob) and delayed.function is not clone
    assert delayed.function._params() == clone._params()


def test_worker_job_checkpoint_hands_the_child_back_and_the_requeued_job_resumes_it(tmp_path, monkeypatch, make_pop):
    """What submitit's SIGUSR2 handler does in a job: checkpoint() while the worker trains."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    root = tmp_path / "pop"
    steps = 2000
    pop = make_pop(root, population_size=2, max_individuals=2, steps_per_child=steps, checkpoint_every_s=0.2)
    job = launch.WorkerJob(str(root), device="cpu", handback_timeout_s=60)
    results: list = []
    runner = threading.Thread(target=lambda: results.append(job()))   # no signal handlers off the main thread
    runner.start()
    deadline = time.monotonic() + 120
    while not any(x["has_checkpoint"] for x in pop.leases()):
        assert time.monotonic() < deadline and runner.is_alive(), "the worker never checkpointed a child"
        time.sleep(0.05)

    delayed = job.checkpoint()

    assert not job._thread.is_alive(), "checkpoint() returned before the worker handed its child back"
    runner.join(30)
    assert results and results[0]["exit_code"] == 3 and results[0]["reason"] == "SIGUSR2"
    assert pop.leases() == [] and pop.status()["pending"] >= 1
    released = [e for e in read_events(str(root)) if e["event"] == "release"]
    assert released and released[0]["checkpoint"] and "SIGUSR2" in released[0]["reason"]
    # the requeued job: a fresh WorkerJob that resumes the child and finishes the experiment
    again = cloudpickle.loads(cloudpickle.dumps(delayed)).function
    out = again()
    assert out["exit_code"] == 0 and out["children"] == 2          # the resumed seed, then the other one
    inds = {ind.id: ind for ind in pop.individuals()}
    assert sorted(inds) == [1, 2]
    segs = check_segments(inds[released[0]["id"]].record, steps)
    assert len(segs) == 2 and 0 < segs[0][1] < steps
    assert len(check_segments(inds[3 - released[0]["id"]].record, steps)) == 1
    assert fsck(str(root)).ok


def _team_pop(root: Path):
    """A population whose children never finish in a test (a million steps each)."""
    from evo.population import Population

    return Population.create(str(root), dict(
        dataset="synthetic", dataset_kwargs={"n_train": 600, "n_val": 200, "n_test": 200, "image_size": 8},
        population_size=2, max_individuals=4, steps_per_child=1_000_000, lock="flock", lease_ttl_s=6.0,
        heartbeat_s=0.5, checkpoint_every_s=0.5, train={"check_every": 5, "poll_every": 2}))


def test_a_team_job_hands_every_child_back_before_it_is_requeued(tmp_path):
    """--children-per-gpu 2: the job runs a team of two worker processes; checkpoint() (submitit's
    SIGUSR2 handler) returns once both have handed their children back, and requeues the same team."""
    root = tmp_path / "pop"
    pop = _team_pop(root)
    job = launch.WorkerJob(str(root), device="cpu", handback_timeout_s=60, children_per_gpu=2, members=2)
    results: list = []
    runner = threading.Thread(target=lambda: results.append(job()))
    runner.start()
    deadline = time.monotonic() + 120
    while len(pop.leases()) < 2:                      # each worker of the team trains a seed
        assert time.monotonic() < deadline and runner.is_alive(), "the team never trained two children"
        time.sleep(0.05)

    delayed = job.checkpoint()

    assert job._team.done, "checkpoint() returned before the team handed its children back"
    runner.join(30)
    assert results and results[0]["exit_code"] == 3 and results[0]["members"] == [3, 3], results
    assert results[0]["reason"] == "SIGUSR2"
    st = pop.status()
    assert st["inflight"] == 0 and st["pending"] == 2, st
    released = [e for e in read_events(str(root)) if e["event"] == "release"]
    assert len(released) == 2 and all(e["checkpoint"] and "SIGUSR2" in e["reason"] for e in released), released
    again = cloudpickle.loads(cloudpickle.dumps(delayed)).function
    assert again._params() == job._params() and again.children_per_gpu == 2 and again.members == 2


def test_dry_run_with_several_children_per_gpu(tmp_path):
    root = tmp_path / "pop"
    _team_pop(root)
    args = ["submit", str(root), "-n", "2", "--gpus-per-worker", "2", "--children-per-gpu", "4", "--dry-run"]
    js = CliRunner().invoke(main, [*args, "--json"])
    assert js.exit_code == 0, js.output
    plan = json.loads(js.output)
    assert plan["children_per_gpu"] == 4 and plan["processes_per_worker"] == 8
    assert plan["parameters"]["gpus_per_node"] == 2          # the job asks for whole GPUs; the team shares them
    text = CliRunner().invoke(main, args)
    assert "children_per_gpu       4 (each job runs a team of 8 worker processes" in text.output, text.output
    assert launch.SubmitOptions(workers=1, children_per_gpu=3).processes_per_worker == 3   # no GPU: on the CPUs
    assert launch.SubmitOptions(workers=1, gpus_per_worker=4).processes_per_worker == 1
    with pytest.raises(launch.LaunchError, match="--children-per-gpu 0"):
        launch.SubmitOptions(workers=1, children_per_gpu=0).validate()


# ------------------------------------------------------------------------------------ local executor
def test_submit_local_executor_runs_workers_to_the_budget(tmp_path, make_pop):
    root = tmp_path / "pop"
    pop = make_pop(root, population_size=3, max_individuals=6, steps_per_child=40)
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env.pop("SLURM_CONF", None)
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "evo", "submit", str(root), "--workers", "2", "--executor", "local",
                           "--time", "10", "--wait", "--json"], env=env, capture_output=True, text=True, timeout=300)
    print(f"evo submit --executor local --wait: {time.monotonic() - t0:.1f} s")
    logs = "\n".join(p.read_text() for p in (root / "logs" / "submitit").glob("*.out"))
    assert proc.returncode == 0, proc.stdout + proc.stderr + logs
    out = json.loads(proc.stdout)
    assert out["executor"] == "local" and len(out["job_ids"]) == 2
    assert set(out["states"].values()) == {"COMPLETED"}
    (rec,) = launch.recorded_jobs(root)
    assert rec["job_ids"] == out["job_ids"] and rec["workers"] == 2 and rec["popdir"] == str(root)
    assert rec["parameters"]["timeout_min"] == 10
    births = [e for e in read_events(str(root)) if e["event"] == "birth"]
    assert len(births) == 6
    workers = {ind.record["worker"] for ind in pop.individuals()}
    assert all(any(w.startswith(f"local-{pid}-") for pid in out["job_ids"]) for w in workers), workers
    assert fsck(str(root)).ok
    assert "worker exited with code 0" in logs


def test_submit_to_slurm_without_slurm_is_a_clear_error(tmp_path, monkeypatch, make_pop):
    root = tmp_path / "pop"
    make_pop(root)
    monkeypatch.setenv("PATH", str(tmp_path))            # no srun, no sbatch
    with pytest.raises(launch.LaunchError, match="--executor local"):
        launch.submit(root, launch.SubmitOptions(workers=2))
    assert launch.recorded_jobs(root) == []
