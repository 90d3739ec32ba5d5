"""``certbound key``: the token-signing keys: list, rotate, retire.

``rotate`` makes a new key active (ES256 by default, or RS256); the previous active key keeps
being published in the JWKS as ``retiring``, so tokens it signed verify until they expire.
``retire KID`` stops publishing a retiring key: tokens it signed stop verifying. Both are
System Log events (``security.signing_key.rotate`` / ``.retire``); no key material is ever
printed or logged. Other instances see a change within seconds (their key cache).
"""

from __future__ import annotations

import click
from rich.table import Table

from certbound.cli.output import make_console, print_json, refuse
from certbound.clock import SystemClock
from certbound.errors import ReasonCode
from certbound.oauth.keys import SigningKeys, load_secret
from certbound.syslog.events import CLI_ACTOR, Event, EventType, Outcome, Result, Target

from .main import Context, pass_context

KEY_TARGET = "SigningKey"
COLUMNS = ("kid", "alg", "status", "created", "retired")


def _keys(ctx: Context) -> SigningKeys:
    settings = ctx.settings
    return SigningKeys(ctx.database(), SystemClock(), load_secret(settings.secret_key_path))


def _event(event_type: EventType, kid: str, message: str, **debug: object) -> Event:
    return Event(
        event_type=event_type,
        display_message=message,
        outcome=Outcome(Result.SUCCESS),
        actor=CLI_ACTOR,
        targets=(Target(kid, KEY_TARGET, kid, None),),
        debug_data=dict(debug),
    )


@click.group()
def key() -> None:
    """Token-signing keys: list, rotate, retire."""


@key.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_context
def list_keys(ctx: Context, as_json: bool) -> None:
    """Every signing key: kid, algorithm, status (active, retiring, retired)."""
    keys = _keys(ctx)
    keys.signing_key()  # the first key is made on first use
    described = keys.describe()
    if as_json:
        print_json({"keys": described})
        return
    table = Table()
    for column in ("kid", "alg", "status", "created", "retired"):
        table.add_column(column, no_wrap=True)
    for item in described:
        table.add_row(
            *(str(item[c] or "-") for c in ("kid", "alg", "status", "created", "retired"))
        )
    make_console().print(table)


@key.command()
@click.option("--alg", type=click.Choice(["ES256", "RS256"]), default="ES256", show_default=True)
@pass_context
def rotate(ctx: Context, alg: str) -> None:
    """Make a new key active; the previous one keeps verifying (retiring)."""
    kid = _keys(ctx).rotate(alg)
    ctx.recorder().record(
        _event(EventType.SECURITY_SIGNING_KEY_ROTATE, kid, f"Signing key rotated: {kid}", alg=alg)
    )
    click.echo(f"active signing key: {kid} ({alg})")


@key.command()
@click.argument("kid")
@pass_context
def retire(ctx: Context, kid: str) -> None:
    """Stop publishing KID: tokens it signed stop verifying. A KID (base64url) can start with
    "-": put it after "--", as in `certbound key retire -- -AkX...`."""
    try:
        _keys(ctx).retire(kid)
    except KeyError:
        refuse(ReasonCode.SIGNING_KEY_NOT_FOUND, f"no signing key {kid}")
    except ValueError as exc:
        refuse(ReasonCode.SIGNING_KEY_ACTIVE, str(exc))
    ctx.recorder().record(
        _event(EventType.SECURITY_SIGNING_KEY_RETIRE, kid, f"Signing key retired: {kid}")
    )
    click.echo(f"retired: {kid}")
