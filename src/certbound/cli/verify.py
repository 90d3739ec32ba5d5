"""``certbound verify``: the local check the seed does with ``openssl verify``, with reasons.

Prints ``CERT: OK`` or ``CERT: FAILED <REASON_CODE>: <detail>``, the certificate the problem
is about and the fix. Exit 0 on OK, 1 on FAILED, 2 on usage or input errors.

Revocation is checked too (:class:`certbound.pki.revocation.RevocationChecker`), under each
stored CA's settings, or with ``--ca FILE`` failing open from the CRL distribution points and
OCSP responders the certificates name. ``--revocation off|soft|hard`` overrides that (off,
fail open, fail closed); ``--crl FILE`` checks against those CRL files only, never fetching
(like ``openssl verify -CRLfile``). The output's ``revocation`` line says what was found.

A validation against the trust store (not ``--ca FILE``) is a security decision: it is
recorded as a ``device.trust.verify`` event, whose uuid the output names (``--json``:
``"event"``), so ``certbound diagnose`` can explain it later. A CERT that cannot be read is
an input error, not a decision, and is not recorded.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

import click
from cryptography import x509
from rich.console import Console

from certbound.clock import SystemClock, parse_rfc3339
from certbound.errors import CertboundError
from certbound.pki import events
from certbound.pki.anchors import AnchorSource, StaticAnchors, TrustAnchors
from certbound.pki.certificate import CertificateInfo, der
from certbound.pki.crl import CrlError, parse_crl
from certbound.pki.pem import load_certificates, load_presented_file
from certbound.pki.revocation import RevocationChecker, RevocationResult, stored_policies
from certbound.pki.revocation_policy import Mode, RevocationPolicy
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


# With --ca FILE there are no stored settings: ask what the certificates name, fail open.
FILE_POLICY = RevocationPolicy(mode=Mode.OCSP_THEN_CRL, fail_open=True)
Policies = Callable[[str | None], RevocationPolicy]


def _overridden(policy: RevocationPolicy, revocation: str | None, local: bool) -> RevocationPolicy:
    """A CA's policy under ``--revocation`` (off, soft, hard) and ``--crl`` (CRLs only)."""
    if revocation == "off":
        return policy.replace(mode=Mode.OFF)
    if local:
        policy = policy.replace(mode=Mode.CRL)
    if revocation is not None:
        policy = policy.replace(fail_open=revocation == "soft")
    return policy


def _policies(ctx: Context, ca_file: Path | None, revocation: str | None, local: bool) -> Policies:
    base: Policies = (lambda _ca_id: FILE_POLICY) if ca_file else stored_policies(ctx.database())
    return lambda ca_id: _overridden(base(ca_id), revocation, local)


def _checker(ctx: Context, ca_file: Path | None, crls: Sequence[bytes]) -> RevocationChecker:
    """Against the store: the shared CRL cache and the System Log; with --ca or --crl files,
    a checker of its own (a local check shares and records nothing about the fleet's CRLs)."""
    shared = ca_file is None and not crls
    return RevocationChecker(
        ctx.database() if shared else None,
        SystemClock(),
        recorder=ctx.recorder() if shared else None,
        local_crls=crls,
    )


def _read_crls(paths: Sequence[Path]) -> list[bytes]:
    """The --crl files (PEM or DER); a file that is not a CRL is a usage error."""
    out = []
    for path in paths:
        data = path.read_bytes()
        try:
            parse_crl(data)
        except CrlError as exc:
            raise click.BadParameter(f"{path}: {exc.message}", param_hint="--crl") from exc
        out.append(data)
    return out


def _revocation_line(answer: RevocationResult | None, *, detail: bool = True) -> str:
    """The status, where it came from and (unless the FAILED line said it) the detail."""
    if answer is None:
        return "  revocation not checked (off)"
    allowed = ", allowed by fail-open" if answer.fail_open else ""
    source = ", ".join(part for part in (answer.source, answer.url) if part)
    where = f" ({source})" if source else ""
    said = f": {answer.detail}" if detail and answer.detail else ""
    return f"  revocation {answer.status.value}{where}{allowed}{said}"


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
        console.print(_revocation_line(result.revocation), highlight=False, markup=False)
        return
    console.print(f"{name}: [red]FAILED[/] {result.reason.value}: {result.detail}", highlight=False)
    if result.culprit is not None:
        _print_info(console, "problem with", result.culprit)
    if result.leaf is not None and result.culprit != result.leaf:
        _print_info(console, "certificate", result.leaf)
    if result.revocation is not None:
        line = _revocation_line(result.revocation, detail=False)
        console.print(line, highlight=False, markup=False)
    console.print(f"  fix: {result.reason.fix}", highlight=False)


@click.command()
@click.argument("cert", type=_FILE)
@click.option("--ca", "ca_file", type=_FILE, help="Trust these CA certificates (PEM/DER).")
@click.option("--store", is_flag=True, help="Trust the CAs in the trust store (default).")
@click.option("--untrusted", type=_FILE, multiple=True, help="Intermediates to offer (repeatable).")
@click.option("--at", "at_text", metavar="RFC3339", help="Validate at this time instead of now.")
@click.option(
    "--revocation",
    type=click.Choice(["off", "soft", "hard"]),
    help="Revocation: off, soft (fail open) or hard (fail closed). Default: each CA's "
    "settings; soft with --ca.",
)
@click.option(
    "--crl",
    "crl_files",
    type=_FILE,
    multiple=True,
    help="Check against this CRL file (PEM/DER) instead of fetching (repeatable).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@pass_context
def verify(
    ctx: Context,
    cert: Path,
    ca_file: Path | None,
    store: bool,
    untrusted: tuple[Path, ...],
    at_text: str | None,
    revocation: str | None,
    crl_files: tuple[Path, ...],
    as_json: bool,
) -> None:
    """Validate a client certificate CERT (leaf first; more certificates are intermediates),
    including its revocation status."""
    if store and ca_file is not None:
        raise click.UsageError("--ca and --store are mutually exclusive")
    if revocation == "off" and crl_files:
        raise click.UsageError("--crl and --revocation off contradict each other")
    try:
        at = parse_rfc3339(at_text) if at_text else None
    except ValueError as exc:
        raise click.BadParameter(f"not an RFC 3339 time: {at_text}", param_hint="--at") from exc
    crls = _read_crls(crl_files)
    try:
        chain = _read(cert, load_presented_file, "CERT")
        for path in untrusted:
            chain += _read(path, load_certificates, "--untrusted")
        source = _source(ctx, ca_file)
    except _InputError as exc:
        _fail_input(exc, as_json)
    checker = _checker(ctx, ca_file, crls)
    try:
        policies = _policies(ctx, ca_file, revocation, bool(crls))
        validator = Validator(source, cache_size=0, revocation=checker, policies=policies)
        result = validator.verify([der(c) for c in chain], at)
    finally:
        checker.close()
    event_id = None
    if ca_file is None:
        event_id = _record(ctx, result, chain[0], at, validator.anchors().generation, cert)
    if as_json:
        body = {"file": str(cert), **result.to_dict(), "event": event_id}
        click.echo(json.dumps(body, indent=2))
    else:
        console = Console(highlight=False, soft_wrap=True)
        _report(str(cert), result, console)
        if event_id is not None and not result.ok:
            console.print(f"  event: {event_id} (certbound diagnose {event_id})", highlight=False)
    sys.exit(EXIT_OK if result.ok else EXIT_FAILED)


def _record(
    ctx: Context,
    result: ValidationResult,
    leaf: x509.Certificate,
    at: dt.datetime | None,
    generation: int,
    cert: Path,
) -> str:
    """Record the verification as ``device.trust.verify``; returns the event's uuid."""
    event = events.device_verified(
        result,
        leaf,
        at=at,
        generation=generation,
        extra={"command": "verify", "file": str(cert)},
    )
    return ctx.recorder().record(event).uuid


def _fail_input(exc: _InputError, as_json: bool) -> NoReturn:
    err = exc.error
    if as_json:
        body = {"error": {"reason": err.reason.value, "detail": f"{exc.where}: {err.detail}"}}
        click.echo(json.dumps(body, indent=2))
    else:
        click.echo(f"error {err.reason.value}: {exc.where}: {err.detail}", err=True)
        click.echo(f"  fix: {err.reason.fix}", err=True)
    sys.exit(EXIT_USAGE)
