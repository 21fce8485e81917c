"""``python -m nocturnus`` runs the CLI."""

from nocturnus.cli import main

main()
