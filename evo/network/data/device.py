"""A data set resident on the training device, and batching there: gather, crop, flip and normalise
as a few whole-batch tensor operations (no DataLoader, no per-image Python)."""
from __future__ import annotations

import dataclasses

import torch

from evo.network.data.dataset import DataError, Dataset


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
              mode: str = "zero", flips: torch.Tensor | None = None) -> torch.Tensor:
        """uint8 training images ``idx``; augmented (as :func:`augment` does) when a generator is given.

        ``flips`` (bool, one per image): the horizontal flips to apply instead of random ones (the fast
        recipe's alternating flips); the generator then draws only the crop offsets.
        """
        if flips is None and (generator is None or (pad == 0 and not flip)):
            return self.train_x.index_select(0, idx)
        c, h, w = self.train_x.shape[1:]
        src = self.padded_train(pad, mode)
        if flips is None:
            off, flips = _draw(generator, len(idx), pad, flip, self.device)
        elif generator is not None:
            off, _ = _draw(generator, len(idx), pad, False, self.device)
        else:  # flips only, no crop: the centre of the padded image
            off = torch.full((2, len(idx)), pad, dtype=torch.long, device=self.device)
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
