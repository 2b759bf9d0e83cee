"""Submit evo workers from Python with submitit: the logic behind ``evo submit``.

``submit(popdir, SubmitOptions(workers=N, ...))`` submits N stateless workers on the population in
``popdir``: one Slurm job array (``executor="slurm"``) or N background processes on this machine
(``executor="local"``, submitit's local executor).  Every job runs :class:`WorkerJob`, a picklable
callable that runs one :class:`evo.worker.Worker` in-process until the experiment is finished.

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

from __future__ import annotations

import contextlib
import getpass
import json
import math
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

import submitit
from submitit.helpers import DelayedSubmission

from evo.base.slurm import slurm_job_id_from_env

__all__ = [
    "JOBS_FILE",
    "SubmitOptions",
    "WorkerJob",
    "LaunchError",
    "parse_time",
    "parse_mem",
    "parse_sbatch_opts",
    "plan",
    "submit",
    "wait",
    "recorded_jobs",
    "job_ids",
    "sbatch_script",
]

#: The record of submissions in the population directory, one JSON object per line.
JOBS_FILE = "jobs.jsonl"
#: submitit's folder (pickles, logs), relative to the population directory.
DEFAULT_FOLDER = os.path.join("logs", "submitit")
EXECUTORS = ("slurm", "local")
#: sbatch options that evo submit sets itself and that --sbatch-opt may not change.
_RESERVED_SBATCH = frozenset({"array", "output", "error", "wrap", "parsable"})
_LOCAL_DEFAULT_TIME_MIN = 7 * 24 * 60


class LaunchError(ValueError):
    """A bad submission request or a failed submission; the message says what to do."""


# ----------------------------------------------------------------------------------- options
def parse_time(value: str | int | float) -> int:
    """A Slurm time limit in minutes (rounded up).

    Accepts what ``sbatch --time`` accepts: ``M``, ``M:S``, ``H:M:S``, ``D-H``, ``D-H:M``,
    ``D-H:M:S``; a number is minutes.
    """
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        minutes = math.ceil(float(value))
    else:
        text = str(value).strip()
        m = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", text)
        if not m:
            raise LaunchError(f"time limit {value!r}: write minutes (240) or [D-]HH:MM:SS (04:00:00, 1-00:00:00)")
        days, a, b, c = m.groups()
        parts = [int(x) for x in (a, b, c) if x is not None]
        if days is not None:            # D-H, D-H:M, D-H:M:S
            parts += [0] * (3 - len(parts))
            seconds = int(days) * 86400 + parts[0] * 3600 + parts[1] * 60 + parts[2]
        elif len(parts) == 1:           # M
            seconds = parts[0] * 60
        elif len(parts) == 2:           # M:S
            seconds = parts[0] * 60 + parts[1]
        else:                           # H:M:S
            seconds = parts[0] * 3600 + parts[1] * 60 + parts[2]
        minutes = math.ceil(seconds / 60)
    if minutes < 1:
        raise LaunchError(f"time limit {value!r}: must be at least one minute")
    return int(minutes)


def parse_mem(value: str | int) -> str:
    """Memory per worker as Slurm writes it: ``32G``, ``500M``; a bare number is megabytes (as in sbatch)."""
    text = str(value).strip().upper()
    m = re.fullmatch(r"(\d+)\s*([KMGT]?)B?", text)
    if not m or int(m.group(1)) <= 0:
        raise LaunchError(f"memory {value!r}: write a size such as 32G or 500M (a bare number is megabytes)")
    return f"{int(m.group(1))}{m.group(2) or 'M'}"


def parse_sbatch_opts(pairs: Sequence[str]) -> dict[str, Any]:
    """``KEY=VALUE`` (or a bare ``KEY`` for a flag such as ``exclusive``) -> submitit's additional parameters."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = str(pair).partition("=")
        key = key.strip().lstrip("-")
        if not key or not re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]*", key):
            raise LaunchError(f"sbatch option {pair!r}: write KEY=VALUE (e.g. constraint=a100) or a flag name")
        if key.replace("_", "-") in _RESERVED_SBATCH:
            raise LaunchError(f"sbatch option {pair!r}: evo submit sets --{key} itself")
        out[key.replace("-", "_")] = value if sep else True
    return out


@dataclass
class SubmitOptions:
    """What ``evo submit`` asks for.  ``time_min`` None: 240 minutes on Slurm, a week locally."""

    workers: int
    executor: str = "slurm"
    parallel: int | None = None          # at most this many running at once (the array's %N)
    partition: str | None = None
    time_min: int | None = None
    gpus_per_worker: int = 0
    cpus_per_worker: int | None = None
    mem: str | None = None
    account: str | None = None
    qos: str | None = None
    sbatch_opts: dict[str, Any] = field(default_factory=dict)
    setup: list[str] = field(default_factory=list)   # shell lines before the worker starts
    signal_delay_s: int = 120            # SIGUSR2 this long before the time limit
    handback_timeout_s: float | None = None   # default: signal_delay_s / 2
    max_requeues: int = 1000             # time-limit requeues per task before giving up
    job_name: str = "evo-worker"
    device: str | None = None
    folder: str | None = None            # submitit's folder; default POPDIR/logs/submitit

    def validate(self) -> "SubmitOptions":
        if self.executor not in EXECUTORS:
            raise LaunchError(f"executor {self.executor!r}: use slurm or local")
        if not isinstance(self.workers, int) or self.workers < 1:
            raise LaunchError(f"--workers {self.workers!r}: submit at least one worker")
        if self.parallel is not None and self.parallel < 1:
            raise LaunchError(f"--parallel {self.parallel}: allow at least one running worker")
        if self.gpus_per_worker < 0:
            raise LaunchError("--gpus-per-worker must be 0 or more")
        if self.cpus_per_worker is not None and self.cpus_per_worker < 1:
            raise LaunchError("--cpus-per-worker must be at least 1")
        if self.signal_delay_s < 1:
            raise LaunchError("--signal-delay must be at least one second")
        if self.max_requeues < 0:
            raise LaunchError("--max-requeues must be 0 or more")
        if self.time_min is not None and self.time_min * 60 <= self.signal_delay_s:
            raise LaunchError(f"the time limit ({self.time_min} min) must be longer than the signal lead "
                              f"(--signal-delay {self.signal_delay_s} s)")
        if self.mem is not None:
            self.mem = parse_mem(self.mem)
        if self.executor == "local":
            ignored = [name for name, v in (("--partition", self.partition), ("--account", self.account),
                                            ("--qos", self.qos), ("--mem", self.mem),
                                            ("--sbatch-opt", self.sbatch_opts)) if v]
            if ignored:
                raise LaunchError(f"{', '.join(ignored)} only apply to --executor slurm")
        return self

    @property
    def handback_s(self) -> float:
        return float(self.handback_timeout_s if self.handback_timeout_s is not None
                     else max(5.0, self.signal_delay_s / 2))


# ----------------------------------------------------------------------------------- the job
def _say(label: str, msg: str) -> None:
    print(f"[{time.strftime('%Y-%m-%d %H:%M:%S')}] {label}: {msg}", flush=True)


class WorkerJob(submitit.helpers.Checkpointable):
    """One evo worker as a submitit job: picklable, stateless, requeued on SIGUSR2.

    ``__call__`` runs :class:`evo.worker.Worker` on ``popdir`` in a thread and waits for it in
    the main thread, where signal handlers run.  It returns a summary dict when the worker ends
    (experiment finished or stopped, or handed back after SIGTERM/SIGINT) and raises when the
    worker fails.  ``checkpoint()`` (called by submitit's SIGUSR2 handler) makes the worker hand
    its child back, then asks for a requeue of a fresh ``WorkerJob``.
    """

    def __init__(self, popdir: str, *, device: str | None = None, max_children: int | None = None,
                 handback_timeout_s: float = 60.0) -> None:
        self.popdir = str(popdir)
        self.device = device
        self.max_children = max_children
        self.handback_timeout_s = float(handback_timeout_s)
        self._reset()

    def _reset(self) -> None:
        self._worker: Any = None
        self._thread: threading.Thread | None = None
        self._code: int | None = None
        self._error: BaseException | None = None
        self._label = "evo worker"

    def _params(self) -> dict[str, Any]:
        return {"popdir": self.popdir, "device": self.device, "max_children": self.max_children,
                "handback_timeout_s": self.handback_timeout_s}

    def __getstate__(self) -> dict[str, Any]:
        return self._params()             # never the thread or the worker

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._reset()

    def __repr__(self) -> str:
        return f"WorkerJob({self.popdir!r})"

    # ------------------------------------------------------------------ identity
    @staticmethod
    def _job_label() -> tuple[str, str]:
        """(log label, worker id) from the job's environment."""
        restart = os.environ.get("SLURM_RESTART_COUNT", "0")
        if os.environ.get("SUBMITIT_EXECUTOR") == "slurm":
            job = slurm_job_id_from_env() or "?"
            return f"job {job} run {restart}", f"submitit-{job}-r{restart}"
        if os.environ.get("SUBMITIT_EXECUTOR") == "local":
            job = os.environ.get("SUBMITIT_LOCAL_JOB_ID", "?")
            return f"local job {job} pid {os.getpid()}", f"local-{job}-{os.getpid()}"
        return f"pid {os.getpid()}", f"{socket.gethostname().split('.')[0]}-{os.getpid()}"

    # ------------------------------------------------------------------ running
    def __call__(self) -> dict[str, Any]:
        from evo.worker.loop import EXIT_ERROR, Worker, limit_threads

        self._reset()
        self._label, worker_id = self._job_label()
        limit_threads()
        label = self._label
        worker = Worker(self.popdir, worker_id=worker_id, device=self.device, max_children=self.max_children,
                        progress=lambda msg: _say(label, msg))
        self._worker = worker

        def stop(signum: int, frame: Any) -> None:
            _say(label, f"got {signal.Signals(signum).name}: handing the child back, not requeueing")
            self._interrupt(signal.Signals(signum).name)

        # submitit only logs SIGTERM; here it hands the child back (scancel, preemption, time limit)
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, stop)
            signal.signal(signal.SIGINT, stop)

        def run() -> None:
            try:
                self._code = worker.run()
            except BaseException as exc:  # noqa: BLE001 - re-raised in the main thread
                self._error = exc
                self._code = EXIT_ERROR

        self._thread = threading.Thread(target=run, name="evo-worker", daemon=True)
        self._thread.start()
        while self._thread.is_alive():
            self._thread.join(0.25)          # short waits: signal handlers run in between
        if self._error is not None:
            _say(label, f"the worker failed: {self._error!r}")
            raise self._error
        _say(label, f"worker exited with code {self._code} after {worker.children} children")
        return {"exit_code": self._code, "worker": worker.me.id, "children": worker.children,
                "reason": worker.stop.reason or None}

    def _interrupt(self, reason: str) -> None:
        w = self._worker
        if w is not None:
            w.stop.request(reason)

    def checkpoint(self, *args: Any, **kwargs: Any) -> DelayedSubmission | None:
        """submitit's SIGUSR2 handler calls this before requeueing: hand the child back first."""
        label = self._label
        t = self._thread
        if t is not None and t.is_alive():
            _say(label, "got SIGUSR2 (time limit ahead or preemption): checkpointing and handing the child back")
            self._interrupt("SIGUSR2")
            t.join(self.handback_timeout_s)
            if t.is_alive():
                _say(label, f"the worker did not hand its child back within {self.handback_timeout_s:.0f} s; "
                            "its lease will expire and another worker will recover the child")
        if self._error is not None:
            _say(label, f"the worker failed ({self._error!r}): not requeueing")
            return None
        _say(label, "requeueing this task")
        return DelayedSubmission(type(self)(**self._params()))


# ----------------------------------------------------------------------------------- plan
def _folder(popdir: str, opts: SubmitOptions) -> str:
    return os.path.abspath(opts.folder or os.path.join(popdir, DEFAULT_FOLDER))


def _slurm_parameters(opts: SubmitOptions) -> dict[str, Any]:
    """SlurmExecutor.update_parameters(...) arguments."""
    p: dict[str, Any] = {
        "job_name": opts.job_name,
        "time": opts.time_min or 240,
        "signal_delay_s": int(opts.signal_delay_s),
        "array_parallelism": min(opts.parallel or opts.workers, opts.workers),
        "stderr_to_stdout": True,
        "additional_parameters": {"requeue": True, **opts.sbatch_opts},
    }
    for key, value in (("partition", opts.partition), ("cpus_per_task", opts.cpus_per_worker),
                       ("gpus_per_node", opts.gpus_per_worker or None), ("mem", opts.mem),
                       ("account", opts.account), ("qos", opts.qos)):
        if value is not None:
            p[key] = value
    if opts.setup:
        p["setup"] = list(opts.setup)
    return p


def _local_parameters(opts: SubmitOptions) -> dict[str, Any]:
    """LocalExecutor.update_parameters(...) arguments (visible_gpus is set per worker)."""
    p: dict[str, Any] = {"timeout_min": opts.time_min or _LOCAL_DEFAULT_TIME_MIN,
                         "signal_delay_s": int(opts.signal_delay_s), "stderr_to_stdout": True,
                         "gpus_per_node": opts.gpus_per_worker}
    if opts.setup:
        p["setup"] = list(opts.setup)
    return p


def _submit_command(folder: str) -> str:
    return " ".join([shlex.quote(sys.executable), "-u -m submitit.core._submit", shlex.quote(folder)])


def sbatch_script(folder: str, params: dict[str, Any], workers: int) -> str:
    """The job script that submitit's Slurm executor submits for ``params`` (the arguments of
    ``SlurmExecutor.update_parameters``) and ``workers`` array tasks, for ``--dry-run``.

    Written from the parameters, as submitit writes it (one ``#SBATCH`` line per option, sorted;
    the output file in ``folder``; ``--signal=USR2@<signal_delay_s>``; the setup lines; the
    command that runs the pickled job), so that nothing private of submitit is needed.  The file
    that a real submission writes is kept as ``<folder>/<JOBID>_submission.sh``.
    """
    p = dict(params)
    setup = list(p.pop("setup", None) or [])
    extra = dict(p.pop("additional_parameters", None) or {})
    signal_delay_s = int(p.pop("signal_delay_s", 90))
    parallelism = int(p.pop("array_parallelism", workers))
    stderr_to_stdout = bool(p.pop("stderr_to_stdout", False))
    options: dict[str, Any] = {k: v for k, v in p.items() if v is not None}
    options.setdefault("nodes", 1)
    options.setdefault("wckey", "submitit")
    options["signal"] = f"USR2@{signal_delay_s}"
    job = "%A_%a" if workers > 1 else "%j"
    stdout = os.path.join(folder, f"{job}_%t_log.out")
    stderr = os.path.join(folder, f"{job}_%t_log.err")
    if workers > 1:
        options["array"] = f"0-{workers - 1}%{min(workers, parallelism)}"
    options["output"] = stdout.replace("%t", "0")
    if not stderr_to_stdout:
        options["error"] = stderr.replace("%t", "0")
    options["open-mode"] = "append"
    options.update(extra)
    lines = ["#!/bin/bash", "", "# Parameters"]
    for key in sorted(options):
        flag, value = key.replace("_", "-"), options[key]
        lines.append(f"#SBATCH --{flag}" if value is True else f"#SBATCH --{flag}={shlex.quote(str(value))}")
    if setup:
        lines += ["", "# setup", *setup]
    srun = ["srun", "--unbuffered", "--output", stdout] + ([] if stderr_to_stdout else ["--error", stderr])
    lines += ["", "# command", "export SUBMITIT_EXECUTOR=slurm",
              " ".join(shlex.quote(a) for a in srun) + " " + _submit_command(folder), ""]
    return "\n".join(lines)


def _check_popdir(popdir: str | os.PathLike) -> str:
    from evo.population import Population

    root = os.path.abspath(os.fspath(popdir))
    Population.open(root)                 # clear error when it is not a population
    return root


def _check_writable(root: str, folder: str) -> None:
    """Workers write into the population and their jobs' output into ``folder``: a read-only mount
    there is one clear error now, not jobs that fail (or never start) on the nodes."""
    d = folder
    while not os.path.isdir(d) and os.path.dirname(d) != d:
        d = os.path.dirname(d)                 # the part of the folder that exists already
    for where in (root, d):
        if not os.access(where, os.W_OK):
            raise LaunchError(f"cannot write into {where} (read-only or no permission): workers write into the "
                              f"population directory and their jobs' output into {folder}; mount it read-write "
                              f"on every node, or choose another population directory")


def plan(popdir: str | os.PathLike, opts: SubmitOptions) -> dict[str, Any]:
    """What :func:`submit` would submit, without submitting: executor, folder, parameters, and
    (Slurm) the generated sbatch script."""
    opts.validate()
    root = _check_popdir(popdir)
    folder = _folder(root, opts)
    _check_writable(root, folder)
    out: dict[str, Any] = {"popdir": root, "executor": opts.executor, "workers": opts.workers, "folder": folder,
                           "max_requeues": opts.max_requeues, "handback_timeout_s": opts.handback_s,
                           "device": opts.device}
    if opts.executor == "slurm":
        params = _slurm_parameters(opts)
        out["parameters"] = params
        out["script"] = sbatch_script(folder, params, opts.workers)
    else:
        params = _local_parameters(opts)
        out["parameters"] = params
        out["visible_gpus"] = _local_gpu_plan(opts)
        out["script"] = None
    return out


def _local_gpu_plan(opts: SubmitOptions) -> list[list[int]]:
    """GPUs each local worker sees: round robin over the machine's GPUs."""
    g = opts.gpus_per_worker
    if g <= 0:
        return [[] for _ in range(opts.workers)]
    n = _local_gpu_count()
    if n < g:
        raise LaunchError(f"--gpus-per-worker {g}: this machine has {n} GPU(s) visible")
    return [[(k * g + j) % n for j in range(g)] for k in range(opts.workers)]


def _local_gpu_count() -> int:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([x for x in visible.split(",") if x.strip()])
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(1 for line in out.splitlines() if line.startswith("GPU "))


# ----------------------------------------------------------------------------------- submit
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
    make = lambda: WorkerJob(root, device=opts.device, handback_timeout_s=opts.handback_s)  # noqa: E731
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
    line = (json.dumps(record, sort_keys=True) + "\n").encode()
    fd = os.open(os.path.join(root, JOBS_FILE), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)


def recorded_jobs(popdir: str | os.PathLike) -> list[dict[str, Any]]:
    """Every submission recorded in ``POPDIR/jobs.jsonl``, oldest first (torn lines skipped)."""
    path = os.path.join(os.fspath(popdir), JOBS_FILE)
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        return []
    out = []
    for line in lines:
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict) and isinstance(rec.get("job_ids"), list):
            out.append(rec)
    return out


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
        ])
    return "\n".join([
        f"started {record['workers']} local worker(s) in the background (submitit's local executor)",
        f"job ids (controller pids): {' '.join(ids)}",
        f"logs: {folder}/<PID>_0_log.out; stop: evo stop POPDIR",
    ])


def plan_text(p: dict[str, Any]) -> str:
    """What ``evo submit --dry-run`` prints."""
    lines = [f"dry run: nothing submitted. {p['workers']} worker(s) on {p['popdir']} "
             f"with submitit's {p['executor']} executor", f"folder: {p['folder']}", "parameters:"]
    for k, v in sorted(p["parameters"].items()):
        lines.append(f"  {k:22s} {v}")
    lines.append(f"  {'max_requeues':22s} {p['max_requeues']}")
    if p["executor"] == "local":
        lines.append(f"  {'visible_gpus':22s} {p['visible_gpus']}")
    if p.get("script"):
        lines += ["sbatch script:", p["script"].rstrip()]
    return "\n".join(lines)
