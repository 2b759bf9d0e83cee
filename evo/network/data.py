"""Data sets by name, the compact uint8 cache, and device-side batching.

Data sets (see :func:`load_dataset`):

``synthetic``
    The embedded default: generated deterministically from a seed, no download, a fraction of a second.
    Ten classes of 3x16x16 images (16x16 keeps CPU training fast; ``image_size`` changes it). Each class owns
    a fixed random 5x5 colour motif with zero mean per channel. An image is a flat background of a random
    colour (independent of the class) plus pixel noise, with the motif of its class stamped once at a random
    position, at a random contrast and a random *sign*. Because the sign is random and the motif has zero
    mean, neither the mean colour nor any linear function of the pixels tells the classes apart (a linear
    model on pixels stays near chance, the paper's seed model -- global pooling + linear -- at chance),
    while a small convolutional network finds the motif anywhere: evolution has something to discover.
    Measured with :func:`evo.train.train` (400 steps of batch 50, on the CPU): linear on pixels 11-14%
    validation accuracy, global pooling + linear about 10%, a 3-layer convnet (16-32-32 channels) 94-100%
    over 16 seeds; at 300 steps one and two conv layers reach 14-75% depending on width: a ladder to climb.
    ``noise`` (default 0.05) and ``contrast`` (default (0.3, 0.5)) make the task harder or easier.

``cifar10``, ``cifar100``
    torchvision's on-disk format (``cifar-10-batches-py/``, ``cifar-100-python/`` under ``root``). The
    training set is split into 45,000 train / 5,000 validation images by ``split_seed``; the test set is
    kept apart. :func:`download` fetches them (``evo data download cifar10 --root DIR``).

``imagefolder``
    Any ``root/<class>/<image>`` tree (how users bring their own data). Images are converted to RGB,
    resized once so that the shorter side is ``image_size`` (default 32) and centre-cropped to a square.
    ``val_fraction`` (default 0.1) of the images, drawn by ``split_seed``, form the validation split. An
    optional separate tree ``test_root=DIR`` (same class names) becomes the test split.

Every data set read from disk is converted once into a compact uint8 cache next to the data
(``<root>/.evo-cache/<name>-<hash>.npy`` with ``.labels.npy`` and a ``.json`` meta), written atomically
(temporary file, fsync, rename; the meta is renamed last and marks the cache complete), so hundreds of
workers may race to build it and none ever reads a half-written file. Later loads memory-map it and take
a few milliseconds. The synthetic set is cached the same way when a ``root`` is given, else built in memory.
"""
from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import os
import pickle
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from evo.base.files import atomic_write

__all__ = [
    "DATASETS",
    "DataError",
    "DatasetNotFoundError",
    "Dataset",
    "DeviceData",
    "load_dataset",
    "download",
    "default_root",
    "to_device",
    "augment",
    "normalize",
]

DATASETS = ("synthetic", "cifar10", "cifar100", "imagefolder")
CACHE_DIR_NAME = ".evo-cache"
CACHE_FORMAT = 1
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")


class DataError(Exception):
    """A data set cannot be loaded; the message names the file and the fix."""


class DatasetNotFoundError(DataError, FileNotFoundError):
    """The data set's files are not where they were looked for."""


@dataclasses.dataclass(eq=False)
class Dataset:
    """One data set, split into train / validation / (optional) test.

    Images are uint8 tensors NCHW (views of a memory-mapped cache where possible), labels int64.
    ``mean`` / ``std`` are per channel, in pixel units scaled to [0, 1], computed from the train split.
    """

    name: str
    num_classes: int
    input_shape: tuple[int, int, int]
    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor | None
    test_y: torch.Tensor | None
    mean: tuple[float, ...]
    std: tuple[float, ...]
    split_seed: int
    info: dict[str, Any] = dataclasses.field(default_factory=dict)
    _device_cache: dict = dataclasses.field(default_factory=dict, repr=False, compare=False)

    def __repr__(self) -> str:
        n_test = 0 if self.test_x is None else len(self.test_x)
        return (f"Dataset({self.name!r}, classes={self.num_classes}, shape={self.input_shape}, "
                f"train={len(self.train_x)}, val={len(self.val_x)}, test={n_test})")

    def split(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x, y)`` of the split ``"train"``, ``"val"`` or ``"test"``."""
        if name not in ("train", "val", "test"):
            raise ValueError(f"unknown split {name!r}: use 'train', 'val' or 'test'")
        x, y = getattr(self, f"{name}_x"), getattr(self, f"{name}_y")
        if x is None:
            raise DataError(f"data set {self.name!r} has no {name} split")
        return x, y


def default_root() -> Path:
    """``$EVO_DATA_ROOT`` when set, else ``~/.cache/evo/data``."""
    env = os.environ.get("EVO_DATA_ROOT")
    return Path(env) if env else Path.home() / ".cache" / "evo" / "data"


def load_dataset(name: str, root: str | os.PathLike | None = None, split_seed: int = 0, **kw) -> Dataset:
    """Load a data set by name (``synthetic``, ``cifar10``, ``cifar100``, ``imagefolder``).

    ``root``: the directory holding the data (torchvision's layout for CIFAR; the class folders for
    imagefolder). ``None``: synthetic is built in memory; CIFAR looks in :func:`default_root`.
    ``split_seed`` fixes the train/validation split. Keyword arguments:

    - synthetic: ``n_train=10000, n_val=2000, n_test=2000, image_size=16, seed=0``
    - cifar10 / cifar100: ``n_val=5000``
    - imagefolder: ``image_size=32, val_fraction=0.1, test_root=None``
    - all: ``cache_dir`` (default ``<root>/.evo-cache``), ``cache=True`` (False: never read or write one)
    """
    loaders = {"synthetic": _load_synthetic, "cifar10": _load_cifar, "cifar100": _load_cifar,
               "imagefolder": _load_imagefolder}
    loader = loaders.get(name)
    if loader is None:
        raise DataError(f"unknown data set {name!r}; known: {', '.join(DATASETS)}")
    params = inspect.signature(loader).parameters
    allowed = [p for p, v in params.items() if v.kind is inspect.Parameter.KEYWORD_ONLY]
    unknown = sorted(set(kw) - set(allowed))
    if unknown:
        raise DataError(f"{name} takes no option {', '.join(map(repr, unknown))}; its options: {', '.join(allowed)}")
    if name == "synthetic":
        return _load_synthetic(root, split_seed, **kw)
    if name in ("cifar10", "cifar100"):
        return _load_cifar(name, root, split_seed, **kw)
    if root is None:
        raise DataError("imagefolder needs root=DIR, a directory of <class>/<image> folders")
    return _load_imagefolder(root, split_seed, **kw)


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
    return load_dataset(name, root)


# ----------------------------------------------------------------------------------------------------------
# The cache


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


# ----------------------------------------------------------------------------------------------------------
# synthetic


_SYNTHETIC_CHUNK = 1000


def make_synthetic(n: int, image_size: int = 16, seed: int = 0, num_classes: int = 10, motif_size: int = 5,
                   noise: float = 0.05, contrast: tuple[float, float] = (0.3, 0.5),
                   stream: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` synthetic images (uint8, N x 3 x S x S) and their labels.

    The task -- one random 5x5 colour motif of +-1 values per class, made zero-mean per channel -- is fixed
    by ``seed``; ``stream`` picks an independent sample stream of that task (0: the train/validation pool,
    1: the test set). Each image: a uniform background colour drawn from U(0.3, 0.7) per channel (carries no
    class information), Gaussian pixel noise of std ``noise``, and its class motif added once at a uniformly
    random position with amplitude U(``contrast``) and a random sign. Generated in chunks of 1000 images.
    """
    if image_size < motif_size:
        raise DataError(f"image_size {image_size} is smaller than the {motif_size}x{motif_size} motif")
    task = np.random.default_rng([int(seed), 0x7A5C])
    motifs = task.choice(np.array([-1.0, 1.0], np.float32), size=(num_classes, 3, motif_size, motif_size))
    motifs -= motifs.mean(axis=(2, 3), keepdims=True)  # the motif adds nothing to the mean colour
    motifs /= np.abs(motifs).max(axis=(1, 2, 3), keepdims=True)

    xs, ys = [], []
    for chunk, start in enumerate(range(0, n, _SYNTHETIC_CHUNK)):  # chunked: bounded float memory
        rng = np.random.default_rng([int(seed), 0x5A3D, int(stream), chunk])
        m = min(_SYNTHETIC_CHUNK, n - start)
        y = rng.integers(0, num_classes, m)
        colour = rng.uniform(0.3, 0.7, size=(m, 3, 1, 1)).astype(np.float32)
        sign = rng.integers(0, 2, m).astype(np.float32) * 2 - 1
        amp = rng.uniform(contrast[0], contrast[1], size=m).astype(np.float32) * sign
        py = rng.integers(0, image_size - motif_size + 1, m)
        px = rng.integers(0, image_size - motif_size + 1, m)
        x = rng.standard_normal(size=(m, 3, image_size, image_size), dtype=np.float32)
        x *= noise
        x += colour
        r = py[:, None] + np.arange(motif_size)
        c = px[:, None] + np.arange(motif_size)
        x[np.arange(m)[:, None, None, None], np.arange(3)[None, :, None, None], r[:, None, :, None],
          c[:, None, None, :]] += amp[:, None, None, None] * motifs[y]
        x *= 255.0
        np.rint(x, out=x)
        np.clip(x, 0, 255, out=x)
        xs.append(x.astype(np.uint8))
        ys.append(y.astype(np.int64))
    if not xs:
        return np.zeros((0, 3, image_size, image_size), np.uint8), np.zeros(0, np.int64)
    return np.concatenate(xs), np.concatenate(ys)


def _load_synthetic(root, split_seed: int, *, n_train: int = 10000, n_val: int = 2000, n_test: int = 2000,
                    image_size: int = 16, seed: int = 0, num_classes: int = 10, noise: float = 0.05,
                    contrast: tuple[float, float] = (0.3, 0.5), cache_dir=None, cache: bool = True) -> Dataset:
    params = {"n_train": int(n_train), "n_val": int(n_val), "n_test": int(n_test),
              "image_size": int(image_size), "seed": int(seed), "num_classes": int(num_classes),
              "noise": float(noise), "contrast": [float(contrast[0]), float(contrast[1])]}
    key = {"dataset": "synthetic", "generator": 1, **params, "split_seed": int(split_seed)}
    gen_kw = dict(image_size=int(image_size), seed=int(seed), num_classes=int(num_classes), noise=float(noise),
                  contrast=(float(contrast[0]), float(contrast[1])))

    def build():
        pool_x, pool_y = make_synthetic(n_train + n_val, stream=0, **gen_kw)
        test_x = test_y = None
        if n_test:
            test_x, test_y = make_synthetic(n_test, stream=1, **gen_kw)
        images, labels, meta = _assemble(pool_x, pool_y, test_x, test_y, n_val, split_seed)
        meta["classes"] = [f"motif{i}" for i in range(num_classes)]
        meta["num_classes"] = int(num_classes)
        return images, labels, meta

    info = {"source": "synthetic", "params": params}
    return _cached("synthetic", lambda m: m["num_classes"], _cache_dir_for(root, cache_dir, cache), key, build,
                   info)


# ----------------------------------------------------------------------------------------------------------
# CIFAR


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


# ----------------------------------------------------------------------------------------------------------
# imagefolder


def _class_dirs(root: Path) -> list[Path]:
    if not root.is_dir():
        raise DatasetNotFoundError(f"image folder {root} does not exist (expected {root}/<class>/<image> files)")
    dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not dirs:
        raise DatasetNotFoundError(f"image folder {root} has no class folders (expected {root}/<class>/<image>)")
    return dirs


def _image_files(d: Path) -> list[str]:
    return sorted(e.name for e in os.scandir(d)
                  if not e.name.startswith(".") and e.name.lower().endswith(IMAGE_EXTENSIONS))


def _read_image(path: Path, size: int) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            w, h = im.size
            s = size / min(w, h)
            nw, nh = max(size, round(w * s)), max(size, round(h * s))
            im = im.resize((nw, nh), Image.BILINEAR)
            left, top = (nw - size) // 2, (nh - size) // 2
            im = im.crop((left, top, left + size, top + size))
            return np.asarray(im, dtype=np.uint8).transpose(2, 0, 1)
    except OSError as e:
        raise DataError(f"cannot read image {path}: {e}") from e


def _read_tree(root: Path, classes: list[str], size: int) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    for i, cname in enumerate(classes):
        d = root / cname
        if not d.is_dir():
            continue
        for fname in _image_files(d):
            xs.append(_read_image(d / fname, size))
            ys.append(i)
    if not xs:
        raise DatasetNotFoundError(f"image folder {root} holds no images ({', '.join(IMAGE_EXTENSIONS)})")
    return np.stack(xs), np.asarray(ys, np.int64)


def _tree_fingerprint(root: Path, classes: list[str]) -> list:
    # Names and directory mtimes only (no stat per file): adding, removing or renaming images changes it;
    # overwriting an image in place does not (delete the cache to pick that up).
    out = []
    for c in classes:
        d = root / c
        if d.is_dir():
            names = _image_files(d)
            out.append([c, len(names), hashlib.sha256("\0".join(names).encode()).hexdigest()[:16],
                        d.stat().st_mtime_ns])
    return out


def _load_imagefolder(root, split_seed: int, *, image_size: int = 32, val_fraction: float = 0.1,
                      test_root=None, cache_dir=None, cache: bool = True) -> Dataset:
    root = Path(root)
    classes = [d.name for d in _class_dirs(root)]
    test_root = Path(test_root) if test_root is not None else None
    if test_root is not None:
        extra = [d.name for d in _class_dirs(test_root) if d.name not in classes]
        if extra:
            raise DataError(f"test folder {test_root} has classes missing from {root}: {', '.join(extra)}")
    key = {"dataset": "imagefolder", "source": str(root.resolve()), "tree": _tree_fingerprint(root, classes),
           "test_source": None if test_root is None else str(test_root.resolve()),
           "test_tree": None if test_root is None else _tree_fingerprint(test_root, classes),
           "image_size": int(image_size), "val_fraction": float(val_fraction), "split_seed": int(split_seed)}

    def build():
        pool_x, pool_y = _read_tree(root, classes, image_size)
        n_val = max(1, int(round(len(pool_x) * val_fraction)))
        test_x = test_y = None
        if test_root is not None:
            test_x, test_y = _read_tree(test_root, classes, image_size)
        images, labels, meta = _assemble(pool_x, pool_y, test_x, test_y, n_val, split_seed)
        meta["classes"] = classes
        meta["num_classes"] = len(classes)
        return images, labels, meta

    return _cached("imagefolder", lambda m: m["num_classes"], _cache_dir_for(root, cache_dir, cache), key,
                   build, {"source": str(root)})


# ----------------------------------------------------------------------------------------------------------
# Device-side batching


def _reflect_index(n: int, pad: int, device) -> torch.Tensor:
    i = torch.arange(-pad, n + pad, device=device).abs()
    return torch.where(i > n - 1, 2 * (n - 1) - i, i)


def pad_images(x: torch.Tensor, pad: int, mode: str = "zero") -> torch.Tensor:
    """``x`` (N x C x H x W, any dtype) padded by ``pad`` pixels on each side with zeros or by reflection."""
    if mode not in ("zero", "reflect"):
        raise ValueError(f"padding mode {mode!r}: use 'zero' or 'reflect'")
    if pad == 0:
        return x
    if mode == "zero":
        return torch.nn.functional.pad(x, (pad, pad, pad, pad))
    h, w = x.shape[-2:]
    if pad >= min(h, w):
        raise ValueError(f"reflect padding of {pad} needs images larger than {pad} pixels, not {h}x{w}")
    return x.index_select(2, _reflect_index(h, pad, x.device)).index_select(3, _reflect_index(w, pad, x.device))


def _draw(generator: torch.Generator, n: int, pad: int, flip: bool, device) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Random crop offsets (2 x n, in [0, 2*pad]) and flips (n, bool) for a batch: the one source of randomness."""
    off = torch.randint(0, 2 * pad + 1, (2, n), generator=generator, device=device)
    flips = torch.randint(0, 2, (n,), generator=generator, device=device).bool() if flip else None
    return off, flips


def _crop_index(idx: torch.Tensor, off: torch.Tensor, flips: torch.Tensor | None, shape: tuple[int, int, int],
                pad: int, n_src: int) -> torch.Tensor:
    """Flat indices into padded images (n_src x C x H+2p x W+2p) of the crops at ``off``, flipped by ``flips``."""
    c, h, w = shape
    hp, wp = h + 2 * pad, w + 2 * pad
    dt = torch.int32 if n_src * c * hp * wp < 2 ** 31 else torch.int64
    dev = idx.device
    b = len(idx)
    rows = off[0].to(dt)[:, None] + torch.arange(h, device=dev, dtype=dt)
    cols = off[1].to(dt)[:, None] + torch.arange(w, device=dev, dtype=dt)
    if flips is not None:
        cols = torch.where(flips[:, None], cols.flip(1), cols)
    image = (idx.to(dt) * (c * hp * wp)).view(b, 1, 1, 1) + (torch.arange(c, device=dev, dtype=dt) * (hp * wp)).view(1, c, 1, 1)
    return (image + (rows * wp).view(b, 1, h, 1)) + cols.view(b, 1, 1, w)


def augment(x: torch.Tensor, generator: torch.Generator, pad: int = 4, flip: bool = True,
            mode: str = "zero") -> torch.Tensor:
    """Random crop after ``pad``-pixel padding, and random horizontal flip, for a whole batch at once.

    ``x``: uint8 (or any dtype) N x C x H x W on the generator's device; returns a new tensor of the same
    shape and dtype. ``mode``: ``"zero"`` (pad with zeros) or ``"reflect"``. Vectorised: the crops and flips
    of the whole batch are one ``index_select`` on flat indices, no per-image loop. The trainer uses the
    same draws and indices straight from a padded copy of the training set (:meth:`DeviceData.batch`), so
    ``augment(train_x[idx], g)`` equals ``dd.batch(idx, g)`` for the same generator state.
    """
    n, c, h, w = x.shape
    if pad == 0 and not flip:
        return x.clone()
    src = pad_images(x, pad, mode).contiguous()
    off, flips = _draw(generator, n, pad, flip, x.device)
    lin = _crop_index(torch.arange(n, device=x.device), off, flips, (c, h, w), pad, n)
    return src.reshape(-1).index_select(0, lin.reshape(-1)).view(n, c, h, w)


def normalize(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, dtype: torch.dtype = torch.float32,
              memory_format: torch.memory_format = torch.contiguous_format) -> torch.Tensor:
    """uint8 images -> float ``(x/255 - mean) / std`` per channel (``mean``/``std`` in [0, 1] units)."""
    mean = torch.as_tensor(mean, dtype=torch.float32, device=x.device)
    std = torch.as_tensor(std, dtype=torch.float32, device=x.device)
    scale = (1.0 / (255.0 * std)).to(dtype).view(1, -1, 1, 1)
    shift = (-mean / std).to(dtype).view(1, -1, 1, 1)
    if memory_format is not torch.contiguous_format:
        x = x.contiguous(memory_format=memory_format)  # on the uint8 tensor: a quarter of the bytes
    return x.to(dtype).mul_(scale).add_(shift)


@dataclasses.dataclass(eq=False)
class DeviceData:
    """A data set's uint8 images and labels resident on one device, with the normalisation constants.

    :meth:`batch` draws training batches: indices, crop, flip and normalisation on the device.
    """

    device: torch.device
    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor | None
    test_y: torch.Tensor | None
    mean: torch.Tensor  # (C,) float32, [0, 1] units
    std: torch.Tensor
    num_classes: int
    _padded: dict = dataclasses.field(default_factory=dict, repr=False)
    _norm: dict = dataclasses.field(default_factory=dict, repr=False)

    def split(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = getattr(self, f"{name}_x"), getattr(self, f"{name}_y")
        if x is None:
            raise DataError(f"no {name} split")
        return x, y

    def padded_train(self, pad: int, mode: str = "zero") -> torch.Tensor:
        """The training images padded once (kept for later batches), flattened."""
        key = (pad, mode)
        if key not in self._padded:
            self._padded.clear()
            self._padded[key] = pad_images(self.train_x, pad, mode).contiguous().reshape(-1)
        return self._padded[key]

    def batch(self, idx: torch.Tensor, generator: torch.Generator | None = None, pad: int = 4, flip: bool = True,
              mode: str = "zero") -> torch.Tensor:
        """uint8 training images ``idx``; augmented (as :func:`augment` does) when a generator is given."""
        if generator is None or (pad == 0 and not flip):
            return self.train_x.index_select(0, idx)
        c, h, w = self.train_x.shape[1:]
        src = self.padded_train(pad, mode)
        off, flips = _draw(generator, len(idx), pad, flip, self.device)
        lin = _crop_index(idx, off, flips, (c, h, w), pad, len(self.train_x))
        return src.index_select(0, lin.reshape(-1)).view(len(idx), c, h, w)

    def normalize(self, x: torch.Tensor, memory_format: torch.memory_format = torch.contiguous_format,
                  dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """As :func:`normalize`, with the constants computed once."""
        consts = self._norm.get(dtype)
        if consts is None:
            consts = self._norm[dtype] = ((1.0 / (255.0 * self.std)).to(dtype).view(1, -1, 1, 1),
                                          (-self.mean / self.std).to(dtype).view(1, -1, 1, 1))
        if memory_format is not torch.contiguous_format:
            x = x.contiguous(memory_format=memory_format)
        return x.to(dtype).mul_(consts[0]).add_(consts[1])


def to_device(dataset: Dataset | DeviceData, device: str | torch.device) -> DeviceData:
    """Put a data set's uint8 tensors on ``device`` once (cached on the Dataset object per device).

    On the CPU the tensors stay views of the memory-mapped cache (no copy).
    """
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    if isinstance(dataset, DeviceData):
        if dataset.device == device:
            return dataset
        raise ValueError(f"data are on {dataset.device}, not {device}")
    hit = dataset._device_cache.get(str(device))
    if hit is not None:
        return hit

    def put(t):
        return None if t is None else t.to(device).contiguous()

    dd = DeviceData(
        device=device,
        train_x=put(dataset.train_x), train_y=put(dataset.train_y),
        val_x=put(dataset.val_x), val_y=put(dataset.val_y),
        test_x=put(dataset.test_x), test_y=put(dataset.test_y),
        mean=torch.tensor(dataset.mean, dtype=torch.float32, device=device),
        std=torch.tensor(dataset.std, dtype=torch.float32, device=device),
        num_classes=dataset.num_classes,
    )
    dataset._device_cache[str(device)] = dd
    return dd
