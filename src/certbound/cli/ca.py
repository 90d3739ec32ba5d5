"""``certbound ca``: add, list, show, update and remove the CA chains in the trust store.

Output is for people (rich) or, with ``--json``, one JSON object. A rejected upload or an
unknown CA id prints ``error <REASON_CODE>: <detail>`` and the fix on stderr and exits 2;
nothing is stored. Invalid options (a revocation URL that is not http(s), a timeout out of
range) are usage errors: exit 2, nothing stored.

Each CA's revocation settings (``docs/config.md``, "Revocation") are given with ``ca add``
and changed with ``ca update``; ``ca show`` prints them. ``ca health`` probes each CA's CRL
and OCSP URLs now (:meth:`certbound.pki.revocation.RevocationChecker.health`) and exits 1
when one of them cannot be reached or gives a CRL that cannot be used.

Every change, refused upload and failed removal or update is a System Log event
(``security.trust.ca.add`` / ``.remove`` / ``.update``); a CA with certificates expiring within
``ca_expiry_warning_days`` gets a ``pki.ca.expiration.warn`` on upload, and from ``ca list``
at most once per CA per UTC day (:mod:`certbound.pki.events`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable
from typing import Any, BinaryIO

import click
from rich.console import Console
from rich.text import Text

from certbound.cli.main import EXIT_FAILED, EXIT_OK, Context, pass_context
from certbound.cli.output import fail, make_console, print_json
from certbound.clock import SystemClock, format_rfc3339
from certbound.errors import CertboundError
from certbound.pki import events
from certbound.pki.certificate import CertificateInfo
from certbound.pki.revocation import RevocationChecker
from certbound.pki.revocation_policy import (
    DEFAULT_POLICY,
    MAX_STALENESS_SECONDS,
    MAX_TIMEOUT_SECONDS,
    Mode,
    RevocationPolicy,
    check_url,
)
from certbound.pki.truststore import MAX_NAME_LENGTH, StoredCA, TrustStore, UploadResult
from certbound.syslog.events import Event

_FIELDS = (
    ("issuer", "issuer_dn"),
    ("serial", "serial_number"),
    ("not before", "not_before"),
    ("not after", "not_after"),
    ("sha256", "sha256_fingerprint"),
    ("spki sha256", "spki_sha256"),
)


def _store(ctx: Context) -> TrustStore:
    return TrustStore(ctx.database(), SystemClock(), ctx.settings.ca_expiry_warning_days)


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


def _seconds(value: float) -> str:
    return f"{value:g} s"


def _print_revocation(console: Console, policy: RevocationPolicy) -> None:
    fail = "fail open" if policy.fail_open else "fail closed"
    console.print(
        Text.assemble("  ", (f"{'revocation':<14}", "bold"), f"{policy.mode.value}, {fail}")
    )
    lines = (
        ("crl url", policy.crl_url or "each certificate's CRL distribution points"),
        ("ocsp url", policy.ocsp_url or "each certificate's AIA (OCSP)"),
        ("staleness", f"{_seconds(policy.max_staleness.total_seconds())} past nextUpdate"),
        ("timeout", _seconds(policy.timeout)),
    )
    for label, value in lines:
        console.print(Text.assemble("    ", (f"{label:<12}", "dim"), value))


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


def _url_check(*, allow_file: bool) -> Callable[..., str | None]:
    """A callback refusing a URL the policy would refuse ('' passes: it clears)."""

    def check(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
        if value:
            try:
                check_url(value, "it", allow_file=allow_file)
            except ValueError as exc:
                raise click.BadParameter(str(exc)) from exc
        return value

    return check


_REVOCATION_OPTIONS = (
    click.option(
        "--revocation-mode",
        type=click.Choice([mode.value for mode in Mode]),
        help=f"How revocation is checked (default {DEFAULT_POLICY.mode.value}).",
    ),
    click.option(
        "--fail-open/--fail-closed",
        "fail_open",
        default=None,
        help="Allow, or refuse (default), a device whose revocation status cannot be had.",
    ),
    click.option(
        "--crl-url",
        metavar="URL",
        callback=_url_check(allow_file=True),
        help="CRL to use (http, https or file URL) instead of the certificates' CRL "
        "distribution points; '' goes back to those.",
    ),
    click.option(
        "--ocsp-url",
        metavar="URL",
        callback=_url_check(allow_file=False),
        help="OCSP responder to ask instead of the certificates' AIA; '' goes back to it.",
    ),
    click.option(
        "--max-staleness",
        metavar="SECONDS",
        type=click.IntRange(min=0, max=MAX_STALENESS_SECONDS),
        help="How long past its nextUpdate a CRL is still used (default "
        f"{int(DEFAULT_POLICY.max_staleness.total_seconds())}).",
    ),
    click.option(
        "--revocation-timeout",
        metavar="SECONDS",
        type=click.FloatRange(min=0, max=MAX_TIMEOUT_SECONDS, min_open=True),
        help="Longest a device's check may take, all CRL downloads and OCSP requests "
        f"together (default {DEFAULT_POLICY.timeout:g}).",
    ),
)


def _revocation_options(command: Callable[..., None]) -> Callable[..., None]:
    for option in reversed(_REVOCATION_OPTIONS):
        command = option(command)
    return command


# policy field -> its key in RevocationPolicy.to_dict()
_KEYS = {
    "mode": "mode",
    "fail_open": "failMode",
    "crl_url": "crlUrl",
    "ocsp_url": "ocspUrl",
    "max_staleness": "maxStalenessSeconds",
    "timeout": "timeoutSeconds",
}


def _changes(options: dict[str, Any]) -> dict[str, Any]:
    """The policy fields the revocation options set (those not given are left out)."""
    changes: dict[str, Any] = {}
    if options["revocation_mode"] is not None:
        changes["mode"] = Mode(options["revocation_mode"])
    if options["fail_open"] is not None:
        changes["fail_open"] = options["fail_open"]
    for name in ("crl_url", "ocsp_url"):
        if options[name] is not None:
            changes[name] = options[name] or None
    if options["max_staleness"] is not None:
        changes["max_staleness"] = dt.timedelta(seconds=options["max_staleness"])
    if options["revocation_timeout"] is not None:
        changes["timeout"] = options["revocation_timeout"]
    return changes


def _apply(policy: RevocationPolicy, changes: dict[str, Any]) -> RevocationPolicy:
    try:
        return policy.replace(**changes)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc


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
@_revocation_options
@_json_option
@pass_context
def add(
    ctx: Context,
    /,
    file: BinaryIO,
    name: str | None,
    allow_same_subject: bool,
    as_json: bool,
    **revocation: Any,
) -> None:
    """Upload a CA chain: a PEM bundle (intermediate first, then root) or a DER file.

    FILE may be - for standard input. Nothing is stored when any certificate is rejected.
    The revocation options set how its devices' certificates are checked (default: the
    CRLs their certificates name, failing closed; see docs/config.md).
    """
    changes = _changes(revocation)
    policy = _apply(DEFAULT_POLICY, changes)
    data = file.read()
    filename = getattr(file, "name", None)
    try:
        result = _store(ctx).add(
            data,
            name,
            allow_same_subject=allow_same_subject,
            revocation=policy if changes else None,
        )
    except CertboundError as exc:
        ctx.recorder().record(events.ca_rejected(exc, filename))
        fail(exc, as_json)
    _record_added(ctx, result, filename, policy)
    if as_json:
        print_json({**result.to_dict(), "revocation": policy.to_dict()})
        return
    _print_added(result, policy, ctx.settings.ca_expiry_warning_days)


def _record_added(
    ctx: Context, result: UploadResult, filename: str | None, policy: RevocationPolicy
) -> None:
    """The upload's event (with the CA's revocation settings) and, when its certificates
    expire soon, the warning (one transaction)."""
    recorder = ctx.recorder()
    event = events.ca_added(result, filename=filename)
    debug = {**event.debug_data, "revocation": policy.to_dict()}
    added = recorder.record(dataclasses.replace(event, debug_data=debug))
    warning = events.ca_expiring(
        result, result.created_at, ctx.settings.ca_expiry_warning_days, trigger="upload"
    )
    if warning is not None:
        recorder.record(dataclasses.replace(warning, transaction_id=added.uuid))


def _warn_expiring(ctx: Context, cas: list[StoredCA]) -> None:
    """``pki.ca.expiration.warn`` for each listed CA expiring soon, unless the log already
    has one for it from today (UTC)."""
    now = SystemClock().now()
    days = ctx.settings.ca_expiry_warning_days
    for stored in cas:
        warning = events.ca_expiring(stored, now, days, trigger="list")
        if warning is None:
            continue
        if not events.expiry_warned(ctx.database(), stored.id, events.start_of_day(now)):
            ctx.recorder().record(warning)


def _print_added(result: UploadResult, policy: RevocationPolicy, warning_days: int) -> None:
    console = make_console()
    console.print(
        Text.assemble(("stored ", "bold green"), f"(trust-store generation {result.generation})")
    )
    _print_ca(console, result, warning_days)
    _print_revocation(console, policy)
    _print_notices(console, result)
    if policy.mode is not Mode.OFF and not policy.fail_open and policy.crl_url is None:
        console.print(
            "hint: revocation fails closed: a device certificate without a CRL distribution "
            "point (or OCSP URL, in an OCSP mode) is refused with REVOCATION_UNAVAILABLE; set "
            "--crl-url, --revocation-mode off or --fail-open with `certbound ca update` if "
            "this CA's devices carry none",
            highlight=False,
        )


@ca.command("list")
@_json_option
@pass_context
def list_(ctx: Context, as_json: bool) -> None:
    """List the stored CA chains, oldest first."""
    store = _store(ctx)
    cas = store.list()
    _warn_expiring(ctx, cas)
    if as_json:
        print_json({"generation": store.generation(), "cas": [c.to_dict() for c in cas]})
        return
    console = make_console()
    if not cas:
        console.print("the trust store is empty; add a CA chain with `certbound ca add FILE`")
    for stored in cas:
        _print_ca(console, stored, ctx.settings.ca_expiry_warning_days)


@ca.command("show")
@click.argument("ca_id", metavar="ID")
@_json_option
@pass_context
def show(ctx: Context, ca_id: str, as_json: bool) -> None:
    """Show one CA chain: every certificate, its revocation settings and the notices
    from its upload."""
    store = _store(ctx)
    try:
        stored = store.get(ca_id)
        policy = store.revocation(ca_id)
    except CertboundError as exc:
        fail(exc, as_json)
    if as_json:
        print_json({**stored.to_dict(), "revocation": policy.to_dict()})
        return
    console = make_console()
    _print_ca(console, stored, ctx.settings.ca_expiry_warning_days)
    _print_revocation(console, policy)
    _print_notices(console, stored)


@ca.command("update")
@click.argument("ca_id", metavar="ID")
@_revocation_options
@_json_option
@pass_context
def update(ctx: Context, /, ca_id: str, as_json: bool, **revocation: Any) -> None:
    """Change a CA's revocation settings; options not given keep their value."""
    changes = _changes(revocation)
    if not changes:
        raise click.UsageError("nothing to change: give at least one revocation option")
    store = _store(ctx)
    try:
        stored = store.get(ca_id)
        after = _apply(store.revocation(ca_id), changes)
        before = store.set_revocation(ca_id, after)
    except CertboundError as exc:
        ctx.recorder().record(_update_failed(exc, ca_id, changes))
        fail(exc, as_json)
    changed = events.changed_settings(before, after)
    ctx.recorder().record(events.ca_updated(stored, before, after))
    if as_json:
        body = {"id": stored.id, "changed": changed, "previous": before.to_dict()}
        print_json({**body, "revocation": after.to_dict()})
        return
    console = make_console()
    what = ", ".join(changed) if changed else "nothing (the settings were already so)"
    console.print(Text.assemble(("updated ", "bold"), stored.id, f"  {stored.name}: {what}"))
    _print_revocation(console, after)


def _update_failed(exc: CertboundError, ca_id: str, changes: dict[str, Any]) -> Event:
    settings = _apply(DEFAULT_POLICY, changes).to_dict()
    requested = {_KEYS[name]: settings[_KEYS[name]] for name in changes}
    return events.ca_update_failed(exc, ca_id, requested)


@ca.command("remove")
@click.argument("ca_id", metavar="ID")
@_json_option
@pass_context
def remove(ctx: Context, ca_id: str, as_json: bool) -> None:
    """Remove a CA chain; devices it issued stop validating."""
    try:
        removed = _store(ctx).remove(ca_id)
    except CertboundError as exc:
        ctx.recorder().record(events.ca_remove_failed(exc, ca_id))
        fail(exc, as_json)
    ctx.recorder().record(events.ca_removed(removed))
    if as_json:
        print_json({"removed": removed.to_dict()})
        return
    make_console().print(Text.assemble(("removed ", "bold"), removed.id, f"  {removed.name}"))


@ca.command("health")
@click.argument("ca_id", metavar="ID", required=False)
@_json_option
@pass_context
def health(ctx: Context, ca_id: str | None, as_json: bool) -> None:
    """Probe each CA's revocation sources now (or only CA ID's): CRL and OCSP URLs,
    reachability, latency, size, thisUpdate/nextUpdate, entries, cache hits (this process
    and the fleet), and what the fleet learned of each OCSP responder.

    Exit 0 when every URL probed answered usably, 1 when one did not, 2 for an unknown ID.
    """
    store = _store(ctx)
    try:
        cas = [store.get(ca_id)] if ca_id else store.list()
        reports = _probe_all(ctx, store, cas)
    except CertboundError as exc:
        fail(exc, as_json)
    healthy = all(_healthy(report) for report in reports)
    if as_json:
        print_json({"healthy": healthy, "cas": reports})
    else:
        _print_health(reports)
    raise click.exceptions.Exit(EXIT_OK if healthy else EXIT_FAILED)


def _probe_all(ctx: Context, store: TrustStore, cas: list[StoredCA]) -> list[dict[str, Any]]:
    checker = RevocationChecker(ctx.database(), SystemClock(), recorder=ctx.recorder())
    try:
        return [_probe(checker, store, stored) for stored in cas]
    finally:
        checker.close()


def _probe(checker: RevocationChecker, store: TrustStore, stored: StoredCA) -> dict[str, Any]:
    found = checker.health(store.chain(stored.id), store.revocation(stored.id))
    return {"id": stored.id, "name": stored.name, **found}


_KINDS = ("crl", "ocsp")
_USES = {  # mode -> the sources it asks
    Mode.OFF.value: (),
    Mode.CRL.value: ("crl",),
    Mode.OCSP.value: ("ocsp",),
    Mode.OCSP_THEN_CRL.value: ("ocsp", "crl"),
}


def _healthy(report: dict[str, Any]) -> bool:
    """Every URL of a source the CA's mode uses answered usably."""
    used = _USES[report["policy"]["mode"]]
    probes = [probe for source in used for probe in report[source]]
    return all(probe["reachable"] and not probe["error"] for probe in probes)


def _crl_line(probe: dict[str, Any]) -> Text:
    latency = f"{probe.get('latencyMs')} ms"
    if not probe["reachable"]:
        return Text.assemble(("unreachable", "bold red"), f" after {latency}: {probe['error']}")
    got = Text.assemble(("reachable", "green"), f", {latency}, {probe.get('size')} bytes")
    if probe["error"]:
        return got.append_text(Text.assemble("; ", ("unusable", "bold red"), f": {probe['error']}"))
    return got.append(
        f"; thisUpdate {probe.get('thisUpdate')}, nextUpdate {probe.get('nextUpdate') or '-'}, "
        f"entries {probe.get('entryCount')}, CRL number {probe.get('crlNumber') or '-'}"
    )


def _table_line(url: str, row: dict[str, Any] | None) -> str:
    if url.startswith("file:"):
        return "read from disk by each instance (file: CRLs are not shared)"
    if not row:
        return "not in the shared cache"
    held = (
        f"held: nextUpdate {row['nextUpdate'] or '-'}, fetched {row['fetchedAt']}"
        if row["held"]
        else "nothing held"
    )
    error = f"; last error: {row['lastError']}" if row.get("lastError") else ""
    return f"shared cache {held}{error}"


def _ocsp_line(probe: dict[str, Any]) -> Text:
    latency = f"{probe.get('latencyMs')} ms"
    if not probe["reachable"]:
        return Text.assemble(("unreachable", "bold red"), f" after {latency}: {probe['error']}")
    return Text.assemble(
        ("reachable", "green"), f", {latency}, response status {probe.get('responseStatus')}"
    )


def _responder_line(row: dict[str, Any] | None) -> str:
    if not row:
        return "not asked by any instance yet"
    latency = row["lastLatencyMs"]
    shown = "-" if latency is None else f"{latency} ms"
    error = ""
    if row["lastError"]:
        error = f"; last error {row['lastErrorAt']}: {row['lastError']}"
    return (
        f"fleet: {row['requests']} requests, last answered {row['lastOkAt'] or '-'}, "
        f"last latency {shown}{error}"
    )


def _print_probes(console: Console, report: dict[str, Any]) -> None:
    used = _USES[report["policy"]["mode"]]
    unused = {source: "" if source in used else " (not used in this mode)" for source in _KINDS}
    for probe in report["crl"]:
        line = Text.assemble("  CRL   ", probe["url"], "  ", _crl_line(probe), unused["crl"])
        console.print(line)
        console.print(f"        {_table_line(probe['url'], probe.get('table'))}")
    if not report["crl"]:
        console.print("  CRL   no URL known yet (none set, none seen by a check)")
    for probe in report["ocsp"]:
        console.print(
            Text.assemble("  OCSP  ", probe["url"], "  ", _ocsp_line(probe), unused["ocsp"])
        )
        console.print(f"        {_responder_line(probe.get('table'))}")
    if not report["ocsp"]:
        console.print("  OCSP  no URL known (none set, none asked by any instance)")


def _print_health(reports: list[dict[str, Any]]) -> None:
    console = make_console()
    if not reports:
        console.print("the trust store is empty; add a CA chain with `certbound ca add FILE`")
    for report in reports:
        console.print(Text.assemble((report["id"], "bold cyan"), f"  {report['name']}"))
        policy = report["policy"]
        console.print(f"  revocation  {policy['mode']}, fail {policy['failMode']}")
        _print_probes(console, report)
        console.print(f"  cache {_cache_line(report['cache'])}")
        console.print(f"  cache {_fleet_cache_line(report['cache'])}")


def _cache_line(cache: dict[str, Any]) -> str:
    rate = cache.get("hitRate")
    shown = "-" if rate is None else f"{rate:.0%}"
    return (
        f"(this process) hits {cache['hits']}, misses {cache['misses']}, hit rate {shown}, "
        f"CRL downloads {cache['fetches']}, fail-open allows {cache['failOpenAllows']}"
    )


def _fleet_cache_line(cache: dict[str, Any]) -> str:
    if cache.get("fleetHits") is None:
        return "(fleet) unknown"
    rate = cache.get("fleetHitRate")
    shown = "-" if rate is None else f"{rate:.0%}"
    return f"(fleet) hits {cache['fleetHits']}, misses {cache['fleetMisses']}, hit rate {shown}"
