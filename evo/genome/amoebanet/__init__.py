"""The cell search space of Real et al. 2019 (NASNet's cells, evolved into AmoebaNet): ``"amoebanet"``."""
