"""``certbound ca``: add, list, show and remove the CA chains in the trust store.

Output is for people (rich) or, with ``--json``, one JSON object. A rejected upload or an
unknown CA id prints ``error <REASON_CODE>: <detail>`` and the fix on stderr and exits 2;
nothing is stored.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any, BinaryIO, NoReturn

import click
from rich.console import Console
from rich.text import Text

from certbound.cli.main import EXIT_USAGE, Context, pass_context
from certbound.clock import SystemClock, format_rfc3339
from certbound.errors import CertboundError
from certbound.pki.certificate import CertificateInfo
from certbound.pki.truststore import MAX_NAME_LENGTH, StoredCA, TrustStore, UploadResult

_FIELDS = (
    ("issuer", "issuer_dn"),
    ("serial", "serial_number"),
    ("not before", "not_before"),
    ("not after", "not_after"),
    ("sha256", "sha256_fingerprint"),
    ("spki sha256", "spki_sha256"),
)


def _console(stderr: bool = False) -> Console:
    return Console(stderr=stderr, highlight=False, soft_wrap=True)


def _store(ctx: Context) -> TrustStore:
    return TrustStore(ctx.database(), SystemClock(), ctx.settings.ca_expiry_warning_days)


def _print_json(data: dict[str, Any]) -> None:
    click.echo(json.dumps(data, indent=2))


def _fail(exc: CertboundError, as_json: bool) -> NoReturn:
    if as_json:
        error = {
            "reason": exc.reason.value,
            "detail": exc.detail,
            "fix": exc.reason.fix,
            "context": exc.context,
        }
        _print_json({"error": error})
    else:
        err = _console(stderr=True)
        err.print(
            Text.assemble(("error ", "bold red"), (exc.reason.value, "bold"), ": ", exc.detail)
        )
        err.print(Text.assemble(("fix: ", "bold"), exc.reason.fix))
    raise click.exceptions.Exit(EXIT_USAGE)


def _expiry(info: CertificateInfo, now: dt.datetime, warning_days: int) -> Text:
    left = info.not_after - now
    if left < dt.timedelta(0):
        return Text("  EXPIRED", style="bold red")
    if left <= dt.timedelta(days=warning_days):
        return Text(f"  expires in {left.days} day(s)", style="yellow")
    return Text()


def _print_certificate(
    console: Console, info: CertificateInfo, now: dt.datetime, warning_days: int
) -> None:
    console.print(Text.assemble("  ", (f"{info.role:<14}", "bold"), info.subject_dn))
    for label, attr in _FIELDS:
        value = getattr(info, attr)
        text = format_rfc3339(value) if isinstance(value, dt.datetime) else str(value)
        line = Text.assemble("    ", (f"{label:<12}", "dim"), text)
        if attr == "not_after":
            line.append_text(_expiry(info, now, warning_days))
        console.print(line)


def _print_notices(console: Console, stored: StoredCA) -> None:
    for notice in stored.notices:
        console.print(
            Text.assemble(("notice ", "yellow"), (notice.code.value, "bold"), ": ", notice.detail)
        )


def _print_ca(console: Console, stored: StoredCA, warning_days: int) -> None:
    count = len(stored.certificates)
    console.print(
        Text.assemble(
            (stored.id, "bold cyan"),
            f"  {stored.name}  ({count} certificate{'s' if count != 1 else ''}, added ",
            format_rfc3339(stored.created_at),
            ")",
        )
    )
    now = SystemClock().now()
    for info in stored.certificates:
        _print_certificate(console, info, now, warning_days)


def _check_name(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    if value is not None and not 0 < len(value.strip()) <= MAX_NAME_LENGTH:
        raise click.BadParameter(f"a CA name has 1 to {MAX_NAME_LENGTH} characters")
    return value


_json_option = click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")


@click.group()
def ca() -> None:
    """Trust store: the CA chains device certificates are validated against."""


@ca.command("add")
@click.argument("file", type=click.File("rb"))
@click.option("--name", callback=_check_name, help="Display name (default: the top CA's CN).")
@click.option(
    "--allow-same-subject",
    is_flag=True,
    help="Accept a CA whose subject DN is already stored with a different key (key rollover).",
)
@_json_option
@pass_context
def add(
    ctx: Context, file: BinaryIO, name: str | None, allow_same_subject: bool, as_json: bool
) -> None:
    """Upload a CA chain: a PEM bundle (intermediate first, then root) or a DER file.

    FILE may be - for standard input. Nothing is stored when any certificate is rejected.
    """
    data = file.read()
    try:
        result = _store(ctx).add(data, name, allow_same_subject=allow_same_subject)
    except CertboundError as exc:
        _fail(exc, as_json)
    if as_json:
        _print_json(result.to_dict())
        return
    _print_added(result, ctx.settings.ca_expiry_warning_days)


def _print_added(result: UploadResult, warning_days: int) -> None:
    console = _console()
    console.print(
        Text.assemble(("stored ", "bold green"), f"(trust-store generation {result.generation})")
    )
    _print_ca(console, result, warning_days)
    _print_notices(console, result)


@ca.command("list")
@_json_option
@pass_context
def list_(ctx: Context, as_json: bool) -> None:
    """List the stored CA chains, oldest first."""
    store = _store(ctx)
    cas = store.list()
    if as_json:
        _print_json({"generation": store.generation(), "cas": [c.to_dict() for c in cas]})
        return
    console = _console()
    if not cas:
        console.print("the trust store is empty; add a CA chain with `certbound ca add FILE`")
    for stored in cas:
        _print_ca(console, stored, ctx.settings.ca_expiry_warning_days)


@ca.command("show")
@click.argument("ca_id", metavar="ID")
@_json_option
@pass_context
def show(ctx: Context, ca_id: str, as_json: bool) -> None:
    """Show one CA chain: every certificate, and the notices from its upload."""
    try:
        stored = _store(ctx).get(ca_id)
    except CertboundError as exc:
        _fail(exc, as_json)
    if as_json:
        _print_json(stored.to_dict())
        return
    console = _console()
    _print_ca(console, stored, ctx.settings.ca_expiry_warning_days)
    _print_notices(console, stored)


@ca.command("remove")
@click.argument("ca_id", metavar="ID")
@_json_option
@pass_context
def remove(ctx: Context, ca_id: str, as_json: bool) -> None:
    """Remove a CA chain; devices it issued stop validating."""
    try:
        removed = _store(ctx).remove(ca_id)
    except CertboundError as exc:
        _fail(exc, as_json)
    if as_json:
        _print_json({"removed": removed.to_dict()})
        return
    _console().print(Text.assemble(("removed ", "bold"), removed.id, f"  {removed.name}"))
