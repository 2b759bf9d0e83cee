"""The ``evo`` command line."""

from evo.cli.cli import main

__all__ = ["main"]
