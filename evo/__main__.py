"""``python -m evo`` runs the command line (the same as the ``evo`` script)."""

from evo.cli.cli import main

main()
