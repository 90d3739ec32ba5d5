"""Every subcommand module, attached to the group in one place."""

from __future__ import annotations

import click


def register(group: click.Group) -> None:
    """Attach the subcommands; each module owns one command or command group."""
