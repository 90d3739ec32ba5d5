"""``certbound quickstart``: a working demo in one command.

Creates a development PKI under ``D/pki`` (the layout DESIGN.md fixes, plus the TLS
listener's ``server.pem``, ``server.key`` and ``server-ca.pem``), writes
``D/certbound.toml``, initialises the database, uploads the CA chain and verifies every
device certificate against the trust store, printing device, result and reason code. Then,
unless ``--no-serve``, it starts the server (the built-in mTLS listener on
``127.0.0.1:PORT``) and prints the curl and ``certbound handshake`` commands for the good
and the bad devices.
The demo CA's revocation settings point at the CRL the dev PKI writes
(``file://D/pki/intermediate.crl.pem``), on which the ``revoked`` device is listed, so it
is refused with REVOKED_CERTIFICATE.

It also sets up the demo directory: the user ``alice@certbound.test`` (the good device's
SAN email maps to it), the group ``engineering`` with her in it, and the OAuth client
``quickstart-app`` (tls_client_auth, registered for the good device's subject DN and pinned by
key to the demo CA chain), so the good device gets a certificate-bound token from
``/oauth2/v1/token`` and every other device is refused. The app gets the sign-on policy
``Quickstart devices``: a rule ``Managed devices`` (ALLOW a verified device whose status is
ACTIVE) above a DENY catch-all; the summary prints a ``certbound policy simulate`` line to
try it without the server. Finally it writes a SUPER_ADMIN API token (of the admin
``quickstart-admin``; the previous run's is revoked) to ``D/admin-token`` (mode 0600) and
prints a curl line against the admin API with it.

Everything it changes and decides lands in the System Log of its database as one
transaction: the demo CA's removal (from an earlier run) and upload, the directory changes,
the demo policy's creation, and a ``device.trust.verify`` event per device.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import uuid
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from certbound.admin import events as admin_events
from certbound.admin.admins import Admins
from certbound.admin.roles import Role
from certbound.admin.tokens import (
    ApiTokens,
    AuthError,
    TokenNotFoundError,
    created_event,
    revoked_event,
    split_token,
)
from certbound.clock import SystemClock
from certbound.config import Settings, load_settings
from certbound.directory import events as directory_events
from certbound.directory.apps import Apps, AuthMethod, ClientMetadata, ca_pin
from certbound.directory.groups import Groups
from certbound.directory.users import Users
from certbound.errors import CertboundError
from certbound.pki import events
from certbound.pki.certificate import der
from certbound.pki.devpki import (
    GOOD_DEVICE_USER,
    QUICKSTART_DEVICES,
    build_dev_pki,
    write_dev_pki,
)
from certbound.pki.pem import load_presented_file
from certbound.pki.revocation import RevocationChecker, stored_policies
from certbound.pki.revocation_policy import RevocationPolicy
from certbound.pki.truststore import TrustStore
from certbound.pki.validation import Rejected, Validator
from certbound.policy import events as policy_events
from certbound.policy.model import Action, Conditions, DeviceTrustRequirement, Rule
from certbound.policy.store import Policies
from certbound.storage.database import Database
from certbound.syslog.events import CLI_ACTOR, Event, EventType, Target
from certbound.syslog.recorder import EventRecorder

from .main import EXIT_FAILED, EXIT_OK, EXIT_USAGE, Context, pass_context

CA_NAME = "Certbound Dev CA chain (quickstart)"
CRL_FILE = "intermediate.crl.pem"


DEFAULT_PORT = 8443


def _write_config(directory: Path, port: int) -> Path:
    path = directory / "certbound.toml"
    path.write_text(
        "# Written by `certbound quickstart`. Paths are relative to this file.\n"
        'data_dir = "."\n'
        'database_url = "sqlite:///certbound.db"\n'
        f'tls_listen = "127.0.0.1:{port}"\n'
        'tls_cert_file = "pki/server.pem"\n'
        'tls_key_file = "pki/server.key"\n'
    )
    return path


class _Log:
    """Records this run's events, all under one transaction id."""

    def __init__(self, recorder: EventRecorder) -> None:
        self.recorder = recorder
        self.transaction_id = str(uuid.uuid4())

    def __call__(self, event: Event) -> None:
        self.recorder.record(dataclasses.replace(event, transaction_id=self.transaction_id))


def _replace_demo_ca(store: TrustStore, pki_dir: Path, log: _Log) -> str:
    """Upload the chain, checked against the dev PKI's CRL file, first removing what an
    earlier quickstart run uploaded."""
    for stored in store.list():
        if stored.name == CA_NAME:
            log(events.ca_removed(store.remove(stored.id)))
    chain = pki_dir / "ca-chain.pem"
    policy = RevocationPolicy(crl_url=(pki_dir / CRL_FILE).as_uri())
    added = store.add(chain.read_bytes(), CA_NAME, revocation=policy)
    event = events.ca_added(added, filename=str(chain))
    log(dataclasses.replace(event, debug_data={**event.debug_data, "revocation": policy.to_dict()}))
    return added.id


DEMO_APP = "quickstart-app"
DEMO_GROUP = "engineering"
DEMO_POLICY = "Quickstart devices"
MANAGED = Rule(
    "rul_quickstart_managed",  # replaced by a new id on creation
    "Managed devices",
    Action.ALLOW,
    Conditions(device_trust=DeviceTrustRequirement.VERIFIED, device_status=("ACTIVE",)),
)


def _demo_directory(db: Database, pki_dir: Path, log: _Log) -> None:
    """The demo user, group and OAuth client; created once, the client's CA pins renewed
    (the demo CA chain is new on every run)."""
    clock = SystemClock()
    users, groups, apps = Users(db, clock), Groups(db, clock), Apps(db, clock)
    try:
        user = users.get(GOOD_DEVICE_USER)
    except CertboundError:
        user = users.create(GOOD_DEVICE_USER, email=GOOD_DEVICE_USER, display_name="Alice")
        log(directory_events.user_created(user, password_set=False))
    try:
        group = groups.get(DEMO_GROUP)
    except CertboundError:
        group = groups.create(DEMO_GROUP, "Quickstart demo group")
        log(directory_events.group_created(group))
    groups.add_member(group.id, user.id)
    chain = load_presented_file((pki_dir / "ca-chain.pem").read_bytes())
    good = load_presented_file((pki_dir / "devices" / "good.pem").read_bytes())[0]
    metadata = ClientMetadata(
        token_endpoint_auth_method=AuthMethod.TLS_CLIENT_AUTH,
        grant_types=("client_credentials",),
        scope="read write",
        tls_client_auth_subject_dn=good.subject.rfc4514_string(),
        tls_client_auth_ca_pins=tuple(ca_pin(cert) for cert in chain),
    )
    existing = apps.by_client_id(DEMO_APP)
    if existing is None:
        app, _ = apps.create("Quickstart app", metadata, client_id=DEMO_APP)
        log(directory_events.app_created(app))
    else:
        before, after = apps.update(existing.id, metadata)
        log(directory_events.app_updated(before, after))
        app = after
    _demo_policy(db, app.id, log)


def _demo_policy(db: Database, app_id: str, log: _Log) -> None:
    """The policy ``Quickstart devices`` (created once; a rerun leaves its rules as they
    are) and the demo app assigned to it."""
    policies = Policies(db, SystemClock())
    try:
        policy = policies.get(DEMO_POLICY)
    except CertboundError:
        created = policies.create(
            DEMO_POLICY, "Quickstart demo: managed devices only", rules=(MANAGED,)
        )
        log(policy_events.policy_changed(EventType.POLICY_LIFECYCLE_CREATE, created))
        assert created.after is not None
        policy = created.after
    if app_id not in policy.app_ids:
        assigned = policies.assign(policy.id, app_id)
        target = Target(app_id, policy_events.APP_TARGET, DEMO_APP, "Quickstart app")
        log(policy_events.policy_changed(EventType.POLICY_LIFECYCLE_UPDATE, assigned, app=target))


ADMIN_USERNAME = "quickstart-admin"
ADMIN_TOKEN_FILE = "admin-token"


def _admin_token(db: Database, directory: Path, log: _Log) -> Path:
    """A SUPER_ADMIN API token of the admin ``quickstart-admin`` (made once) written to
    ``D/admin-token`` (mode 0600); the token an earlier run wrote there is revoked."""
    clock = SystemClock()
    admins, tokens = Admins(db, clock), ApiTokens(db, clock)
    try:
        admin = admins.get(ADMIN_USERNAME)
    except CertboundError:
        admin = admins.create(ADMIN_USERNAME, Role.SUPER_ADMIN)
        log(admin_events.admin_created(admin))
    path = directory / ADMIN_TOKEN_FILE
    try:
        old = tokens.get(split_token(path.read_text())[0])
    except (OSError, AuthError, TokenNotFoundError):
        old = None
    if old is not None and old.revoked_at is None:
        log(revoked_event(tokens.revoke(old.id), CLI_ACTOR))
    secret, info = tokens.create("quickstart", Role.SUPER_ADMIN.value, admin=admin.id)
    log(created_event(info, CLI_ACTOR))
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # a file left by an earlier run keeps no wider mode
    with os.fdopen(fd, "w") as out:
        out.write(secret + "\n")
    return path


def admin_api_command(directory: Path, settings: Settings) -> str:
    """One curl command against the admin API with the token in ``D/admin-token``."""
    ca, token = directory / "pki" / "server-ca.pem", directory / ADMIN_TOKEN_FILE
    return (
        f'curl --cacert {ca} -H "Authorization: Bearer $(cat {token})" '
        f"https://{settings.tls_listen}/api/v1/trust/cas"
    )


def _verify_devices(validator: Validator, pki_dir: Path, log: _Log) -> list[dict[str, Any]]:
    rows = []
    for name, expected in QUICKSTART_DEVICES.items():
        path = pki_dir / "devices" / f"{name}.pem"
        chain = load_presented_file(path.read_bytes())
        result = validator.verify([der(c) for c in chain])
        extra = {"command": "quickstart", "device": name, "file": str(path)}
        generation = validator.anchors().generation
        log(events.device_verified(result, chain[0], generation=generation, extra=extra))
        got = result.reason.value if isinstance(result, Rejected) else None
        rows.append(
            {
                "device": name,
                "result": "OK" if result.ok else "FAILED",
                "reason": got,
                "expected": expected,
                "as_expected": got == expected,
                "detail": result.detail if isinstance(result, Rejected) else "",
            }
        )
    return rows


def _verify_all(
    db: Database, store: TrustStore, recorder: EventRecorder, pki_dir: Path, log: _Log
) -> list[dict[str, Any]]:
    """Every device, checked like ``certbound verify``: path, then revocation."""
    checker = RevocationChecker(db, SystemClock(), recorder=recorder)
    try:
        validator = Validator(store, revocation=checker, policies=stored_policies(db))
        return _verify_devices(validator, pki_dir, log)
    finally:
        checker.close()


def _print_table(rows: list[dict[str, Any]], console: Console) -> None:
    table = Table(title="Device certificates verified against the trust store")
    for column in ("device", "result", "reason code", "as expected"):
        table.add_column(column, no_wrap=True)
    for row in rows:
        colour = "green" if row["result"] == "OK" else "red"
        expected = "yes" if row["as_expected"] else f"no: expected {row['expected'] or 'OK'}"
        table.add_row(
            row["device"], f"[{colour}]{row['result']}[/]", row["reason"] or "-", expected
        )
    console.print(table)


def _settings(ctx: Context, directory: Path, port: int) -> Settings:
    if ctx.config_file is not None:
        return ctx.settings
    return load_settings(_write_config(directory, port))


@click.command()
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("certbound-demo"),
    show_default=True,
    help="Where to write the PKI, config and database.",
)
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    default=DEFAULT_PORT,
    show_default=True,
    help="Port of the TLS listener on 127.0.0.1.",
)
@click.option("--no-serve", is_flag=True, help="Set everything up and exit.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@pass_context
def quickstart(ctx: Context, directory: Path, port: int, no_serve: bool, as_json: bool) -> None:
    """Create a dev PKI, upload its CA chain, verify every device certificate, then serve."""
    directory = directory.resolve()
    pki_dir = directory / "pki"
    write_dev_pki(build_dev_pki(), pki_dir)
    settings = _settings(ctx, directory, port)
    db = Database(settings.database_url)
    recorder: EventRecorder | None = None
    try:
        db.migrate()
        recorder = EventRecorder(
            db, SystemClock(), spool_dir=settings.spool_dir, queue_size=settings.log_queue_size
        )
        log = _Log(recorder)
        store = TrustStore(db, SystemClock(), settings.ca_expiry_warning_days)
        ca_id = _replace_demo_ca(store, pki_dir, log)
        _demo_directory(db, pki_dir, log)
        _admin_token(db, directory, log)
        rows = _verify_all(db, store, recorder, pki_dir, log)
    except CertboundError as exc:
        click.echo(f"error {exc.reason.value}: {exc.detail}", err=True)
        sys.exit(EXIT_USAGE)
    finally:
        if recorder is not None:
            recorder.close()
        db.dispose()
    ok = all(row["as_expected"] for row in rows)
    if as_json:
        click.echo(json.dumps({"dir": str(directory), "ca_id": ca_id, "devices": rows}, indent=2))
    else:
        _summary(directory, settings, ca_id, rows)
        click.echo(f"\nAdmin API (a SUPER_ADMIN token is in {directory / ADMIN_TOKEN_FILE}):")
        click.echo(f"  {admin_api_command(directory, settings)}")
    if not ok:
        sys.exit(EXIT_FAILED)
    if no_serve:
        sys.exit(EXIT_OK)
    _serve(directory, settings, as_json)


def _summary(directory: Path, settings: Settings, ca_id: str, rows: list[dict[str, Any]]) -> None:
    console = Console(highlight=False, soft_wrap=True, width=120)
    console.print(f"PKI written to {directory / 'pki'} (ca-chain.pem, root.pem, devices/)")
    console.print(f"config: {directory / 'certbound.toml'}   database: {settings.database_url}")
    console.print(f"uploaded CA chain as {ca_id}\n")
    _print_table(rows, console)
    cfg = directory / "certbound.toml"
    console.print(f"\nTry: certbound --config {cfg} verify {directory / 'pki/devices/expired.pem'}")
    console.print(f"     certbound --config {cfg} diagnose --last")
    console.print(f"     {simulate_command(directory)}")


def simulate_command(directory: Path) -> str:
    """The ``certbound policy simulate`` line for the good device and the demo app."""
    cfg = directory / "certbound.toml"
    good = directory / "pki" / "devices" / "good.pem"
    return f"certbound --config {cfg} policy simulate --app {DEMO_APP} --cert {good}"


def _program() -> str:
    """How to run certbound again: the path it was started by, when that is the script."""
    started = Path(sys.argv[0])
    return str(started.resolve()) if started.name == "certbound" else "certbound"


def token_commands(directory: Path, settings: Settings) -> list[str]:
    """curl commands for a certificate-bound token (the good device) and a refusal."""
    pki = directory / "pki"
    url = f"https://{settings.tls_listen}/oauth2/v1/token"
    lines = []
    for name, note in (("good", "a certificate-bound token"), ("cn-only", "refused: "
                       "CERTIFICATE_NOT_BOUND_TO_CLIENT")):  # fmt: skip
        device = pki / "devices" / name
        lines.append(f"# {name}: {note}")
        lines.append(
            f"curl --cacert {pki / 'server-ca.pem'} --cert {device}.pem --key {device}.key "
            f"-d grant_type=client_credentials -d client_id={DEMO_APP} {url}"
        )
    return lines


def try_commands(directory: Path, settings: Settings) -> list[str]:
    """The curl and ``certbound handshake`` commands for the good and the bad devices."""
    pki = directory / "pki"
    program = _program()
    url = f"https://{settings.tls_listen}"
    lines = []
    for name, expected in QUICKSTART_DEVICES.items():
        device = pki / "devices" / name
        lines.append(f"# {name}: {'ALLOW' if expected is None else expected}")
        lines.append(
            f"curl --cacert {pki / 'server-ca.pem'} --cert {device}.pem --key {device}.key "
            f"{url}/api/v1/intake/echo"
        )
        lines.append(
            f"{program} handshake {url} --cert {device}.pem --key {device}.key "
            f"--cacert {pki / 'server-ca.pem'}"
        )
    return lines


def _serve(directory: Path, settings: Settings, as_json: bool) -> None:
    """Run the server in the foreground until Ctrl-C (the config quickstart wrote)."""
    from certbound.cli.serve import run_server

    if not as_json:
        click.echo("\nThe server is starting. In another terminal, try:\n")
        for line in try_commands(directory, settings):
            click.echo(f"  {line}")
        click.echo("\nTokens (RFC 8705: bound to the device certificate):\n")
        for line in token_commands(directory, settings):
            click.echo(f"  {line}")
        cfg = directory / "certbound.toml"
        click.echo(
            f"\nThen: {_program()} --config {cfg} log "
            "--filter 'eventType eq \"device.trust.verify\"'"
        )
        click.echo("Press Ctrl-C to stop.\n")
    database = Database(settings.database_url)
    try:
        code = run_server(settings, database)
    finally:
        database.dispose()
    sys.exit(code)
