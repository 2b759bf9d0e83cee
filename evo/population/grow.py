"""The ``grow`` strategy: generations of function-preserving growth (the grow-and-prune proposal
building on Net2Net, Chen et al. 2015, and Cai et al. 2018; docs/method.md).

Generation 0 is the population's seeds.  When every individual planned for generation ``g`` is
committed, the best M2 (``grow.survivors``) of that generation and its parents survive, by
validation accuracy; the others die.  Generation ``g + 1`` is then planned at once: M1
(``grow.children``) children, given in turn to each survivor (best first), each an ordinary
pending task whose worker mutates its parent with the growth mutations and inherits with
function-preserving inheritance; each child trains ``steps_per_child`` steps.  After K
(``grow.generations``) generations, or when a budget is spent, the last survivors are the run's
result (its ensemble).

No central process: the barrier is ``grow.json`` in the population directory, changed only under
the population lock, and every step is idempotent.  The commit that completes a generation ends it
(in the same critical section); a worker killed half-way (SIGKILL) leaves ``phase: "planning"``
with the whole plan written first, and the next critical section of any worker finishes it:
the kills (renames that are skipped when done) and the planned children's pending directories
(created aside and renamed into ``pending/``, skipped when they exist anywhere).

Pure Python, no torch: a mixin of :class:`~evo.population.protocol.Population`.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping

from evo.base.files import atomic_write_json, rmtree_quiet
from evo.population.layout import (
    CHECKPOINT_FILE, DNA_FILE, FITNESS_FILE, FORMAT_VERSION, PARENT_CHECKPOINT_FILE, TASK_FILE, ConfigError,
    is_num, load_json, load_json_or_none, new_token,
)

if TYPE_CHECKING:
    from evo.population.config import Config
    from evo.population.leases import WorkerInfo

__all__ = ["GROW_FILE", "GROWTH_MUTATIONS", "Growth", "GrowSettings", "grow_defaults", "grow_progress", "rank",
           "read_grow_state"]

#: the generation barrier, in the population directory
GROW_FILE = "grow.json"
#: the mutation settings a grow run uses unless its config names others (``train.mutations``)
GROWTH_MUTATIONS = {"allowed": ["WIDEN", "DEEPEN", "LARGER-FILTER"]}
_KEYS = ("children", "survivors", "generations")


@dataclass(frozen=True)
class GrowSettings:
    """M1 children per generation, M2 survivors, K generations (None: until a budget is spent)."""

    children: int
    survivors: int
    generations: int | None

    @classmethod
    def of(cls, config: "Config") -> "GrowSettings":
        """The settings of ``config.grow`` with their defaults (M2 = P, M1 = 2 P, no K)."""
        g = dict(config.grow or {})
        P = int(config.population_size)
        return cls(int(g.get("children", 2 * P)), int(g.get("survivors", P)),
                   None if g.get("generations") is None else int(g["generations"]))


def check_grow(config: "Config") -> None:
    """Raise :class:`ConfigError` naming the bad ``grow`` setting (only read by ``strategy: grow``)."""
    g = config.grow
    if not isinstance(g, dict):
        raise ConfigError(f"config field 'grow': must be a JSON object, got {g!r}. Fix: e.g. "
                          '{"children": 40, "survivors": 20, "generations": 10}')
    unknown = sorted(set(g) - set(_KEYS))
    if unknown:
        raise ConfigError(f"config field 'grow': unknown setting {unknown[0]!r}. Fix: use {', '.join(_KEYS)}")
    for k in _KEYS:
        v = g.get(k)
        if v is None and k in g and k != "generations":
            raise ConfigError(f"config field 'grow.{k}': must be an integer >= 1, got null. Fix: leave it out "
                              "for the default")
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
            raise ConfigError(f"config field 'grow.{k}': must be an integer >= 1, got {v!r}. Fix: "
                              + {"children": "M1 children per generation, e.g. 2 x population_size",
                                 "survivors": "M2 survivors per generation, e.g. population_size",
                                 "generations": "K generations, or null to run until a budget is spent"}[k])


def grow_defaults(config: dict[str, Any]) -> dict[str, Any]:
    """A config dict with what a ``grow`` run uses unless it says otherwise: function-preserving
    inheritance and the growth mutations (``train.mutations``)."""
    if config.get("strategy") != "grow":
        return config
    out = dict(config)
    out.setdefault("inheritance", "function-preserving")
    train = dict(out.get("train") or {})
    train.setdefault("mutations", {k: list(v) for k, v in GROWTH_MUTATIONS.items()})
    out["train"] = train
    return out


def rank(fitness: Mapping[int, float | None]) -> list[int]:
    """Ids best first by validation accuracy; ties go to the older (smaller id); no fitness last."""
    def key(i: int) -> tuple[float, int]:
        f = fitness[i]
        return (-float(f) if is_num(f) else math.inf, i)
    return sorted(fitness, key=key)


def initial_state(config: "Config") -> dict[str, Any]:
    """Generation 0: the seeds ``1..P`` that ``evo init`` planned."""
    return {"format_version": FORMAT_VERSION, "generation": 0, "phase": "running",
            "members": list(range(1, int(config.population_size) + 1)), "parents": [], "survivors": [],
            "kill": [], "plan": [], "history": [], "updated_at": time.time()}


def read_grow_state(root: str, config: "Config") -> dict[str, Any]:
    """The barrier as last written (generation 0 before the first write); no lock needed to read."""
    st = load_json_or_none(os.path.join(root, GROW_FILE))
    return st if st is not None else initial_state(config)


class Growth:
    """The ``grow`` strategy's steps, run under the population lock by every worker."""

    # provided by the population classes this is mixed into
    root: str
    config: "Config"
    _pending: str
    _tmp: str

    # -- the barrier ---------------------------------------------------------------------------
    def grow_state(self) -> dict[str, Any]:
        """The generation barrier (``grow.json``), for status and tools."""
        return read_grow_state(self.root, self.config)

    def _grow_write(self, st: dict[str, Any]) -> None:
        st["updated_at"] = time.time()
        atomic_write_json(os.path.join(self.root, GROW_FILE), st)

    def _grow_read(self) -> dict[str, Any]:
        try:
            return load_json(os.path.join(self.root, GROW_FILE))
        except FileNotFoundError:
            return initial_state(self.config)

    def _grow_busy(self) -> set[int]:
        return set(self._list_pending()) | {e[0] for e in self._list_inflight()}  # type: ignore[attr-defined]

    def _grow_fitness(self, i: int) -> float | None:
        f = self.alive.fitness_of(i)  # type: ignore[attr-defined]
        if f is None:
            rec = load_json_or_none(os.path.join(self.alive_path(i), FITNESS_FILE), warn=False)  # type: ignore[attr-defined]
            f = (rec or {}).get("fitness")
        return float(f) if is_num(f) else None

    # -- the step ------------------------------------------------------------------------------
    def _grow_step(self, worker: "WorkerInfo", events: list, post: list) -> dict[str, Any]:
        """Under the lock: end the current generation if all its members are committed, and
        finish a plan that a killed worker left half done.  Returns the barrier."""
        st = self._grow_read()
        if st["phase"] == "running":
            busy = self._grow_busy()
            if any(i in busy for i in st["members"]) and self._grow_budget_spent():
                busy -= set(self._grow_cancel_unstarted(st["members"]))
            if any(i in busy for i in st["members"]):
                return st
            st = self._grow_end(st)
            self._grow_write(st)  # the whole plan first: a kill from here on is finished by the next step
        if st["phase"] in ("planning", "finishing"):
            killed = []
            for v in st["kill"]:
                if os.path.isdir(self.alive_path(v)):  # type: ignore[attr-defined]
                    if self._kill(v, None, worker, "generation", events, post):  # type: ignore[attr-defined]
                        killed.append(v)
            busy = self._grow_busy()
            for cid, parent in st["plan"]:
                self._grow_child(cid, parent, st["generation"], busy)
            done = st["phase"] == "finishing"
            st.update(phase="finished" if done else "running", kill=[], plan=[])
            self._grow_write(st)
            last = st["history"][-1] if st["history"] else {}
            events.append({"event": "generation", "generation": last.get("generation"),
                           "survivors": st["survivors"], "killed": killed, "next": None if done else st["generation"],
                           "planned": [] if done else st["members"], "finished": done, "worker": worker.id})
        return st

    def _grow_budget_spent(self) -> bool:
        return self.config.max_flops is not None and bool(self._flops_budget(self.read_state()))  # type: ignore[attr-defined]

    def _grow_cancel_unstarted(self, members: list[int]) -> list[int]:
        """The FLOPs budget is spent: the generation's children that no worker started are
        dropped (their pending directories removed), so that it ends with those trained."""
        cancelled = []
        for i in members:
            pdir = os.path.join(self._pending, str(i))
            tj = load_json_or_none(os.path.join(pdir, TASK_FILE), warn=False)
            if tj is None or tj.get("attempts", 0):
                continue  # a child to resume finishes what was started
            gone = os.path.join(self._tmp, f"cancelled-{i}-{new_token()}")
            try:
                os.rename(pdir, gone)
            except OSError:
                continue
            rmtree_quiet(gone)
            cancelled.append(i)
        return cancelled

    def _grow_end(self, st: dict[str, Any]) -> dict[str, Any]:
        """The end of generation ``st["generation"]``: survivors, kills and the next plan."""
        s = GrowSettings.of(self.config)
        pool = [i for i in dict.fromkeys(st["parents"] + st["members"]) if os.path.isdir(self.alive_path(i))]  # type: ignore[attr-defined]
        fitness = {i: self._grow_fitness(i) for i in pool}
        ranked = rank(fitness)
        survivors, kill = ranked[:s.survivors], ranked[s.survivors:]
        g = int(st["generation"])
        history = list(st["history"]) + [{
            "generation": g, "members": len(st["members"]), "survivors": survivors,
            "fitness": [fitness[i] for i in survivors], "ended_at": time.time()}]
        budget = self._grow_budget_spent()
        plan: list[list[int]] = []
        if survivors and not budget and (s.generations is None or g + 1 <= s.generations):
            for k in range(s.children):
                cid = self.ids.claim(self.read_next_id())  # type: ignore[attr-defined]
                if self._individuals_budget(cid):  # type: ignore[attr-defined]
                    self.ids.unclaim(cid)  # type: ignore[attr-defined]
                    break
                self.ids.write_next(cid + 1)  # type: ignore[attr-defined]
                plan.append([cid, survivors[k % len(survivors)]])
        if not plan:
            return dict(st, phase="finishing", survivors=survivors, kill=kill, plan=[], history=history)
        return dict(st, generation=g + 1, phase="planning", members=[c for c, _ in plan], parents=survivors,
                    survivors=survivors, kill=kill, plan=plan, history=history)

    def _grow_child(self, cid: int, parent: int, generation: int, busy: set[int]) -> None:
        """Plan child ``cid`` of ``parent`` as pending work (nothing if it exists anywhere)."""
        if (cid in busy or os.path.isdir(self.alive_path(cid))  # type: ignore[attr-defined]
                or os.path.isdir(self.dead_path(cid))):  # type: ignore[attr-defined]
            return
        pdir = self.alive_path(parent)  # type: ignore[attr-defined]
        parent_dna = load_json_or_none(os.path.join(pdir, DNA_FILE))
        if parent_dna is None:
            return  # the parent is gone: the generation has one child fewer
        ctl = self.read_control()  # type: ignore[attr-defined]
        tmp = os.path.join(self._tmp, f"grow-{cid}-{new_token()}")
        os.mkdir(tmp)
        try:
            ckpt = None
            if self.config.inheritance != "none":
                src = os.path.join(pdir, CHECKPOINT_FILE)
                try:
                    os.link(src, os.path.join(tmp, PARENT_CHECKPOINT_FILE))
                except OSError:
                    ckpt = src if os.path.exists(src) else None
            tj = {"format_version": FORMAT_VERSION, "kind": "child", "id": cid, "parent_id": parent,
                  "task_uid": new_token(), "mutations": ctl.mutations_per_child, "dna": None,
                  "parent_dna": parent_dna, "parent_checkpoint": ckpt, "generation": ctl.reset_generation,
                  "grow_generation": generation, "born_at": time.time(), "attempts": 0, "failures": 0}
            atomic_write_json(os.path.join(tmp, TASK_FILE), tj, fsync=False, sync_dir=False)
            os.rename(tmp, os.path.join(self._pending, str(cid)))
        except BaseException:
            rmtree_quiet(tmp)
            raise

    def record_final_ensemble(self, record: Mapping[str, Any]) -> bool:
        """Keep the measurement of the last survivors' ensemble in ``grow.json`` (once, under the
        lock); False when the run is not over or another worker recorded it first."""
        with self.locked():  # type: ignore[attr-defined]
            st = self._grow_read()
            if st.get("phase") != "finished" or st.get("final_ensemble"):
                return False
            st["final_ensemble"] = dict(record)
            self._grow_write(st)
        return True

    def _grow_wait(self, st: dict[str, Any], n_inflight: int, poll: float) -> Any:
        """The :class:`Wait` of a grow run with no pending work: the generation's barrier."""
        from evo.population.leases import Wait

        if st["phase"] == "finished":
            return Wait("budget", not n_inflight, poll,
                        f"the grow run is over after generation {st['history'][-1]['generation']}: "
                        f"{len(st['survivors'])} survivors" if st["history"] else "the grow run is over")
        return Wait("generation", False, poll, f"generation {st['generation']}: waiting for "
                                               f"{n_inflight} children in flight before the next one")


def grow_progress(root: str, config: "Config") -> dict[str, Any]:
    """What ``evo status`` shows of a grow run: the generation, how many of its members are
    committed, the settings, the survivors so far and, once over, the final ensemble."""
    from evo.population.layout import INFLIGHT, PENDING, inflight_entries, list_ids

    st = read_grow_state(root, config)
    s = GrowSettings.of(config)
    busy = set(list_ids(os.path.join(root, PENDING))) | {e[0] for e in inflight_entries(os.path.join(root, INFLIGHT))}
    members = list(st.get("members") or [])
    last = (st.get("history") or [{}])[-1]
    return {
        "generation": st.get("generation", 0),
        "phase": st.get("phase", "running"),
        "finished": st.get("phase") == "finished",
        "members": len(members),
        "committed": sum(1 for i in members if i not in busy),
        "children_per_generation": s.children,
        "survivors_per_generation": s.survivors,
        "generations": s.generations,
        "survivors": list(st.get("survivors") or []),
        "survivors_fitness": list(last.get("fitness") or []),
        "history": [{"generation": h.get("generation"), "best": max([f for f in h.get("fitness") or [] if is_num(f)],
                                                                    default=None)}
                    for h in st.get("history") or []],
        "final_ensemble": st.get("final_ensemble"),
    }
