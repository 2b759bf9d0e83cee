"""``quarantine/``: what the population cannot use is moved aside, never deleted.

A parent whose DNA fails validation, a task record that cannot be read, a torn file, a stray
entry: each is moved (one rename) into its own entry ``quarantine/<name>.<where>.<time>-<hex>/``
beside a ``why.json`` (``{"origin", "id", "reason", "at"}``), so that the workers go on with other
work and a person can look at it later.  ``evo status`` counts the entries and ``evo fsck`` lists
them.  To get an individual back: fix what ``why.json`` says, then move the directory inside the
entry back to where ``origin`` says (``mv quarantine/<entry>/<id> alive/<id>``, or to
``pending/<id>`` with a ``task.json`` to retrain it), and run ``evo fsck``.
"""

from __future__ import annotations

import os
import time

from evo.base.files import atomic_write_json, listdir_quiet, rmtree_quiet
from evo.population.layout import QUARANTINE, load_json_or_none, new_token

__all__ = ["WHY_FILE", "quarantine", "quarantined"]

WHY_FILE = "why.json"


def quarantine(root: str, path: str, reason: str, *, i: int | None = None) -> str:
    """Move ``path`` (a file or directory of the population at ``root``) into a new quarantine
    entry with the reason; returns the entry's path.  ``i``: the individual it belongs to."""
    origin = os.path.relpath(path, root)
    where = origin.split(os.sep)[0] if os.sep in origin else "root"
    label = f"{i}.{where}" if i is not None else origin.replace(os.sep, "__")
    entry = os.path.join(root, QUARANTINE, f"{label}.{int(time.time())}-{new_token()}")
    os.makedirs(entry)
    try:
        atomic_write_json(os.path.join(entry, WHY_FILE), {"origin": origin, "id": i, "reason": reason,
                                                          "at": time.time()}, sync_dir=False)
        os.rename(path, os.path.join(entry, os.path.basename(path)))
    except BaseException:
        rmtree_quiet(entry)  # nothing moved in: only the note is lost
        raise
    return entry


def quarantined(root: str) -> list[tuple[str, dict]]:
    """The quarantine's entries, oldest first: (path, why) (why is ``{}`` when it has no note)."""
    qdir = os.path.join(root, QUARANTINE)
    out = []
    for name in sorted(listdir_quiet(qdir), key=lambda n: n.rsplit(".", 1)[-1]):
        p = os.path.join(qdir, name)
        why = load_json_or_none(os.path.join(p, WHY_FILE), warn=False) if os.path.isdir(p) else None
        out.append((p, why or {}))
    return out
