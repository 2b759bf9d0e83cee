"""``python -m evo`` runs the command line (the same as the ``evo`` script)."""

from evo.cli import main

main()
