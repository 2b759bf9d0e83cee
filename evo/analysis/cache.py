"""The per-user cache of the dead: their summaries never change, so they are read once.

After the first load of a population, loading 100,000 dead individuals reads a directory listing,
this cache and the few hundred living ones.  An entry is trusted only while the dead individual's
directory keeps its inode.  The cache lives in ``$EVO_CACHE_DIR/analysis``, else
``$XDG_CACHE_HOME/evo/analysis``, else ``~/.cache/evo/analysis``; any problem with it (an
unwritable directory, a torn line, another version) only costs a re-read, never a wrong answer.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from typing import Any

from evo.analysis.records import CACHED_FIELDS
from evo.base.files import append_jsonl, atomic_write, parse_jsonl

__all__ = ["DeadCache", "cache_dir"]

_CACHE_VERSION = 1
_CACHE_TAG = f"v{_CACHE_VERSION}:" + hashlib.sha1(",".join(CACHED_FIELDS).encode()).hexdigest()[:10]


def cache_dir() -> str:
    """Where the caches of the dead are kept (see the module's docstring)."""
    env = os.environ.get("EVO_CACHE_DIR")
    if env:
        return os.path.join(env, "analysis")
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "evo", "analysis")


class DeadCache:
    """Append-only JSON-lines file: a header, then ``[id, inode, *values]`` per dead individual.

    Later lines win.  Rewritten compactly when more than a quarter of it is stale.  Any
    problem (unwritable directory, torn line, another version) only costs a re-read.
    """

    def __init__(self, root: str, created_at: Any, directory: str | None = None):
        key = hashlib.sha256(f"{os.path.realpath(root)}\0{created_at}".encode()).hexdigest()[:20]
        self.path = os.path.join(directory or cache_dir(), f"{key}.jsonl")
        self.header = {"cache": "evo-analysis-dead", "tag": _CACHE_TAG, "root": os.path.realpath(root),
                       "created_at": created_at}
        self.entries: dict[int, tuple[int, list]] = {}
        self.lines = 0

    def load(self) -> None:
        try:
            with open(self.path, "rb") as f:
                data = f.read()
        except OSError:
            return
        head_end = data.find(b"\n")
        try:
            head = json.loads(data[:head_end])
        except ValueError:
            return
        if head != self.header:
            return
        body = data[head_end + 1:].rstrip(b"\n")
        if not body:
            return
        rows = parse_jsonl(body, types=(list,)).records  # a line torn by a concurrent writer is skipped
        entries = self.entries
        n = len(CACHED_FIELDS) + 2
        for row in rows:
            if isinstance(row, list) and len(row) == n:
                entries[row[0]] = (row[1], row[2:])
                self.lines += 1

    def append(self, rows: list[tuple[int, int, list]], live: dict[int, int]) -> None:
        """Add new rows; rewrite the file when stale lines dominate.  Never raises."""
        try:
            stale = self.lines - sum(1 for i, (ino, _) in self.entries.items() if live.get(i) == ino)
            if not os.path.exists(self.path) or stale * 4 > self.lines + len(rows):
                for i, ino, vals in rows:
                    self.entries[i] = (ino, vals)
                keep = [(i, ino, vals) for i, (ino, vals) in self.entries.items() if live.get(i) == ino]
                buf = io.StringIO()
                buf.write(json.dumps(self.header) + "\n")
                for i, ino, vals in sorted(keep, key=lambda r: r[0]):
                    buf.write(json.dumps([i, ino, *vals], separators=(",", ":")) + "\n")
                os.makedirs(os.path.dirname(self.path), exist_ok=True)
                atomic_write(self.path, buf.getvalue().encode(), fsync=False, sync_dir=False)
                self.lines = len(keep)
                return
            if not rows:
                return
            append_jsonl(self.path, ([i, ino, *vals] for i, ino, vals in rows), fsync=False)
            self.lines += len(rows)
        except (OSError, TypeError, ValueError):
            pass
