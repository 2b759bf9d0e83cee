"""Data sets of the search-efficiency suites: presets, and class-balanced subsets of an image tree.

evo's ``imagefolder`` data set reads any ``root/<class>/<image>`` tree and has no option to use
part of it, so a subset is made the plain way: the first ``images / classes`` files of each
class (in name order) are copied out of the source -- a ``.tar``/``.tar.gz`` archive of such a
tree, or the tree itself -- into ``<out>/data/<name>/<class>/``, once, and that directory is the
population's ``imagefolder`` root.  The choice is deterministic, so every run and every machine
trains on the same images; ``subset.json`` in the directory records what it holds.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tarfile
from pathlib import Path
from typing import Any, Mapping

__all__ = ["PRESETS", "DataPrepError", "prepare", "subset_images"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".ppm", ".tif", ".tiff")

#: Data sets a suite names with ``data = "NAME"`` (a suite's own ``[data.NAME]`` tables add more).
PRESETS: dict[str, dict[str, Any]] = {
    # evo's embedded synthetic set: 10,000 train / 2,000 validation / 2,000 test images of 3x16x16
    "synthetic": {"dataset": "synthetic", "dataset_kwargs": {}},
    # a small synthetic set for tests and smoke runs
    "synthetic-tiny": {"dataset": "synthetic", "dataset_kwargs": {"n_train": 1000, "n_val": 300, "n_test": 0}},
    # 10,000 CIFAR-10 training images (1,000 per class) from the JPEG tree; 10% of them validate
    "cifar10-10k": {"dataset": "imagefolder", "subset_of": "cifar10-train-jpeg.tar.gz", "images": 10000,
                    "dataset_kwargs": {"image_size": 32, "val_fraction": 0.1}},
}

_SUBSET_FILE = "subset.json"


class DataPrepError(ValueError):
    """A data set of a suite cannot be prepared (the message names the source and the fix)."""


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS) and not os.path.basename(name).startswith(".")


def _listing(source: Path) -> dict[str, list[str]]:
    """Class name -> image paths (inside the archive, or relative to the tree), in name order."""
    by_class: dict[str, list[str]] = {}
    if source.is_dir():
        for c in sorted(p for p in source.iterdir() if p.is_dir() and not p.name.startswith(".")):
            by_class[c.name] = sorted(f"{c.name}/{f.name}" for f in c.iterdir() if f.is_file() and _is_image(f.name))
    else:
        with tarfile.open(source) as tf:
            for m in tf:
                parts = m.name.strip("/").split("/")
                if m.isfile() and len(parts) >= 2 and _is_image(parts[-1]):
                    by_class.setdefault(parts[-2], []).append(m.name)
        for v in by_class.values():
            v.sort(key=lambda n: n.rsplit("/", 1)[-1])
    return {c: v for c, v in sorted(by_class.items()) if v}


def subset_images(source: str | os.PathLike, images: int) -> dict[str, list[str]]:
    """Which files a subset of ``images`` takes: the first ``images // classes`` of each class."""
    src = Path(source)
    if not src.exists():
        raise DataPrepError(f"{src}: the source of the subset does not exist (give --data-dir DIR, the folder "
                            "holding it, or an absolute path in the suite)")
    try:
        by_class = _listing(src)
    except (tarfile.TarError, OSError) as e:
        raise DataPrepError(f"{src}: cannot read it as a tar archive or an image tree ({e})") from None
    if not by_class:
        raise DataPrepError(f"{src}: no <class>/<image> files in it")
    per = images // len(by_class)
    short = [c for c, v in by_class.items() if len(v) < per]
    if per < 1 or short:
        raise DataPrepError(f"{src}: cannot take {images} images in equal parts of {len(by_class)} classes "
                            f"({short[0] if short else 'every class'} has too few)")
    return {c: v[:per] for c, v in by_class.items()}


def _make_subset(src: Path, images: int, dest: Path) -> dict:
    chosen = subset_images(src, images)
    want = {name: cls for cls, names in chosen.items() for name in names}
    tmp = dest.with_name(f".{dest.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    for c in chosen:
        (tmp / c).mkdir(parents=True)
    written = 0
    if src.is_dir():
        for name, cls in want.items():
            shutil.copyfile(src / name, tmp / cls / name.rsplit("/", 1)[-1])
            written += 1
    else:
        with tarfile.open(src) as tf:
            for m in tf:
                cls = want.get(m.name)
                if cls is None or not m.isfile():
                    continue
                f = tf.extractfile(m)
                assert f is not None
                with f, open(tmp / cls / m.name.rsplit("/", 1)[-1], "wb") as out:
                    shutil.copyfileobj(f, out)
                written += 1
    if written != len(want):
        shutil.rmtree(tmp, ignore_errors=True)
        raise DataPrepError(f"{src}: found {written} of the {len(want)} chosen images (a duplicate name?)")
    digest = hashlib.sha256("\n".join(sorted(want)).encode()).hexdigest()[:16]
    info = {"source": str(src.resolve()), "images": len(want), "classes": len(chosen),
            "per_class": len(next(iter(chosen.values()))), "rule": "the first files of each class in name order",
            "files_sha256": digest}
    (tmp / _SUBSET_FILE).write_text(json.dumps(info, indent=1) + "\n")
    if dest.exists():
        shutil.rmtree(dest)
    os.replace(tmp, dest)
    return info


def prepare(data: Mapping[str, Any], data_dir: str | os.PathLike, out: str | os.PathLike,
            log: Any = print) -> tuple[str, dict[str, Any]]:
    """The ``(dataset, dataset_kwargs)`` of a suite's data entry, making its subset first when it
    has ``subset_of`` (a path, absolute or under ``data_dir``) and ``images``."""
    dataset = str(data["dataset"])
    kwargs = dict(data.get("dataset_kwargs") or {})
    if "subset_of" not in data:
        return dataset, kwargs
    if dataset != "imagefolder":
        raise DataPrepError(f"data {data.get('name')!r}: subset_of works with dataset = \"imagefolder\" only")
    images = data.get("images")
    if not isinstance(images, int) or images < 1:
        raise DataPrepError(f"data {data.get('name')!r}: subset_of needs images = N (how many to take)")
    src = Path(os.path.expanduser(str(data["subset_of"])))
    if not src.is_absolute():
        src = Path(data_dir) / src
    dest = Path(out) / "data" / f"{data.get('name')}"
    done = dest / _SUBSET_FILE
    info = None
    if done.exists():
        try:
            info = json.loads(done.read_text())
        except ValueError:
            info = None
    same_source = not src.exists() or info is not None and info.get("source") == str(src.resolve())
    if info is None or info.get("images") != images or not same_source:
        log(f"data: taking {images} images of {src} into {dest} (once)")
        info = _make_subset(src, images, dest)
    kwargs["root"] = str(dest.resolve())
    return dataset, kwargs
