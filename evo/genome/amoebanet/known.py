"""Cells published with the space, as genomes (reference points; seeds of the search are random)."""

from __future__ import annotations

from evo.genome.amoebanet.genome import Cell, Combination, Genome

__all__ = ["AMOEBANET_A"]


def _cell(*combinations: tuple[int, str, int, str]) -> Cell:
    return Cell(tuple(Combination((a, b), (op_a, op_b)) for a, op_a, b, op_b in combinations))


#: AmoebaNet-A (Real et al. 2019, figure 4; the transcription of DARTS's ``genotypes.py``): hidden state
#: 0 is h[i-2], 1 is h[i-1].  With N=6, F=36 the network has 3.2M parameters, as in the paper.
AMOEBANET_A = Genome(
    normal=_cell((0, "avg_pool_3x3", 1, "max_pool_3x3"),
                 (0, "sep_3x3", 2, "sep_5x5"),
                 (0, "sep_3x3", 3, "avg_pool_3x3"),
                 (1, "sep_3x3", 1, "identity"),
                 (0, "identity", 1, "avg_pool_3x3")),
    reduction=_cell((0, "avg_pool_3x3", 1, "sep_3x3"),
                    (0, "max_pool_3x3", 2, "sep_7x7"),
                    (0, "sep_7x7", 1, "avg_pool_3x3"),
                    (0, "max_pool_3x3", 1, "max_pool_3x3"),
                    (0, "conv_1x7_7x1", 5, "sep_3x3")),
).validate()
