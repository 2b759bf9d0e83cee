"""Training images/s of evo's trainer against the fastest loop written by hand for the same network.

The hand loop is what one would write for one fixed network to go as fast as possible on a GPU: the uint8
training set resident on the GPU, the whole step -- random batch indices, 4-pixel crop and flip by one
gather, normalisation, the forward pass under bf16 autocast in channels_last, the loss, the backward pass
and a fused SGD update -- captured once in a CUDA graph and replayed (no per-step Python beyond the replay,
no host sync). evo's trainer (``evo.network.train.train``) runs the same network at the same batch size with
its defaults (``cuda_graph="auto"``: the step captured, the batch assembled eagerly), both with the paper's
recipe and the fast one, and with ``cuda_graph="off"`` (the eager step, as before graphs) for reference.
Each timed run includes what a child pays (the fresh trainer's capture), excludes evaluation, and is preceded
by a warm-up run; ``--repeats`` alternating runs, median reported.

Networks: benchmarks/networks.py (the hand-designed 5-conv net and two evolved-like DNAs, built by evo).

    python benchmarks/gpu_speed.py --batches 50,500 --images 60000 --json gpu_speed.json
    python benchmarks/gpu_speed.py --device cpu --images 60 --min-steps 3 --warmup 1 --repeats 1 --batches 20  # CPU smoke
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from networks import NETWORKS  # noqa: E402

from evo.network.data import load_dataset, to_device  # noqa: E402
from evo.network.real2017 import build_model  # noqa: E402
from evo.network.settings import TrainConfig  # noqa: E402
from evo.network.train import train  # noqa: E402


def hand_loop(make, dd, batch: int, steps: int, warmup: int, lr: float = 0.1) -> tuple[float, str]:
    """(images/s, what ran) of the hand-written loop: one graph per step, data path included."""
    dev = dd.device
    cuda = dev.type == "cuda"
    model = make().to(dev).to(memory_format=torch.channels_last)
    model.train()
    kw = dict(momentum=0.9, weight_decay=1e-4, nesterov=True)
    opt = torch.optim.SGD(model.parameters(), lr=torch.tensor(lr, device=dev) if cuda else lr,
                          fused=cuda, **kw)
    n, c, h, w = dd.train_x.shape
    pad = 4
    hp, wp = h + 2 * pad, w + 2 * pad
    src = F.pad(dd.train_x, (pad, pad, pad, pad)).contiguous().reshape(-1)
    ar_h = torch.arange(h, device=dev)
    ar_w = torch.arange(w, device=dev)
    ch = (torch.arange(c, device=dev) * (hp * wp)).view(1, c, 1, 1)
    scale = (1.0 / (255.0 * dd.std)).view(1, -1, 1, 1)
    shift = (-dd.mean / dd.std).view(1, -1, 1, 1)

    def step():
        idx = torch.randint(0, n, (batch,), device=dev)
        off = torch.randint(0, 2 * pad + 1, (2, batch), device=dev)
        flip = torch.randint(0, 2, (batch, 1), device=dev).bool()
        rows = off[0][:, None] + ar_h
        cols = off[1][:, None] + ar_w
        cols = torch.where(flip, cols.flip(1), cols)
        lin = (idx * (c * hp * wp)).view(batch, 1, 1, 1) + ch + (rows * wp).view(batch, 1, h, 1) \
            + cols.view(batch, 1, 1, w)
        x = src.index_select(0, lin.reshape(-1)).view(batch, c, h, w).contiguous(memory_format=torch.channels_last)
        x = x.float().mul_(scale).add_(shift)
        y = dd.train_y.index_select(0, idx)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=cuda, cache_enabled=False):
            logits = model(x)
        loss = F.cross_entropy(logits.float(), y)
        loss.backward()
        opt.step()

    if not cuda:  # the CPU smoke run: the same step, eagerly
        for _ in range(warmup):
            opt.zero_grad(set_to_none=True)
            step()
        t = time.perf_counter()
        for _ in range(steps):
            opt.zero_grad(set_to_none=True)
            step()
        return steps * batch / (time.perf_counter() - t), "eager (CPU)"
    torch.backends.cudnn.benchmark = True
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(max(3, warmup)):
            opt.zero_grad(set_to_none=True)
            step()
    torch.cuda.current_stream().wait_stream(side)
    opt.zero_grad(set_to_none=True)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step()
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(steps):
        graph.replay()
    torch.cuda.synchronize()
    return steps * batch / (time.perf_counter() - t), "cuda_graph"


def evo_loop(make, ds, device: str, batch: int, steps: int, warmup: int, recipe: str, graph: str,
             lr: float = 0.1) -> tuple[float, str]:
    """(images/s, which step ran) of evo's trainer; a fresh trainer call, stopped before evaluation."""
    model = make()
    cfg = dict(device=device, checkpoint_every_s=None, batch_size=batch, recipe=recipe, cuda_graph=graph)
    train(model, ds, lr, TrainConfig(steps=warmup + 1, poll_every=max(1, warmup), **cfg), should_stop=lambda: True)
    r = train(model, ds, lr, TrainConfig(steps=steps + 1, poll_every=steps, seed=1, check_every=50, **cfg),
              should_stop=lambda: True)
    assert r.outcome == "interrupted" and r.steps_done == steps, r
    return r.images_per_s, r.step_kind if r.step_kind == "cuda_graph" else r.step_reason


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--nets", default="five_conv,evolved_a,evolved_b,seed")
    ap.add_argument("--batches", default="50,500")
    ap.add_argument("--images", type=int, default=60000,
                    help="timed images per run (steps = images / batch, at least --min-steps)")
    ap.add_argument("--min-steps", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--n-train", type=int, default=20000)
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    ds = load_dataset("synthetic", n_train=args.n_train, n_val=500, n_test=0, image_size=32)
    dd = to_device(ds, args.device)
    name = torch.cuda.get_device_name(0) if dd.device.type == "cuda" else "cpu"
    print(f"# training images/s on {name}, torch {torch.__version__}; synthetic 3x32x32, {args.n_train} images")
    variants = [("paper", "off"), ("paper", "auto"), ("fast", "auto")]
    head = f"{'network':10} {'batch':>5} {'hand':>9} " + " ".join(f"{r + '/' + g:>11}" for r, g in variants) \
        + f" {'evo/hand':>8}"
    print(head)
    rows = []
    for net in args.nets.split(","):
        make_dna = NETWORKS[net][0]

        def make():
            torch.manual_seed(0)
            return build_model(make_dna(ds.input_shape, ds.num_classes))

        for batch in (int(b) for b in args.batches.split(",")):
            steps = max(args.min_steps, args.images // batch)
            hand, evo = [], {v: [] for v in variants}
            kinds: dict = {}
            for _ in range(args.repeats):
                ips, hand_kind = hand_loop(make, dd, batch, steps, args.warmup)
                hand.append(ips)
                for v in variants:
                    ips, kinds[v] = evo_loop(make, ds, args.device, batch, steps, args.warmup, *v)
                    evo[v].append(ips)
            h = statistics.median(hand)
            e = {v: statistics.median(x) for v, x in evo.items()}
            best = e[("paper", "auto")]
            print(f"{net:10} {batch:5d} {h:9.0f} " + " ".join(f"{e[v]:11.0f}" for v in variants)
                  + f" {best / h:7.0%}", flush=True)
            rows.append({"network": net, "batch": batch, "steps": steps, "hand": h, "hand_step": hand_kind,
                         "evo": {f"{r}/{g}": e[(r, g)] for r, g in variants},
                         "evo_step": {f"{r}/{g}": kinds[(r, g)] for r, g in variants},
                         "evo_over_hand": best / h})
    for v, k in kinds.items():
        print(f"# evo {v[0]}/{v[1]}: {k}")
    if args.json:
        Path(args.json).write_text(json.dumps({"gpu": name, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
