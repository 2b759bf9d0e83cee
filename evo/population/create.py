"""``evo init``: a new population directory with its ``population_size`` seeds planned as pending
work, built aside and renamed into place (a half-created population is never seen)."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import socket
import time
from typing import Any

from evo.base.files import atomic_write, atomic_write_json, fsync_dir, rmtree_quiet
from evo.population.config import Config, Control, default_state, init_defaults
from evo.population.layout import (
    CONFIG_FILE,
    CONTROL_FILE,
    EVENTS_FILE,
    FORMAT_VERSION,
    IDS,
    NEXT_ID_FILE,
    PENDING,
    SHARD_SIZE,
    STATE_FILE,
    SUBDIRS,
    TASK_FILE,
    PopulationExistsError,
    dumps,
    new_token,
    shard,
)
from evo.population.locks import detect_lock_kind
from evo.population.records import seed_task

__all__ = ["create_population", "make_config"]


def make_config(config: Config | dict | None, overrides: dict[str, Any]) -> Config:
    """The validated config of a new population: ``config`` (a Config, a dict or None for the
    defaults) with ``overrides`` applied, checked as ``evo init`` checks it (a budget of fewer
    individuals than the population's seeds is refused)."""
    if config is None or isinstance(config, dict):  # what the settings imply, unless the dict says otherwise
        config = Config.from_dict(init_defaults({**(config or {}), **overrides}))
        overrides = {}
    else:
        config = dataclasses.replace(config)
    for k in overrides:
        if k not in {f.name for f in dataclasses.fields(Config)}:
            Config.from_dict({k: None})  # raises with a hint
    return dataclasses.replace(config, **overrides).validate(at_init=True)


def create_population(root: str, config: Config) -> Config:
    """Create the population directory ``root`` (which must not exist, or be an empty directory);
    returns the config as written (with its creation time and detected lock kind)."""
    if os.path.exists(root):
        if os.path.exists(os.path.join(root, CONFIG_FILE)):
            raise PopulationExistsError(
                f"{root} already holds a population; refusing to overwrite it. Fix: choose "
                f"another directory, or delete this one if you really want to start over"
            )
        if not os.path.isdir(root) or os.listdir(root):
            raise PopulationExistsError(
                f"{root} exists and is not an empty directory; refusing to create a population "
                f"there. Fix: choose a new directory"
            )
    parent = os.path.dirname(root)
    os.makedirs(parent, exist_ok=True)
    now = time.time()
    kind, _ = detect_lock_kind(parent)
    config = dataclasses.replace(config, created_at=now, lock_detected=kind)
    build = os.path.join(parent, f".{os.path.basename(root)}.creating-{new_token()}")
    os.mkdir(build)
    try:
        for d in SUBDIRS:
            os.mkdir(os.path.join(build, d))
        P = config.population_size
        os.mkdir(os.path.join(build, IDS, "0"))
        for i in range(1, P + 1):
            sd = os.path.join(build, IDS, shard(i))
            if i % SHARD_SIZE == 0 or not os.path.isdir(sd):
                os.makedirs(sd, exist_ok=True)
            open(os.path.join(sd, str(i)), "xb").close()
            pd = os.path.join(build, PENDING, str(i))
            os.mkdir(pd)
            atomic_write_json(os.path.join(pd, TASK_FILE), seed_task(i, config, now), fsync=False, sync_dir=False)
        ctl = Control(mutations_per_child=config.mutations_per_child, updated_at=now)
        atomic_write_json(os.path.join(build, CONTROL_FILE), ctl.to_dict(), sync_dir=False)
        atomic_write_json(os.path.join(build, STATE_FILE), default_state(), sync_dir=False)
        atomic_write(os.path.join(build, NEXT_ID_FILE), b"%-20d\n" % (P + 1), sync_dir=False)
        ev = {"t": now, "event": "create", "population_size": P, "strategy": config.strategy,
              "seeds": [1, P], "format_version": FORMAT_VERSION, "host": socket.gethostname()}
        atomic_write(os.path.join(build, EVENTS_FILE), dumps(ev), sync_dir=False)
        atomic_write_json(os.path.join(build, CONFIG_FILE), config.to_dict())
        with contextlib.suppress(OSError):
            os.sync()
        if os.path.isdir(root):
            os.rmdir(root)  # empty (checked above)
        os.rename(build, root)
        fsync_dir(parent)
    except BaseException:
        rmtree_quiet(build)
        raise
    return config
