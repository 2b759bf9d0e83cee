"""The ``evo`` command line: the group and its exit codes (:mod:`evo.cli.group`) and the commands,
registered on import: population (data, init, run control, fsck), workers (worker, submit,
demo), inspection (status, top, show, lineage, graph, plot, export, evaluate) and report."""

from evo.cli.group import main
from evo.cli import inspection, population, report, workers  # noqa: E402,F401  (register the commands)

__all__ = ["main"]
