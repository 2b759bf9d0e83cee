"""The population layer (pure Python, no torch): the on-disk protocol that the stateless workers share.

A population lives only in a directory on a (shared) file system; docs/format.md is its public
contract.  The modules, bottom up:

* :mod:`~evo.population.layout` -- names, shards, the format version, the errors;
* :mod:`~evo.population.config` -- the experiment config and the run-control knobs;
* :mod:`~evo.population.locks` -- the population lock (flock, soft, none) and its choice;
* :mod:`~evo.population.leases` -- workers, leases, tasks, waits, commit results;
* :mod:`~evo.population.events` -- the event log; :mod:`~evo.population.alive` -- a worker's view of alive/;
* :mod:`~evo.population.ids`, :mod:`~evo.population.counters`, :mod:`~evo.population.records`;
* :mod:`~evo.population.protocol` -- :class:`Population`: selection, commit, release
  (with :mod:`~evo.population.recovery`, :mod:`~evo.population.control`, :mod:`~evo.population.reading`);
* :mod:`~evo.population.fsck` -- the invariants and their repair;
* :mod:`~evo.population.strategies` -- tournament, aging and random search.
"""

from evo.population.config import Config, Control
from evo.population.events import read_events
from evo.population.fsck import FsckReport, Problem, fsck
from evo.population.layout import (
    FORMAT_VERSION,
    ConfigError,
    CorruptFileError,
    CorruptFileWarning,
    FormatVersionError,
    LeaseLost,
    LockTimeout,
    NotAPopulationError,
    PopulationExistsError,
    StoreError,
    StoreWarning,
)
from evo.population.leases import CommitResult, Lease, Task, Wait, WorkerInfo
from evo.population.locks import SoftLock, detect_lock_kind
from evo.population.protocol import Population
from evo.population.reading import Individual

__all__ = [
    "FORMAT_VERSION",
    "CommitResult",
    "Config",
    "ConfigError",
    "Control",
    "CorruptFileError",
    "CorruptFileWarning",
    "FormatVersionError",
    "FsckReport",
    "Individual",
    "Lease",
    "LeaseLost",
    "LockTimeout",
    "NotAPopulationError",
    "Population",
    "PopulationExistsError",
    "Problem",
    "SoftLock",
    "StoreError",
    "StoreWarning",
    "Task",
    "Wait",
    "WorkerInfo",
    "detect_lock_kind",
    "fsck",
    "read_events",
]
