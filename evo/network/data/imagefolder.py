"""The ``imagefolder`` data set: any ``root/<class>/<image>`` tree, resized and centre-cropped once."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from evo.network.data.cache import _assemble, _cache_dir_for, _cached
from evo.network.data.dataset import DataError, Dataset, DatasetNotFoundError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")


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
