"""The genome layer (pure Python, no torch): search spaces, their mutations, FLOPs and drawings.

:func:`search_space` is the face of this layer; each space lives in its own package
(``real2017``: the DNA graphs of Real et al. 2017).
"""

from evo.genome.space import (GenomeError, MutationError, SearchSpace, register, search_space, space_names,
                              space_of)

__all__ = ["GenomeError", "MutationError", "SearchSpace", "register", "search_space", "space_names", "space_of"]
