import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

# the helper modules (popkit, populations, genomes, slurm_cluster) are imported by name; no test file
# imports another
sys.path.insert(0, str(Path(__file__).parent))

#: the tiny synthetic task of the worker, launch and Slurm tests (8x8 images, a few hundred of them)
TINY_DATA = {"n_train": 600, "n_val": 200, "n_test": 200, "image_size": 8}

# the session fixture `slurm_cluster`: a real single-node Slurm for the tests marked `slurm`
from slurm_cluster import slurm_cluster, unavailable  # noqa: E402,F401


@pytest.fixture(autouse=True)
def _restore_signal_handlers():
    """`evo worker` run in-process (click's CliRunner) installs its signal handlers in the test
    process and, at its end, ignores SIGTERM and SIGUSR2: put pytest's back after every test."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGUSR2, signal.SIGINT)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


@pytest.fixture(scope="session")
def tiny_data() -> dict:
    """The keyword arguments of the tiny synthetic data set (:data:`TINY_DATA`)."""
    return dict(TINY_DATA)


@pytest.fixture
def make_pop(request):
    """``make_pop(root, **fields)``: a new population of real (tiny) networks for the worker, launch
    and Slurm tests: the tiny synthetic data set, flock, quick loss checks and stop polls; then the
    test module's ``POP_DEFAULTS`` (its population size, steps, budget, leases), then ``fields``."""
    from evo.population import Population

    base = dict(dataset="synthetic", dataset_kwargs=dict(TINY_DATA), lock="flock",
                train={"check_every": 5, "poll_every": 2})

    def make(root: Path, **fields):
        return Population.create(str(root), {**base, **getattr(request.module, "POP_DEFAULTS", {}), **fields})

    return make


@pytest.fixture(scope="session")
def population(tmp_path_factory) -> Path:
    """The session's population made by a real short run (tests/populations.py), built once."""
    from populations import build_population

    return build_population(tmp_path_factory)


@pytest.fixture(scope="session")
def history(population):
    """:func:`evo.analysis.load` of the session's population."""
    from evo import analysis

    return analysis.load(population)


@pytest.fixture
def read_only_dir(tmp_path: Path):
    """A directory on a read-only bind mount (``ro``, a view of ``src`` with a ``logs/`` directory
    in it); skipped where bind mounts are not allowed (they need root), failed under CI (which runs as root)."""
    src, mnt = tmp_path / "src", tmp_path / "ro"
    (src / "logs").mkdir(parents=True)
    mnt.mkdir()
    if os.geteuid() != 0:
        unavailable("a read-only bind mount needs root")
    if subprocess.run(["mount", "--bind", str(src), str(mnt)], capture_output=True).returncode != 0:
        unavailable("mount --bind is not allowed here")
    try:
        if subprocess.run(["mount", "-o", "remount,ro,bind", str(mnt)], capture_output=True).returncode != 0:
            unavailable("a read-only remount is not allowed here")
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)


@pytest.fixture
def one_thread():
    """One torch intra-op thread for the test: fast and steady on a shared 2-core machine (OpenMP spins
    badly when oversubscribed). Use with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
