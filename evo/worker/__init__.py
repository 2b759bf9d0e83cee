"""The worker: the evolution loop that joins the population and the network layers."""

from evo.worker.loop import EXIT_DONE, EXIT_ERROR, EXIT_INTERRUPTED, Worker, random_dna, run_worker

__all__ = ["EXIT_DONE", "EXIT_ERROR", "EXIT_INTERRUPTED", "Worker", "random_dna", "run_worker"]
