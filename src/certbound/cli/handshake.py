"""``certbound handshake URL --cert F --key F [--cacert F] [--token]``: an mTLS check, layer by
layer (:mod:`certbound.probe`), printed like ``verify``.

One line per layer (``tcp``, ``tls``, ``client-certificate``, ``certbound``): PASS, FAIL
with the reason code and detail, or SKIPPED; the facts each layer saw below it; then where to
look next and the fix. Exit 0 when every layer passed, 1 when one failed, 2 on usage or input
errors (a bad URL, an unreadable file, a key that does not match the certificate).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NoReturn

import click
from rich.console import Console
from rich.markup import escape

from certbound.probe import (
    DEFAULT_CLIENT_ID,
    DEFAULT_TIMEOUT,
    HandshakeReport,
    LayerName,
    LayerResult,
    ProbeInputError,
    ProbeOptions,
    Status,
    check_handshake,
    load_credentials,
    load_server_anchors,
    parse_target,
)

from .main import EXIT_FAILED, EXIT_OK, EXIT_USAGE

_FILE = click.Path(dir_okay=False, path_type=Path)
_COLOUR = {Status.PASS: "green", Status.FAIL: "red", Status.SKIPPED: "yellow"}


def _line(console: Console, text: str) -> None:
    console.print(text, highlight=False, markup=False)


def _yes(value: object) -> str:
    return "yes" if value else "no"


def _tls_facts(facts: Mapping[str, Any]) -> list[str]:
    server = facts.get("serverCertificate")
    if not server:
        return []
    lines = [f"server   {server['subjectDn']}", f"issuer   {server['issuerDn']}"]
    lines.append(f"valid    {server['notBefore']} .. {server['notAfter']}")
    if server["sans"]:
        lines.append(f"names    {', '.join(server['sans'])}")
    return lines


def _client_facts(facts: Mapping[str, Any]) -> list[str]:
    if "subjectDn" not in facts:
        return []
    lines = [
        f"file     {facts['file']} (key {facts['keyFile']}: matches the certificate)",
        f"subject  {facts['subjectDn']}",
        f"issuer   {facts['issuerDn']}",
        f"serial   {facts['serialNumber']}",
        f"valid    {facts['notBefore']} .. {facts['notAfter']}",
        f"requested {_yes(facts['requested'])}, sent {_yes(facts['sent'])}",
    ]
    if facts["acceptableCas"]:
        lines.append(f"server accepts CAs: {'; '.join(facts['acceptableCas'])}")
    return lines


def _certbound_facts(facts: Mapping[str, Any]) -> list[str]:
    lines = []
    if facts.get("verdict"):
        lines.append(f"verdict  {facts['verdict']} (intake {facts.get('intakePath')})")
    device = facts.get("device")
    if device:
        lines.append(f"device   {device.get('id')} ({device.get('status')})")
        lines.append(f"user     {device.get('user') or '-'} (mapped by {device.get('mappedBy')})")
    if facts.get("eventId"):
        lines.append(f"event    {facts['eventId']}")
    if facts.get("x5tS256"):
        lines.append(f"cnf      x5t#S256 {facts['x5tS256']}")
    return lines


_FACTS = {
    LayerName.TLS: _tls_facts,
    LayerName.CLIENT_CERTIFICATE: _client_facts,
    LayerName.CERTBOUND: _certbound_facts,
}


def _print_layer(console: Console, layer: LayerResult) -> None:
    colour = _COLOUR[layer.status]
    code = f"{layer.reason}: " if layer.reason else ""
    head = f"{layer.name.value}: [{colour}]{layer.status.value}[/] "
    console.print(head + escape(code + layer.detail), highlight=False)
    if layer.status is not Status.SKIPPED and layer.name in _FACTS:
        for line in _FACTS[layer.name](layer.facts):
            _line(console, f"    {line}")
    if layer.layer and layer.reason:
        _line(console, f"    layer    {layer.layer} (of {layer.reason}, docs/errors.md)")


def print_report(report: HandshakeReport, console: Console) -> None:
    _line(console, f"handshake {report.url}")
    for layer in report.layers:
        _print_layer(console, layer)
    if report.next_steps:
        _line(console, "next:")
        for step in report.next_steps:
            _line(console, f"  {step}")
    failure = report.first_failure
    if failure is None:
        console.print("result: [green]OK[/] (every layer passed)", highlight=False)
        return
    code = f" {failure.reason}" if failure.reason else ""
    console.print(f"result: [red]FAILED[/] at {failure.name.value}{escape(code)}", highlight=False)


def _fail_input(exc: ProbeInputError, as_json: bool) -> NoReturn:
    if as_json:
        click.echo(json.dumps({"error": {"detail": str(exc)}}, indent=2))
    else:
        click.echo(f"error: {exc}", err=True)
    sys.exit(EXIT_USAGE)


@click.command()
@click.argument("url")
@click.option("--cert", "cert", type=_FILE, required=True, help="Client certificate (PEM/DER).")
@click.option("--key", "key", type=_FILE, help="Its private key. Default: the --cert file.")
@click.option("--cacert", type=_FILE, help="Trust the server with these CAs (default: system).")
@click.option("--token", is_flag=True, help="Request a certificate-bound token, not the echo.")
@click.option(
    "--client-id",
    help=f"OAuth client for --token (default: {DEFAULT_CLIENT_ID}).",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=DEFAULT_TIMEOUT,
    show_default=True,
    help="Seconds each step (connect, handshake, request) may take.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object.")
def handshake(
    url: str,
    cert: Path,
    key: Path | None,
    cacert: Path | None,
    token: bool,
    client_id: str | None,
    timeout: float,
    as_json: bool,
) -> None:
    """Check an mTLS handshake with Certbound at URL (https://host:port), layer by layer:
    tcp, tls, client-certificate, certbound (the intake echo's verdict, or with --token a
    certificate-bound token)."""
    if client_id is not None and not token:
        raise click.UsageError("--client-id is only used with --token")
    try:
        options = ProbeOptions(
            target=parse_target(url),
            credentials=load_credentials(cert, key),
            anchors=load_server_anchors(cacert),
            token=token,
            client_id=client_id or DEFAULT_CLIENT_ID,
            timeout=timeout,
        )
    except ProbeInputError as exc:
        _fail_input(exc, as_json)
    report = check_handshake(options)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        print_report(report, Console(highlight=False, soft_wrap=True))
    sys.exit(EXIT_OK if report.ok else EXIT_FAILED)
