"""The one Slurm job-id formatter (pure Python): how evo names the Slurm job a worker runs in.

An array task is named ``<array job id>_<task id>`` (``12345_7``), as ``squeue`` and ``scancel``
write it; a plain job by its ``SLURM_JOB_ID``; outside Slurm there is no name.  Leases, fitness
records, ``evo status``, the worker ids of ``evo submit`` and the analysis all use this one
function, so that a job is written the same way everywhere.
"""

from __future__ import annotations

import os
from typing import Any, Mapping

__all__ = ["slurm_job_id", "slurm_job_id_from_env"]


def _given(x: Any) -> bool:
    return x is not None and str(x).strip() != ""


def slurm_job_id(job_id: Any = None, array_job_id: Any = None, array_task_id: Any = None) -> str | None:
    """``"12345_7"`` for array task 7 of array job 12345, else ``"12345"`` (the job id), else None.

    Values may be strings (from the environment) or numbers (from a JSON record).
    """
    if _given(array_job_id) and _given(array_task_id):
        return f"{str(array_job_id).strip()}_{str(array_task_id).strip()}"
    if _given(job_id):
        return str(job_id).strip()
    return None


def slurm_job_id_from_env(env: Mapping[str, str] | None = None) -> str | None:
    """:func:`slurm_job_id` of this process's job (``SLURM_JOB_ID``, ``SLURM_ARRAY_JOB_ID``,
    ``SLURM_ARRAY_TASK_ID``); None outside Slurm."""
    env = os.environ if env is None else env
    return slurm_job_id(env.get("SLURM_JOB_ID"), env.get("SLURM_ARRAY_JOB_ID"), env.get("SLURM_ARRAY_TASK_ID"))
