"""Read-only analysis of population directories (pure Python, no torch)."""

from evo.analysis.analysis import *  # noqa: F401,F403
from evo.analysis.analysis import __all__  # noqa: F401
