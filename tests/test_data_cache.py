"""Tests of evo.network.data.cache: the uint8 cache, memory-mapped, rebuilt when damaged, raced safely."""
from __future__ import annotations

import json
import multiprocessing as mp
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from evo.network.data import load_dataset

SMALL = dict(n_train=600, n_val=200, n_test=100)

pytestmark = pytest.mark.usefixtures("one_thread")


def _splits(d):
    return [d.train_x, d.train_y, d.val_x, d.val_y, d.test_x, d.test_y]


def _cache_files(root: Path):
    return sorted(p.name for p in (root / ".evo-cache").iterdir())


def _mapped_files():
    with open("/proc/self/maps") as f:
        return f.read()


def _mapped_from(t: torch.Tensor, path: str) -> bool:
    """Whether tensor ``t``'s memory lies in a mapping of the file ``path`` (Linux: /proc/self/maps)."""
    addr, real = t.untyped_storage().data_ptr(), os.path.realpath(path)
    for line in Path("/proc/self/maps").read_text().splitlines():
        fields = line.split(maxsplit=5)
        if len(fields) == 6 and fields[5] == real:
            start, end = (int(x, 16) for x in fields[0].split("-"))
            if start <= addr < end:
                return True
    return False


def test_cache_round_trip_is_memory_mapped(tmp_path):
    a = load_dataset("synthetic", root=tmp_path, **SMALL)
    assert a.info["cache_hit"] is False and a.info["cache"]
    files = _cache_files(tmp_path)
    assert len(files) == 3 and not [f for f in files if f.endswith(".tmp")]
    meta = json.loads(next((tmp_path / ".evo-cache").glob("*.json")).read_text())
    assert meta["n_train"] == 600 and meta["split_seed"] == 0 and len(meta["val_indices"]) == 200
    b = load_dataset("synthetic", root=tmp_path, **SMALL)
    assert b.info["cache_hit"] is True
    if Path("/proc/self/maps").exists():     # served from the file, not read into private memory
        assert _mapped_from(b.train_x, b.info["cache"]) and _mapped_from(b.val_x, b.info["cache"])
    for ta, tb in zip(_splits(a), _splits(b)):
        assert torch.equal(ta, tb)
    assert b.mean == a.mean and b.std == a.std
    if os.path.exists("/proc/self/maps"):
        assert b.info["cache"] in _mapped_files()
    # the views are writable without touching the file (copy-on-write)
    b.train_x[0].zero_()
    c = load_dataset("synthetic", root=tmp_path, **SMALL)
    assert torch.equal(c.train_x, a.train_x)


def test_damaged_cache_is_rebuilt(tmp_path):
    a = load_dataset("synthetic", root=tmp_path, **SMALL)
    img = Path(a.info["cache"])
    head = img.read_bytes()[:1000]
    img.unlink()  # a new inode: `a` keeps its mapping of the old one
    img.write_bytes(head)  # a torn image file under a complete meta
    with pytest.warns(UserWarning, match="damaged cache"):
        b = load_dataset("synthetic", root=tmp_path, **SMALL)
    assert torch.equal(a.train_x, b.train_x)
    c = load_dataset("synthetic", root=tmp_path, **SMALL)
    assert c.info["cache_hit"]


def _race_worker(root, barrier, queue):
    # numpy only in the child: torch's OpenMP pool is not usable after fork
    barrier.wait()
    d = load_dataset("synthetic", root=root, n_train=3000, n_val=500, n_test=500)
    queue.put((d.info["cache_hit"], int(d.train_x.numpy().sum(dtype=np.int64)),
               int(d.test_x.numpy().sum(dtype=np.int64))))


def test_concurrent_builders_of_one_cache(tmp_path):
    ctx = mp.get_context("fork")
    barrier = ctx.Barrier(4)
    queue = ctx.Queue()
    procs = [ctx.Process(target=_race_worker, args=(str(tmp_path), barrier, queue), daemon=True)
             for _ in range(4)]
    try:
        for p in procs:
            p.start()
        results = [queue.get(timeout=60) for _ in procs]
        for p in procs:
            p.join(30)
            assert p.exitcode == 0
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
    assert len({r[1:] for r in results}) == 1
    files = _cache_files(tmp_path)
    assert len(files) == 3 and not [f for f in files if f.endswith(".tmp")]
    d = load_dataset("synthetic", root=tmp_path, n_train=3000, n_val=500, n_test=500)
    assert d.info["cache_hit"] and int(d.train_x.numpy().sum(dtype=np.int64)) == results[0][1]


def test_unwritable_cache_falls_back_to_memory(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.warns(UserWarning, match="cannot write the data cache"):
        d = load_dataset("synthetic", cache_dir=blocker / "sub", **SMALL)
    assert d.info["cache"] is None and len(d.train_x) == 600
