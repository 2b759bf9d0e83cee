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

import inspect
import os

from evo.network.data.cache import CACHE_DIR_NAME, CACHE_FORMAT
from evo.network.data.cifar import _load_cifar, download
from evo.network.data.dataset import DataError, Dataset, DatasetNotFoundError, default_root
from evo.network.data.device import DeviceData, augment, normalize, pad_images, to_device
from evo.network.data.imagefolder import IMAGE_EXTENSIONS, _load_imagefolder
from evo.network.data.synthetic import _load_synthetic, make_synthetic

__all__ = [
    "CACHE_DIR_NAME",
    "CACHE_FORMAT",
    "DATASETS",
    "IMAGE_EXTENSIONS",
    "DataError",
    "DatasetNotFoundError",
    "Dataset",
    "DeviceData",
    "load_dataset",
    "download",
    "default_root",
    "make_synthetic",
    "pad_images",
    "to_device",
    "augment",
    "normalize",
]

DATASETS = ("synthetic", "cifar10", "cifar100", "imagefolder")


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
