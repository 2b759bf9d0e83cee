"""The bottom layer (pure Python, no torch): crash-safe files, JSON Lines, the genome hash and Slurm job ids, used by every layer."""

from evo.base.files import atomic_write, fsync_dir
from evo.base.hashing import dna_hash
from evo.base.slurm import slurm_job_id, slurm_job_id_from_env

__all__ = ["atomic_write", "dna_hash", "fsync_dir", "slurm_job_id", "slurm_job_id_from_env"]
