"""Populations for the tests of the analysis, the plots and the inspection commands (not a test file).

``build_population``: the session's population, made by a real short run and built once (the
``population`` and ``history`` fixtures of conftest.py); ``make_fake_population``: a large
population of hand-written individuals without weights; ``assert_real_png``: a figure check.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import threading
import time
import warnings
from pathlib import Path

import numpy as np

from evo import analysis
from evo.population import Population

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

_BUILT: dict = {}

POP_KW = dict(dataset="synthetic", dataset_kwargs={"n_train": 2000, "n_val": 500, "n_test": 500},
              population_size=6, steps_per_child=40, max_individuals=25, lock="flock")


def build_population(tmp_path_factory) -> Path:
    """The session's population (6 alive, 25 trained, test split of 500), built once.

    While the worker trains (in a thread), the population is loaded again and again; the
    snapshots and any exception are kept in ``_BUILT["live"]`` for test_live_reads.
    """
    if "root" in _BUILT:
        return _BUILT["root"]
    from evo.worker.loop import run_worker

    base = tmp_path_factory.mktemp("evo-analysis")
    os.environ.setdefault("EVO_CACHE_DIR", str(base / "cache"))
    root = base / "pop"
    Population.create(str(root), **POP_KW)
    out: dict = {}

    def work() -> None:
        try:
            out["rc"] = run_worker(str(root), handle_signals=False, progress=lambda m: None)
        except BaseException as e:  # noqa: BLE001 - reported by the test
            out["error"] = e

    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: one thread is several times faster on a busy machine
    t = threading.Thread(target=work, name="test-worker")
    t.start()
    snaps, errors = [], []
    while t.is_alive():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error")  # a warning on a healthy live population is a bug
                h = analysis.load(root)
                st = analysis.status(h)
            snaps.append({"ids": [r.id for r in h], "alive": [r.id for r in h.alive()],
                          "dead": [r.id for r in h.dead()], "status": st, "warnings": list(h.warnings)})
        except Exception as e:  # noqa: BLE001
            errors.append(repr(e))
        time.sleep(0.2)
    t.join()
    torch.set_num_threads(threads)
    assert "error" not in out, out.get("error")
    assert out["rc"] == 0
    _BUILT["live"] = {"snaps": snaps, "errors": errors}
    _BUILT["root"] = root
    return root


_DNA = {"edges": [{"dst": 1, "id": 2, "skip": False, "src": 0, "type": "CONV", "channels": 8, "kernel": [3, 3],
                   "stride": 2}, {"dst": 3, "id": 4, "skip": False, "src": 1, "type": "IDENTITY"},
                  {"dst": 3, "id": 5, "skip": True, "src": 0, "type": "IDENTITY"}],
        "format_version": 1, "input_shape": [3, 16, 16], "input_vertex": 0, "learning_rate": 0.1, "next_id": 6,
        "num_classes": 10, "output_vertex": 3,
        "vertices": [{"id": 0, "type": "LINEAR"}, {"id": 1, "type": "BN_RELU"}, {"id": 3, "type": "LINEAR"}]}


def make_fake_population(root: str | Path, n_dead: int, n_alive: int = 100, seed: int = 0) -> Path:
    """A population directory of fake individuals (fitness.json + dna.json as a worker writes
    them, no weights): ``n_dead`` dead and ``n_alive`` living ones, one per second."""
    rng = random.Random(seed)
    root = Path(root)
    Population.create(str(root), dataset="synthetic", population_size=n_alive, lock="none")
    shutil.rmtree(root / "pending")
    os.mkdir(root / "pending")
    dna = json.dumps(_DNA, indent=1, sort_keys=True).encode()
    t0 = time.time() - (n_dead + n_alive) - 10
    n = n_dead + n_alive
    for i in range(1, n + 1):
        d = root / "alive" / str(i) if i > n_dead else root / "dead" / str(i // 1000) / str(i)
        d.mkdir(parents=True)
        seed_ind = i <= n_alive
        rec = {"format_version": 1, "id": i, "parent_id": None if seed_ind else rng.randint(1, i - 1),
               "kind": "seed" if seed_ind else "child", "outcome": "ok", "fitness": rng.random(), "reason": "",
               "steps_trained": 25600, "flops": 1e12 + i, "params": 1000 + i, "forward_flops": 10 ** 8,
               "mutations": [] if seed_ind else [{"name": "INSERT-CONVOLUTION", "detail": {"edge": 7}}],
               "learning_rate": 0.1, "depth": i % 9, "train_loss": 1.0, "train_wall_s": 60.0,
               "images_per_s": 9000.0, "inherited": {"copied": 2, "fresh": 1, "mismatched": 0}, "device": "cuda",
               "overhead_s": {"prepare": 0.01}, "born_at": t0 + i - 0.9, "finished_at": t0 + i, "worker": "n1:7",
               "host": "n1", "pid": 7, "slurm_job_id": "71", "slurm_array_job_id": "70",
               "slurm_array_task_id": "1", "dna_hash": "sha256:" + "0" * 64, "generation": 0, "attempts": 1,
               "task_uid": f"{i:012x}"}
        (d / "fitness.json").write_bytes(json.dumps(rec, indent=1, sort_keys=True).encode())
        (d / "dna.json").write_bytes(dna)
    return root


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def assert_real_png(path: Path, min_size: tuple[int, int] = (300, 400)) -> np.ndarray:
    """A PNG file that matplotlib reads back, of a decent size, with a drawing on it."""
    from matplotlib import image

    data = Path(path).read_bytes()
    assert data[:8] == PNG_SIGNATURE, f"{path} is not a PNG"
    assert len(data) > 10_000, f"{path} is suspiciously small ({len(data)} bytes)"
    img = image.imread(str(path))
    assert img.ndim == 3 and img.shape[0] >= min_size[0] and img.shape[1] >= min_size[1]
    rgb = img[..., :3]
    assert rgb.std() > 0.02, "the image is (almost) uniform"
    colours = np.unique((rgb.reshape(-1, 3) * 255).astype(np.uint8), axis=0)
    assert len(colours) > 20, "too few colours for a plot"
    return img
