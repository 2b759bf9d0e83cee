"""The job that ``evo submit`` runs: :class:`WorkerJob`, one evo worker as a requeueable submitit callable.

submitit asks Slurm for ``--signal=USR2@<signal_delay_s>`` and, inside the job, installs a SIGUSR2
handler that calls the callable's ``checkpoint()`` and then requeues the job.  :class:`WorkerJob`
runs the worker loop in a thread, so that this handler (which Python runs in the main thread) can
stop it: ``checkpoint()`` sets the worker's stop request, waits until the worker has checkpointed
its in-flight child and handed it back to the population, and only then returns a fresh
``WorkerJob`` to requeue.  SIGTERM and SIGINT hand the child back the same way, without a requeue.

Several children per GPU (``children_per_gpu`` > 1): the job runs a team of ``members`` worker processes
(:class:`evo.worker.team.Team`) instead of the thread, forwards the signals to all of them, and
``checkpoint()`` requeues once every member has handed its child back.  One Slurm task per team, not one
per member: submitit checkpoints and requeues from the task of rank 0 only, so members that were Slurm
tasks of their own would never be asked to hand their children back.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from typing import Any

import submitit
from submitit.helpers import DelayedSubmission

from evo.base.slurm import slurm_job_id_from_env

__all__ = ["WorkerJob"]


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
                 handback_timeout_s: float = 60.0, children_per_gpu: int = 1, members: int | None = None) -> None:
        self.popdir = str(popdir)
        self.device = device
        self.max_children = max_children
        self.handback_timeout_s = float(handback_timeout_s)
        self.children_per_gpu = int(children_per_gpu)
        self.members = members
        self._reset()

    def _reset(self) -> None:
        self._worker: Any = None
        self._team: Any = None
        self._thread: threading.Thread | None = None
        self._code: int | None = None
        self._error: BaseException | None = None
        self._label = "evo worker"

    def _params(self) -> dict[str, Any]:
        return {"popdir": self.popdir, "device": self.device, "max_children": self.max_children,
                "handback_timeout_s": self.handback_timeout_s, "children_per_gpu": self.children_per_gpu,
                "members": self.members}

    def __getstate__(self) -> dict[str, Any]:
        return self._params()             # never the thread, the worker or the team

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update({"children_per_gpu": 1, "members": None, **state})   # pickles of older jobs
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
        if self.children_per_gpu > 1:
            return self._run_team(worker_id)
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

    def _run_team(self, worker_id: str) -> dict[str, Any]:
        """A team of worker processes, ``children_per_gpu`` per GPU, waited for in the main thread."""
        from evo.worker.codes import EXIT_DONE, EXIT_INTERRUPTED
        from evo.worker.team import Team

        label = self._label
        team = Team(self.popdir, children_per_gpu=self.children_per_gpu, members=self.members,
                    worker_id=worker_id, device=self.device, max_children=self.max_children,
                    progress=lambda msg: _say(label, msg))
        self._team = team

        def stop(signum: int, frame: Any) -> None:
            _say(label, f"got {signal.Signals(signum).name}: the team hands its children back, not requeueing")
            team.forward(signum)

        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, stop)
            signal.signal(signal.SIGINT, stop)
        team.start()
        team.wait()                          # short sleeps: signal handlers run in between
        code = team.exit_code()
        _say(label, f"the team exited with code {code} (its members' codes: {team.codes()})")
        if code not in (EXIT_DONE, EXIT_INTERRUPTED):
            raise RuntimeError(f"a worker of the team failed (exit code {code}; the members' codes "
                               f"{team.codes()}); see its messages above")
        return {"exit_code": code, "worker": worker_id, "children": None, "members": team.codes(),
                "reason": team.reason or None}

    def _interrupt(self, reason: str) -> None:
        w = self._worker
        if w is not None:
            w.stop.request(reason)

    def _checkpoint_team(self) -> DelayedSubmission | None:
        label, team = self._label, self._team
        if not team.done:
            _say(label, "got SIGUSR2 (time limit ahead or preemption): the team checkpoints and hands its "
                        "children back")
            team.forward(signal.SIGUSR2)
            if not team.wait(self.handback_timeout_s):
                _say(label, f"a worker of the team did not hand its child back within "
                            f"{self.handback_timeout_s:.0f} s; its lease will expire and another worker will "
                            f"recover the child")
        if team.failure is not None:
            _say(label, f"a worker of the team failed (members' codes {team.codes()}): not requeueing")
            return None
        _say(label, "requeueing this task")
        return DelayedSubmission(type(self)(**self._params()))

    def checkpoint(self, *args: Any, **kwargs: Any) -> DelayedSubmission | None:
        """submitit's SIGUSR2 handler calls this before requeueing: hand the child back first (every
        child of a team)."""
        if self._team is not None:
            return self._checkpoint_team()
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
