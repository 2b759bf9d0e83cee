"""The compact uint8 cache of a data set read from disk (``<root>/.evo-cache/<name>-<hash>.npy``).

Written atomically (temporary file, fsync, rename; the ``.json`` meta is renamed last and marks the cache
complete), so hundreds of workers may race to build it and none ever reads a half-written file. Later loads
memory-map it (copy-on-write) and take a few milliseconds. Images are stored as [train | val | test] so that
each split is a contiguous view of the file.
"""
from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from evo.base.files import atomic_write
from evo.network.data.dataset import DataError, Dataset

CACHE_DIR_NAME = ".evo-cache"
CACHE_FORMAT = 1


def _digest(obj: Any, n: int = 16) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:n]


def _cache_paths(cache_dir: Path, name: str, key: dict) -> tuple[Path, Path, Path]:
    stem = f"{name}-{_digest(key)}"
    return cache_dir / f"{stem}.npy", cache_dir / f"{stem}.labels.npy", cache_dir / f"{stem}.json"


def _read_cache(paths: tuple[Path, Path, Path], key: dict) -> tuple[np.ndarray, np.ndarray, dict] | None:
    img_p, lab_p, meta_p = paths
    try:
        meta = json.loads(meta_p.read_text())
    except (FileNotFoundError, NotADirectoryError):
        return None
    except (OSError, ValueError) as e:
        warnings.warn(f"ignoring unreadable cache meta {meta_p} ({e}); rebuilding it")
        return None
    try:
        if meta.get("format") != CACHE_FORMAT or meta.get("key") != json.loads(json.dumps(key, default=str)):
            return None
        images = np.load(img_p, mmap_mode="c")  # copy-on-write: writable views, the file is never changed
        labels = np.load(lab_p)
        n = meta["n_train"] + meta["n_val"] + meta["n_test"]
        if images.dtype != np.uint8 or images.shape != (n, *meta["input_shape"]) or labels.shape != (n,):
            raise ValueError(f"shape {images.shape} / {labels.shape} does not match the meta")
    except (OSError, ValueError, KeyError) as e:
        warnings.warn(f"ignoring damaged cache {img_p} ({e}); rebuilding it")
        return None
    return images, labels.astype(np.int64, copy=False), meta


def _write_cache(paths: tuple[Path, Path, Path], images: np.ndarray, labels: np.ndarray, meta: dict) -> bool:
    img_p, lab_p, meta_p = paths
    try:
        img_p.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(img_p, lambda f: np.save(f, np.ascontiguousarray(images), allow_pickle=False))
        atomic_write(lab_p, lambda f: np.save(f, labels.astype(np.int64), allow_pickle=False))
        atomic_write(meta_p, lambda f: f.write(json.dumps(meta, indent=1, default=str).encode()))
    except OSError as e:
        warnings.warn(f"cannot write the data cache in {img_p.parent} ({e}); keeping the data in memory. "
                      f"Pass cache_dir=DIR to put it somewhere writable.")
        return False
    return True


def _split_indices(n_pool: int, n_val: int, split_seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Train / validation indices into a pool, both sorted, fixed by ``split_seed``."""
    if not 0 < n_val < n_pool:
        raise DataError(f"cannot hold out {n_val} validation images from {n_pool}")
    perm = np.random.default_rng([int(split_seed), 0x5B117]).permutation(n_pool)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def _channel_stats(train: np.ndarray) -> tuple[list[float], list[float]]:
    c = train.shape[1]
    s = np.zeros(c, np.float64)
    s2 = np.zeros(c, np.float64)
    for i in range(0, len(train), 4096):  # chunked: no float copy of the whole set
        blk = train[i:i + 4096].astype(np.float32) / 255.0
        s += blk.sum(axis=(0, 2, 3), dtype=np.float64)
        s2 += np.square(blk).sum(axis=(0, 2, 3), dtype=np.float64)
    n = len(train) * train.shape[2] * train.shape[3]
    mean = s / n
    std = np.sqrt(np.maximum(s2 / n - mean ** 2, 1e-12))
    return [float(v) for v in mean], [float(v) for v in std]


def _assemble(pool_x: np.ndarray, pool_y: np.ndarray, test_x: np.ndarray | None, test_y: np.ndarray | None,
              n_val: int, split_seed: int) -> tuple[np.ndarray, np.ndarray, dict]:
    """Order the images as [train | val | test] so that each split is a contiguous view of the cache."""
    tr, va = _split_indices(len(pool_x), n_val, split_seed)
    parts_x = [pool_x[tr], pool_x[va]]
    parts_y = [pool_y[tr], pool_y[va]]
    if test_x is not None:
        parts_x.append(test_x)
        parts_y.append(test_y)
    images = np.concatenate(parts_x)
    labels = np.concatenate(parts_y).astype(np.int64)
    mean, std = _channel_stats(images[:len(tr)])
    meta = {
        "n_train": int(len(tr)),
        "n_val": int(len(va)),
        "n_test": 0 if test_x is None else int(len(test_x)),
        "input_shape": list(images.shape[1:]),
        "mean": mean,
        "std": std,
        "split_seed": int(split_seed),
        "split_hash": hashlib.sha256(va.astype(np.int64).tobytes()).hexdigest()[:16],
        "val_indices": [int(i) for i in va],
    }
    return images, labels, meta


def _finish(name: str, num_classes: int, images: np.ndarray, labels: np.ndarray, meta: dict,
            info: dict) -> Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch warns about read-only numpy arrays; ours are copy-on-write
        x = torch.from_numpy(images)
        y = torch.from_numpy(labels)
    a, b = meta["n_train"], meta["n_train"] + meta["n_val"]
    n_test = meta["n_test"]
    info = {**info, "split_hash": meta["split_hash"], "classes": meta.get("classes")}
    return Dataset(
        name=name,
        num_classes=int(num_classes),
        input_shape=tuple(int(v) for v in meta["input_shape"]),
        train_x=x[:a], train_y=y[:a],
        val_x=x[a:b], val_y=y[a:b],
        test_x=x[b:b + n_test] if n_test else None, test_y=y[b:b + n_test] if n_test else None,
        mean=tuple(meta["mean"]), std=tuple(meta["std"]),
        split_seed=int(meta["split_seed"]),
        info=info,
    )


def _cached(name: str, num_classes_of: Callable[[dict], int], cache_dir: Path | None, key: dict,
            build: Callable[[], tuple[np.ndarray, np.ndarray, dict]], info: dict) -> Dataset:
    """Load ``name`` from its cache under ``cache_dir``, building (and writing) it first when missing."""
    if cache_dir is not None:
        paths = _cache_paths(Path(cache_dir), name, key)
        hit = _read_cache(paths, key)
        if hit is not None:
            images, labels, meta = hit
            return _finish(name, num_classes_of(meta), images, labels, meta,
                           {**info, "cache": str(paths[0]), "cache_hit": True})
    images, labels, meta = build()
    meta = {"format": CACHE_FORMAT, "name": name, "key": key, **meta}
    meta = json.loads(json.dumps(meta, default=str))
    info = {**info, "cache": None, "cache_hit": False}
    if cache_dir is not None and _write_cache(paths, images, labels, meta):
        hit = _read_cache(paths, key)
        if hit is not None:  # serve from the memory-mapped file, not from the private copy
            images, labels, meta = hit
            info["cache"] = str(paths[0])
    return _finish(name, num_classes_of(meta), images, labels, meta, info)


def _cache_dir_for(root: Path | None, cache_dir, cache: bool) -> Path | None:
    if not cache:
        return None
    if cache_dir is not None:
        return Path(cache_dir)
    return None if root is None else Path(root) / CACHE_DIR_NAME
