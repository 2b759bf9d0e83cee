"""Running a suite's runs with evo's own commands, resumably.

Each run is one population, ``<out>/<suite>/<variant>/<experiment>/seed-<seed>/``, created by
``evo init`` and evolved by ``evo worker`` processes on this machine (``executor="local"``: N
workers per run, one run after the other) or by ``evo submit`` on Slurm (every run's job array
at once).  Next to each population, ``seed-<seed>.run.json`` records the run: its full
definition, its sessions, the schedule events applied and whether it finished.  A rerun skips
the finished runs, continues an interrupted one where its population stands (its workers
resume the children they handed back) and starts the missing ones; a run whose definition
changed in the suite file is refused rather than mixed.

Budgets: ``flops`` and ``individuals`` are the population's own (``max_flops``,
``max_individuals``); ``wall_s`` is the runner's: when a run has had its workers for that long
(summed over sessions), it asks them to stop (``evo stop``), and they finish their children.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from evo.base.files import atomic_write
from evo.bench.data import prepare
from evo.bench.suite import Run, Suite

__all__ = ["RunnerOptions", "RunError", "Runner", "run_dir", "state_path", "read_state", "population_config"]

STATE_SUFFIX = ".run.json"


class RunError(RuntimeError):
    """A run could not go on (a worker failed, a submission failed); the message says where to look."""


@dataclass
class RunnerOptions:
    out: Path
    workers: int = 2
    executor: str = "local"
    data_dir: Path = Path(".")
    device: str | None = None
    submit_args: list[str] = field(default_factory=list)
    poll_s: float = 1.0
    wait: bool = True
    echo: Callable[[str], None] = print


def run_dir(out: Path, run: Run) -> Path:
    return Path(out) / run.suite / run.variant / run.experiment / f"seed-{run.seed}"


def state_path(out: Path, run: Run) -> Path:
    d = run_dir(out, run)
    return d.with_name(d.name + STATE_SUFFIX)


def read_state(out: Path, run: Run) -> dict[str, Any] | None:
    p = state_path(out, run)
    try:
        return json.loads(p.read_text())
    except FileNotFoundError:
        return None
    except ValueError as e:
        raise RunError(f"{p}: unreadable run record ({e}); delete it and the population beside it to redo "
                       "the run") from None


def _save(out: Path, run: Run, state: dict) -> None:
    p = state_path(out, run)
    p.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(p, lambda f: f.write((json.dumps(state, indent=1, sort_keys=True) + "\n").encode()))


def keep_checkpoints(workers: int) -> str:
    """Enough kept weights for the top-5 ensemble at equal FLOPs: the 5 best, plus what the
    children committed after the budget was crossed (at most one per worker) might push out."""
    return f"top:{10 + 2 * workers}"


def population_config(run: Run, dataset: str, dataset_kwargs: dict, workers: int) -> dict[str, Any]:
    """The ``evo init --config`` of a run."""
    s = run.settings
    cfg: dict[str, Any] = {
        "dataset": dataset, "dataset_kwargs": dataset_kwargs, "population_size": s["population_size"],
        "strategy": s["strategy"], "sample_size": s["sample_size"], "steps_per_child": s["steps_per_child"],
        "mutations_per_child": s["mutations_per_child"], "inheritance": s["inheritance"], "seed": run.seed,
        "train": dict(s["train"]), "keep_checkpoints": keep_checkpoints(workers),
    }
    if s["recipe"] is not None:
        cfg["train"]["recipe"] = s["recipe"]
    if s["search_space"] != "real2017" or s["space_options"]:
        cfg["search_space"] = s["search_space"]
        if s["space_options"]:
            cfg["space_options"] = dict(s["space_options"])
    b = s["budget"]
    if "flops" in b:
        cfg["max_flops"] = float(b["flops"])
    if "individuals" in b:
        cfg["max_individuals"] = int(b["individuals"])
    cfg.update(s["config"])
    return cfg


def _evo(*args: str) -> list[str]:
    return [sys.executable, "-m", "evo", *args]


def _call(args: list[str], what: str) -> str:
    res = subprocess.run(args, capture_output=True, text=True)
    if res.returncode != 0:
        err = (res.stderr or res.stdout).strip().splitlines()
        raise RunError(f"{what} failed (exit {res.returncode}): {err[-1] if err else ''}\n  command: "
                       + " ".join(args))
    return res.stdout


def _read_json(path: Path) -> dict:
    try:
        d = json.loads(path.read_text())
        return d if isinstance(d, dict) else {}
    except (OSError, ValueError):
        return {}


def _cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def _pid_runs(pid: int, popdir: Path) -> bool:
    """Whether process ``pid`` is a worker on ``popdir`` (a session of an earlier, killed runner)."""
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"worker" in cmd and str(popdir).encode() in cmd


class Runner:
    """Runs the runs of ``suite`` that are not finished (see the module's docstring)."""

    def __init__(self, suite: Suite, opts: RunnerOptions):
        self.suite = suite
        self.opts = opts
        self.out = Path(opts.out).resolve()
        self.say = opts.echo

    # ------------------------------------------------------------------ bookkeeping
    def workers_of(self, run: Run) -> int:
        return int(run.settings["workers"] or self.opts.workers)

    def status(self, run: Run) -> str:
        """``finished``, ``started`` (a population exists), or ``new``."""
        st = read_state(self.out, run)
        if st is None:
            return "started" if (run_dir(self.out, run) / "config.json").exists() else "new"
        self._check_spec(run, st)
        return "finished" if st.get("finished") else "started"

    def _check_spec(self, run: Run, st: dict) -> None:
        if st.get("spec") != json.loads(json.dumps(run.spec())):
            raise RunError(f"{state_path(self.out, run)}: run {run.key} was made with other settings than the "
                           f"suite now gives it; to redo it, delete that file and {run_dir(self.out, run)}, or "
                           "write the changed suite's runs elsewhere (--out)")

    def plan(self) -> list[dict[str, Any]]:
        """What a run of the suite would do, run by run (for ``--dry-run``)."""
        rows = []
        for run in self.suite.runs:
            pop = run_dir(self.out, run)
            status = self.status(run)
            rows.append({"run": run.key, "status": status, "popdir": str(pop), "workers": self.workers_of(run),
                         "budget": run.settings["budget"], "schedule": run.settings["schedule"],
                         "data": run.data["name"],
                         "action": {"finished": "skip (finished)", "started": "continue",
                                    "new": "evo init, then workers"}[status]})
        return rows

    def _progress(self, run: Run, pop: Path, wall_s: float) -> tuple[float, dict]:
        """The fraction of the run's budget spent (the largest over its budgets) and the counters."""
        state = _read_json(pop / "state.json")
        b = run.settings["budget"]
        fr = [0.0]
        flops = float(state.get("flops") or 0.0)
        trained = int(state.get("trained") or 0)
        if "flops" in b:
            fr.append(flops / float(b["flops"]))
        if "individuals" in b:
            fr.append(trained / float(b["individuals"]))
        if "wall_s" in b:
            fr.append(wall_s / float(b["wall_s"]))
        return max(fr), {"flops": flops, "trained": trained}

    def _steer(self, run: Run, pop: Path, st: dict, wall_s: float) -> None:
        """Apply the schedule events now due, and the wall-time budget."""
        frac, _ = self._progress(run, pop, wall_s)
        applied = st.setdefault("applied", [])
        for k, ev in enumerate(run.settings["schedule"]):
            if k in applied or ev["at"] > frac:
                continue
            if "mutations_per_child" in ev:
                _call(_evo("control", str(pop), "--mutations-per-child", str(ev["mutations_per_child"])),
                      f"evo control on {pop}")
            if ev.get("reset_weights"):
                _call(_evo("reset-weights", str(pop)), f"evo reset-weights on {pop}")
            applied.append(k)
            st.setdefault("events", []).append({"t": time.time(), "at": ev["at"], "progress": round(frac, 4),
                                                "event": {k2: v for k2, v in ev.items() if k2 != "at"}})
            self.say(f"{run.key}: at {frac:.0%} of the budget: "
                     + ", ".join(f"{k2} {v}" for k2, v in ev.items() if k2 != "at"))
            _save(self.out, run, st)
        wall = run.settings["budget"].get("wall_s")
        if wall is not None and wall_s >= wall and not st.get("wall_stop"):
            _call(_evo("stop", str(pop)), f"evo stop on {pop}")
            st["wall_stop"] = time.time()
            self.say(f"{run.key}: wall-time budget of {wall:g} s spent: workers finish their children and stop")
            _save(self.out, run, st)

    def _prepare(self, run: Run) -> tuple[Path, dict]:
        pop = run_dir(self.out, run)
        st = read_state(self.out, run)
        if st is not None:
            self._check_spec(run, st)
        else:
            st = {"spec": run.spec(), "finished": False, "sessions": [], "wall_s": 0.0, "applied": []}
        if not (pop / "config.json").exists():
            dataset, kwargs = prepare(run.data, self.opts.data_dir, self.out / run.suite, log=self.say)
            cfg = population_config(run, dataset, kwargs, self.workers_of(run))
            pop.parent.mkdir(parents=True, exist_ok=True)
            cfg_file = pop.with_name(pop.name + ".config.json")
            cfg_file.write_text(json.dumps(cfg, indent=1, sort_keys=True) + "\n")
            _call(_evo("init", str(pop), "--config", str(cfg_file), "--json"), f"evo init {pop}")
            st["created_at"] = time.time()
            self.say(f"{run.key}: created {pop}")
        _save(self.out, run, st)
        return pop, st

    def _finish_if_done(self, run: Run, pop: Path, st: dict) -> bool:
        from evo import analysis

        s = analysis.status(str(pop))
        wall = run.settings["budget"].get("wall_s")
        done = s["state"] == "finished" or (s["state"] == "stopped" and wall is not None and st["wall_s"] >= wall
                                           and s["counts"]["inflight"] == 0)
        if done:
            st["finished"] = True
            st["finished_at"] = time.time()
            st["end"] = s["budget_reason"] or f"wall-time budget of {wall:g} s"
            best = s["best"]
            self.say(f"{run.key}: finished ({st['end']}): {s['counts']['trained']} trained, best validation "
                     f"accuracy {best['fitness']:.4f}" if best else f"{run.key}: finished ({st['end']})")
        _save(self.out, run, st)
        return done

    def _unpause(self, run: Run, pop: Path, st: dict) -> None:
        """A run the runner drives goes on: clear a pause or a stop left by hand or by an
        interruption (not the stop of its own wall-time budget)."""
        ctl = _read_json(pop / "control.json")
        if (ctl.get("paused") or ctl.get("stopped")) and not st.get("wall_stop"):
            _call(_evo("resume", str(pop)), f"evo resume {pop}")
            self.say(f"{run.key}: was {'paused' if ctl.get('paused') else 'stopped'}; resumed it")

    # ------------------------------------------------------------------ local
    def _run_local(self, run: Run, pop: Path, st: dict) -> None:
        n = self.workers_of(run)
        orphans = [p for p in (st.get("sessions") or [{}])[-1].get("pids", []) if _pid_runs(p, pop)]
        self._unpause(run, pop, st)
        env = dict(os.environ)
        threads = str(max(1, _cores() // n))
        env.setdefault("OMP_NUM_THREADS", threads)
        env.setdefault("MKL_NUM_THREADS", threads)
        logs = pop / "logs"
        logs.mkdir(exist_ok=True)
        procs: list[subprocess.Popen] = []
        session = {"started_at": time.time(), "executor": "local", "workers": n, "pids": []}
        st["sessions"].append(session)
        if orphans:
            self.say(f"{run.key}: {len(orphans)} workers of an earlier session still run (pids "
                     f"{', '.join(map(str, orphans))}); watching them instead of starting new ones")
            session["pids"] = orphans
        else:
            extra = ["--device", self.opts.device] if self.opts.device else []
            k0 = sum(len(s.get("pids", [])) for s in st["sessions"][:-1])
            for k in range(n):
                with open(logs / f"bench-worker-{k0 + k}.log", "ab") as log:
                    procs.append(subprocess.Popen(
                        _evo("worker", str(pop), "--worker-id", f"bench-{k0 + k}", "-q", *extra),
                        stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True))
            session["pids"] = [p.pid for p in procs]
            self.say(f"{run.key}: {n} workers on {pop} (logs in {logs})")
        _save(self.out, run, st)
        wall0 = float(st.get("wall_s") or 0.0)
        t0 = time.time()

        def alive() -> bool:
            if procs:
                return any(p.poll() is None for p in procs)
            return any(_pid_runs(p, pop) for p in orphans)

        try:
            while alive():
                time.sleep(self.opts.poll_s)
                st["wall_s"] = wall0 + time.time() - t0
                self._steer(run, pop, st, st["wall_s"])
        except BaseException:
            for p in procs:
                if p.poll() is None:
                    p.send_signal(signal.SIGTERM)  # the worker hands its child back and exits
            for p in procs:
                try:
                    p.wait(timeout=120)
                except subprocess.TimeoutExpired:
                    p.kill()
            st["wall_s"] = wall0 + time.time() - t0
            session["ended_at"] = time.time()
            session["interrupted"] = True
            _save(self.out, run, st)
            self.say(f"{run.key}: interrupted; its workers handed their children back (run again to continue)")
            raise
        st["wall_s"] = wall0 + time.time() - t0
        session["ended_at"] = time.time()
        session["exit_codes"] = [p.returncode for p in procs]
        _save(self.out, run, st)
        bad = [c for c in session["exit_codes"] if c not in (0, 3)]
        if bad:
            raise RunError(f"{run.key}: a worker failed (exit codes {session['exit_codes']}); see "
                           f"{logs}/bench-worker-*.log")
        if not self._finish_if_done(run, pop, st):
            self.say(f"{run.key}: the workers ended before the budget (stopped or paused by hand?); "
                     "run again to continue")

    # ------------------------------------------------------------------ Slurm
    def _jobs_alive(self, st: dict) -> bool:
        """Whether workers submitted by an earlier session still run or wait: Slurm jobs in
        ``squeue``, or the controller processes of ``evo submit --executor local``."""
        sessions = [s for s in st.get("sessions", []) if s.get("executor") in ("slurm", "local-submit")]
        for s in sessions:
            if s["executor"] == "local-submit":
                for pid in s.get("job_ids") or []:
                    try:
                        os.kill(int(pid), 0)
                        return True
                    except (OSError, ValueError):
                        pass
        ids = [str(s["job_id"]) for s in sessions if s.get("job_id")]
        if not ids:
            return False
        try:
            res = subprocess.run(["squeue", "-h", "-o", "%i", "-j", ",".join(ids)], capture_output=True, text=True,
                                 timeout=60)
        except (OSError, subprocess.SubprocessError):
            return False
        return res.returncode == 0 and bool(res.stdout.strip())

    def _submit(self, run: Run, pop: Path, st: dict) -> None:
        if self._jobs_alive(st):
            self.say(f"{run.key}: its workers are still queued or running; not submitting more")
            return
        self._unpause(run, pop, st)
        extra = ["--device", self.opts.device] if self.opts.device else []
        out = _call(_evo("submit", str(pop), "--workers", str(self.workers_of(run)), "--json", *extra,
                         *self.opts.submit_args), f"evo submit {pop}")
        rec = json.loads(out)
        kind = "local-submit" if rec.get("executor") == "local" else "slurm"
        st["sessions"].append({"started_at": time.time(), "executor": kind, "workers": self.workers_of(run),
                               "job_id": rec.get("job_id"), "job_ids": rec.get("job_ids")})
        _save(self.out, run, st)
        self.say(f"{run.key}: submitted {self.workers_of(run)} workers (job {rec.get('job_id')})")

    def _watch_slurm(self, active: list[tuple[Run, Path, dict]]) -> None:
        from evo import analysis

        while active:
            time.sleep(self.opts.poll_s)
            still = []
            for run, pop, st in active:
                start = min((s["started_at"] for s in st["sessions"]), default=time.time())
                h = analysis.load(str(pop))
                st["wall_s"] = time.time() - (h.t0 if len(h) else start)
                self._steer(run, pop, st, st["wall_s"])
                if self._finish_if_done(run, pop, st):
                    continue
                if not self._jobs_alive(st) and not self._finish_if_done(run, pop, st):
                    self.say(f"{run.key}: its jobs ended before the budget; run again to submit more workers")
                    continue
                still.append((run, pop, st))
            active = still

    # ------------------------------------------------------------------ all
    def run_all(self) -> dict[str, list[str]]:
        """Run every run that is not finished; returns the run keys by what happened to them."""
        done: dict[str, list[str]] = {"skipped": [], "completed": [], "unfinished": [], "submitted": []}
        active = []
        for run in self.suite.runs:
            if self.status(run) == "finished":
                done["skipped"].append(run.key)
                self.say(f"{run.key}: finished before; skipped")
                continue
            pop, st = self._prepare(run)
            if self._finish_if_done(run, pop, st):
                done["completed"].append(run.key)
                continue
            if self.opts.executor == "slurm":
                self._submit(run, pop, st)
                active.append((run, pop, st))
                done["submitted"].append(run.key)
                continue
            self._run_local(run, pop, st)
            done["completed" if st.get("finished") else "unfinished"].append(run.key)
        if active and self.opts.wait:
            self._watch_slurm(active)
            for run, _, _ in active:
                st = read_state(self.out, run) or {}
                done["completed" if st.get("finished") else "unfinished"].append(run.key)
        elif active:
            done["unfinished"].extend(r.key for r, _, _ in active)
        return done
