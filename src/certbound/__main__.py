"""``python -m certbound`` runs the CLI."""

from certbound.cli.main import main

main()
