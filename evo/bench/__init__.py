"""Search efficiency: how much accuracy a search setting buys for its compute, measured.

A *suite* (:mod:`evo.bench.suite`) declares experiments -- search space, strategy,
inheritance, training recipe, P, S, steps and mutations per child, budget, data set -- and
seeds; :mod:`evo.bench.runner` runs each (experiment, seed) as one population with evo's own
``evo init`` / ``evo worker`` (or ``evo submit`` on Slurm), resumably; :mod:`evo.bench.summary`
compares them at equal FLOPs and equal wall time, in Markdown, JSON and figures.
``bin/search-efficiency`` is the command line; ``benchmarks/suites/`` holds the shipped suites
and docs/science.md what they measure.

The top layer: it imports the analysis, the plots, the report and (for the ensemble's
accuracy, in :mod:`evo.bench.ensemble`) torch; nothing below imports it.
"""

from evo.bench.data import PRESETS, DataPrepError
from evo.bench.runner import Runner, RunError, RunnerOptions, read_state, run_dir, state_path
from evo.bench.suite import Run, Suite, SuiteError, load_suite
from evo.bench.summary import summarize

__all__ = ["PRESETS", "DataPrepError", "Run", "RunError", "Runner", "RunnerOptions", "Suite", "SuiteError",
           "load_suite", "read_state", "run_dir", "state_path", "summarize"]
