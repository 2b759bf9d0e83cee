"""The worker's exit codes, the contract of ``slurm/worker.sbatch`` (pure: no torch).

0 when the experiment is finished or stopped, 3 when interrupted (SIGTERM, SIGUSR2, ``--time-limit``)
after handing the in-flight child back, 2 when a person must act first (one line says what; the child
was handed back), 1 on any other error.  A team of workers (``--children-per-gpu``) answers for all
its members with one of these codes.
"""

from __future__ import annotations

__all__ = ["EXIT_DONE", "EXIT_ERROR", "EXIT_INTERRUPTED", "EXIT_NEEDS_FIX"]

EXIT_DONE = 0
EXIT_ERROR = 1
EXIT_NEEDS_FIX = 2
EXIT_INTERRUPTED = 3
