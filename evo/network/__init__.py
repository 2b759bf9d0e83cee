"""The network layer (torch): networks built from genomes, weight inheritance, data, training, export."""
