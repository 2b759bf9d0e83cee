"""Several small children per GPU: a team of worker processes sharing a GPU (pure: no torch here).

Early in an evolution every child is seed-sized, and one child leaves a GPU mostly idle however fast its
step is (docs/benchmarks.md).  ``evo worker --children-per-gpu K`` therefore runs a *team*: this process
starts K ordinary stateless workers (``evo worker --slot i``, the members) and trains nothing itself.
Each member holds its own lease and trains its own child; it makes itself one of K processes on its GPU
(:func:`evo.network.gpu.share_gpu`: its share of the GPU memory) and uses its share of the CPU threads
(``OMP_NUM_THREADS`` = the CPUs of this process divided among the members, unless already set).  A team
of ``members`` = K x G processes puts K on each of G GPUs (:func:`evo.network.gpu.slot_device`); that is
how ``evo submit --children-per-gpu K --gpus-per-worker G`` runs each array task.  Without a GPU the
members train on the CPU, the threads divided the same way: K small children per node.

Signals.  The team forwards SIGTERM, SIGUSR2 and SIGINT to every member (each hands its child back and
exits 3); members run in their own session, so that Ctrl-C at a terminal reaches them once, through the
team, and each member asks the kernel for SIGTERM should the team die first.  The team exits with one
code under the worker's contract (:mod:`evo.worker.codes`): the code of the first member that failed
(1, 2, or 128+N for a death by a signal that the team did not forward), after asking the others to hand
their children back; else 3 when a member was interrupted (or died of a signal the team forwarded); else
0.  So ``slurm/worker.sbatch`` requeues, ends or fails a team's array task exactly as it does one worker's.
"""

from __future__ import annotations

import ctypes
import dataclasses
import os
import signal
import subprocess
import sys
import time
from typing import Callable, Mapping

from evo.worker.codes import EXIT_DONE, EXIT_INTERRUPTED
from evo.worker.signals import STOP_SIGNALS, StopRequest

__all__ = ["Member", "Team", "die_with_team", "member_device", "run_team", "share_device", "threads_per_member"]

_PR_SET_PDEATHSIG = 1  # prctl(2)
TEAM_PID = "EVO_TEAM_PID"  # the environment variable that tells a member its team's process id


def threads_per_member(members: int, environ: Mapping[str, str] | None = None) -> int | None:
    """Torch threads for each of ``members`` processes: this process's CPUs (Slurm's
    ``SLURM_CPUS_PER_TASK``, else its CPU affinity) divided among them, at least 1; None when
    ``OMP_NUM_THREADS`` is set (a per-process count the members keep)."""
    env = os.environ if environ is None else environ
    if "OMP_NUM_THREADS" in env:
        return None
    cpus = str(env.get("SLURM_CPUS_PER_TASK", "")).strip()
    if cpus.isdigit() and int(cpus) > 0:
        n = int(cpus)
    else:
        try:
            n = len(os.sched_getaffinity(0))
        except (AttributeError, OSError):
            n = os.cpu_count() or 1
    return max(1, n // max(1, int(members)))


def member_device(device: str | None, slot: int, children_per_gpu: int) -> str:
    """The device of a team's ``slot``-th member: ``device`` when one was named, else its slot's GPU
    (:func:`evo.network.gpu.slot_device`: K members per GPU in turn), or the CPU without a GPU."""
    if device not in (None, "", "auto"):
        return str(device)
    from evo.network.gpu import slot_device

    return slot_device(slot, children_per_gpu)


def share_device(device: str, children_per_gpu: int) -> str:
    """Make this process one of ``children_per_gpu`` on ``device`` (:func:`evo.network.gpu.share_gpu`,
    memory only: the team set the threads); returns a line saying what was set."""
    import torch

    from evo.network.gpu import share_gpu

    info = share_gpu(children_per_gpu, device, cpu_threads=False)
    cap = "" if info["memory_fraction"] is None else f", at most {info['memory_fraction']:.0%} of its memory"
    mps = " (CUDA MPS)" if info["mps"] else ""
    return (f"one of {children_per_gpu} children per GPU on {device}{mps}{cap}, "
            f"{torch.get_num_threads()} CPU thread(s)")


def die_with_team() -> None:
    """A member asks the kernel for SIGTERM when the team that started it dies (Linux; elsewhere a
    no-op): it then hands its child back instead of training on, unwatched."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)   # this process's own symbols: libc's prctl on Linux
        libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    except (OSError, AttributeError):
        return
    team = os.environ.get(TEAM_PID, "")
    if team.isdigit() and os.getppid() != int(team):  # the team died before the request went in
        os.kill(os.getpid(), signal.SIGTERM)


@dataclasses.dataclass
class Member:
    """One worker process of a team: its slot, its process and, once it ended, its exit code under the
    worker's contract (a death by a signal the team forwarded reads as 3)."""

    slot: int
    process: subprocess.Popen
    code: int | None = None


class Team:
    """``members`` worker processes on ``popdir``, ``children_per_gpu`` of them per GPU (module docstring).

    :meth:`start` starts them, :meth:`forward` passes a stop signal on to every member still running
    (safe in a signal handler), :meth:`wait` waits for them, :meth:`exit_code` is the team's code.
    """

    def __init__(self, popdir: str, *, children_per_gpu: int, members: int | None = None,
                 worker_id: str | None = None, device: str | None = None, time_limit_s: float | None = None,
                 max_children: int | None = None, quiet: bool = False,
                 progress: Callable[[str], None] | None = None) -> None:
        if not isinstance(children_per_gpu, int) or isinstance(children_per_gpu, bool) or children_per_gpu < 1:
            raise ValueError(f"--children-per-gpu {children_per_gpu!r}: must be an integer >= 1")
        size = children_per_gpu if members is None else members
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            raise ValueError(f"members={members!r}: a team has at least one worker")
        self.popdir = str(popdir)
        self.children_per_gpu = children_per_gpu
        self.size = size
        self.worker_id = worker_id
        self.device = device
        self.time_limit_s = time_limit_s
        self.max_children = max_children
        self.quiet = quiet
        self.progress = progress or (lambda msg: print(msg, flush=True))
        self.members: list[Member] = []
        self.forwarded: set[int] = set()
        self.reason = ""                       # the first signal forwarded
        self.failure: Member | None = None     # the first member that failed

    # ------------------------------------------------------------------ starting
    def command(self, slot: int) -> list[str]:
        """The command line of the ``slot``-th member: ``evo worker POPDIR --slot i`` with the team's options."""
        args = [sys.executable, "-m", "evo", "worker", self.popdir,
                "--children-per-gpu", str(self.children_per_gpu), "--slot", str(slot)]
        if self.worker_id:
            args += ["--worker-id", f"{self.worker_id}-s{slot}"]
        if self.device:
            args += ["--device", str(self.device)]
        if self.time_limit_s is not None:
            args += ["--time-limit", repr(float(self.time_limit_s))]
        if self.max_children is not None:
            args += ["--max-children", str(int(self.max_children))]
        if self.quiet:
            args.append("--quiet")
        return args

    def environment(self) -> dict[str, str]:
        """The members' environment: this one, with each member's share of the CPU threads."""
        env = dict(os.environ)
        threads = threads_per_member(self.size, env)
        if threads is not None:
            env["OMP_NUM_THREADS"] = str(threads)
        env.setdefault("PYTHONUNBUFFERED", "1")
        env[TEAM_PID] = str(os.getpid())
        return env

    def start(self) -> None:
        """Start the members (none after a signal was forwarded: a stop during start-up starts no more)."""
        env = self.environment()
        for slot in range(self.size):
            if self.forwarded:
                break
            process = subprocess.Popen(self.command(slot), env=env, start_new_session=True)
            self.members.append(Member(slot, process))
            for sig in sorted(self.forwarded):    # a signal that came while it was being started
                try:
                    os.kill(process.pid, sig)
                except ProcessLookupError:
                    pass
        pids = ", ".join(str(m.process.pid) for m in self.members)
        self.progress(f"a team of {len(self.members)} worker(s), {self.children_per_gpu} per GPU, on "
                      f"{self.popdir} (pids {pids}); {env.get('OMP_NUM_THREADS', 'all')} CPU thread(s) each")

    # ------------------------------------------------------------------ signals
    def forward(self, sig: int) -> None:
        """Pass ``sig`` on to every member still running (each hands its child back and exits 3)."""
        sig = int(sig)
        if not self.reason:
            self.reason = signal.Signals(sig).name
        self.forwarded.add(sig)
        for m in self.members:
            if m.process.returncode is None:   # not reaped: its pid is still its own
                try:
                    os.kill(m.process.pid, sig)
                except ProcessLookupError:
                    pass

    # ------------------------------------------------------------------ waiting
    def _ended(self, m: Member, rc: int) -> None:
        if rc < 0:
            sig = -rc
            try:
                name = signal.Signals(sig).name
            except ValueError:
                name = f"signal {sig}"
            m.code = EXIT_INTERRUPTED if sig in self.forwarded else 128 + sig
            how = f"died of {name}" + (" (forwarded: interrupted)" if sig in self.forwarded else "")
        else:
            m.code = rc
            how = f"exited with code {rc}"
        self.progress(f"team member {m.slot} (pid {m.process.pid}) {how}")
        if m.code not in (EXIT_DONE, EXIT_INTERRUPTED) and self.failure is None:
            self.failure = m
            running = [x for x in self.members if x.process.returncode is None]
            if running:
                self.progress(f"team member {m.slot} failed: asking the other {len(running)} to hand their "
                              f"children back")
                self.forward(signal.SIGTERM)

    def poll(self) -> bool:
        """Collect the members that ended; True when every member has."""
        for m in self.members:
            if m.code is None:
                rc = m.process.poll()
                if rc is not None:
                    self._ended(m, rc)
        return all(m.code is not None for m in self.members)

    def wait(self, timeout_s: float | None = None, poll_s: float = 0.1) -> bool:
        """Wait (in short sleeps, so that signal handlers run) until every member has ended, or
        ``timeout_s``; returns whether they all have."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while not self.poll():
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(poll_s)
        return True

    @property
    def done(self) -> bool:
        return self.poll()

    def codes(self) -> list[int | None]:
        """The members' exit codes by slot (None: still running)."""
        return [m.code for m in self.members]

    def exit_code(self) -> int:
        """The team's code: the first failure's; else 3 if a member was interrupted (or none started);
        else 0 (every member found the experiment over, or trained its ``--max-children``)."""
        if self.failure is not None and self.failure.code is not None:
            return self.failure.code
        if not self.members or any(m.code == EXIT_INTERRUPTED for m in self.members):
            return EXIT_INTERRUPTED
        return EXIT_DONE


def run_team(popdir: str, *, children_per_gpu: int, stop: StopRequest, members: int | None = None,
             worker_id: str | None = None, device: str | None = None, time_limit_s: float | None = None,
             max_children: int | None = None, quiet: bool = False,
             progress: Callable[[str], None] | None = None) -> int:
    """``evo worker --children-per-gpu K``: run a team in this process's foreground; returns its exit code.

    ``stop`` carries a request made before (the CLI's handlers go in first); from here on SIGTERM,
    SIGUSR2 and SIGINT are forwarded to the members.  The population is checked once, here (one line,
    exit 2, instead of one per member).
    """
    from evo.population import Population

    Population.open(popdir)                      # StoreError: not a population (exit 2)
    team = Team(popdir, children_per_gpu=children_per_gpu, members=members, worker_id=worker_id, device=device,
                time_limit_s=time_limit_s, max_children=max_children, quiet=quiet, progress=progress)
    say = team.progress

    def handler(signum: int, frame: object) -> None:
        stop.request(signal.Signals(signum).name)
        team.forward(signum)

    for sig in STOP_SIGNALS:
        signal.signal(sig, handler)
    if stop.is_set():
        say(f"stopping: {stop.reason} before the team started")
        return EXIT_INTERRUPTED
    team.start()
    team.wait()
    code = team.exit_code()
    say(f"the team ended with code {code} (its members' codes: {team.codes()})")
    return code
