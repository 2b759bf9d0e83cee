"""Tests of evo.data: the synthetic task, the uint8 cache, the CIFAR and image-folder readers, augmentation."""
from __future__ import annotations

import json
import multiprocessing as mp
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from evo.network.data import (
    DataError,
    DatasetNotFoundError,
    augment,
    load_dataset,
    make_synthetic,
    normalize,
    to_device,
)
from evo.network.train import TrainConfig, train

SMALL = dict(n_train=600, n_val=200, n_test=100)


@pytest.fixture(autouse=True)
def _one_thread():
    # one intra-op thread: fast and steady on a shared 2-core machine (OpenMP spins badly when oversubscribed)
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _splits(d):
    return [d.train_x, d.train_y, d.val_x, d.val_y, d.test_x, d.test_y]


# ----------------------------------------------------------------------------------------------------------
# synthetic


def test_synthetic_is_deterministic_and_seed_dependent():
    a = load_dataset("synthetic", **SMALL)
    b = load_dataset("synthetic", **SMALL)
    for ta, tb in zip(_splits(a), _splits(b)):
        assert torch.equal(ta, tb)
    assert a.train_x.dtype == torch.uint8 and a.train_y.dtype == torch.int64
    assert a.train_x.shape == (600, 3, 16, 16) and a.val_x.shape == (200, 3, 16, 16)
    assert a.test_x.shape == (100, 3, 16, 16)
    assert a.num_classes == 10 and a.input_shape == (3, 16, 16)
    c = load_dataset("synthetic", seed=1, **SMALL)
    assert not torch.equal(a.train_x, c.train_x)
    # another split seed: same images, divided differently
    s = load_dataset("synthetic", split_seed=1, **SMALL)
    assert not torch.equal(a.val_x, s.val_x)
    assert s.info["split_hash"] != a.info["split_hash"]
    x1, y1 = make_synthetic(1500, seed=3)
    x2, y2 = make_synthetic(1500, seed=3)
    assert np.array_equal(x1, x2) and np.array_equal(y1, y2)
    assert not np.array_equal(x1[:500], x1[1000:])  # chunks differ
    counts = torch.bincount(a.train_y, minlength=10)
    assert counts.min() > 30


def test_synthetic_mean_colour_carries_no_class_information():
    d = load_dataset("synthetic", n_train=4000, n_val=100, n_test=0)
    m = d.train_x.float().mean(dim=(2, 3))  # per-image mean colour
    per_class = torch.stack([m[d.train_y == k].mean(0) for k in range(10)])
    se = torch.stack([m[d.train_y == k].std(0) / (d.train_y == k).sum().sqrt() for k in range(10)])
    z = (per_class - m.mean(0)) / se
    assert z.abs().max() < 4.5, z  # class means differ by sampling noise only
    assert d.test_x is None


def _linear(shape):
    return nn.Sequential(nn.Flatten(), nn.Linear(int(np.prod(shape)), 10))


def _convnet(w=16):
    return nn.Sequential(
        nn.Conv2d(3, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU(),
        nn.Conv2d(w, 2 * w, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(2 * w), nn.ReLU(),
        nn.Conv2d(2 * w, 2 * w, 3, padding=1, bias=False), nn.BatchNorm2d(2 * w), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2 * w, 10))


def test_synthetic_defeats_linear_models_and_a_small_convnet_learns_it():
    # 400 steps of batch 50 (2 epochs): a linear model on pixels stays near chance, the seed model (global
    # pooling + linear) at chance, a 3-layer convnet learns the task
    d = load_dataset("synthetic")
    cfg = TrainConfig(steps=400, batch_size=50, device="cpu", seed=0)
    torch.manual_seed(0)
    linear = train(_linear(d.input_shape), d, 0.05, cfg)
    torch.manual_seed(0)
    seed_model = train(nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 10)), d, 0.1, cfg)
    torch.manual_seed(0)
    conv = train(_convnet(), d, 0.05, cfg)
    assert linear.outcome == "ok" and linear.fitness < 0.5, linear
    assert seed_model.fitness < 0.2, seed_model
    assert conv.outcome == "ok" and conv.fitness > 0.85, conv


# ----------------------------------------------------------------------------------------------------------
# the cache


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


# ----------------------------------------------------------------------------------------------------------
# CIFAR


def _fake_cifar_batch(rng, n, label_key, n_classes, start):
    data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
    data[:, 0] = np.arange(start, start + n) % 256  # the first red pixel numbers the image
    data[:, 1] = np.arange(start, start + n) // 256
    labels = [int(v) for v in rng.integers(0, n_classes, n)]
    return {"batch_label": "fake batch", "data": data, label_key: labels,
            "filenames": [f"img{i}.png" for i in range(start, start + n)]}


def _write_cifar10(root: Path, per_batch=40, n_test=30, protocol=2):
    base = root / "cifar-10-batches-py"
    base.mkdir(parents=True)
    rng = np.random.default_rng(0)
    batches = []
    for i in range(1, 6):
        b = _fake_cifar_batch(rng, per_batch, "labels", 10, (i - 1) * per_batch)
        batches.append(b)
        (base / f"data_batch_{i}").write_bytes(pickle.dumps(b, protocol=protocol))
    test = _fake_cifar_batch(rng, n_test, "labels", 10, 10000)
    (base / "test_batch").write_bytes(pickle.dumps(test, protocol=protocol))
    meta = {"label_names": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                            "truck"], "num_cases_per_batch": per_batch, "num_vis": 3072}
    (base / "batches.meta").write_bytes(pickle.dumps(meta, protocol=protocol))
    return batches, test


def _image_number(x):
    return int(x[0, 0, 0]) + 256 * int(x[0, 0, 1])


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_cifar10_reader_on_a_fake_tree(tmp_path, protocol):
    batches, test = _write_cifar10(tmp_path, protocol=protocol)
    d = load_dataset("cifar10", root=tmp_path, n_val=20, split_seed=3)
    assert d.num_classes == 10 and d.input_shape == (3, 32, 32)
    assert len(d.train_x) == 180 and len(d.val_x) == 20 and len(d.test_x) == 30
    assert d.info["classes"][0] == "airplane" and d.split_seed == 3
    pool_x = np.concatenate([b["data"] for b in batches]).reshape(-1, 3, 32, 32)
    pool_y = np.concatenate([b["labels"] for b in batches])
    # every image keeps its label and pixels; train and validation partition the training batches
    seen = []
    for x, y in ((d.train_x, d.train_y), (d.val_x, d.val_y)):
        for xi, yi in zip(x.numpy(), y.numpy()):
            k = _image_number(xi)
            assert np.array_equal(xi, pool_x[k]) and yi == pool_y[k]
            seen.append(k)
    assert sorted(seen) == list(range(200))
    val_numbers = sorted(_image_number(v) for v in d.val_x.numpy())
    meta = json.loads(next((tmp_path / ".evo-cache").glob("cifar10-*.json")).read_text())
    assert meta["val_indices"] == val_numbers  # the split is recorded
    # the test split is kept apart, in order
    assert np.array_equal(d.test_x.numpy(), test["data"].reshape(-1, 3, 32, 32))
    assert d.test_y.tolist() == test["labels"]
    # another split seed, another validation set; the cache answers the second time
    e = load_dataset("cifar10", root=tmp_path, n_val=20, split_seed=4)
    assert sorted(_image_number(v) for v in e.val_x.numpy()) != val_numbers
    again = load_dataset("cifar10", root=tmp_path, n_val=20, split_seed=3)
    assert again.info["cache_hit"] and torch.equal(again.val_x, d.val_x)
    # root may also name the batches directory itself
    direct = load_dataset("cifar10", root=tmp_path / "cifar-10-batches-py", n_val=20, split_seed=3)
    assert torch.equal(direct.train_x, d.train_x)


def test_cifar100_reader_on_a_fake_tree(tmp_path):
    base = tmp_path / "cifar-100-python"
    base.mkdir()
    rng = np.random.default_rng(1)
    tr = _fake_cifar_batch(rng, 120, "fine_labels", 100, 0)
    tr["coarse_labels"] = [v // 5 for v in tr["fine_labels"]]
    te = _fake_cifar_batch(rng, 40, "fine_labels", 100, 500)
    (base / "train").write_bytes(pickle.dumps(tr, protocol=2))
    (base / "test").write_bytes(pickle.dumps(te, protocol=2))
    (base / "meta").write_bytes(pickle.dumps({"fine_label_names": [f"c{i}" for i in range(100)]}, protocol=2))
    d = load_dataset("cifar100", root=tmp_path, n_val=20)
    assert d.num_classes == 100 and len(d.train_x) == 100 and len(d.val_x) == 20 and len(d.test_x) == 40
    assert d.info["classes"][99] == "c99"
    assert sorted(d.train_y.tolist() + d.val_y.tolist()) == sorted(tr["fine_labels"])


class _Evil:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (os.mkdir, (self.path,))


def test_cifar_reader_refuses_foreign_code(tmp_path):
    _write_cifar10(tmp_path)
    victim = tmp_path / "pwned"
    evil = {"data": np.zeros((40, 3072), np.uint8), "labels": [0] * 40, "x": _Evil(str(victim))}
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").write_bytes(pickle.dumps(evil, protocol=2))
    with pytest.raises(DataError, match=r"data_batch_3.*refusing to load posix\.mkdir|data_batch_3.*refusing"):
        load_dataset("cifar10", root=tmp_path, n_val=20)
    assert not victim.exists()


def test_missing_dataset_names_the_path_and_the_command(tmp_path):
    with pytest.raises(DatasetNotFoundError) as e:
        load_dataset("cifar10", root=tmp_path / "nowhere")
    msg = str(e.value)
    assert str(tmp_path / "nowhere" / "cifar-10-batches-py") in msg
    assert f"evo data download cifar10 --root {tmp_path / 'nowhere'}" in msg
    with pytest.raises(DatasetNotFoundError, match="evo data download cifar100"):
        load_dataset("cifar100", root=tmp_path)
    with pytest.raises(DataError, match="unknown data set 'mnist'"):
        load_dataset("mnist")
    with pytest.raises(DataError, match="synthetic takes no option 'colour'; its options: n_train"):
        load_dataset("synthetic", colour=3)
    with pytest.raises(DatasetNotFoundError, match="does not exist"):
        load_dataset("imagefolder", root=tmp_path / "no-images")


# ----------------------------------------------------------------------------------------------------------
# imagefolder

COLOURS = {"red": (250, 10, 10), "green": (10, 250, 10), "blue": (10, 10, 250)}


def _write_tree(root: Path, per_class: int, sizes=((40, 30), (20, 20), (13, 50))):
    from PIL import Image

    for cname, colour in COLOURS.items():
        (root / cname).mkdir(parents=True)
        for i in range(per_class):
            w, h = sizes[i % len(sizes)]
            mode = "L" if (cname == "red" and i == 0) else "RGB"
            im = Image.new("RGB", (w, h), colour)
            if mode == "L":
                im = im.convert("L")
            ext = ".png" if i % 2 == 0 else ".jpg"
            im.save(root / cname / f"im{i}{ext}")
    (root / "red" / "notes.txt").write_text("not an image")


def test_imagefolder_on_a_generated_tree(tmp_path):
    _write_tree(tmp_path / "train", per_class=10)
    _write_tree(tmp_path / "test", per_class=2)
    d = load_dataset("imagefolder", root=tmp_path / "train", image_size=12, val_fraction=0.2,
                     test_root=tmp_path / "test")
    assert d.input_shape == (3, 12, 12) and d.num_classes == 3
    assert d.info["classes"] == ["blue", "green", "red"]
    assert len(d.train_x) == 24 and len(d.val_x) == 6 and len(d.test_x) == 6
    for x, y in ((d.train_x, d.train_y), (d.val_x, d.val_y), (d.test_x, d.test_y)):
        for xi, yi in zip(x, y):
            cname = d.info["classes"][int(yi)]
            if cname == "red" and xi[1].float().mean() > 40:  # the grayscale image
                continue
            mean = xi.float().mean(dim=(1, 2))
            assert torch.allclose(mean, torch.tensor(COLOURS[cname], dtype=torch.float32), atol=6), (cname, mean)
    again = load_dataset("imagefolder", root=tmp_path / "train", image_size=12, val_fraction=0.2,
                         test_root=tmp_path / "test")
    assert again.info["cache_hit"] and torch.equal(again.train_x, d.train_x)
    # adding an image invalidates the cache
    from PIL import Image

    Image.new("RGB", (8, 8), COLOURS["blue"]).save(tmp_path / "train" / "blue" / "extra.png")
    more = load_dataset("imagefolder", root=tmp_path / "train", image_size=12, val_fraction=0.2,
                        test_root=tmp_path / "test")
    assert not more.info["cache_hit"] and len(more.train_x) + len(more.val_x) == 31


# ----------------------------------------------------------------------------------------------------------
# augmentation and normalisation


def _numbered(n=12, c=3, h=8, w=8):
    # every pixel unique within an image, never 0: a zero in the output can only be padding
    base = torch.arange(1, c * h * w + 1, dtype=torch.int64).view(1, c, h, w)
    return ((base + torch.arange(n).view(n, 1, 1, 1) * 7) % 250 + 1).to(torch.uint8)


def _candidates(img, pad, mode):
    c, h, w = img.shape
    if mode == "zero":
        padded = F.pad(img.unsqueeze(0), (pad, pad, pad, pad))[0]
    else:
        padded = F.pad(img.unsqueeze(0).float(), (pad, pad, pad, pad), mode="reflect")[0].to(torch.uint8)
    for dy in range(2 * pad + 1):
        for dx in range(2 * pad + 1):
            crop = padded[:, dy:dy + h, dx:dx + w]
            yield crop
            yield crop.flip(-1)


@pytest.mark.parametrize("mode", ["zero", "reflect"])
def test_augment_is_a_padded_crop_and_flip(mode):
    x = _numbered()
    g = torch.Generator().manual_seed(0)
    out = augment(x, g, pad=4, mode=mode)
    assert out.shape == x.shape and out.dtype == torch.uint8
    for xi, oi in zip(x, out):
        assert any(torch.equal(oi, cand) for cand in _candidates(xi, 4, mode))
    # it is random, and reproducible from the generator
    again = augment(x, torch.Generator().manual_seed(0), pad=4, mode=mode)
    assert torch.equal(out, again)
    assert not torch.equal(out, augment(x, torch.Generator().manual_seed(1), pad=4, mode=mode))


def test_augment_flip_only():
    x = _numbered(n=400)
    out = augment(x, torch.Generator().manual_seed(5), pad=0)
    same = torch.tensor([torch.equal(o, i) for o, i in zip(out, x)])
    flipped = torch.tensor([torch.equal(o, i.flip(-1)) for o, i in zip(out, x)])
    assert bool((same ^ flipped).all())
    assert 150 < int(flipped.sum()) < 250
    no_aug = augment(x, torch.Generator().manual_seed(5), pad=0, flip=False)
    assert torch.equal(no_aug, x)


def test_augment_crops_move_content():
    x = _numbered(n=200)
    out = augment(x, torch.Generator().manual_seed(2), pad=4, flip=False)
    zeros = (out == 0).flatten(1).any(1)
    assert 0.7 < float(zeros.float().mean()) < 1.0  # most crops bring in padding, some are centred


@pytest.mark.parametrize("mode", ["zero", "reflect"])
def test_trainer_batches_equal_augment_of_the_same_images(mode):
    d = load_dataset("synthetic", **SMALL)
    dd = to_device(d, "cpu")
    idx = torch.tensor([5, 0, 599, 17, 17, 300])
    a = augment(d.train_x[idx], torch.Generator().manual_seed(3), pad=4, mode=mode)
    b = dd.batch(idx, torch.Generator().manual_seed(3), pad=4, mode=mode)
    assert torch.equal(a, b)
    assert torch.equal(dd.batch(idx), d.train_x[idx])


def test_normalize_and_device_data():
    d = load_dataset("synthetic", **SMALL)
    dd = to_device(d, "cpu")
    assert dd is to_device(d, "cpu")
    assert dd.train_x.data_ptr() == d.train_x.data_ptr()  # no copy on the CPU
    z = normalize(dd.train_x, dd.mean, dd.std)
    assert z.dtype == torch.float32
    assert torch.equal(z, dd.normalize(dd.train_x))
    zc = dd.normalize(dd.train_x, memory_format=torch.channels_last)
    assert zc.is_contiguous(memory_format=torch.channels_last) and torch.equal(zc, z)
    assert torch.allclose(z.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-3)
    assert torch.allclose(z.std(dim=(0, 2, 3)), torch.ones(3), atol=1e-2)
