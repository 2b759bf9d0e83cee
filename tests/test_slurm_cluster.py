"""The local Slurm cluster itself, and slurm/worker.sbatch driven by a stand-in for `evo`.

The stand-in follows the contract of `evo worker` (exit 0: finished, 3: interrupted and handed
back, other: error), so these tests check the batch script's signal forwarding and requeueing
without training anything.
"""

from __future__ import annotations

import re
import textwrap
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slurm

REPO = Path(__file__).resolve().parent.parent
WORKER_SBATCH = REPO / "slurm" / "worker.sbatch"

# First run of a task: wait for SIGUSR2/SIGTERM, then exit 3 like an interrupted worker.
# Runs after a requeue: exit 0 like a worker that finds the experiment finished.
# FAKE_EVO_EXIT=N: exit N at once.
# FAKE_EVO_NO_HANDLERS=1: the first run dies of the signal (a worker still starting or shutting down).
FAKE_EVO = textwrap.dedent("""\
    #!/bin/bash
    echo "fake evo: started args=[$*] restart=${SLURM_RESTART_COUNT:-0}"
    if [ -n "${FAKE_EVO_EXIT:-}" ]; then exit "$FAKE_EVO_EXIT"; fi
    if [ "${SLURM_RESTART_COUNT:-0}" -ge 1 ]; then echo "fake evo: finished"; exit 0; fi
    if [ -n "${FAKE_EVO_NO_HANDLERS:-}" ]; then exec sleep 300; fi
    trap 'echo "fake evo: got SIGUSR2 at +${SECONDS}s"; exit 3' USR2
    trap 'echo "fake evo: got SIGTERM at +${SECONDS}s"; exit 3' TERM
    for i in $(seq 1 1800); do sleep 0.1; done
    echo "fake evo: own time limit"; exit 3
    """)


@pytest.fixture
def fake_evo(tmp_path: Path) -> Path:
    path = tmp_path / "bin" / "evo"
    path.parent.mkdir()
    path.write_text(FAKE_EVO)
    path.chmod(0o755)
    return path


@pytest.fixture
def popdir(tmp_path: Path) -> Path:
    path = tmp_path / "pop"
    path.mkdir()
    return path


def wait_for_text(path: Path, text: str, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and text in (content := path.read_text()):
            return content
        time.sleep(0.2)
    raise TimeoutError(f"{text!r} not in {path} after {timeout} s: "
                       f"{path.read_text() if path.exists() else '(no file)'}")


# ---------------------------------------------------------------------------------- the cluster
def test_array_job_runs_all_tasks_in_parallel(slurm_cluster, tmp_path):
    script = tmp_path / "task.sh"
    script.write_text("#!/bin/bash\n"
                      "date +%s.%N > \"$1/start_$SLURM_ARRAY_TASK_ID\"\n"
                      "sleep 2\n"
                      "date +%s.%N > \"$1/end_$SLURM_ARRAY_TASK_ID\"\n")
    t0 = time.monotonic()
    job = slurm_cluster.sbatch(f"--array=0-5%{slurm_cluster.cpus}", "-o", tmp_path / "out_%A_%a",
                               script, tmp_path)
    states = slurm_cluster.wait_for_jobs(job, timeout=120)
    elapsed = time.monotonic() - t0

    assert states == {f"{job}_{i}": "COMPLETED" for i in range(6)}
    spans = [(float((tmp_path / f"start_{i}").read_text()), float((tmp_path / f"end_{i}").read_text()))
             for i in range(6)]
    most_at_once = max(sum(s <= t < e for s, e in spans) for t, _ in spans)
    assert 2 <= most_at_once <= slurm_cluster.cpus
    assert {r["state"] for r in slurm_cluster.sacct(job)} == {"COMPLETED"}
    print(f"array 0-5%{slurm_cluster.cpus}: {elapsed:.1f} s from sbatch to accounted, "
          f"{most_at_once} tasks at once (cluster start {slurm_cluster.start_seconds:.1f} s)")


def test_scancel_cancels_a_running_job(slurm_cluster, tmp_path):
    job = slurm_cluster.sbatch("-o", tmp_path / "out", wrap="sleep 300")
    slurm_cluster.wait_for_state(job, "RUNNING", timeout=60)
    assert [r["state"] for r in slurm_cluster.squeue(job)] == ["RUNNING"]

    slurm_cluster.scancel(job)

    assert slurm_cluster.wait_for_jobs(job, timeout=60) == {job: "CANCELLED"}
    assert "CANCELLED" in wait_for_text(tmp_path / "out", "CANCELLED")


def test_impossible_request_is_rejected_at_submission(slurm_cluster, tmp_path):
    with pytest.raises(Exception, match="processors|Requested node configuration"):
        slurm_cluster.sbatch(f"--cpus-per-task={slurm_cluster.cpus + 1}", "-o", tmp_path / "out",
                             wrap="true")


# ---------------------------------------------------------------------- slurm/worker.sbatch
def test_worker_sbatch_forwards_usr2_and_requeues_until_finished(slurm_cluster, tmp_path, fake_evo,
                                                                 popdir):
    env = {"EVO_BIN": str(fake_evo)}
    job = slurm_cluster.sbatch("--array=0-1", "--time=10", "-o", tmp_path / "slurm-%A_%a.out",
                               WORKER_SBATCH, popdir, "--extra", "option", env=env)
    logs = [popdir / "logs" / f"worker-{job}_{i}.log" for i in range(2)]
    for log in logs:
        wait_for_text(log, "fake evo: started", timeout=60)

    t0 = time.monotonic()
    slurm_cluster.scancel(job, signal="USR2", batch=True)      # what Slurm sends before the limit
    states = slurm_cluster.wait_for_jobs(job, timeout=120)
    print(f"USR2 -> requeue -> finished in {time.monotonic() - t0:.1f} s")

    assert states == {f"{job}_0": "COMPLETED", f"{job}_1": "COMPLETED"}
    for i, log in enumerate(logs):
        text = log.read_text()
        assert "got SIGUSR2: forwarding it to the worker" in text
        assert "fake evo: got SIGUSR2" in text
        assert f"requeued {job}_{i}" in text
        assert "fake evo: finished" in text
        assert "the experiment is finished or stopped" in text
        # one log per task, appended by both runs; a distinct worker id per run
        assert f"--worker-id slurm-{job}_{i}-r0 --extra option" in text
        assert f"--worker-id slurm-{job}_{i}-r1 --extra option" in text
        # --time=10 minus the 150 s margin
        limits = [int(x) for x in re.findall(r"--time-limit (\d+)", text)]
        assert limits and all(400 <= x <= 450 for x in limits), limits
        assert slurm_cluster.job_info(f"{job}_{i}").get("Restarts") == "1"
    runs = [r["state"] for r in slurm_cluster.sacct(job, duplicates=True)]
    assert sorted(runs) == ["COMPLETED", "COMPLETED", "REQUEUED", "REQUEUED"]


def test_worker_sbatch_requeues_a_worker_killed_by_the_forwarded_warning(slurm_cluster, tmp_path, fake_evo,
                                                                        popdir):
    """A worker without handlers at that moment dies of SIGUSR2 (exit 140): an interruption, requeued."""
    job = slurm_cluster.sbatch("--array=0", "--time=10", "-o", tmp_path / "slurm-%A_%a.out", WORKER_SBATCH,
                               popdir, env={"EVO_BIN": str(fake_evo), "FAKE_EVO_NO_HANDLERS": "1"})
    log = popdir / "logs" / f"worker-{job}_0.log"
    wait_for_text(log, "fake evo: started", timeout=60)

    slurm_cluster.scancel(job, signal="USR2", batch=True)

    assert slurm_cluster.wait_for_jobs(job, timeout=120) == {f"{job}_0": "COMPLETED"}
    text = log.read_text()
    assert "worker exited with code 140" in text
    assert "the worker died of the forwarded SIGUSR2: treating it as interrupted" in text
    assert f"requeued {job}_0" in text
    assert "fake evo: finished" in text


@pytest.mark.slow
def test_worker_sbatch_time_limit_signal_reaches_the_worker(slurm_cluster, tmp_path, fake_evo, popdir):
    """A real time limit: --signal=B:USR2@30 with --time=1 must reach the worker before the end."""
    t0 = time.monotonic()
    job = slurm_cluster.sbatch("--array=0", "--time=1", "--signal=B:USR2@30",
                               "-o", tmp_path / "slurm-%A_%a.out", WORKER_SBATCH, popdir,
                               env={"EVO_BIN": str(fake_evo)})
    states = slurm_cluster.wait_for_jobs(job, timeout=150)
    elapsed = time.monotonic() - t0
    print(f"--time=1 --signal=B:USR2@30: signal, requeue and second run done in {elapsed:.1f} s")

    assert states == {f"{job}_0": "COMPLETED"}
    text = (popdir / "logs" / f"worker-{job}_0.log").read_text()
    assert "got SIGUSR2: forwarding it to the worker" in text
    assert "fake evo: got SIGUSR2" in text
    assert "fake evo: finished" in text
    limits = [int(x) for x in re.findall(r"--time-limit (\d+)", text)]
    assert limits and all(20 <= x <= 30 for x in limits), limits     # half of a short allocation
    assert "DUE TO TIME LIMIT" not in (tmp_path / f"slurm-{job}_0.out").read_text()


def test_worker_sbatch_does_not_requeue_after_scancel(slurm_cluster, tmp_path, fake_evo, popdir):
    job = slurm_cluster.sbatch("--array=0", "-o", tmp_path / "slurm-%A_%a.out", WORKER_SBATCH, popdir,
                               env={"EVO_BIN": str(fake_evo)})
    log = popdir / "logs" / f"worker-{job}_0.log"
    wait_for_text(log, "fake evo: started", timeout=60)

    slurm_cluster.scancel(job)

    assert slurm_cluster.wait_for_jobs(job, timeout=60) == {f"{job}_0": "CANCELLED"}
    text = wait_for_text(log, "not requeueing")
    assert "fake evo: got SIGTERM" in text
    assert "requeued" not in text
    assert slurm_cluster.job_info(f"{job}_0").get("Restarts") == "0"


def test_worker_sbatch_does_not_requeue_a_failed_worker(slurm_cluster, tmp_path, fake_evo, popdir):
    job = slurm_cluster.sbatch("--array=0-1", "-o", tmp_path / "slurm-%A_%a.out", WORKER_SBATCH, popdir,
                               env={"EVO_BIN": str(fake_evo), "FAKE_EVO_EXIT": "1"})

    assert slurm_cluster.wait_for_jobs(job, timeout=60) == {f"{job}_0": "FAILED", f"{job}_1": "FAILED"}
    for i in range(2):
        text = (popdir / "logs" / f"worker-{job}_{i}.log").read_text()
        assert "the worker failed (exit code 1): not requeueing" in text
        assert slurm_cluster.job_info(f"{job}_{i}").get("Restarts") == "0"


def test_worker_sbatch_refuses_a_missing_population_directory(slurm_cluster, tmp_path, fake_evo):
    job = slurm_cluster.sbatch("-o", tmp_path / "slurm.out", WORKER_SBATCH, tmp_path / "nowhere",
                               env={"EVO_BIN": str(fake_evo)})

    assert slurm_cluster.wait_for_jobs(job, timeout=60) == {job: "FAILED"}
    assert "does not exist" in (tmp_path / "slurm.out").read_text()
