"""``certbound diagnose (EVENT_UUID | --serial HEX | --last) [--json]``: explain one decision.

Reads the System Log (:mod:`certbound.syslog.diagnosis`) and prints the layer that decided,
the reason code, what it means for this event and the fix from ``docs/errors.md``. Exit 0
when an event was explained, 1 when no event matches, 2 on usage errors (click's
``UsageError``/``BadParameter``: no selector or several, a malformed uuid or serial).
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click
from rich.console import Console

from certbound.clock import SystemClock
from certbound.policy.store import Policies
from certbound.syslog.diagnosis import (
    Explanation,
    SelectorError,
    event_by_serial,
    event_by_uuid,
    explain,
    last_failure,
    stored_certificates,
)

from .main import EXIT_FAILED, EXIT_OK, Context, pass_context


def _selector(event_uuid: str | None, serial: str | None, last: bool) -> str:
    chosen = [
        name
        for name, given in (("EVENT_UUID", event_uuid), ("--serial", serial), ("--last", last))
        if given
    ]
    if len(chosen) != 1:
        raise click.UsageError("give exactly one of EVENT_UUID, --serial HEX or --last")
    return chosen[0]


def _find(ctx: Context, event_uuid: str | None, serial: str | None) -> dict[str, Any] | None:
    db = ctx.database()
    try:
        if event_uuid is not None:
            return event_by_uuid(db, event_uuid)
        if serial is not None:
            return event_by_serial(db, serial)
    except SelectorError as exc:
        raise click.BadParameter(str(exc)) from exc
    return last_failure(db)


def _print(explanation: Explanation) -> None:
    console = Console(highlight=False, soft_wrap=True)
    event = explanation.event
    outcome = event.get("outcome") or {}
    console.print(f"Event: {event.get('uuid')}", markup=False)
    console.print(f"Time: {event.get('published')}", markup=False)
    console.print(f"Type: {event.get('eventType')} ({outcome.get('result')})", markup=False)
    device = explanation.device
    if device:
        console.print(
            f"Device: {device.get('subjectDn')} (serial {device.get('serialNumber')})",
            markup=False,
        )
    layer = explanation.layer.value if explanation.layer else "-"
    console.print(f"Layer: {layer}", markup=False)
    console.print(f"Reason: {explanation.reason or '-'}", markup=False)
    console.print(f"Meaning: {explanation.meaning}", markup=False)
    console.print("What happened:", markup=False)
    for line in explanation.what_happened:
        console.print(f"  {line}", markup=False)
    console.print(f"Fix: {explanation.fix}", markup=False)


_NOT_FOUND = {
    "EVENT_UUID": "no event with uuid {}",
    "--serial": "no event for a device certificate with serial {}",
    "--last": "no failed (FAILURE or DENY) event in the System Log{}",
}


@click.command()
@click.argument("event_uuid", metavar="EVENT_UUID", required=False)
@click.option("--serial", metavar="HEX", help="The newest event about this device serial.")
@click.option("--last", is_flag=True, help="The newest failed (FAILURE or DENY) event.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@pass_context
def diagnose(
    ctx: Context, event_uuid: str | None, serial: str | None, last: bool, as_json: bool
) -> None:
    """Explain a logged decision: the layer that decided, the reason code and the fix.

    Exit 0 when an event was explained, 1 when none matches, 2 on usage errors.
    """
    which = _selector(event_uuid, serial, last)
    event = _find(ctx, event_uuid, serial)
    if event is None:
        message = _NOT_FOUND[which].format(event_uuid or serial or "")
        if as_json:
            click.echo(json.dumps({"error": {"reason": None, "detail": message}}, indent=2))
        else:
            click.echo(message, err=True)
        sys.exit(EXIT_FAILED)
    database = ctx.database()
    clock = SystemClock()
    policies = {policy.id: policy for policy in Policies(database, clock).list()}
    explanation = explain(event, stored_certificates(database), clock.now(), policies=policies)
    if as_json:
        click.echo(json.dumps(explanation.to_dict(), indent=2))
    else:
        _print(explanation)
    sys.exit(EXIT_OK)
