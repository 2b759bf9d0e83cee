"""What ``evo submit`` would submit: the executor's parameters and, for Slurm, the job script
(``--dry-run``), written from the parameters with submitit's public API only."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from typing import Any

from evo.launch.options import LaunchError, SubmitOptions

__all__ = ["DEFAULT_FOLDER", "local_gpu_plan", "local_parameters", "plan", "plan_text", "sbatch_script",
           "slurm_parameters", "submit_command"]

#: submitit's folder (pickles, logs), relative to the population directory.
DEFAULT_FOLDER = os.path.join("logs", "submitit")
_LOCAL_DEFAULT_TIME_MIN = 7 * 24 * 60


def folder_of(popdir: str, opts: SubmitOptions) -> str:
    return os.path.abspath(opts.folder or os.path.join(popdir, DEFAULT_FOLDER))


def slurm_parameters(opts: SubmitOptions) -> dict[str, Any]:
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


def local_parameters(opts: SubmitOptions) -> dict[str, Any]:
    """LocalExecutor.update_parameters(...) arguments (visible_gpus is set per worker)."""
    p: dict[str, Any] = {"timeout_min": opts.time_min or _LOCAL_DEFAULT_TIME_MIN,
                         "signal_delay_s": int(opts.signal_delay_s), "stderr_to_stdout": True,
                         "gpus_per_node": opts.gpus_per_worker}
    if opts.setup:
        p["setup"] = list(opts.setup)
    return p


def submit_command(folder: str) -> str:
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
              " ".join(shlex.quote(a) for a in srun) + " " + submit_command(folder), ""]
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
    folder = folder_of(root, opts)
    _check_writable(root, folder)
    out: dict[str, Any] = {"popdir": root, "executor": opts.executor, "workers": opts.workers, "folder": folder,
                           "max_requeues": opts.max_requeues, "handback_timeout_s": opts.handback_s,
                           "device": opts.device, "children_per_gpu": opts.children_per_gpu,
                           "processes_per_worker": opts.processes_per_worker}
    if opts.executor == "slurm":
        params = slurm_parameters(opts)
        out["parameters"] = params
        out["script"] = sbatch_script(folder, params, opts.workers)
    else:
        params = local_parameters(opts)
        out["parameters"] = params
        out["visible_gpus"] = local_gpu_plan(opts)
        out["script"] = None
    return out


def local_gpu_plan(opts: SubmitOptions) -> list[list[int]]:
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


def plan_text(p: dict[str, Any]) -> str:
    """What ``evo submit --dry-run`` prints."""
    lines = [f"dry run: nothing submitted. {p['workers']} worker(s) on {p['popdir']} "
             f"with submitit's {p['executor']} executor", f"folder: {p['folder']}", "parameters:"]
    for k, v in sorted(p["parameters"].items()):
        lines.append(f"  {k:22s} {v}")
    lines.append(f"  {'max_requeues':22s} {p['max_requeues']}")
    if p.get("processes_per_worker", 1) > 1:
        lines.append(f"  {'children_per_gpu':22s} {p['children_per_gpu']} (each job runs a team of "
                     f"{p['processes_per_worker']} worker processes; signals reach them all)")
    if p["executor"] == "local":
        lines.append(f"  {'visible_gpus':22s} {p['visible_gpus']}")
    if p.get("script"):
        lines += ["sbatch script:", p["script"].rstrip()]
    return "\n".join(lines)
