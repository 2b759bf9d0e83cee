"""Training throughput: evo's trainer against the loop a user would write.

The user's loop is the PyTorch CIFAR-10 tutorial's: a torchvision-style Dataset that hands out PIL images
(held in memory as uint8 arrays, as ``torchvision.datasets.CIFAR10`` does) through the standard transforms
(``RandomCrop(32, padding=4)``, ``RandomHorizontalFlip``, ``ToTensor``, ``Normalize``), a ``DataLoader`` with
batch 50 and shuffling, and SGD with the same momentum and weight decay, logging ``loss.item()`` every step.
It runs with ``num_workers=0`` and with ``num_workers=2``; the speed-up is taken against the faster of the two.

evo's trainer is :func:`evo.train.train` with its defaults (uint8 data on the device, batches by index,
augmentation in one gather per batch; on CUDA bf16 autocast and channels_last, no per-step host sync).

Both train the same model, freshly built, with the same batch size and optimiser. Each measurement is
preceded by a warm-up of a few steps and excludes evaluation; evo and the baseline alternate, ``--repeats``
times, and the median is reported. Besides images per second (wall clock) the table gives images per
CPU-second of the benchmark process for the single-process loops (the baseline with ``num_workers=0`` and
evo): on a shared machine the wall clock depends on what else runs, the CPU time much less.

Models: the paper's seed (global average pooling + linear), a small 3-layer convnet, and a typical evolved
graph built by :func:`evo.model.build_model` from a hand-written DNA (6 convolutions, 2 skips, up to 128
channels; a plain residual network stands in if evo.model cannot be imported).

    python benchmarks/train_speed.py                      # CPU (and CUDA when present), synthetic 3x32x32
    python benchmarks/train_speed.py --device cpu --steps 200 --json out.json
    python benchmarks/train_speed.py --cifar /path/cifar10-train-jpeg.tar.gz   # or a CIFAR / image-folder dir
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evo.network.data import Dataset, load_dataset  # noqa: E402
from evo.network.train import TrainConfig, train  # noqa: E402


# ----------------------------------------------------------------------------------------------------------
# models


def seed_model(shape, classes):
    return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(shape[0], classes))


def small_convnet(shape, classes, w=32):
    return nn.Sequential(
        nn.Conv2d(shape[0], w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU(),
        nn.Conv2d(w, 2 * w, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(2 * w), nn.ReLU(),
        nn.Conv2d(2 * w, 2 * w, 3, padding=1, bias=False), nn.BatchNorm2d(2 * w), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2 * w, classes))


def evolved_dna(shape, classes):
    """A mid-run individual: conv stem, two stride-2 stages, a 5x5 filter, identity skips."""
    from evo.genome.real2017.dna import DNA, Edge, EdgeType, Vertex, VertexType

    B, L, C, I = VertexType.BN_RELU, VertexType.LINEAR, EdgeType.CONV, EdgeType.IDENTITY
    vertices = tuple(Vertex(i, B if i else L) for i in range(7))
    edges = (
        Edge(10, 0, 1, C, 32, (3, 3), 1),
        Edge(11, 1, 2, C, 32, (3, 3), 1),
        Edge(12, 2, 3, C, 64, (3, 3), 2),
        Edge(13, 3, 4, C, 64, (5, 3), 1),
        Edge(14, 2, 4, I, skip=True),
        Edge(15, 4, 5, C, 128, (3, 3), 2),
        Edge(16, 5, 6, C, 128, (3, 3), 1),
        Edge(17, 4, 6, I, skip=True),
    )
    return DNA(vertices=vertices, edges=edges, input_vertex=0, output_vertex=6, learning_rate=0.1,
               input_shape=tuple(shape), num_classes=classes, next_id=18).validate()


class _Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)

    def forward(self, x):
        h = F.relu(self.bn(self.conv(x)))
        return F.relu(self.bn2(self.conv2(h)) + h)


def residual_net(shape, classes):
    return nn.Sequential(nn.Conv2d(shape[0], 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
                         _Block(32, 64, 2), _Block(64, 128, 2), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(128, classes))


def evolved_model(shape, classes):
    try:
        from evo.network.real2017 import build_model

        return build_model(evolved_dna(shape, classes)), "evo.model.build_model(DNA: 6 convs, 2 skips)"
    except Exception as e:  # pragma: no cover - only when evo.model is absent or broken
        return residual_net(shape, classes), f"hand-built residual net (evo.model unavailable: {e})"


# ----------------------------------------------------------------------------------------------------------
# the user's loop


class ArrayImages(torch.utils.data.Dataset):
    """What torchvision.datasets.CIFAR10 does: uint8 HWC arrays in memory, a PIL image per item."""

    def __init__(self, x_hwc: np.ndarray, y: np.ndarray, transform):
        self.x, self.y, self.transform = x_hwc, y, transform

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        from PIL import Image

        return self.transform(Image.fromarray(self.x[i])), int(self.y[i])


def baseline_loader(ds: Dataset, num_workers: int, pin: bool):
    import torchvision.transforms as T

    size = ds.input_shape[1]
    tf = T.Compose([T.RandomCrop(size, padding=4), T.RandomHorizontalFlip(), T.ToTensor(),
                    T.Normalize(ds.mean, ds.std)])
    x = np.ascontiguousarray(ds.train_x.numpy().transpose(0, 2, 3, 1))
    data = ArrayImages(x, ds.train_y.numpy(), tf)
    return torch.utils.data.DataLoader(data, batch_size=50, shuffle=True, num_workers=num_workers,
                                       drop_last=True, pin_memory=pin, persistent_workers=num_workers > 0)


def run_baseline(make_model, ds, lr, steps, warmup, device, loader):
    """(images/s, images per CPU-second of this process) of the user's loop."""
    model = make_model().to(device)
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=1e-4)
    done, t0, c0 = 0, None, None
    running = 0.0
    while True:
        for x, y in loader:
            if done == warmup:
                if device.type == "cuda":
                    torch.cuda.synchronize()
                t0, c0 = time.perf_counter(), time.process_time()
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            running += loss.item()
            done += 1
            if done == warmup + steps:
                if device.type == "cuda":
                    torch.cuda.synchronize()
                return steps * 50 / (time.perf_counter() - t0), steps * 50 / (time.process_time() - c0)


def run_evo(make_model, ds, lr, steps, warmup, device):
    """(images/s, images per CPU-second of this process) of evo.train.train.

    Each call stops itself at its last step (``should_stop``), so no evaluation is timed.
    """
    model = make_model()
    cfg = dict(device=str(device), checkpoint_every_s=None)
    train(model, ds, lr, TrainConfig(steps=warmup + 1, poll_every=warmup, **cfg), should_stop=lambda: True)
    c0 = time.process_time()
    r = train(model, ds, lr, TrainConfig(steps=steps + 1, poll_every=steps, seed=1, **cfg),
              should_stop=lambda: True)
    cpu = time.process_time() - c0
    assert r.outcome == "interrupted" and r.steps_done == steps, r
    return r.images_per_s, steps * 50 / cpu


# ----------------------------------------------------------------------------------------------------------
# data


def load_data(args) -> tuple[Dataset, str]:
    if not args.cifar:
        ds = load_dataset("synthetic", n_train=args.n_train, n_val=500, n_test=0, image_size=32)
        return ds, f"synthetic 3x32x32, {len(ds.train_x)} training images"
    path = Path(args.cifar)
    if path.is_file() and tarfile.is_tarfile(path):
        work = Path(args.workdir or tempfile.mkdtemp(prefix="evo-bench-"))
        marker = work / ".extracted"
        if not marker.exists():
            with tarfile.open(path) as tf:
                tf.extractall(work, filter="data")
            marker.touch()
        tops = [p for p in work.iterdir() if p.is_dir() and not p.name.startswith(".")]
        root = tops[0] if len(tops) == 1 else work
        ds = load_dataset("imagefolder", root=root, image_size=32, val_fraction=0.02)
        return ds, f"{path.name} (image folder, {len(ds.train_x)} training images)"
    if (path / "cifar-10-batches-py").is_dir() or path.name == "cifar-10-batches-py":
        ds = load_dataset("cifar10", root=path)
        return ds, f"CIFAR-10 at {path} ({len(ds.train_x)} training images)"
    ds = load_dataset("imagefolder", root=path, image_size=32, val_fraction=0.02)
    return ds, f"image folder {path} ({len(ds.train_x)} training images)"


def machine(devices) -> dict:
    cpu = platform.processor() or ""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "python": platform.python_version(),
            "date": dt.datetime.now().isoformat(timespec="seconds")}
    try:
        info["load_average"] = os.getloadavg()
    except OSError:
        pass
    if any(d.type == "cuda" for d in devices):
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", action="append", choices=["cpu", "cuda"],
                    help="repeatable; default: cpu, and cuda when available")
    ap.add_argument("--steps", type=int, default=None, help="timed steps per measurement "
                    "(default: 200 on cpu, 1000 on cuda)")
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--models", default="seed,convnet,evolved")
    ap.add_argument("--workers", default="0,2", help="DataLoader num_workers values for the baseline")
    ap.add_argument("--n-train", type=int, default=10000)
    ap.add_argument("--cifar", help="CIFAR data: a tar.gz of JPEG class folders, a CIFAR-10 root, or an image folder")
    ap.add_argument("--workdir", help="where to extract --cifar archives (default: a temporary directory)")
    ap.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's choice)")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    devices = [torch.device(d) for d in (args.device or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]))]
    ds, data_desc = load_data(args)
    info = machine(devices)
    print(f"# evo training speed: images/s, batch 50, SGD momentum 0.9, wd 1e-4\n"
          f"# data: {data_desc}\n# machine: {json.dumps(info)}")
    shape, classes = ds.input_shape, ds.num_classes
    builders = {
        "seed": (lambda: seed_model(shape, classes), "GAP + linear (the paper's seed)"),
        "convnet": (lambda: small_convnet(shape, classes), "3 convs 32-64-64, BN-ReLU"),
        "evolved": (lambda: evolved_model(shape, classes)[0], evolved_model(shape, classes)[1]),
    }
    workers = [int(w) for w in args.workers.split(",") if w != ""]
    rows = []
    header = (f"{'device':6} {'model':8} " + " ".join(f"{'loader w=' + str(w):>12}" for w in workers)
              + f" {'evo':>10} {'speed-up':>9}   per CPU-second: {'loader w=0':>10} {'evo':>10} {'ratio':>6}")
    print(header)
    for device in devices:
        steps = args.steps or (200 if device.type == "cpu" else 1000)
        loaders = {w: baseline_loader(ds, w, device.type == "cuda") for w in workers}
        for name in args.models.split(","):
            make, desc = builders[name]
            base = {w: [] for w in workers}
            base_cpu = {w: [] for w in workers}
            ours, ours_cpu = [], []
            for _ in range(args.repeats):  # alternate, so that a change in the machine's load hits both
                for w in workers:
                    torch.manual_seed(0)
                    ips, ipc = run_baseline(make, ds, 0.05, steps, args.warmup, device, loaders[w])
                    base[w].append(ips)
                    base_cpu[w].append(ipc)
                torch.manual_seed(0)
                ips, ipc = run_evo(make, ds, 0.05, steps, args.warmup, device)
                ours.append(ips)
                ours_cpu.append(ipc)
            b = {w: statistics.median(v) for w, v in base.items()}
            o = statistics.median(ours)
            best = max(b.values())
            row = {"device": str(device), "model": name, "model_desc": desc, "steps": steps,
                   "baseline_images_per_s": {str(w): v for w, v in b.items()},
                   "baseline_runs": {str(w): v for w, v in base.items()},
                   "evo_images_per_s": o, "evo_runs": ours, "speedup": o / best}
            line = (f"{device.type:6} {name:8} " + " ".join(f"{b[w]:12.0f}" for w in workers)
                    + f" {o:10.0f} {o / best:8.1f}x")
            if 0 in workers:  # the single-process loop: its CPU time is all the work it does
                bc, oc = statistics.median(base_cpu[0]), statistics.median(ours_cpu)
                row.update(baseline_w0_images_per_cpu_s=bc, evo_images_per_cpu_s=oc, cpu_ratio=oc / bc)
                line += f"   {'':15}{bc:10.0f} {oc:10.0f} {oc / bc:5.1f}x"
            rows.append(row)
            print(line, flush=True)
        for ld in loaders.values():
            del ld
    try:
        info["load_average_end"] = os.getloadavg()
    except OSError:
        pass
    print("# models: " + "; ".join(f"{k}: {v[1]}" for k, v in builders.items()))
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": info, "data": data_desc, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
