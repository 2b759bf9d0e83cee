"""Submitting workers (:func:`submit`), waiting for them (:func:`wait`), and the record of every
submission in ``POPDIR/jobs.jsonl`` (:func:`recorded_jobs`)."""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import socket
import subprocess
import sys
import time
from typing import Any, Iterator, Sequence

import submitit

from evo.base.files import append_jsonl, read_jsonl
from evo.launch.job import WorkerJob
from evo.launch.options import LaunchError, SubmitOptions
from evo.launch.plan import plan

__all__ = ["JOBS_FILE", "job_ids", "recorded_jobs", "submit", "summary_text", "wait"]

#: The record of submissions in the population directory, one JSON object per line.
JOBS_FILE = "jobs.jsonl"


@contextlib.contextmanager
def _stdio_to(path: str) -> Iterator[None]:
    """Point fds 1 and 2 at ``path`` while local controllers are started, so that these background
    processes never hold the caller's terminal or pipes open."""
    sys.stdout.flush()
    sys.stderr.flush()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    saved = [os.dup(1), os.dup(2)]
    try:
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for x in (*saved, fd):
            os.close(x)


def submit(popdir: str | os.PathLike, opts: SubmitOptions) -> tuple[dict[str, Any], list[Any]]:
    """Submit ``opts.workers`` workers on ``popdir``; return (the record appended to
    ``POPDIR/jobs.jsonl``, the submitit jobs)."""
    p = plan(popdir, opts)
    root, folder = p["popdir"], p["folder"]
    os.makedirs(folder, exist_ok=True)
    make = lambda: WorkerJob(root, device=opts.device, handback_timeout_s=opts.handback_s,  # noqa: E731
                             children_per_gpu=opts.children_per_gpu, members=opts.processes_per_worker)
    jobs: list[Any]
    if opts.executor == "slurm":
        try:
            ex = submitit.SlurmExecutor(folder=folder, max_num_timeout=opts.max_requeues)
        except RuntimeError as exc:
            raise LaunchError(f"cannot submit to Slurm: {exc} (on a machine without Slurm use --executor local)") \
                from exc
        ex.update_parameters(**p["parameters"])
        try:
            jobs = ex.submit_array([make() for _ in range(opts.workers)])
        except (submitit.core.utils.FailedJobError, submitit.core.utils.FailedSubmissionError,
                subprocess.CalledProcessError, OSError) as exc:
            raise LaunchError(f"sbatch refused the job: {_error_text(exc)}") from exc
        array_id = str(jobs[0].job_id).split("_")[0]
    else:
        ex = submitit.LocalExecutor(folder=folder, max_num_timeout=opts.max_requeues)
        ex.update_parameters(**p["parameters"])
        jobs = []
        with _stdio_to(os.path.join(folder, "local-controllers.log")):
            for gpus in p["visible_gpus"]:
                if gpus:
                    ex.update_parameters(visible_gpus=tuple(gpus))
                jobs.append(ex.submit(make()))
        array_id = None
    now = time.time()
    record = {
        "time": now,
        "submitted_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
        "executor": opts.executor,
        "popdir": root,
        "job_id": array_id,
        "job_ids": [str(j.job_id) for j in jobs],
        "workers": opts.workers,
        "children_per_gpu": opts.children_per_gpu,
        "processes_per_worker": opts.processes_per_worker,
        "folder": folder,
        "parameters": _jsonable(p["parameters"]),
        "max_requeues": opts.max_requeues,
        "device": opts.device,
        "host": socket.gethostname(),
        "user": _user(),
        "evo": _version(),
    }
    _append_record(root, record)
    return record, jobs


def _error_text(exc: BaseException) -> str:
    out = getattr(exc, "output", None) or getattr(exc, "stderr", None)
    if isinstance(out, bytes):
        out = out.decode(errors="replace")
    text = (str(out).strip() if out else "") or str(exc).strip()
    return " / ".join(line.strip() for line in text.splitlines() if line.strip())


def _jsonable(x: Any) -> Any:
    return json.loads(json.dumps(x, default=str))


def _user() -> str | None:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no user name is fine
        return None


def _version() -> str:
    from evo import __version__

    return __version__


def _append_record(root: str, record: dict[str, Any]) -> None:
    append_jsonl(os.path.join(root, JOBS_FILE), [record])


def recorded_jobs(popdir: str | os.PathLike) -> list[dict[str, Any]]:
    """Every submission recorded in ``POPDIR/jobs.jsonl``, oldest first (torn lines skipped)."""
    return [rec for rec in read_jsonl(os.path.join(os.fspath(popdir), JOBS_FILE))
            if isinstance(rec, dict) and isinstance(rec.get("job_ids"), list)]


def job_ids(popdir: str | os.PathLike) -> list[str]:
    """Every job id recorded in ``POPDIR/jobs.jsonl`` ("123_0", ...; local: controller PIDs)."""
    return [str(j) for rec in recorded_jobs(popdir) for j in rec["job_ids"]]


def wait(jobs: Sequence[Any], poll_s: float = 2.0, timeout_s: float | None = None) -> dict[str, str]:
    """Wait until every job has ended; return {job id: COMPLETED, FAILED, CANCELLED, ...}.

    This polls the scheduler (submitit's watcher: one ``sacct`` call for all jobs every few
    seconds) from the submitting process only; workers never do."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    pending = list(jobs)
    while pending:
        pending = [j for j in pending if not j.done()]
        if not pending:
            break
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"{len(pending)} job(s) still running after {timeout_s} s")
        time.sleep(poll_s)
    return {str(j.job_id): _final_state(j) for j in jobs}


def _final_state(job: Any) -> str:
    """COMPLETED or FAILED from the job's result file; else the scheduler's state (CANCELLED ...)."""
    if job.paths.result_pickle.exists():
        try:
            job.result()
            return "COMPLETED"
        except Exception:  # noqa: BLE001 - the job failed; its log says why
            return "FAILED"
    return str(job.state).split(" ")[0] or "UNKNOWN"     # "CANCELLED by 0" -> "CANCELLED"


def summary_text(record: dict[str, Any]) -> str:
    """What ``evo submit`` prints after a submission."""
    ids = record["job_ids"]
    folder = record["folder"]
    params = record["parameters"]
    team = record.get("processes_per_worker") or 1
    each = [f"each job: a team of {team} worker processes, {record.get('children_per_gpu')} children per GPU "
            f"(one requeue for all)"] if team > 1 else []
    if record["executor"] == "slurm":
        shown = ids[0] if len(ids) == 1 else f"{ids[0]} .. {ids[-1]}"
        return "\n".join([
            f"submitted {record['workers']} worker(s) as Slurm job {record['job_id']} ({shown}), at most "
            f"{params.get('array_parallelism', 1)} running at once, time limit {params.get('time')} min",
            f"job ids: {' '.join(ids)}",
            f"recorded in {os.path.join(record['popdir'], JOBS_FILE)}; "
            f"logs: {folder}/<JOBID>_0_log.out",
            f"watch: squeue -j {record['job_id']}; stop: evo stop POPDIR (after the children in training) "
            f"or scancel {record['job_id']} (hands them back now)",
            *each,
        ])
    return "\n".join([
        f"started {record['workers']} local worker(s) in the background (submitit's local executor)",
        f"job ids (controller pids): {' '.join(ids)}",
        f"logs: {folder}/<PID>_0_log.out; stop: evo stop POPDIR",
        *each,
    ])
