"""Every subcommand module, attached to the group in one place."""

from __future__ import annotations

import click


def register(group: click.Group) -> None:
    """Attach the subcommands; each module owns one command or command group."""
    from certbound.cli import (
        admin,
        ca,
        device,
        diagnose,
        handshake,
        log,
        quickstart,
        serve,
        verify,
    )

    for command in (
        ca.ca,
        verify.verify,
        quickstart.quickstart,
        log.log,
        diagnose.diagnose,
        admin.admin,
        serve.serve,
        device.device,
        handshake.handshake,
    ):
        group.add_command(command)
