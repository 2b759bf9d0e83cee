"""The search space of Real et al. 2017: a DNA graph of vertices and edges, eleven mutations."""
