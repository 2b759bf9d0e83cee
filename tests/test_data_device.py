"""Tests of evo.network.data.device: batches augmented and normalised on the device."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from evo.network.data import augment, load_dataset, normalize, to_device

SMALL = dict(n_train=600, n_val=200, n_test=100)

pytestmark = pytest.mark.usefixtures("one_thread")


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
