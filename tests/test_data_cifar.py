"""Tests of evo.network.data.cifar: the CIFAR readers on fake trees, no foreign code, clear errors."""
from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from evo.network.data import DataError, DatasetNotFoundError, load_dataset

pytestmark = pytest.mark.usefixtures("one_thread")


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
