"""What ``evo submit`` asks for: :class:`SubmitOptions`, checked, and the parsers of its option values."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Sequence

__all__ = ["EXECUTORS", "LaunchError", "SubmitOptions", "parse_mem", "parse_sbatch_opts", "parse_time"]

EXECUTORS = ("slurm", "local")
#: sbatch options that evo submit sets itself and that --sbatch-opt may not change.
_RESERVED_SBATCH = frozenset({"array", "output", "error", "wrap", "parsable"})


class LaunchError(ValueError):
    """A bad submission request or a failed submission; the message says what to do."""


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
    children_per_gpu: int = 1            # a team of this many workers on each GPU of a job (evo.worker.team)
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
        if not isinstance(self.children_per_gpu, int) or self.children_per_gpu < 1:
            raise LaunchError(f"--children-per-gpu {self.children_per_gpu!r}: train at least one child per GPU")
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
    def processes_per_worker(self) -> int:
        """Worker processes each job runs: one, or a team of ``children_per_gpu`` on each of its GPUs
        (on each job's CPUs when it asks for no GPU)."""
        return self.children_per_gpu * max(1, self.gpus_per_worker) if self.children_per_gpu > 1 else 1

    @property
    def handback_s(self) -> float:
        return float(self.handback_timeout_s if self.handback_timeout_s is not None
                     else max(5.0, self.signal_delay_s / 2))
