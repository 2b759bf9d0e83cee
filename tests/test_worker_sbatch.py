"""slurm/worker.sbatch when the population directory cannot be written: one clear line and exit 2
(the task FAILED, not requeued), before any worker starts.

Most run the script by hand (no Slurm needed); the one marked ``slurm`` runs it as an array task on
the local cluster.  A truly read-only directory needs a read-only bind mount (root); elsewhere a
directory standing where the log file goes makes the log unwritable just the same.
"""

from __future__ import annotations

import os
import subprocess
import textwrap
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
WORKER_SBATCH = REPO / "slurm" / "worker.sbatch"
FAKE_EVO = textwrap.dedent("""\
    #!/bin/bash
    echo "fake evo: started args=[$*]"
    exit 0
    """)


@pytest.fixture
def fake_evo(tmp_path: Path) -> Path:
    path = tmp_path / "bin" / "evo"
    path.parent.mkdir()
    path.write_text(FAKE_EVO)
    path.chmod(0o755)
    return path


def run_script(popdir: Path, fake_evo: Path, job: str = "4242") -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    env.update(EVO_BIN=str(fake_evo), SLURM_JOB_ID=job, EVO_TIME_LIMIT="none")
    return subprocess.run(["bash", str(WORKER_SBATCH), str(popdir)], capture_output=True, text=True, env=env,
                          timeout=60)


def one_line(res: subprocess.CompletedProcess) -> str:
    assert res.returncode == 2, (res.returncode, res.stdout, res.stderr)
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, res.stderr
    assert "fake evo" not in res.stdout + res.stderr, "the worker must not start"
    return lines[0]


def test_an_unwritable_log_is_one_line_and_exit_2(tmp_path, fake_evo):
    pop = tmp_path / "pop"
    (pop / "logs" / "worker-4242.log").mkdir(parents=True)        # nothing can be appended to it
    line = one_line(run_script(pop, fake_evo))
    assert line.startswith("evo worker: cannot write the log") and "worker-4242.log" in line
    assert "mount it read-write" in line


def test_a_read_only_population_directory_is_one_line_and_exit_2(read_only_dir, fake_evo):
    line = one_line(run_script(read_only_dir, fake_evo))
    assert "Read-only file system" in line and str(read_only_dir) in line


def test_a_read_only_population_without_logs_is_one_line_and_exit_2(read_only_dir, fake_evo):
    os.rmdir(read_only_dir.parent / "src" / "logs")
    line = one_line(run_script(read_only_dir, fake_evo))
    assert f"cannot create {read_only_dir}/logs (Read-only file system)" in line


def test_a_missing_population_directory_is_one_line_and_exit_2(tmp_path, fake_evo):
    line = one_line(run_script(tmp_path / "nowhere", fake_evo))
    assert "does not exist" in line


def test_a_writable_population_starts_the_worker(tmp_path, fake_evo):
    pop = tmp_path / "pop"
    pop.mkdir()
    res = run_script(pop, fake_evo)
    assert res.returncode == 0, res.stderr
    log = (pop / "logs" / "worker-4242.log").read_text()
    assert "fake evo: started args=[worker" in log and "the experiment is finished or stopped" in log


@pytest.mark.slurm
def test_array_task_on_a_read_only_population_fails_with_one_line_and_no_requeue(slurm_cluster, tmp_path,
                                                                                 read_only_dir, fake_evo):
    job = slurm_cluster.sbatch("--array=0", "-o", tmp_path / "slurm-%A_%a.out", WORKER_SBATCH, read_only_dir,
                               env={"EVO_BIN": str(fake_evo)})
    assert slurm_cluster.wait_for_jobs(job, timeout=60) == {f"{job}_0": "FAILED"}
    out = (tmp_path / f"slurm-{job}_0.out").read_text().strip().splitlines()
    assert len(out) == 1 and "Read-only file system" in out[0] and "Traceback" not in out[0], out
    time.sleep(1)
    assert slurm_cluster.job_info(f"{job}_0").get("Restarts") == "0"
