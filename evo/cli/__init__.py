"""The ``evo`` command line."""

from evo.cli.cli import main
from evo.cli import report as _report  # noqa: E402,F401  (registers `evo report`)

__all__ = ["main"]
