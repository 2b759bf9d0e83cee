"""Run control of a running experiment: the knobs of ``control.json`` (mutations per child,
pause, stop), the paper's weight reset of the whole living population, the budgets and whether
the experiment is over.  Running workers see a change at their next step."""

from __future__ import annotations

import os
import time
from typing import Any

from evo.base.files import atomic_write_json
from evo.population.config import Control
from evo.population.directory import PopulationDir
from evo.population.grow import GROW_FILE
from evo.population.layout import FITNESS_FILE, TASK_FILE, ConfigError, list_ids, load_json_or_none
from evo.population.records import retrain_task

__all__ = ["RunControl"]

#: the knobs :meth:`RunControl.set_control` changes
KNOBS = ("mutations_per_child", "paused", "stopped")


class RunControl(PopulationDir):
    """The run-control commands (``evo control``, ``pause``, ``resume``, ``stop``,
    ``reset-weights``)."""

    # ---------------------------------------------------------------------- budgets
    # The individuals budget rests on id claims (robust without mutual exclusion): no individual
    # with an id above max_individuals is ever created.  The FLOPs budget reads the running
    # counter in state.json (exact under a lock; without one it may lose updates and fsck
    # --repair recomputes it).
    def _flops_budget(self, st: dict) -> str | None:
        c = self.config
        if c.max_flops is not None and float(st.get("flops", 0.0)) >= c.max_flops:
            return f"budget of {c.max_flops:g} FLOPs reached"
        return None

    def _individuals_budget(self, next_id: int) -> str | None:
        c = self.config
        if c.max_individuals is not None and next_id > c.max_individuals:
            return f"budget of {c.max_individuals} individuals reached"
        return None

    def _past_budget(self, i: int, tj: dict, flops_hit: str | None) -> bool:
        """Whether pending task ``i`` (its task record ``tj``) is work that no worker takes any more:
        unstarted (a resume always finishes what was started), and past a spent FLOPs budget, or a
        seed beyond the individuals budget.  The one rule of ``next_task`` and :meth:`finished`."""
        if tj.get("attempts", 0):
            return False
        maxi = self.config.max_individuals
        return bool(flops_hit) or (maxi is not None and tj.get("kind") == "seed" and i > maxi)

    def finished(self) -> str | None:
        """Why the experiment is over, or None while there is work left: stopped, or a budget
        reached (a grow run: its last generation ended) with nothing in flight and nothing pending
        that a worker would still take (a FLOPs budget leaves unstarted work, such as the retraining
        that ``reset-weights`` queued, where it is).
        Lock-free; a worker asked to stop while it holds no child asks this to exit 0 instead of
        being requeued for nothing."""
        if self.read_control().stopped:
            return "the experiment was stopped (`evo resume` clears it)"
        if self._list_inflight():
            return None
        flops_hit = self._flops_budget(self.read_state())
        hit = self._individuals_budget(self.read_next_id()) or flops_hit
        for i in self._list_pending():
            tj = load_json_or_none(os.path.join(self._pending, str(i), TASK_FILE), warn=False) or {}
            if not self._past_budget(i, tj, flops_hit):
                return None
        if hit:
            return hit
        if self.config.strategy == "grow":
            grow = load_json_or_none(os.path.join(self.root, GROW_FILE), warn=False) or {}
            if grow.get("phase") == "finished":
                return "the grow run is over (its last generation ended)"
        return None

    def set_control(self, **changes: Any) -> Control:
        """Change run-control knobs (mutations_per_child, paused, stopped); running workers see
        the change at their next step."""
        for k, v in changes.items():
            if k not in KNOBS:
                raise ConfigError(f"control field '{k}': not a run-control knob; use one of {sorted(KNOBS)}")
            if k == "mutations_per_child" and (not isinstance(v, int) or isinstance(v, bool) or v < 0):
                raise ConfigError(f"control field 'mutations_per_child': must be an integer >= 0, got {v!r}")
            if k in ("paused", "stopped") and not isinstance(v, bool):
                raise ConfigError(f"control field '{k}': must be true or false, got {v!r}")
        with self.locked():
            ctl = self.read_control()
            for k, v in changes.items():
                setattr(ctl, k, v)
            self._write_control(ctl)
            self.log.append([{"event": "control", "changes": changes}])
        return ctl

    def set_mutations_per_child(self, n: int) -> Control:
        return self.set_control(mutations_per_child=n)

    def stop(self) -> Control:
        """Stop the experiment: workers take no new task and exit (in-flight children finish)."""
        return self.set_control(stopped=True)

    def pause(self) -> Control:
        """Pause: workers take no new task and wait (in-flight children finish)."""
        return self.set_control(paused=True)

    def resume(self) -> Control:
        """Clear both ``paused`` and ``stopped``."""
        return self.set_control(paused=False, stopped=False)

    def reset_all_weights(self) -> int:
        """Queue every living individual for retraining from scratch with its own DNA (the
        paper's escape from a plateau).  Returns how many were queued.  Their fitness is
        replaced when each retrain commits; the previous record is kept as fitness.g<G>.json."""
        n = 0
        with self.locked():
            ctl = self.read_control()
            gen = ctl.reset_generation + 1
            now = time.time()
            for i in sorted(list_ids(self._alive)):
                src = self.alive_path(i)
                rec = load_json_or_none(os.path.join(src, FITNESS_FILE)) or {}
                try:
                    atomic_write_json(os.path.join(src, TASK_FILE), retrain_task(i, rec.get("parent_id"), gen, now),
                                      fsync=False, sync_dir=False)
                    os.rename(src, os.path.join(self._pending, str(i)))
                except (FileNotFoundError, NotADirectoryError):
                    continue
                n += 1
            ctl.reset_generation = gen
            ctl.epoch += 1
            self._write_control(ctl)
            self.log.append([{"event": "reset", "generation": gen, "queued": n}])
        return n
