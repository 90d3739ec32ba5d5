"""``certbound token check``: the resource server's verdict on an access token, locally.

Runs :class:`certbound.rs.AccessTokenVerifier` (the same code a resource server runs) on
TOKEN with the certificate in ``--cert``, and prints ``TOKEN: OK`` with a summary of the
claims, or ``TOKEN: FAILED <REASON_CODE>: <detail>`` and the fix. Exit 0 on OK, 1 on FAILED,
2 on usage or input errors (unreadable certificate, JWKS that does not load).

Keys: ``--jwks`` (a JWKS file, or an http(s) URL fetched like a resource server would), else
the signing keys in the local database. Issuer: ``--issuer``, else the configured
``issuer_url``. Audience: ``--audience``; without it the token's own first audience is
taken, and the output says the audience was not checked.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import sys
from pathlib import Path
from typing import Any, NoReturn

import click

from certbound.clock import SystemClock, format_rfc3339
from certbound.config import ConfigError
from certbound.errors import CertboundError, ReasonCode
from certbound.pki.certificate import der
from certbound.pki.pem import load_presented_file
from certbound.rs.jwks import JwksSource, JwksUnavailableError, RemoteJwks, StaticJwks
from certbound.rs.verifier import AccessToken, AccessTokenVerifier, TokenRejected

from .main import EXIT_FAILED, EXIT_OK, EXIT_USAGE, Context, pass_context

_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)


class _InputError(Exception):
    """An input that is not there or does not load (exit 2)."""


@click.group()
def token() -> None:
    """Access tokens: check one the way a resource server does."""


def _leaf(path: Path) -> bytes:
    try:
        return der(load_presented_file(path.read_bytes())[0])
    except CertboundError as exc:
        raise _InputError(f"--cert {path}: {exc.reason.value}: {exc.detail}") from exc


def _jwks(ctx: Context, source: str | None) -> JwksSource:
    if source is None:
        return _local_keys(ctx)
    if source.startswith(("https://", "http://")):
        return RemoteJwks(source, min_refresh_seconds=0)
    try:
        return StaticJwks(json.loads(Path(source).read_text()))
    except (OSError, ValueError) as exc:
        raise _InputError(f"--jwks {source}: {exc}") from exc
    except JwksUnavailableError as exc:
        raise _InputError(f"--jwks {source}: {exc}") from exc


def _local_keys(ctx: Context) -> JwksSource:
    """The published keys of the local database (what ``/oauth2/v1/keys`` serves)."""
    from certbound.oauth.keys import SigningKeys, load_secret

    try:
        secret = load_secret(ctx.settings.secret_key_path)
    except ConfigError as exc:
        raise _InputError(str(exc)) from exc
    return StaticJwks(SigningKeys(ctx.database(), SystemClock(), secret).jwks())


def _unverified_audience(token_text: str) -> str | None:
    """The token's first ``aud``, read without verification (only to default --audience)."""
    try:
        payload = token_text.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        aud = claims.get("aud")
    except (IndexError, ValueError, binascii.Error, AttributeError):
        return None
    if isinstance(aud, list):
        aud = aud[0] if aud else None
    return aud if isinstance(aud, str) and aud else None


def _summary(access: AccessToken, audience_checked: bool) -> dict[str, Any]:
    claims = access.claims
    exp = dt.datetime.fromtimestamp(claims["exp"], dt.UTC)
    return {
        "issuer": claims["iss"],
        "subject": access.subject,
        "client_id": access.client_id,
        "audience": claims["aud"],
        "audience_checked": audience_checked,
        "scope": " ".join(access.scope),
        "expires": format_rfc3339(exp),
        "jti": claims["jti"],
        "binding": access.cnf_x5t_s256,
    }


def _print_ok(summary: dict[str, Any]) -> None:
    click.echo("TOKEN: OK")
    for name in ("issuer", "subject", "client_id", "audience", "scope", "expires", "jti"):
        click.echo(f"  {name:<9} {summary[name]}")
    if not summary["audience_checked"]:
        click.echo("  (audience not checked: pass --audience to check it)")
    binding = summary["binding"]
    if binding:
        click.echo(f"  binding   x5t#S256={binding}: matches the presented certificate")
    else:
        click.echo("  binding   none (a bearer token: not bound to a certificate)")


def _usage_error(message: str, as_json: bool) -> NoReturn:
    if as_json:
        click.echo(json.dumps({"error": {"detail": message}}, indent=2))
    else:
        click.echo(f"error: {message}", err=True)
    sys.exit(EXIT_USAGE)


@token.command()
@click.argument("token_text", metavar="TOKEN")
@click.option("--cert", "cert", type=_FILE, help="The client certificate presented (PEM/DER).")
@click.option("--issuer", help="The issuer to expect. Default: the configured issuer URL.")
@click.option("--audience", help="The audience to expect. Default: the token's own (unchecked).")
@click.option("--jwks", "jwks_source", metavar="FILE_OR_URL", help="JWKS file or URL.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@pass_context
def check(
    ctx: Context,
    token_text: str,
    cert: Path | None,
    issuer: str | None,
    audience: str | None,
    jwks_source: str | None,
    as_json: bool,
) -> None:
    """Verify TOKEN ('-' reads it from stdin) as a resource server would, with the
    client certificate in --cert (without it, a bound token fails TOKEN_BINDING_MISSING)."""
    if token_text == "-":
        token_text = sys.stdin.read().strip()
    try:
        leaf = _leaf(cert) if cert is not None else None
        jwks = _jwks(ctx, jwks_source)
    except _InputError as exc:
        _usage_error(str(exc), as_json)
    aud = audience or _unverified_audience(token_text) or "-"
    verifier = AccessTokenVerifier(
        issuer or ctx.settings.issuer_url, aud, jwks=jwks, clock=SystemClock()
    )
    try:
        access = verifier.verify(token_text, leaf)
    except TokenRejected as exc:
        _print_failed(exc, as_json)
    except JwksUnavailableError as exc:
        _usage_error(str(exc), as_json)
    summary = _summary(access, audience is not None)
    if as_json:
        click.echo(json.dumps({"token": "OK", **summary, "claims": access.claims}, indent=2))
    else:
        _print_ok(summary)
    sys.exit(EXIT_OK)


def _print_failed(exc: TokenRejected, as_json: bool) -> NoReturn:
    reason: ReasonCode = exc.reason
    if as_json:
        body = {
            "token": "FAILED",
            "reason": reason.value,
            "error": exc.error,
            "detail": exc.description,
            "fix": reason.fix,
        }
        click.echo(json.dumps(body, indent=2))
    else:
        click.echo(f"TOKEN: FAILED {reason.value}: {exc.description}")
        click.echo(f"  fix: {reason.fix}")
    sys.exit(EXIT_FAILED)
