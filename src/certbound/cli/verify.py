"""``certbound verify``: the local check the seed does with ``openssl verify``, with reasons.

Prints ``CERT: OK`` or ``CERT: FAILED <REASON_CODE>: <detail>``, the certificate the problem
is about and the fix. Exit 0 on OK, 1 on FAILED, 2 on usage or input errors.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, NoReturn

import click
from cryptography import x509
from rich.console import Console

from certbound.clock import SystemClock, parse_rfc3339
from certbound.errors import CertboundError
from certbound.pki.anchors import AnchorSource, StaticAnchors, TrustAnchors
from certbound.pki.certificate import CertificateInfo, der
from certbound.pki.pem import load_certificates, load_presented_file
from certbound.pki.truststore import TrustStore
from certbound.pki.validation import Rejected, ValidationResult, Validator

from .main import EXIT_FAILED, EXIT_OK, EXIT_USAGE, Context, pass_context

_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)


def _read(path: Path, loader: Any, what: str) -> list[x509.Certificate]:
    try:
        certs: list[x509.Certificate] = loader(path.read_bytes())
    except CertboundError as exc:
        raise _InputError(exc, f"{what} {path}") from exc
    return certs


class _InputError(Exception):
    def __init__(self, error: CertboundError, where: str) -> None:
        super().__init__(f"{where}: {error}")
        self.error = error
        self.where = where


def _source(ctx: Context, ca_file: Path | None) -> AnchorSource:
    if ca_file is not None:
        anchors = TrustAnchors.from_file_certificates(_read(ca_file, load_certificates, "--ca"))
        return StaticAnchors(anchors)
    return TrustStore(ctx.database(), SystemClock())


def _print_info(console: Console, label: str, info: CertificateInfo) -> None:
    console.print(f"  {label}: {info.subject_dn}", highlight=False)
    console.print(f"    issuer  {info.issuer_dn}", highlight=False)
    console.print(f"    serial  {info.serial_number}", highlight=False)
    valid = f"{info.not_before.isoformat()} .. {info.not_after.isoformat()}"
    console.print(f"    valid   {valid}", highlight=False)


def _report(name: str, result: ValidationResult, console: Console) -> None:
    if not isinstance(result, Rejected):
        console.print(f"{name}: [green]OK[/]", highlight=False)
        ident = result.identity
        console.print(f"  subject {ident.subject_dn}", highlight=False)
        console.print(f"  issuer  {ident.issuer_dn}", highlight=False)
        console.print(f"  serial  {ident.serial_number}", highlight=False)
        path = " -> ".join(c.subject.rfc4514_string() for c in result.chain)
        console.print(f"  chain   {path}", highlight=False)
        return
    console.print(f"{name}: [red]FAILED[/] {result.reason.value}: {result.detail}", highlight=False)
    if result.culprit is not None:
        _print_info(console, "problem with", result.culprit)
    if result.leaf is not None and result.culprit != result.leaf:
        _print_info(console, "certificate", result.leaf)
    console.print(f"  fix: {result.reason.fix}", highlight=False)


@click.command()
@click.argument("cert", type=_FILE)
@click.option("--ca", "ca_file", type=_FILE, help="Trust these CA certificates (PEM/DER).")
@click.option("--store", is_flag=True, help="Trust the CAs in the trust store (default).")
@click.option("--untrusted", type=_FILE, multiple=True, help="Intermediates to offer (repeatable).")
@click.option("--at", "at_text", metavar="RFC3339", help="Validate at this time instead of now.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@pass_context
def verify(
    ctx: Context,
    cert: Path,
    ca_file: Path | None,
    store: bool,
    untrusted: tuple[Path, ...],
    at_text: str | None,
    as_json: bool,
) -> None:
    """Validate a client certificate CERT (leaf first; more certificates are intermediates)."""
    if store and ca_file is not None:
        raise click.UsageError("--ca and --store are mutually exclusive")
    try:
        at = parse_rfc3339(at_text) if at_text else None
    except ValueError as exc:
        raise click.BadParameter(f"not an RFC 3339 time: {at_text}", param_hint="--at") from exc
    try:
        chain = _read(cert, load_presented_file, "CERT")
        for path in untrusted:
            chain += _read(path, load_certificates, "--untrusted")
        result = Validator(_source(ctx, ca_file), cache_size=0).verify([der(c) for c in chain], at)
    except _InputError as exc:
        _fail_input(exc, as_json)
    if as_json:
        click.echo(json.dumps({"file": str(cert), **result.to_dict()}, indent=2))
    else:
        _report(str(cert), result, Console(highlight=False, soft_wrap=True))
    sys.exit(EXIT_OK if result.ok else EXIT_FAILED)


def _fail_input(exc: _InputError, as_json: bool) -> NoReturn:
    err = exc.error
    if as_json:
        body = {"error": {"reason": err.reason.value, "detail": f"{exc.where}: {err.detail}"}}
        click.echo(json.dumps(body, indent=2))
    else:
        click.echo(f"error {err.reason.value}: {exc.where}: {err.detail}", err=True)
        click.echo(f"  fix: {err.reason.fix}", err=True)
    sys.exit(EXIT_USAGE)
