"""CIFAR-10 / CIFAR-100 in torchvision's on-disk format, read without unpickling foreign code; download."""
from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np

from evo.network.data.cache import _assemble, _cache_dir_for, _cached
from evo.network.data.dataset import DataError, Dataset, DatasetNotFoundError, default_root


def _np_reconstruct():
    core = getattr(np, "_core", None)
    if core is not None:
        return core.multiarray._reconstruct, core.numeric._frombuffer
    return np.core.multiarray._reconstruct, np.core.numeric._frombuffer  # pragma: no cover (numpy < 2)


class _RestrictedUnpickler(pickle.Unpickler):
    """Reads CIFAR's pickles without running anything a file's author chose.

    The CIFAR batches are pickles; unpickling runs whatever callables the file names. This unpickler
    resolves only the handful of names a numpy array needs (``_reconstruct`` / ``_frombuffer``, ``ndarray``,
    ``dtype``, and ``_codecs.encode`` for byte strings) and refuses every other global, so a file written
    by someone else cannot execute code when loaded.
    """

    def find_class(self, module: str, name: str):
        reconstruct, frombuffer = _np_reconstruct()
        allowed = {
            ("numpy.core.multiarray", "_reconstruct"): reconstruct,
            ("numpy._core.multiarray", "_reconstruct"): reconstruct,
            ("numpy.core.numeric", "_frombuffer"): frombuffer,
            ("numpy._core.numeric", "_frombuffer"): frombuffer,
            ("numpy", "ndarray"): np.ndarray,
            ("numpy", "dtype"): np.dtype,
            ("_codecs", "encode"): __import__("codecs").encode,
        }
        try:
            return allowed[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}: not part of a CIFAR batch") from None


def _read_pickle(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            obj = _RestrictedUnpickler(f, encoding="latin1").load()
    except FileNotFoundError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as e:
        raise DataError(f"{path} is not a readable CIFAR batch: {e}") from e
    if not isinstance(obj, dict):
        raise DataError(f"{path} is not a CIFAR batch (holds a {type(obj).__name__}, not a dict)")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}


_CIFAR = {
    "cifar10": {"dir": "cifar-10-batches-py", "train": [f"data_batch_{i}" for i in range(1, 6)],
                "test": ["test_batch"], "meta": "batches.meta", "labels": "labels", "names": "label_names",
                "classes": 10},
    "cifar100": {"dir": "cifar-100-python", "train": ["train"], "test": ["test"], "meta": "meta",
                 "labels": "fine_labels", "names": "fine_label_names", "classes": 100},
}


def _cifar_batch(path: Path, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    d = _read_pickle(path)
    try:
        data, labels = d["data"], d[label_key]
    except KeyError as e:
        raise DataError(f"{path} is not a CIFAR batch: no {e.args[0]!r} entry") from None
    data = np.asarray(data)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise DataError(f"{path}: expected uint8 images of 3072 bytes, found {data.dtype} {data.shape}")
    labels = np.asarray(labels, dtype=np.int64)
    if labels.shape != (len(data),):
        raise DataError(f"{path}: {len(labels)} labels for {len(data)} images")
    return data.reshape(-1, 3, 32, 32), labels


def _load_cifar(name: str, root, split_seed: int, *, n_val: int = 5000, cache_dir=None,
                cache: bool = True) -> Dataset:
    spec = _CIFAR[name]
    root = Path(root) if root is not None else default_root()
    base = root / spec["dir"]
    if not base.is_dir() and root.name == spec["dir"]:  # root given as the batches directory itself
        base, root = root, root.parent
    files = [base / f for f in spec["train"] + spec["test"]]
    missing = [p for p in files if not p.is_file()]
    if missing:
        raise DatasetNotFoundError(
            f"{name} not found: {missing[0]} does not exist. Fetch it on a machine with internet access: "
            f"evo data download {name} --root {root}")
    fingerprint = [[p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in files]
    key = {"dataset": name, "source": str(base.resolve()), "files": fingerprint, "n_val": int(n_val),
           "split_seed": int(split_seed)}

    def build():
        tr = [_cifar_batch(base / f, spec["labels"]) for f in spec["train"]]
        te = [_cifar_batch(base / f, spec["labels"]) for f in spec["test"]]
        pool_x = np.concatenate([a for a, _ in tr])
        pool_y = np.concatenate([b for _, b in tr])
        test_x = np.concatenate([a for a, _ in te])
        test_y = np.concatenate([b for _, b in te])
        for lab, what in ((pool_y, "training"), (test_y, "test")):
            if len(lab) and (lab.min() < 0 or lab.max() >= spec["classes"]):
                raise DataError(f"{base}: {what} labels outside 0..{spec['classes'] - 1}")
        images, labels, meta = _assemble(pool_x, pool_y, test_x, test_y, n_val, split_seed)
        classes = None
        meta_path = base / spec["meta"]
        if meta_path.is_file():
            names = _read_pickle(meta_path).get(spec["names"])
            if isinstance(names, list):
                classes = [n.decode() if isinstance(n, bytes) else str(n) for n in names]
        meta["classes"] = classes
        meta["num_classes"] = spec["classes"]
        return images, labels, meta

    return _cached(name, lambda m: m["num_classes"], _cache_dir_for(root, cache_dir, cache), key, build,
                   {"source": str(base)})


def download(name: str, root: str | os.PathLike) -> Dataset:
    """Fetch a data set from the internet into ``root`` (for a login node), then build its cache.

    Backs ``evo data download NAME --root DIR``. Only the CIFAR sets can be downloaded.
    """
    root = Path(root)
    if name not in ("cifar10", "cifar100"):
        raise DataError(f"{name!r} cannot be downloaded; only cifar10 and cifar100 can")
    import torchvision

    cls = torchvision.datasets.CIFAR10 if name == "cifar10" else torchvision.datasets.CIFAR100
    root.mkdir(parents=True, exist_ok=True)
    for train in (True, False):
        cls(str(root), train=train, download=True)
    from evo.network.data import load_dataset

    return load_dataset(name, root)
