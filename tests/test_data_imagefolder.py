"""Tests of evo.network.data.imagefolder: a tree of class folders as a data set."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from evo.network.data import load_dataset

pytestmark = pytest.mark.usefixtures("one_thread")


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
