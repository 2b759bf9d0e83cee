"""A stop request (SIGUSR2, SIGTERM, --time-limit) that reaches a worker holding no child: it exits 0
when the experiment is over (its Slurm task then ends), 3 when work remains (it is requeued)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

pytest.importorskip("torch")

from evo.population import Population  # noqa: E402
from evo.worker.loop import EXIT_DONE, EXIT_INTERRUPTED, Worker, run_worker  # noqa: E402

TINY = dict(dataset="synthetic", dataset_kwargs={"n_train": 300, "n_val": 100, "n_test": 100, "image_size": 8},
            population_size=2, steps_per_child=5, lock="flock", heartbeat_s=0.2,
            train={"check_every": 5, "poll_every": 2})


def idle_worker_gets_sigusr2(root: Path, meanwhile=lambda: None) -> tuple[int, list[str]]:
    """Start a worker on a paused population (it waits, holding nothing), run ``meanwhile``, send
    it what Slurm's warning sends (a stop request "SIGUSR2"), and return its exit code and messages."""
    msgs: list[str] = []
    w = Worker(str(root), progress=msgs.append)
    waiting = threading.Event()
    real_wait = w.stop.event.wait

    def wait(timeout: float | None = None) -> bool:
        waiting.set()
        return real_wait(timeout)

    w.stop.event.wait = wait  # type: ignore[method-assign]
    out: dict = {}
    t = threading.Thread(target=lambda: out.setdefault("rc", w.run()))
    t.start()
    assert waiting.wait(60), msgs
    meanwhile()
    w.stop.request("SIGUSR2")
    t.join(60)
    assert not t.is_alive()
    return out["rc"], msgs


def test_idle_worker_exits_0_when_the_budget_is_spent(tmp_path):
    root = tmp_path / "pop"
    Population.create(str(root), TINY, max_individuals=2)
    assert run_worker(str(root), handle_signals=False, progress=lambda m: None) == EXIT_DONE  # the budget
    Population.open(str(root)).pause()                     # a worker now waits instead of exiting
    rc, msgs = idle_worker_gets_sigusr2(root)
    assert rc == EXIT_DONE, msgs
    assert any("nothing more to do: budget of 2 individuals reached" in m for m in msgs), msgs


def test_idle_worker_exits_0_when_the_experiment_is_stopped(tmp_path):
    root = tmp_path / "pop"
    Population.create(str(root), TINY, max_individuals=10).pause()
    rc, msgs = idle_worker_gets_sigusr2(root, meanwhile=lambda: Population.open(str(root)).stop())
    assert rc == EXIT_DONE, msgs
    assert any("nothing more to do: the experiment was stopped" in m for m in msgs), msgs


def test_idle_worker_exits_3_when_work_remains(tmp_path):
    root = tmp_path / "pop"
    Population.create(str(root), TINY, max_individuals=10).pause()   # seeds pending, none trained
    rc, msgs = idle_worker_gets_sigusr2(root)
    assert rc == EXIT_INTERRUPTED, msgs
    assert Population.open(str(root)).status()["pending"] == 2        # nothing taken, nothing lost


def test_the_last_words_of_a_worker_say_why_once(tmp_path):
    """The reason is said once: "budget of 2 individuals reached", not "budget budget of ...";
    "the experiment was stopped", not "stopped the experiment was stopped"."""
    root = tmp_path / "pop"
    Population.create(str(root), TINY, max_individuals=2)
    msgs: list[str] = []
    assert run_worker(str(root), handle_signals=False, progress=msgs.append) == EXIT_DONE
    assert msgs[-1] == "nothing more to do: budget of 2 individuals reached", msgs[-1]
    Population.open(str(root)).stop()
    msgs.clear()
    assert run_worker(str(root), handle_signals=False, progress=msgs.append) == EXIT_DONE
    assert msgs[-1] == "nothing more to do: the experiment was stopped (`evo resume` clears it)", msgs[-1]
