"""The event log: torn lines are skipped, appends start on a fresh line."""

import os
import random
import warnings

import pytest

from evo.population import CorruptFileWarning, WorkerInfo, fsck, read_events
from popkit import make, train_one


def test_event_log_torn_lines(tmp_path):
    pop = make(tmp_path, population_size=2)
    me, rng = WorkerInfo.from_env(), random.Random(15)
    epath = os.path.join(pop.root, "events.jsonl")
    with open(epath, "ab") as f:
        f.write(b'{"event": "birth", "id": 9')  # torn last line: skipped silently
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        n = len(list(read_events(pop.root)))
    train_one(pop, me, rng)  # the next append starts on a fresh line
    evs = list(read_events(pop.root, warn=False))
    assert len(evs) == n + 2 and evs[-1]["event"] == "birth"
    with pytest.warns(CorruptFileWarning, match="line"):
        list(read_events(pop.root))  # the torn line is now in the middle
    rep = fsck(pop.root)
    assert rep.ok and any(p.code == "events-torn" for p in rep.problems)
    with open(epath, "ab") as f:
        f.write(b"\x00\xffgarbage")
    assert len(list(read_events(pop.root, warn=False))) == n + 2
