"""Read API over a population directory: individuals, lineages, progress curves, costs (no torch).

Everything here reads the on-disk format of the population layer (``docs/format.md``) and
nothing else; importing this package never imports torch, so it is fast and safe on a login
node and in a notebook.  It never takes the population lock and never writes into the
population (except :func:`record_evaluation`, which appends one line to
``POPDIR/evaluations.jsonl``), so it is safe on a live population that hundreds of workers
are changing: a file caught half-written is skipped with a warning (kept in
:attr:`History.warnings`), an individual killed while it is being read is found in ``dead/``,
nothing ever raises because of a race.

Typical use (a script, or a notebook)::

    from evo import analysis
    h = analysis.load("runs/c10")               # every individual ever committed
    best = h.best()                             # highest validation accuracy (the paper's "best")
    print(best.id, best.fitness, best.params, best.depth)
    for step in h.lineage(best.id):             # from a seed individual to the best
        print(step.id, step.mutations, step.fitness)
    curve = h.best_so_far("time")               # or "individuals", "flops"
    h.to_csv("history.csv")                     # one row per individual, for pandas or R
    df = h.to_dataframe()                       # when pandas is installed

The modules: :mod:`~evo.analysis.records` (one individual's files -> :class:`IndividualSummary`),
:mod:`~evo.analysis.cache` (the per-user cache of the dead), :mod:`~evo.analysis.history`
(:class:`History`, :class:`Curve`), :mod:`~evo.analysis.loading` (:func:`load`),
:mod:`~evo.analysis.status` (``evo status``), :mod:`~evo.analysis.describe` (``evo show``),
:mod:`~evo.analysis.models` (weights, models, export; torch when called) and
:mod:`~evo.analysis.evaluation` (the test split; torch when called).
"""

from evo.analysis.describe import describe
from evo.analysis.errors import AnalysisError, NoCheckpointError, NoTestSplitError, UnknownIndividualError
from evo.analysis.evaluation import EVALUATIONS_FILE, evaluate_test, read_evaluations, record_evaluation
from evo.analysis.history import X_AXES, Curve, History
from evo.analysis.loading import best_so_far, lineage, load
from evo.analysis.models import checkpoint_of, export_ensemble, export_individual, load_individual_model
from evo.analysis.records import IndividualSummary
from evo.analysis.status import format_duration, status

__all__ = [
    "AnalysisError",
    "UnknownIndividualError",
    "NoCheckpointError",
    "NoTestSplitError",
    "IndividualSummary",
    "History",
    "Curve",
    "load",
    "lineage",
    "best_so_far",
    "status",
    "describe",
    "X_AXES",
    "EVALUATIONS_FILE",
    "checkpoint_of",
    "load_individual_model",
    "export_individual",
    "export_ensemble",
    "evaluate_test",
    "record_evaluation",
    "read_evaluations",
    "format_duration",
]
