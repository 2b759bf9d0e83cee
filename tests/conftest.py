import sys
from pathlib import Path

# tests import helpers from each other (tests/test_dna.py's DNAs, ...)
sys.path.insert(0, str(Path(__file__).parent))

# the session fixture `slurm_cluster`: a real single-node Slurm for the tests marked `slurm`
from slurm_cluster import slurm_cluster  # noqa: E402,F401
