"""Submit evo workers from Python with submitit: the logic behind ``evo submit``.

``submit(popdir, SubmitOptions(workers=N, ...))`` submits N stateless workers on the population in
``popdir``: one Slurm job array (``executor="slurm"``) or N background processes on this machine
(``executor="local"``, submitit's local executor).  Every job runs :class:`WorkerJob`, a picklable
callable that runs one :class:`evo.worker.Worker` in-process until the experiment is finished, or
(``children_per_gpu`` > 1) a team of worker processes sharing the job's GPUs (:mod:`evo.worker.team`).

Preemption and time limits.  submitit asks Slurm for ``--signal=USR2@<signal_delay_s>`` and, inside
the job, installs a SIGUSR2 handler that calls the callable's ``checkpoint()`` and then requeues the
job (``scontrol requeue``).  :class:`WorkerJob` runs the worker loop in a thread, so that this
handler (which Python runs in the main thread) can stop it: ``checkpoint()`` sets the worker's
interrupt event, waits until the worker has checkpointed its in-flight child and handed it back to
the population, and only then returns a fresh ``WorkerJob`` to requeue.  The requeued run (or any
other worker) resumes the child from its checkpoint.  SIGTERM (``scancel``, preemption with
``PreemptMode=REQUEUE``) and SIGINT (the local executor's cancel) hand the child back the same way,
without a requeue.  Workers never call ``squeue`` or ``sacct``.

Every submission appends one JSON object to ``POPDIR/jobs.jsonl`` (see :func:`recorded_jobs`)::

    {"time": 1732000000.1, "submitted_at": "2024-11-19T07:06:40Z", "executor": "slurm",
     "job_id": "1234", "job_ids": ["1234_0", "1234_1"], "workers": 2, "folder": "POPDIR/logs/submitit",
     "parameters": {...the executor's parameters...}, "host": "login1", "user": "alice", "evo": "0.1.0"}

``job_id`` is the array job id (Slurm) or null (local: ``job_ids`` are the controller PIDs).
The jobs' own logs are ``<folder>/<JOBID>_<TASK>_0_log.out`` (Slurm) and ``<folder>/<PID>_0_log.out``
(local).
"""

from evo.launch.job import WorkerJob
from evo.launch.options import EXECUTORS, LaunchError, SubmitOptions, parse_mem, parse_sbatch_opts, parse_time
from evo.launch.plan import DEFAULT_FOLDER, plan, plan_text, sbatch_script
from evo.launch.submit import JOBS_FILE, job_ids, recorded_jobs, submit, summary_text, wait

__all__ = [
    "DEFAULT_FOLDER",
    "EXECUTORS",
    "JOBS_FILE",
    "SubmitOptions",
    "WorkerJob",
    "LaunchError",
    "parse_time",
    "parse_mem",
    "parse_sbatch_opts",
    "plan",
    "plan_text",
    "sbatch_script",
    "submit",
    "summary_text",
    "wait",
    "recorded_jobs",
    "job_ids",
]
