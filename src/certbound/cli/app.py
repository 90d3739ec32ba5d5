"""``certbound app``: register and manage OAuth clients (create, list, show, update,
rotate-secret, delete).

An app is named by its id (``app_...``) or client_id. Its registration metadata comes from
options (``--auth-method``, ``--grant-type``, ``--redirect-uri``, ``--scope``, one
certificate identity option, ``--ca-pin`` / ``--ca-pin-from-store``, ``--jwks-file``) and
is checked before anything is stored (INVALID_CLIENT_METADATA naming the field). A
client_secret_* app's secret is printed once, by ``create`` and ``rotate-secret``. Every
change is a System Log event (``application.lifecycle.*``,
``application.client.secret_rotate``), and so is every refused one.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.table import Table
from rich.text import Text

from certbound.cli.main import Context, pass_context
from certbound.cli.output import fail, make_console, print_json
from certbound.clock import SystemClock, format_rfc3339
from certbound.directory import events
from certbound.directory.apps import (
    IDENTITY_FIELDS,
    SECRET_METHODS,
    App,
    Apps,
    AppStatus,
    AuthMethod,
    ClientMetadata,
    invalid,
)
from certbound.errors import CertboundError
from certbound.pki.truststore import TrustStore
from certbound.syslog.events import EventType

MAX_LIMIT = 10_000
MAX_JWKS_BYTES = 256 * 1024
_json_option = click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
# identity option name -> metadata field
_IDENTITY_OPTIONS = dict(
    zip(("subject_dn", "san_dns", "san_uri", "san_ip", "san_email"), IDENTITY_FIELDS, strict=True)
)
F = TypeVar("F", bound=Callable[..., Any])


def _metadata_options(command: F) -> F:
    """The registration metadata options ``create`` and ``update`` share."""
    options = [
        click.option("--grant-type", "grant_types", multiple=True, metavar="G",
                     type=click.Choice(["client_credentials", "authorization_code",
                                        "refresh_token"]),
                     help="A grant type (repeat; default client_credentials)."),
        click.option("--redirect-uri", "redirect_uris", multiple=True, metavar="U",
                     help="A redirect URI for authorization_code (repeat)."),
        click.option("--scope", metavar="S", help="Allowed scopes, space-separated."),
        click.option("--subject-dn", metavar="DN", help="tls_client_auth: the subject DN."),
        click.option("--san-dns", metavar="D", help="tls_client_auth: a SAN DNS name."),
        click.option("--san-uri", metavar="U", help="tls_client_auth: a SAN URI."),
        click.option("--san-ip", metavar="IP", help="tls_client_auth: a SAN IP address."),
        click.option("--san-email", metavar="E", help="tls_client_auth: a SAN email."),
        click.option("--ca-pin", "ca_pins", multiple=True, metavar="HEX",
                     help="tls_client_auth: SPKI SHA-256 (hex) of an issuing CA (repeat)."),
        click.option("--ca-pin-from-store", "ca_ids", multiple=True, metavar="CA_ID",
                     help="tls_client_auth: pin every CA of a stored trust-store chain."),
        click.option("--jwks-file", type=click.Path(dir_okay=False, path_type=Path),
                     help="A JWK Set (self_signed_tls_client_auth, private_key_jwt)."),
        click.option("--bound-tokens/--no-bound-tokens", "bound", default=None,
                     help="tls_client_certificate_bound_access_tokens (default on)."),
    ]  # fmt: skip
    for option in reversed(options):
        command = option(command)
    return command


def _apps(ctx: Context) -> Apps:
    return Apps(ctx.database(), SystemClock())


def _refused(ctx: Context, event_type: EventType, ref: str, exc: CertboundError) -> None:
    ctx.recorder().record(events.refused(event_type, events.APP_TARGET, ref, exc))


def _pins(ctx: Context, ca_pins: tuple[str, ...], ca_ids: tuple[str, ...]) -> list[str]:
    """The pins given as hex (any case, colons allowed) and those of stored chains."""
    pins = [pin.replace(":", "").strip().lower() for pin in ca_pins]
    store = TrustStore(ctx.database(), SystemClock())
    for ca_id in ca_ids:
        for info in store.get(ca_id).certificates:
            pins.append(base64.b64decode(info.spki_sha256).hex())
    return list(dict.fromkeys(pins))


def _jwks(path: Path) -> dict[str, Any]:
    try:
        data = path.read_bytes()[: MAX_JWKS_BYTES + 1]
        if len(data) > MAX_JWKS_BYTES:
            raise invalid("jwks", f"{path} is larger than {MAX_JWKS_BYTES} bytes")
        value = json.loads(data)
    except (OSError, ValueError) as exc:
        raise invalid("jwks", f"cannot read a JWK Set from {path}: {exc}") from None
    if not isinstance(value, dict):
        raise invalid("jwks", f"{path} is not a JSON object")
    return value


def _overlay(ctx: Context, base: dict[str, Any], given: dict[str, Any]) -> ClientMetadata:
    """``base`` (metadata as JSON) with the options given applied; fields the (new) method
    does not use are dropped."""
    out = dict(base)
    if given["auth_method"] is not None:
        out["token_endpoint_auth_method"] = given["auth_method"]
    if given["grant_types"]:
        out["grant_types"] = list(given["grant_types"])
    if given["redirect_uris"]:
        out["redirect_uris"] = list(given["redirect_uris"])
    if given["scope"] is not None:
        out["scope"] = given["scope"]
    identities = {f: given[o] for o, f in _IDENTITY_OPTIONS.items() if given[o] is not None}
    if identities:
        out = {k: v for k, v in out.items() if k not in IDENTITY_FIELDS} | identities
    if given["ca_pins"] or given["ca_ids"]:
        out["tls_client_auth_ca_pins"] = _pins(ctx, given["ca_pins"], given["ca_ids"])
    if given["jwks_file"] is not None:
        out["jwks"] = _jwks(given["jwks_file"])
    if given["bound"] is not None:
        out["tls_client_certificate_bound_access_tokens"] = given["bound"]
    _drop_unused(out, given, identities)
    return ClientMetadata.from_dict(out)


def _drop_unused(out: dict[str, Any], given: dict[str, Any], identities: dict[str, str]) -> None:
    """Drop the stored fields the method does not use (those given stay, to be refused)."""
    method = out.get("token_endpoint_auth_method")
    unused: list[str] = []
    if method != AuthMethod.TLS_CLIENT_AUTH.value:
        unused += [name for name in IDENTITY_FIELDS if name not in identities]
        if not (given["ca_pins"] or given["ca_ids"]):
            unused.append("tls_client_auth_ca_pins")
    jwks_methods = (AuthMethod.SELF_SIGNED_TLS_CLIENT_AUTH, AuthMethod.PRIVATE_KEY_JWT)
    if method not in jwks_methods and given["jwks_file"] is None:
        unused.append("jwks")
    code = "authorization_code" in out.get("grant_types", ("client_credentials",))
    if not code and not given["redirect_uris"]:
        unused.append("redirect_uris")
    for name in unused:
        out.pop(name, None)


def _print_app(app: App, secret: str | None = None) -> None:
    console = make_console(wide_off_terminal=True)
    status = Text(app.status.value, style="green" if app.status is AppStatus.ACTIVE else "yellow")
    console.print(Text.assemble((app.id, "bold cyan"), "  ", app.name, "  ", status))
    rows = [
        ("client_id", app.client_id),
        ("secret", "yes" if app.has_secret else "-"),
        ("created", format_rfc3339(app.created)),
        ("updated", format_rfc3339(app.updated)),
    ]
    for name, value in app.metadata.to_dict().items():
        shown = json.dumps(value) if isinstance(value, dict | bool) else value
        rows.append((name, " ".join(shown) if isinstance(shown, list) else str(shown)))
    for label, text in rows:
        console.print(Text.assemble("  ", (f"{label:<44}", "dim"), text or "-"))
    if secret is not None:
        console.print(Text.assemble(("client secret (shown once): ", "bold"), secret))


def _print_result(app: App, secret: str | None, as_json: bool) -> None:
    if as_json:
        print_json(app.to_dict() | ({"clientSecret": secret} if secret else {}))
        return
    _print_app(app, secret)


@click.group()
def app() -> None:
    """Apps: OAuth clients, their registration metadata and secrets."""


@app.command("create")
@click.argument("name")
@click.option("--auth-method", required=True, type=click.Choice([m.value for m in AuthMethod]),
              help="token_endpoint_auth_method.")  # fmt: skip
@click.option("--client-id", metavar="ID", help="The client_id (default: a random one).")
@_metadata_options
@_json_option
@pass_context
def create(
    ctx: Context, /, name: str, auth_method: str, client_id: str | None, **given: Any
) -> None:
    """Register an app. A client_secret_* app's secret is printed once."""
    as_json = given.pop("as_json")
    try:
        metadata = _overlay(ctx, {}, {"auth_method": auth_method, **given})
        item, secret = _apps(ctx).create(name, metadata, client_id=client_id)
    except CertboundError as exc:
        _refused(ctx, EventType.APPLICATION_LIFECYCLE_CREATE, client_id or name, exc)
        fail(exc, as_json)
    ctx.recorder().record(events.app_created(item))
    _print_result(item, secret, as_json)


@app.command("list")
@click.option("--limit", type=click.IntRange(1, MAX_LIMIT), default=100, show_default=True)
@click.option("--after", metavar="ID", help="The page after the app ID (the last listed).")
@_json_option
@pass_context
def list_(ctx: Context, limit: int, after: str | None, as_json: bool) -> None:
    """List apps in the order created."""
    try:
        items = _apps(ctx).list(limit=limit, after=after)
    except CertboundError as exc:
        fail(exc, as_json)
    following = items[-1].id if len(items) == limit else None
    if as_json:
        print_json({"apps": [item.to_dict() for item in items], "next": following})
        return
    console = make_console(wide_off_terminal=True)
    if not items:
        console.print("no apps; register one with `certbound app create NAME --auth-method M`")
        return
    table = Table("id", "client_id", "name", "auth method", "status")
    for item in items:
        method = item.metadata.token_endpoint_auth_method.value
        table.add_row(Text(item.id), Text(item.client_id), Text(item.name), Text(method),
                      Text(item.status.value))  # fmt: skip
    console.print(table)
    if following:
        console.print(f"more: certbound app list --after {following}")


@app.command("show")
@click.argument("ref", metavar="REF")
@_json_option
@pass_context
def show(ctx: Context, ref: str, as_json: bool) -> None:
    """Show one app. REF: its id or client_id."""
    try:
        item = _apps(ctx).get(ref)
    except CertboundError as exc:
        fail(exc, as_json)
    _print_result(item, None, as_json)


@app.command("update")
@click.argument("ref", metavar="REF")
@click.option("--name", metavar="N", help="A new name.")
@click.option("--status", type=click.Choice([s.value for s in AppStatus], case_sensitive=False))
@click.option("--auth-method", type=click.Choice([m.value for m in AuthMethod]),
              help="A new token_endpoint_auth_method.")  # fmt: skip
@_metadata_options
@_json_option
@pass_context
def update(ctx: Context, /, ref: str, name: str | None, status: str | None, **given: Any) -> None:
    """Change an app: options given replace those fields (an identity option replaces the
    identity; --grant-type, --redirect-uri and the pins replace their lists). Moving to a
    client_secret_* method issues a secret, printed once."""
    as_json = given.pop("as_json")
    apps = _apps(ctx)
    secret: str | None = None
    try:
        current = apps.get(ref)
        metadata = _overlay(ctx, current.metadata.to_dict(), given)
        changed = metadata != current.metadata
        before, after = apps.update(ref, metadata if changed else None, name=name, status=status)
        if after.metadata.token_endpoint_auth_method in SECRET_METHODS and not after.has_secret:
            after, secret = apps.rotate_secret(after.id)
    except CertboundError as exc:
        _refused(ctx, EventType.APPLICATION_LIFECYCLE_UPDATE, ref, exc)
        fail(exc, as_json)
    ctx.recorder().record(events.app_updated(before, after))
    if secret is not None:
        ctx.recorder().record(events.secret_rotated(after))
    _print_result(after, secret, as_json)


@app.command("rotate-secret")
@click.argument("ref", metavar="REF")
@_json_option
@pass_context
def rotate_secret(ctx: Context, ref: str, as_json: bool) -> None:
    """A new client secret (printed once); the old one stops working at once."""
    try:
        item, secret = _apps(ctx).rotate_secret(ref)
    except CertboundError as exc:
        _refused(ctx, EventType.APPLICATION_CLIENT_SECRET_ROTATE, ref, exc)
        fail(exc, as_json)
    ctx.recorder().record(events.secret_rotated(item))
    _print_result(item, secret, as_json)


@app.command("delete")
@click.argument("ref", metavar="REF")
@_json_option
@pass_context
def delete(ctx: Context, ref: str, as_json: bool) -> None:
    """Delete an app: its client_id stops authenticating."""
    try:
        item = _apps(ctx).delete(ref)
    except CertboundError as exc:
        _refused(ctx, EventType.APPLICATION_LIFECYCLE_DELETE, ref, exc)
        fail(exc, as_json)
    ctx.recorder().record(events.app_deleted(item))
    if as_json:
        print_json(item.to_dict())
        return
    make_console().print(f"deleted app {item.name} ({item.client_id})")
