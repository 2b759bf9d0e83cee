"""Run control of a running experiment: the knobs of ``control.json`` (mutations per child,
pause, stop) and the paper's weight reset of the whole living population.  Running workers see
a change at their next step."""

from __future__ import annotations

import os
import time
from typing import Any

from evo.base.files import atomic_write_json
from evo.population.config import Control
from evo.population.directory import PopulationDir
from evo.population.layout import FITNESS_FILE, TASK_FILE, ConfigError, list_ids, load_json_or_none
from evo.population.records import retrain_task

__all__ = ["RunControl"]

#: the knobs :meth:`RunControl.set_control` changes
KNOBS = ("mutations_per_child", "paused", "stopped")


class RunControl(PopulationDir):
    """The run-control commands (``evo control``, ``pause``, ``resume``, ``stop``,
    ``reset-weights``)."""

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
