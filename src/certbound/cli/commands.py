"""Every subcommand module, attached to the group in one place."""

from __future__ import annotations

import click


def register(group: click.Group) -> None:
    """Attach the subcommands; each module owns one command or command group."""
    from certbound.cli import (
        admin,
        app,
        ca,
        device,
        diagnose,
        doctor,
        handshake,
        key,
        log,
        policy,
        quickstart,
        serve,
        token,
        user,
        verify,
        zone,
    )
    from certbound.cli import group as group_command

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
        token.token,
        user.user,
        group_command.group,
        app.app,
        key.key,
        policy.policy,
        zone.zone,
        doctor.doctor,
    ):
        group.add_command(command)
