"""A real single-node Slurm cluster for the tests: the session fixture ``slurm_cluster``.

The fixture starts ``slurm/dev-cluster/start.sh --accounting`` in a fresh state directory on free
ports, puts ``SLURM_CONF`` into ``os.environ`` (so that sbatch, squeue, sacct and submitit, and the
jobs they start, talk to this cluster), yields a :class:`SlurmCluster` and stops the cluster at the
end of the session. Tests that use it are marked ``pytest.mark.slurm``.

Without Slurm on the machine the tests are skipped with the command that installs it, except under
CI (``CI`` set, e.g. ``CI=true``): there a missing Slurm is an error, because CI must run them.

Knobs (environment):
  EVO_TEST_SLURM_CPUS   CPUs the node offers (default 4, oversubscribing small machines)
  EVO_TEST_SLURM_STATE  use this state directory instead of a temporary one, and leave the
                        cluster running after the session (fast reruns while developing)
  EVO_TEST_SLURM_KEEP   1: keep the temporary state directory (logs) after the session
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import pytest

REPO = Path(__file__).resolve().parent.parent
START = REPO / "slurm" / "dev-cluster" / "start.sh"
STOP = REPO / "slurm" / "dev-cluster" / "stop.sh"

# states after which a job (or array task) never runs again
FINAL_STATES = frozenset({
    "COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "PREEMPTED", "OUT_OF_MEMORY",
    "BOOT_FAIL", "DEADLINE", "REVOKED",
})
COMMANDS = ("munged", "mungekey", "slurmctld", "slurmd", "sbatch", "squeue", "scancel", "scontrol",
            "sacct", "sacctmgr", "slurmdbd", "mariadbd", "mariadb-install-db")
INSTALL_HINT = ("run `bash slurm/dev-cluster/start.sh --install --accounting /tmp/evo-slurm` once as root "
                "(or: apt-get install --no-install-recommends slurm-wlm munge slurmdbd mariadb-server)")


class SlurmError(RuntimeError):
    """A Slurm command failed; the message carries its output."""


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def unavailable(reason: str):
    """Skip, or under CI fail: CI installs everything, so every test must run there."""
    if _in_ci():
        pytest.fail(f"CI is set, so every test must run, but {reason}", pytrace=False)
    pytest.skip(reason)


def _ports_free(base: int, count: int = 4) -> bool:
    for port in range(base, base + count):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("0.0.0.0", port))
            except OSError:
                return False
    return True


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"({path} unreadable)"


def _job_ids(ids: str | int | Iterable[str | int]) -> list[str]:
    if isinstance(ids, (str, int)):
        ids = [ids]
    return [str(i) for i in ids]


@dataclass
class SlurmCluster:
    """A running single-node cluster, and small helpers around the Slurm commands."""

    state_dir: Path
    conf: Path
    cpus: int
    partition: str = "debug"
    accounting: bool = True
    start_seconds: float = 0.0

    @property
    def env(self) -> dict[str, str]:
        """An environment for subprocesses that use this cluster: os.environ plus SLURM_CONF."""
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    # ------------------------------------------------------------------ commands
    def run(self, *cmd: str | os.PathLike, check: bool = True, timeout: float = 60,
            env: dict[str, str] | None = None, cwd: str | os.PathLike | None = None
            ) -> subprocess.CompletedProcess:
        """Run a command against this cluster (SLURM_CONF set); raise SlurmError if it fails."""
        full_env = {**self.env, **(env or {})}   # read os.environ now, not at the start
        proc = subprocess.run([str(c) for c in cmd], env=full_env, cwd=cwd, capture_output=True,
                              text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise SlurmError(f"{' '.join(map(str, cmd))} exited with {proc.returncode}:\n"
                             f"{proc.stdout}{proc.stderr}")
        return proc

    def sbatch(self, *args: str | os.PathLike, wrap: str | None = None,
               cwd: str | os.PathLike | None = None, env: dict[str, str] | None = None) -> str:
        """Submit a job; return its id ("123"; an array's tasks are "123_0", "123_1", ...).

        ``args`` go to sbatch unchanged: options, then the script and its arguments, e.g.
        ``sbatch("--array=0-3", "-o", out, "slurm/worker.sbatch", popdir)``, or options and
        ``wrap="echo hi"``. ``env`` is added to the job's environment (sbatch passes the whole
        environment of the submitting process to the job).
        """
        cmd = ["sbatch", "--parsable", *map(str, args)]
        if wrap is not None:
            cmd += ["--wrap", wrap]
        out = self.run(*cmd, cwd=cwd, env=env).stdout.strip()
        job_id = out.splitlines()[-1].split(";")[0] if out else ""
        if not job_id.isdigit():
            raise SlurmError(f"sbatch printed no job id: {out!r}")
        return job_id

    def scancel(self, *job_ids: str | int, signal: str | None = None, batch: bool = False) -> None:
        """Cancel jobs, or with ``signal`` send them a signal (``batch``: to the batch shell only)."""
        cmd = ["scancel"]
        if signal:
            cmd += [f"--signal={signal}"]
        if batch:
            cmd += ["--batch"]
        self.run(*cmd, *map(str, job_ids))

    def squeue(self, job_ids: str | int | Iterable[str | int] | None = None) -> list[dict[str, str]]:
        """Jobs in the queue (pending, running, completing), one row per array task.

        Rows: id ("123", "123_4", or "123_[5-7]" for tasks not started yet), job_id, array_job_id,
        state, reason, name. With ``job_ids``, only those jobs (an array id selects its tasks).
        """
        fmt = "%i|%A|%F|%T|%r|%j"
        out = self.run("squeue", "-h", "-r", "-o", fmt).stdout
        rows = []
        for line in out.splitlines():
            parts = line.split("|", 5)
            if len(parts) == 6:
                rows.append(dict(zip(("id", "job_id", "array_job_id", "state", "reason", "name"), parts)))
        if job_ids is None:
            return rows
        wanted = set(_job_ids(job_ids))
        return [r for r in rows if wanted & {r["id"], r["job_id"], r["array_job_id"]}]

    def sacct(self, job_ids: str | int | Iterable[str | int], duplicates: bool = False
              ) -> list[dict[str, str]]:
        """Accounting records (allocations only): id, job_id, state, exit_code, elapsed.

        ``state`` is the first word ("CANCELLED by 0" -> "CANCELLED"). ``duplicates``: also
        the earlier runs of requeued jobs (sacct -D), oldest first.
        """
        cmd = ["sacct", "-n", "-X", "-P", "-o", "JobID,JobIDRaw,State,ExitCode,Elapsed",
               "-j", ",".join(_job_ids(job_ids))]
        if duplicates:
            cmd.append("-D")
        rows = []
        for line in self.run(*cmd).stdout.splitlines():
            parts = line.split("|")
            if len(parts) == 5:
                rows.append({"id": parts[0], "job_id": parts[1], "state": parts[2].split(" ")[0],
                             "exit_code": parts[3], "elapsed": parts[4]})
        return rows

    def job_info(self, job_id: str | int) -> dict[str, str]:
        """``scontrol show job`` as a dict (JobState, Restarts, Reason, ...); {} once it is gone."""
        proc = self.run("scontrol", "show", "job", "-o", str(job_id), check=False)
        info: dict[str, str] = {}
        if proc.returncode != 0:
            return info
        for word in proc.stdout.split():
            key, sep, value = word.partition("=")
            if sep and key not in info:
                info[key] = value
        return info

    def wait_for_state(self, job_id: str | int, states: str | Iterable[str], timeout: float = 60,
                       poll: float = 0.2) -> str:
        """Wait until one job (or one array task, "123_0") is in one of ``states``; return it."""
        wanted = {states} if isinstance(states, str) else set(states)
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            state = self.job_info(job_id).get("JobState", "")
            if state in wanted:
                return state
            time.sleep(poll)
        raise TimeoutError(f"job {job_id} not {'/'.join(sorted(wanted))} after {timeout:.0f} s "
                           f"(state: {state or 'gone'})\n{self.diagnostics()}")

    def wait_for_jobs(self, job_ids: str | int | Iterable[str | int], timeout: float = 120,
                      poll: float = 0.5) -> dict[str, str]:
        """Wait until the jobs have left the queue and are accounted; return {id: final state}.

        An array job's id stands for all its tasks; the result has one entry per task
        ("123_0": "COMPLETED", ...). Requeued jobs count as finished only after their last run.
        """
        ids = _job_ids(job_ids)
        deadline = time.monotonic() + timeout
        seen: set[str] = set()       # tasks seen in the queue: each must show up in sacct
        states: dict[str, str] = {}
        while True:
            queued = self.squeue(ids)
            seen.update(r["id"] for r in queued if "[" not in r["id"])
            if not queued:
                states = self._final_states(ids)
                if states is not None and seen <= states.keys():
                    return states
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"jobs {', '.join(ids)} not finished after {timeout:.0f} s; still queued: "
                    f"{[(r['id'], r['state'], r['reason']) for r in queued]}; "
                    f"accounted: {states}\n{self.diagnostics()}")
            time.sleep(poll)

    def _final_states(self, ids: list[str]) -> dict[str, str] | None:
        """{id: state} if every record is final, else None (accounting lags the queue by ~1 s)."""
        if self.accounting:
            rows = [(r["id"], r["state"]) for r in self.sacct(ids)]
        else:
            rows = [(i, self.job_info(i).get("JobState", "")) for i in ids]
        if not rows or any(state not in FINAL_STATES for _, state in rows):
            return None
        return dict(rows)

    def diagnostics(self) -> str:
        """The last lines of the daemons' logs, for failure messages."""
        logs = self.state_dir / "log"
        return "\n".join(f"--- {name}:\n{_tail(logs / name, 8)}"
                         for name in ("slurmctld.log", "slurmd.log") if (logs / name).exists())


def _start(state: Path, env: dict[str, str], pick_ports: bool) -> tuple[dict[str, str], float]:
    """Run start.sh; with ``pick_ports``, on free ports, moving on when they are taken meanwhile."""
    last = ""
    for _attempt in range(5 if pick_ports else 1):
        run_env = dict(env)
        if pick_ports:
            for _ in range(200):
                base = random.randrange(20000, 32000, 4)
                if _ports_free(base):
                    break
            run_env["SLURM_LOCAL_PORT_BASE"] = str(base)
        t0 = time.monotonic()
        proc = subprocess.run(["bash", str(START), "--accounting", str(state)], env=run_env,
                              stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300)
        if proc.returncode == 0:
            return run_env, time.monotonic() - t0
        last = proc.stdout + proc.stderr
        if not pick_ports or "in use" not in last:
            break
    raise SlurmError(f"{START} --accounting {state} failed:\n{last}")


@pytest.fixture(scope="session")
def slurm_cluster():
    """A real Slurm cluster with accounting for this test session (see the module docstring)."""
    missing = [c for c in COMMANDS if shutil.which(c) is None]
    if missing:
        unavailable(f"Slurm not installed (missing: {' '.join(missing)}): {INSTALL_HINT}")
    if os.geteuid() != 0:
        unavailable("the local Slurm cluster (slurm/dev-cluster/start.sh) must be started as root")

    cpus = int(os.environ.get("EVO_TEST_SLURM_CPUS", "4"))
    given = os.environ.get("EVO_TEST_SLURM_STATE")
    state = Path(given) if given else Path(tempfile.mkdtemp(prefix="evo-slurm-", dir="/tmp"))
    env = {k: v for k, v in os.environ.items() if k != "SLURM_CONF"}
    env.setdefault("SLURM_LOCAL_CPUS", str(cpus))
    env.setdefault("SLURM_LOCAL_CLUSTER", "evotest")
    try:
        env, seconds = _start(state, env, pick_ports=not given and "SLURM_LOCAL_PORT_BASE" not in env)
    except (SlurmError, subprocess.TimeoutExpired) as exc:
        _stop(state, env)
        pytest.fail(f"could not start the local Slurm cluster: {exc}", pytrace=False)

    state = state.resolve()
    conf = state / "etc" / "slurm.conf"
    saved = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(conf)
    cluster = SlurmCluster(state_dir=state, conf=conf, cpus=int(env["SLURM_LOCAL_CPUS"]),
                           start_seconds=seconds)
    try:
        yield cluster
    finally:
        if saved is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = saved
        if not given:
            stopped = _stop(state, env)
            if stopped and os.environ.get("EVO_TEST_SLURM_KEEP", "") in ("", "0"):
                shutil.rmtree(state, ignore_errors=True)


def _stop(state: Path, env: dict[str, str]) -> bool:
    proc = subprocess.run(["bash", str(STOP), str(state)], env=env, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        print(f"\n{STOP} {state} failed (state kept there):\n{proc.stdout}{proc.stderr}")
    return proc.returncode == 0
