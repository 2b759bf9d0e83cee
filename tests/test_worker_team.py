"""Several children per GPU: a team of worker processes (evo.worker.team), on the CPU.

The team's rules with stand-in members (its exit code, its signals, its threads), then real teams of
`evo worker --children-per-gpu 2` on a tiny population: one reaches the budget, and a stop signal makes
both workers hand their children back."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from evo.population import Population, fsck, read_events
from evo.worker.codes import EXIT_DONE, EXIT_ERROR, EXIT_INTERRUPTED, EXIT_NEEDS_FIX
from evo.worker.signals import StopRequest
from evo.worker.team import Team, run_team, threads_per_member

TINY = dict(dataset="synthetic", dataset_kwargs={"n_train": 600, "n_val": 200, "n_test": 200, "image_size": 8},
            population_size=2, lock="flock", lease_ttl_s=6.0, heartbeat_s=0.5, checkpoint_every_s=0.5,
            train={"check_every": 5, "poll_every": 2})

# a stand-in member: exits with code EXIT (or, EXIT = "wait", hands back: exits 3 on SIGTERM/SIGUSR2/SIGINT)
MEMBER = """
import os, signal, sys, time
how = sys.argv[1]
if how == "wait":
    for s in (signal.SIGTERM, signal.SIGUSR2, signal.SIGINT):
        signal.signal(s, lambda *a: sys.exit(3))
    open(sys.argv[2], "w").close()
    time.sleep(120)
    sys.exit(0)
if how == "kill":
    os.kill(os.getpid(), signal.SIGKILL)
sys.exit(int(how))
"""


class StandIns(Team):
    """A team whose members are :data:`MEMBER` scripts, one behaviour per slot."""

    def __init__(self, tmp_path: Path, behaviours: list[str]) -> None:
        self.said: list[str] = []
        super().__init__(str(tmp_path), children_per_gpu=len(behaviours), progress=self.said.append)
        self.behaviours = behaviours
        self.tmp = tmp_path

    def command(self, slot: int) -> list[str]:
        return [sys.executable, "-c", MEMBER, self.behaviours[slot], str(self.tmp / f"ready-{slot}")]

    def wait_ready(self) -> None:
        """Until every waiting member has its handlers in."""
        deadline = time.monotonic() + 60
        for slot, how in enumerate(self.behaviours):
            while how == "wait" and not (self.tmp / f"ready-{slot}").exists():
                assert time.monotonic() < deadline, "a stand-in member never started"
                time.sleep(0.02)


def team_of(tmp_path: Path, *behaviours: str) -> StandIns:
    team = StandIns(tmp_path, list(behaviours))
    team.start()
    return team


# ------------------------------------------------------------------ the team's rules
@pytest.mark.parametrize("behaviours, code", [(("0", "0"), EXIT_DONE), (("0", "3"), EXIT_INTERRUPTED),
                                              (("3", "3"), EXIT_INTERRUPTED), (("0", "2"), EXIT_NEEDS_FIX),
                                              (("1", "0"), EXIT_ERROR)])
def test_one_exit_code_for_the_team(tmp_path, behaviours, code):
    team = team_of(tmp_path, *behaviours)
    assert team.wait(60)
    assert team.exit_code() == code
    if code in (EXIT_DONE, EXIT_INTERRUPTED):
        assert team.codes() == [int(b) for b in behaviours] and team.failure is None
    else:        # the other member may have been asked to stop before it ended by itself
        assert team.failure is not None and team.codes()[team.failure.slot] == code


def test_a_failing_member_stops_the_others_and_its_code_is_the_teams(tmp_path):
    team = StandIns(tmp_path, ["wait", "2"])
    team.start()
    assert team.wait(60), team.said
    assert team.codes() == [EXIT_INTERRUPTED, EXIT_NEEDS_FIX]      # the waiting one handed back
    assert team.exit_code() == EXIT_NEEDS_FIX
    assert team.failure is not None and team.failure.slot == 1
    assert any("asking the other 1 to hand their children back" in m for m in team.said), team.said


def test_a_member_killed_by_a_signal_the_team_did_not_send_fails_the_team(tmp_path):
    team = team_of(tmp_path, "kill", "0")
    assert team.wait(60)
    assert team.codes()[0] == 128 + signal.SIGKILL and team.exit_code() == 128 + signal.SIGKILL


@pytest.mark.parametrize("sig", [signal.SIGUSR2, signal.SIGTERM, signal.SIGINT])
def test_a_signal_reaches_every_member(tmp_path, sig):
    team = team_of(tmp_path, "wait", "wait", "wait")
    team.wait_ready()
    team.forward(sig)
    assert team.wait(60), team.said
    assert team.codes() == [EXIT_INTERRUPTED] * 3 and team.exit_code() == EXIT_INTERRUPTED
    assert team.reason == signal.Signals(sig).name


def test_a_member_dead_of_a_forwarded_signal_counts_as_interrupted(tmp_path):
    team = team_of(tmp_path, "wait")
    team.wait_ready()
    team.forwarded.add(int(signal.SIGKILL))            # as if the team had sent it
    os.kill(team.members[0].process.pid, signal.SIGKILL)
    assert team.wait(60)
    assert team.codes() == [EXIT_INTERRUPTED]


def test_a_stop_before_the_start_starts_nothing(tmp_path):
    root = tmp_path / "pop"
    Population.create(str(root), TINY, max_individuals=4)
    stop = StopRequest()
    stop.request("SIGUSR2")
    said: list[str] = []
    assert run_team(str(root), children_per_gpu=2, stop=stop, progress=said.append) == EXIT_INTERRUPTED
    assert said == ["stopping: SIGUSR2 before the team started"]
    team = StandIns(tmp_path, ["0", "0"])
    team.forward(signal.SIGTERM)
    team.start()
    assert team.members == [] and team.exit_code() == EXIT_INTERRUPTED


def test_the_members_command_and_their_share_of_the_threads():
    team = Team("/pop", children_per_gpu=2, members=4, worker_id="slurm-7_1-r0", device="cpu", time_limit_s=60,
                max_children=3, quiet=True)
    cmd = team.command(3)
    assert cmd[:4] == [sys.executable, "-m", "evo", "worker"]
    assert cmd[4:] == ["/pop", "--children-per-gpu", "2", "--slot", "3", "--worker-id", "slurm-7_1-r0-s3",
                       "--device", "cpu", "--time-limit", "60.0", "--max-children", "3", "--quiet"]
    assert "--worker-id" not in Team("/pop", children_per_gpu=2).command(0)   # each its own default id
    assert threads_per_member(4, {"SLURM_CPUS_PER_TASK": "8"}) == 2
    assert threads_per_member(3, {"SLURM_CPUS_PER_TASK": "2"}) == 1
    assert threads_per_member(2, {"OMP_NUM_THREADS": "4", "SLURM_CPUS_PER_TASK": "8"}) is None
    assert threads_per_member(1, {}) == len(os.sched_getaffinity(0))
    with pytest.raises(ValueError, match="children-per-gpu"):
        Team("/pop", children_per_gpu=0)


# ------------------------------------------------------------------ real teams of evo workers
def team_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    env.update(PYTHONUNBUFFERED="1", SLURM_CPUS_PER_TASK="2", **extra)   # one thread for each of 2
    return env


def spawn_team(root: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "evo", "worker", str(root), "--children-per-gpu", "2",
                             "--device", "cpu", *extra], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env=team_env())


def test_a_team_of_two_reaches_the_budget(tmp_path):
    pytest.importorskip("torch")
    root = tmp_path / "pop"
    pop = Population.create(str(root), {**TINY, "steps_per_child": 20}, max_individuals=6)
    p = spawn_team(root, "--worker-id", "team")
    out = p.communicate(timeout=300)[0].decode()
    assert p.returncode == EXIT_DONE, out
    for slot in (0, 1):
        assert f"s{slot} worker team-s{slot} on cpu" in out, out
        assert f"s{slot} one of 2 children per GPU on cpu, 1 CPU thread(s)" in out, out
    assert "the team ended with code 0 (its members' codes: [0, 0])" in out, out
    births = [e for e in read_events(str(root)) if e["event"] == "birth"]
    assert len(births) == 6
    assert {ind.record["worker"] for ind in pop.individuals()} <= {"team-s0", "team-s1"}
    assert fsck(str(root)).ok


@pytest.mark.parametrize("sig", [signal.SIGUSR2, signal.SIGTERM])
def test_a_signal_to_the_team_hands_both_children_back(tmp_path, sig):
    pytest.importorskip("torch")
    root = tmp_path / "pop"
    pop = Population.create(str(root), {**TINY, "steps_per_child": 1_000_000}, max_individuals=4)
    p = spawn_team(root)
    deadline = time.monotonic() + 120
    while len(pop.leases()) < 2:                      # each worker trains a seed
        assert p.poll() is None and time.monotonic() < deadline, p.stdout.read().decode() if p.poll() else ""
        time.sleep(0.1)
    p.send_signal(sig)
    out = p.communicate(timeout=120)[0].decode()
    assert p.returncode == EXIT_INTERRUPTED, out
    st = pop.status()
    assert st["inflight"] == 0 and st["pending"] == 2 and st["trained"] == 0, st
    released = [e for e in read_events(str(root)) if e["event"] == "release"]
    assert len(released) == 2 and all(e["checkpoint"] for e in released), released
    assert all(signal.Signals(sig).name in e["reason"] for e in released), released
    assert out.count("handed back") == 2, out
