"""The population directory's layout: names, shards, format version, errors (docs/format.md).

Layout (``POP`` is the population directory)::

    POP/config.json        immutable experiment config (format_version, search space, budgets, ...)
    POP/control.json       mutable run-control knobs, replaced atomically
    POP/state.json         running counters (trainings committed, total FLOPs, top K), at commit
    POP/next_id            the next individual id (a hint; ids/ claims are authoritative)
    POP/events.jsonl       append-only event log, one JSON object per line
    POP/alive/<id>/        living individuals: dna.json, fitness.json, checkpoint.pt
    POP/dead/<id//1000>/<id>/   dead individuals (DNA and fitness kept forever, + death.json)
    POP/pending/<id>/      work waiting for a worker (seeds, children to resume, retrains)
    POP/inflight/<id>.<token>/  a child being trained under the lease ``lease.json``
    POP/ids/<id//1000>/<id>     id claims (hard links to ids/<shard>/.claim, or empty files)
    POP/tmp/               reservations and other temporaries (safe to delete when old)
    POP/quarantine/        what could not be used, moved aside and kept (see docs/format.md)
    POP/lock, POP/lock.soft     the population lock (flock file / soft-lock file)
"""

from __future__ import annotations

import math
import os
import secrets
import warnings
from typing import Any

from evo.base import files

__all__ = [
    "FORMAT_VERSION",
    "StoreError",
    "ConfigError",
    "NotAPopulationError",
    "PopulationExistsError",
    "FormatVersionError",
    "LockTimeout",
    "LeaseLost",
    "CorruptFileError",
    "StoreWarning",
    "CorruptFileWarning",
    "load_json",
    "load_json_or_none",
    "shard",
]

#: Version of the on-disk format written by this package; readers refuse newer versions.
#: 2: config.json names the search space (``search_space``, ``space_options``); a version-1
#: population reads as the ``real2017`` space (:func:`evo.population.config.read_config`).
FORMAT_VERSION = 2

CONFIG_FILE = "config.json"
CONTROL_FILE = "control.json"
STATE_FILE = "state.json"
NEXT_ID_FILE = "next_id"
EVENTS_FILE = "events.jsonl"
ALIVE = "alive"
DEAD = "dead"
PENDING = "pending"
INFLIGHT = "inflight"
TMP = "tmp"
IDS = "ids"
QUARANTINE = "quarantine"
FLOCK_FILE = "lock"
SOFT_LOCK_FILE = "lock.soft"

DNA_FILE = "dna.json"
FITNESS_FILE = "fitness.json"
CHECKPOINT_FILE = "checkpoint.pt"
TASK_FILE = "task.json"
LEASE_FILE = "lease.json"
RESUME_FILE = "resume.pt"
PARENT_CHECKPOINT_FILE = "parent.pt"
DEATH_FILE = "death.json"
#: the work files of an in-flight child, removed when it is committed
WORK_FILES = (LEASE_FILE, TASK_FILE, PARENT_CHECKPOINT_FILE, RESUME_FILE)

#: Individuals per shard directory in ``dead/`` and ``ids/``.
SHARD_SIZE = 1000

SUBDIRS = (ALIVE, DEAD, PENDING, INFLIGHT, TMP, IDS, QUARANTINE)
TASK_KINDS = ("seed", "child", "random", "retrain")


# --------------------------------------------------------------------------------------------
# Errors and warnings
# --------------------------------------------------------------------------------------------


class StoreError(Exception):
    """Base class of the population layer's errors; the message names the file and the fix."""


class ConfigError(StoreError, ValueError):
    """The experiment config is invalid (the message names the field and the fix)."""


class NotAPopulationError(StoreError):
    """The directory is not an evo population."""


class PopulationExistsError(StoreError):
    """Refusing to create a population over an existing directory."""


class FormatVersionError(StoreError):
    """The population was written by a newer evo."""


class LockTimeout(StoreError):
    """The population lock could not be acquired in time."""


class LeaseLost(StoreError):
    """The lease on an in-flight child was taken away (it expired and was recovered)."""


class CorruptFileError(StoreError, files.CorruptFileError):
    """A file is torn or not valid JSON; it is treated as not committed."""


class StoreWarning(UserWarning):
    """Something odd was found in the population and handled."""


class CorruptFileWarning(StoreWarning):
    """A torn or corrupt file was found and treated as not committed."""


def warn(message: str, category: type[Warning] = StoreWarning) -> None:
    warnings.warn(message, category, stacklevel=3)


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------


def load_json(path: str) -> dict:
    """Load a JSON object of the population.  FileNotFoundError if missing, CorruptFileError
    (naming the file and the fix) if torn."""
    try:
        return files.load_json(path)
    except files.CorruptFileError as e:
        raise CorruptFileError(f"{e}; treated as not committed; run `evo fsck --repair` on the "
                               f"population to quarantine it") from None


def load_json_or_none(path: str, *, warn: bool = True) -> dict | None:
    """Load a JSON object; None if missing, or torn (with a warning naming the file)."""
    try:
        return load_json(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except CorruptFileError as e:
        if warn:
            warnings.warn(str(e), CorruptFileWarning, stacklevel=2)
        return None


def dumps(obj: Any) -> bytes:
    """A population file's bytes: compact JSON on one line."""
    return files.dumps_json(obj)


def shard(i: int) -> str:
    """The shard directory name of id ``i`` in ``dead/`` and ``ids/``."""
    return str(i // SHARD_SIZE)


def new_token() -> str:
    return secrets.token_hex(6)


def is_num(x: Any) -> bool:
    """A finite number (not a bool)."""
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def list_ids(d: str) -> list[int]:
    """The numeric entries of a directory ([] if it is missing)."""
    return [int(n) for n in files.listdir_quiet(d) if n.isdigit()]


def inflight_entries(d: str) -> list[tuple[int, str, str]]:
    """``(id, token, path)`` of each ``inflight/<id>.<token>`` directory entry."""
    out = []
    for n in files.listdir_quiet(d):
        a, dot, tok = n.partition(".")
        if dot and a.isdigit() and tok:
            out.append((int(a), tok, os.path.join(d, n)))
    return out
