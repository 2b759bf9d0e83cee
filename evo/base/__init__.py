"""The bottom layer (pure Python, no torch): crash-safe files, JSON Lines and the genome hash, used by every layer."""

from evo.base.files import atomic_write, fsync_dir
from evo.base.hashing import dna_hash

__all__ = ["atomic_write", "dna_hash", "fsync_dir"]
