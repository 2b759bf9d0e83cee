"""The embedded ``synthetic`` data set: class motifs at random positions, generated from a seed."""
from __future__ import annotations

import numpy as np

from evo.network.data.cache import _assemble, _cache_dir_for, _cached
from evo.network.data.dataset import DataError, Dataset


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
