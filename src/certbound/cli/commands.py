"""Every subcommand module, attached to the group in one place."""

from __future__ import annotations

import click


def register(group: click.Group) -> None:
    """Attach the subcommands; each module owns one command or command group."""
    from certbound.cli import ca, quickstart, verify

    group.add_command(ca.ca)
    group.add_command(verify.verify)
    group.add_command(quickstart.quickstart)
