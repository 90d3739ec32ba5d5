"""Server CPU per certificate-bound access token and per resource-server check: Certbound's
token endpoint and ``certbound.rs``, against node-oidc-provider.

Run from the repository root (needs ``../shared/bench`` beside the repository, node >= 20 with
npm and the openssl CLI; exit status 2 when one is missing):

    .venv/bin/python bench/token_bench.py                   # 5 s x 3 reps per row
    .venv/bin/python bench/token_bench.py --duration 10 --check

One run, one machine, one set of certificates (the shared harness's throw-away PKI: ECDSA
P-256 server certificate, the device ``CN=ec-device-001,O=Anchor Devices`` presents leaf +
intermediate), one load generator (the harness's ``loadgen.mjs``: node https opening a new
TCP + TLS connection per request, or an undici keep-alive pool), 32 concurrent requests:

1. node-oidc-provider 9, the harness's anchor C (``bench.py --only
   C-token-new-c32,C-token-ka-c32,C-rs-ka-c32``): tls_client_auth, client_credentials, ES256
   JWT access tokens bound with ``cnf.x5t#S256``, and its ``GET /rs`` (JWT verify + the
   thumbprint of the presented certificate);
2. ``certbound serve`` on its built-in TLS listener, SQLite, System Log on: the harness's EC
   chain uploaded (``ca add --revocation-mode off``), the client registered with ``app create
   "Bench client" --client-id ec-device-001 --auth-method tls_client_auth --subject-dn ...
   --ca-pin-from-store CA``, ``POST /oauth2/v1/token`` with
   ``grant_type=client_credentials&client_id=ec-device-001``, a new connection per request,
   then keep-alive. One request is checked first (200, an access token whose
   ``cnf.x5t#S256`` is the device certificate's thumbprint);
3. a resource server over HTTP: a Starlette app behind :class:`certbound.rs.BoundTokenMiddleware`
   (ES256, binding required, the JWKS fetched once from Certbound's ``/oauth2/v1/keys``) on
   :class:`certbound.intake.tls.TlsListener` in its own process (``--serve-rs``), ``GET /rs``
   with ``Authorization: Bearer`` and a token from step 2, keep-alive, the same certificate;
4. in process: :meth:`certbound.rs.AccessTokenVerifier.verify` of that token with the device
   certificate, ``bench/rs_bench.py``'s measurement (CPU per check, median of rounds).

The table gives server CPU milliseconds per operation (``srv ms/op``, the harness's figure:
the server's process tree over the measured window per successful response), the ratio to
oidc-provider in the same mode, and TCP connections per request: the kernel's (``Tcp
PassiveOpens`` / completed requests, every listener on the machine counted) and the
server's own (oidc-provider's connection counter; for Certbound, the distinct client
``ip:port`` among the window's ``app.oauth2.token.grant`` events). After the run it counts
Certbound's grant events: all ``SUCCESS``, one per request in every measured window.
Targets: Certbound at or below oidc-provider per token in both modes, the in-process check
<= 0.1 ms; ``--check`` exits 1 when one is missed or a row is invalid (a new-connection row
not at 1.0 connection per request, a keep-alive row reconnecting, errors, events missing).
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import http.client
import json
import shutil
import signal
import ssl
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from types import ModuleType
from typing import Any

from cryptography import x509

from certbound.clock import SystemClock
from certbound.pki.certificate import der, x5t_s256
from certbound.rs import AccessToken, AccessTokenVerifier, BoundTokenMiddleware, StaticJwks
from rs_bench import _measure as measure_checks
from tls_bench import (
    CERTBOUND,
    SHARED_BENCH,
    certbound_cli,
    free_port,
    harness,
    harness_module,
    interrupt,
    need_tools,
    prepare,
    started,
    tls_server_config,
)

CONCURRENCY = 32  # what the harness's C-*-c32 rows use
CLIENT_ID = "ec-device-001"
SUBJECT_DN = "CN=ec-device-001,O=Anchor Devices"
TOKEN_PATH = "/oauth2/v1/token"
TOKEN_BODY = f"grant_type=client_credentials&client_id={CLIENT_ID}"
RS_PATH = "/rs"
GRANT_EVENT = "app.oauth2.token.grant"
PEER = "$.deviceTrust.intake.peer"
RS_TARGET_MS = 0.1
ONE_CONNECTION_PER_REQUEST = (0.95, 1.05)
KEEPALIVE_MAX_CONN_PER_REQUEST = 0.05
EVENTS_PER_REQUEST = (0.97, 1.03)  # the probe reads its clock a few ms after each mark
OIDC_ROWS = {"token-new": "C-token-new-c32", "token-ka": "C-token-ka-c32", "rs-ka": "C-rs-ka-c32"}
OPERATIONS = {
    "token-new": "token, new mTLS connection per request",
    "token-ka": "token, keep-alive",
    "rs-ka": "RS check over HTTP (JWT + cnf), keep-alive",
}
CERTBOUND_SERVERS = {
    "token-new": "certbound serve, built-in TLS, System Log on",
    "token-ka": "certbound serve, built-in TLS, System Log on",
    "rs-ka": "BoundTokenMiddleware on TlsListener",
}
OIDC_SERVER = "node-oidc-provider 9"

Row = dict[str, Any]
Rows = dict[str, Row]  # operation -> the harness's row


# --- the resource server under test (``--serve-rs``) ----------------------------------------


def resource_server(verifier: AccessTokenVerifier) -> BoundTokenMiddleware:
    """``GET /rs`` behind the middleware: what a resource server built on the SDK looks like."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    async def resource(request: Request) -> Response:
        access: AccessToken = request.state.access_token
        body = {"ok": True, "sub": access.subject, "scope": " ".join(access.scope)}
        return JSONResponse(body)

    return BoundTokenMiddleware(Starlette(routes=[Route(RS_PATH, resource)]), verifier)


def rs_verifier(plan: Mapping[str, Any]) -> AccessTokenVerifier:
    """Certbound's tokens for ``plan["audience"]``: ES256 only, a binding required."""
    return AccessTokenVerifier(
        plan["issuer"],
        plan["audience"],
        jwks=StaticJwks(plan["jwks"]),
        algorithms=("ES256",),
        require_binding=True,
    )


def serve_rs(port: int, pki: Path, plan_file: Path) -> None:
    """Serve the resource server on 127.0.0.1:port until SIGTERM (the bench's RS process)."""
    from certbound.intake.tls import TlsListener, TlsListenerConfig, run

    config = TlsListenerConfig(
        "127.0.0.1",
        port,
        pki / "server.pem",
        pki / "server.key",
        keepalive_timeout=60.0,
        header_timeout=60.0,
        max_connections=4096,
    )
    app = resource_server(rs_verifier(json.loads(plan_file.read_text())))
    run(TlsListener(app, config, lifespan="off"))


# --- one request as the device ---------------------------------------------------------------


def device_der(pki: Path, device: str = "device-001") -> bytes:
    """DER of the EC device's leaf certificate."""
    return der(x509.load_pem_x509_certificate((pki / "ec" / f"{device}.pem").read_bytes()))


def request_json(
    port: int,
    pki: Path,
    method: str,
    path: str,
    *,
    body: str | None = None,
    headers: Mapping[str, str] | None = None,
    device: str = "device-001",
) -> tuple[int, Any]:
    """One request over a new mTLS connection as the EC ``device``: status, decoded JSON."""
    context = ssl.create_default_context(cafile=str(pki / "roots.pem"))
    context.load_cert_chain(pki / "ec" / f"{device}-chain.pem", pki / "ec" / f"{device}.key")
    connection = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=10)
    sent = dict(headers or {})
    if body is not None:
        sent["content-type"] = "application/x-www-form-urlencoded"
    try:
        connection.request(method, path, body, sent)
        response = connection.getresponse()
        data = response.read()
    finally:
        connection.close()
    return response.status, json.loads(data) if data else None


def claims_of(token: str) -> dict[str, Any]:
    """The payload of a compact JWS, unverified (the sanity check reads it)."""
    payload = token.split(".")[1]
    padded = payload + "=" * (-len(payload) % 4)
    claims: dict[str, Any] = json.loads(base64.urlsafe_b64decode(padded))
    return claims


@dataclass(frozen=True)
class Issued:
    """A token from Certbound's endpoint and what a resource server needs to verify it."""

    token: str
    issuer: str
    audience: str
    jwks: dict[str, Any]

    def plan(self) -> dict[str, Any]:
        return {"issuer": self.issuer, "audience": self.audience, "jwks": self.jwks}


def issue_once(port: int, pki: Path) -> Issued:
    """One token request, checked: 200 and ``cnf.x5t#S256`` = the device certificate's
    thumbprint (RuntimeError otherwise); with the issuer and JWKS from discovery."""
    status, answer = request_json(port, pki, "POST", TOKEN_PATH, body=TOKEN_BODY)
    if status != 200 or not isinstance(answer, dict) or "access_token" not in answer:
        raise RuntimeError(f"the token endpoint answered {status}: {answer}")
    claims = claims_of(answer["access_token"])
    expected, bound = x5t_s256(device_der(pki)), claims.get("cnf", {}).get("x5t#S256")
    if bound != expected:
        raise RuntimeError(f"the token is bound to {bound!r}, not the device's {expected}")
    _, metadata = request_json(port, pki, "GET", "/.well-known/oauth-authorization-server")
    _, jwks = request_json(port, pki, "GET", "/oauth2/v1/keys")
    if claims.get("iss") != metadata["issuer"] or not isinstance(claims.get("aud"), str):
        raise RuntimeError(f"unexpected iss/aud in {claims} (issuer {metadata['issuer']})")
    print(
        f"token_bench: Certbound sanity: 200, token_type {answer.get('token_type')}, "
        f"aud {claims['aud']}, cnf.x5t#S256 matches the device certificate ({expected})",
        flush=True,
    )
    return Issued(answer["access_token"], metadata["issuer"], claims["aud"], jwks)


# --- loads, through the harness's own generator and CPU sampling -----------------------------


@dataclass(frozen=True)
class Load:
    """One row's load: ``concurrency`` requests at once for ``duration`` s, ``reps`` times."""

    node_dir: Path
    pki: Path
    duration: int
    reps: int
    concurrency: int = CONCURRENCY


def run_row(
    bench: ModuleType,
    load: Load,
    server_pid: int,
    url: str,
    row: str,
    *,
    method: str = "GET",
    body: str | None = None,
    headers: Sequence[str] = (),
    probe: Callable[[], Any] | None = None,
) -> Row:
    """The harness's ``run_loadgen`` ``reps`` times, recorded as one row (``bench.record``)."""
    keepalive = row.endswith("-ka")

    def once() -> dict[str, Any]:
        result: dict[str, Any] = bench.run_loadgen(
            str(load.node_dir), server_pid, url, str(load.pki), "ec",
            conc=load.concurrency, keepalive=keepalive, duration=load.duration,
            method=method, body=body, headers=list(headers),
            probe=probe() if probe else None,
        )  # fmt: skip
        return result

    runs = bench.reps_of(once, load.reps)
    gen = "node-undici" if keepalive else "node-https"
    recorded: Row = bench.record("Certbound", OPERATIONS[row], gen, load.concurrency, runs, rid=row)
    return recorded


class GrantEvents:
    """A probe for the harness (``begin()`` at MEASURE_START, ``end()`` at MEASURE_END): the
    SUCCESS grant events Certbound published in the window (``srv_reqs``) and the distinct
    client ``ip:port`` they name (``srv_conns``: the server's own count of connections).

    The window is the wall-clock time between the two calls, compared with each event's
    ``published`` (stamped when the endpoint records it, just before it answers); ``end()``
    waits until the System Log has written the window's last events."""

    SETTLE_S = 0.3
    SETTLE_LIMIT_S = 15.0

    def __init__(self, database: Any) -> None:
        self._database = database
        self._clock = SystemClock()
        self._since = self._clock.now()

    def begin(self) -> None:
        self._since = self._clock.now()

    def _count(self, until: dt.datetime) -> tuple[int, int]:
        from sqlalchemy import func, select

        from certbound.storage.models import LogEvent

        peer = func.json_extract(LogEvent.body, PEER)
        query = select(func.count(), func.count(func.distinct(peer))).where(
            LogEvent.event_type == GRANT_EVENT,
            LogEvent.published >= self._since,
            LogEvent.published < until,
            LogEvent.outcome_result == "SUCCESS",
        )
        with self._database.session() as session:
            events, peers = session.execute(query).one()
        return int(events), int(peers)

    def end(self) -> dict[str, int]:
        until = self._clock.now()
        counted = self._count(until)
        deadline = time.monotonic() + self.SETTLE_LIMIT_S
        while time.monotonic() < deadline:  # until the writer has caught up
            time.sleep(self.SETTLE_S)
            again = self._count(until)
            if again == counted:
                break
            counted = again
        return {"srv_reqs": counted[0], "srv_conns": counted[1]}


# --- the three servers -----------------------------------------------------------------------


def oidc_rows(work: Path, duration: int, reps: int) -> Rows:
    """The harness's anchor C rows, in its own run of ``bench.py`` (it starts the server)."""
    only = ",".join(OIDC_ROWS.values())
    budget = len(OIDC_ROWS) * reps * (duration + 40) + 120
    harness(work, "--only", only, "--duration", str(duration), "--reps", str(reps), timeout=budget)
    found = json.loads((work / "results.json").read_text())["rows"]
    by_id = {row["id"]: row for row in found}
    return {key: by_id[rid] for key, rid in OIDC_ROWS.items()}


def register_client(config: Path) -> str:
    """The device's client: tls_client_auth by subject DN, pinned to the uploaded CA."""
    cas = json.loads(certbound_cli(config, "ca", "list", "--json"))["cas"]
    ca_id = next(ca["id"] for ca in cas if ca["name"] == "bench-ec")
    created = certbound_cli(
        config, "app", "create", "Bench client", "--client-id", CLIENT_ID,
        "--auth-method", "tls_client_auth", "--subject-dn", SUBJECT_DN,
        "--ca-pin-from-store", ca_id, "--json",
    )  # fmt: skip
    app_id: str = json.loads(created)["id"]
    return app_id


def certbound_rows(work: Path, bench: ModuleType, load: Load) -> tuple[Rows, Issued, Path]:
    """``certbound serve`` on its TLS listener: the token rows, the token for the RS rows and
    the config (its database holds the events)."""
    from certbound.storage.database import Database

    pki = work / "pki"
    config, root, port = tls_server_config(work, "certbound-token")
    register_client(config)
    database = Database(f"sqlite:///{root / 'certbound.db'}")
    argv = [*CERTBOUND, "--config", str(config), "serve"]
    try:
        with started(argv, root / "serve.log", (port,)) as pid:
            issued = issue_once(port, pki)
            url = f"https://127.0.0.1:{port}{TOKEN_PATH}"
            rows: Rows = {}
            for row in ("token-new", "token-ka"):
                probe = partial(GrantEvents, database)
                rows[row] = run_row(
                    bench, load, pid, url, row, method="POST", body=TOKEN_BODY, probe=probe
                )
    finally:
        database.dispose()
    return rows, issued, config


def check_rs(port: int, pki: Path, token: str) -> str:
    """The RS answers 200 to the token with its certificate, 401 with another certificate
    (binding) and without a token; a one-line summary (RuntimeError otherwise)."""
    bearer = {"authorization": f"Bearer {token}"}
    seen = (
        request_json(port, pki, "GET", RS_PATH, headers=bearer),
        request_json(port, pki, "GET", RS_PATH, headers=bearer, device="device-002"),
        request_json(port, pki, "GET", RS_PATH),
    )
    (ok, body), (other, refusal), (bare, _) = seen
    if (ok, other, bare) != (200, 401, 401) or refusal.get("reason") != "TOKEN_BINDING_MISMATCH":
        raise RuntimeError(f"the resource server answered {seen}")
    return (
        f"200 {body} with device-001's certificate; 401 {refusal['reason']} with "
        "device-002's; 401 without a token"
    )


def rs_row(work: Path, bench: ModuleType, load: Load, issued: Issued) -> Row:
    """The resource server (``--serve-rs``) in its own process, keep-alive ``GET /rs``."""
    pki, port = work / "pki", free_port()
    plan = work / "logs" / "rs-plan.json"
    plan.write_text(json.dumps(issued.plan()))
    argv = [sys.executable, __file__, "--serve-rs", str(port), "--pki", str(pki)]
    with started([*argv, "--plan", str(plan)], work / "logs" / "rs.log", (port,)) as pid:
        print(f"token_bench: RS sanity: {check_rs(port, pki, issued.token)}", flush=True)
        headers = [f"authorization: Bearer {issued.token}"]
        return run_row(
            bench, load, pid, f"https://127.0.0.1:{port}{RS_PATH}", "rs-ka", headers=headers
        )


def rs_in_process(issued: Issued, pki: Path, checks: int, rounds: int) -> tuple[float, float]:
    """CPU and wall ms per :meth:`AccessTokenVerifier.verify` (rs_bench's measurement)."""
    return measure_checks(rs_verifier(issued.plan()), issued.token, device_der(pki), checks, rounds)


# --- the System Log ---------------------------------------------------------------------------


@dataclass
class GrantTally:
    """Certbound's ``app.oauth2.token.grant`` events against the requests sent."""

    outcomes: dict[str, int]
    windows: list[tuple[int, int]]  # per measured window: (SUCCESS events, requests)
    others: dict[str, int] = field(default_factory=dict)  # the other event types written
    example: dict[str, Any] = field(default_factory=dict)

    @property
    def events(self) -> int:
        return sum(self.outcomes.values())

    def problems(self) -> list[str]:
        low, high = EVENTS_PER_REQUEST
        found = []
        if self.outcomes.get("SUCCESS", 0) != self.events or not self.events:
            found.append(f"grant events not all SUCCESS: {self.outcomes}")
        measured = sum(requests for _, requests in self.windows)
        if self.events < measured + 1:  # + the sanity request
            found.append(f"{self.events} grant events for {measured} measured requests")
        for events, requests in self.windows:
            if not requests or not low <= events / requests <= high:
                found.append(f"a window held {events} grant events for {requests} requests")
        return found


def tally_grants(config: Path, rows: Rows) -> GrantTally:
    """Count the grant events (the server has stopped) and read the latest one through
    ``certbound log --json``."""
    from sqlalchemy import func, select

    from certbound.storage.database import Database
    from certbound.storage.models import LogEvent

    database = Database(f"sqlite:///{config.parent / 'certbound.db'}")
    query = select(LogEvent.event_type, LogEvent.outcome_result, func.count()).group_by(
        LogEvent.event_type, LogEvent.outcome_result
    )
    try:
        with database.session() as session:
            counted = [
                (str(kind), str(result), int(n)) for kind, result, n in session.execute(query)
            ]
    finally:
        database.dispose()
    windows = [
        (int(run.get("srv_reqs") or 0), int(run["ok"] + run["errors"]))
        for row in rows.values()
        for run in row["runs"]
    ]
    text = certbound_cli(
        config, "log", "--json", "--limit", "1", "--filter", f'eventType eq "{GRANT_EVENT}"'
    )
    latest = [json.loads(line) for line in text.splitlines() if line.strip()]
    outcomes = {result: n for kind, result, n in counted if kind == GRANT_EVENT}
    others: Counter[str] = Counter()
    for kind, _, n in counted:
        if kind != GRANT_EVENT:
            others[kind] += n
    return GrantTally(outcomes, windows, dict(others), latest[0] if latest else {})


# --- the report -------------------------------------------------------------------------------


def _fmt(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _ratio(value: float | None, reference: float | None) -> str:
    return f"{value / reference:.2f}x" if value and reference else "-"


def print_table(oidc: Rows, certbound: Rows, in_process: tuple[float, float]) -> None:
    print()
    print(
        "| server | operation | c | srv ms/op | vs oidc-provider | rate/s | conn/req (kern) "
        "| conn/req (srv) | other CPU% | err |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for key, operation in OPERATIONS.items():
        reference = oidc[key]["srv_ms_op"]
        for server, row in ((OIDC_SERVER, oidc[key]), (CERTBOUND_SERVERS[key], certbound[key])):
            print(
                f"| {server} | {operation} | {row['c']} | {_fmt(row['srv_ms_op'], 3)} | "
                f"{_ratio(row['srv_ms_op'], reference)} | {_fmt(row['rate'], 0)} | "
                f"{_fmt(row['kern_conn_per_req'], 3)} | {_fmt(row['conn_per_req'], 3)} | "
                f"{_fmt(row['other_cpu'], 0)} | {row['errors']} |"
            )
    cpu, wall = in_process
    print(
        f"| certbound.rs AccessTokenVerifier.verify, in process | RS check (ES256, bound), "
        f"CPU ms/check (wall {wall:.4f}) | 1 | {cpu:.4f} | - | - | - | - | - | 0 |"
    )


def print_summary(oidc: Rows, certbound: Rows, in_process: tuple[float, float]) -> None:
    def line(label: str, key: str) -> str:
        mine, theirs = certbound[key]["srv_ms_op"], oidc[key]["srv_ms_op"]
        return (
            f"{label}: {_fmt(mine, 3)} ms vs oidc-provider {_fmt(theirs, 3)} ms "
            f"({_ratio(mine, theirs)})"
        )

    print()
    print(line("token keep-alive", "token-ka"))
    print(line("token new connection", "token-new"))
    print(f"RS check in-process: {in_process[0]:.4f} ms (target <= {RS_TARGET_MS})")
    print(line("RS over HTTP", "rs-ka"))


def print_events(tally: GrantTally) -> None:
    events = sum(events for events, _ in tally.windows)
    requests = sum(requests for _, requests in tally.windows)
    ratios = [events / requests for events, requests in tally.windows if requests]
    print()
    print(
        f"System Log: {tally.events} {GRANT_EVENT} events "
        f"({', '.join(f'{k} {v}' for k, v in sorted(tally.outcomes.items()))}); in the "
        f"measured windows {events} SUCCESS events for {requests} requests "
        f"({_fmt(events / requests if requests else None, 3)} per request; per window "
        f"{_fmt(min(ratios, default=None), 3)}-{_fmt(max(ratios, default=None), 3)}); the "
        "rest: 1 s warm-ups, the sanity request, in-flight requests at the windows' ends"
    )
    others = ", ".join(f"{kind} {n}" for kind, n in sorted(tally.others.items()))
    print(f"  other events in that System Log: {others or 'none'}")
    if tally.example:
        example = tally.example
        debug = example.get("debugContext", {}).get("debugData", {})
        print(
            f"  certbound log --json --limit 1: {example['eventType']} "
            f"{example['outcome']['result']}, actor {example['actor']['alternateId']}, "
            f"grant {debug.get('grantType')}, cnf {debug.get('cnf')}"
        )


def invalid_rows(oidc: Rows, certbound: Rows) -> list[str]:
    """Rows that did not measure what they claim: new-connection rows not at one connection
    per request (kernel and server counts), keep-alive rows reconnecting, errors."""
    low, high = ONE_CONNECTION_PER_REQUEST
    found = []
    for server, rows in (("oidc-provider", oidc), ("Certbound", certbound)):
        for key, row in rows.items():
            counts = (row["kern_conn_per_req"], row["conn_per_req"])
            if key.endswith("-new") and not all(c is not None and low <= c <= high for c in counts):
                found.append(f"{server} {key}: {counts} connections per request, not 1")
            kern = row["kern_conn_per_req"]
            if key.endswith("-ka") and (kern is None or kern > KEEPALIVE_MAX_CONN_PER_REQUEST):
                found.append(f"{server} {key}: {_fmt(kern, 3)} connections per request")
            if row["errors"] or not row["srv_ms_op"]:
                found.append(f"{server} {key}: {row['errors']} errors")
    return found


def missed_targets(oidc: Rows, certbound: Rows, in_process: tuple[float, float]) -> list[str]:
    missed = []
    for key in ("token-new", "token-ka"):
        mine, theirs = certbound[key]["srv_ms_op"], oidc[key]["srv_ms_op"]
        if mine is None or theirs is None or mine > theirs:
            missed.append(f"{key}: Certbound {_fmt(mine, 3)} ms > oidc-provider {_fmt(theirs, 3)}")
    if in_process[0] > RS_TARGET_MS:
        missed.append(f"RS check in process: {in_process[0]:.4f} ms > {RS_TARGET_MS} ms")
    return missed


def report(
    oidc: Rows, certbound: Rows, in_process: tuple[float, float], tally: GrantTally
) -> list[str]:
    """Print the table, the summary and the events; return what ``--check`` fails on."""
    print_table(oidc, certbound, in_process)
    print_summary(oidc, certbound, in_process)
    print_events(tally)
    missed = missed_targets(oidc, certbound, in_process) + invalid_rows(oidc, certbound)
    missed += tally.problems()
    print()
    print(
        "targets: Certbound token <= oidc-provider, new connection and keep-alive, System Log "
        f"on; RS check in process <= {RS_TARGET_MS} ms; rows valid (1.0 connection per request "
        "in new-connection rows, ~0 in keep-alive rows, no errors, one SUCCESS grant event per "
        "token request)"
    )
    for item in missed:
        print(f"MISSED: {item}")
    return missed


# --- main -------------------------------------------------------------------------------------


def measure(work: Path, duration: int, reps: int, checks: int, rounds: int) -> int:
    begun = time.monotonic()
    bench = harness_module()
    load = Load(work / "node", work / "pki", duration, reps)
    print("token_bench: oidc-provider (the harness's anchor C)", flush=True)
    oidc = oidc_rows(work, duration, reps)
    print("token_bench: certbound serve, token endpoint", flush=True)
    certbound, issued, config = certbound_rows(work, bench, load)
    tally = tally_grants(config, certbound)
    print("token_bench: resource server (BoundTokenMiddleware on TlsListener)", flush=True)
    certbound["rs-ka"] = rs_row(work, bench, load, issued)
    in_process = rs_in_process(issued, work / "pki", checks, rounds)
    missed = report(oidc, certbound, in_process, tally)
    print(f"\ntoken_bench took {time.monotonic() - begun:.0f} s")
    return len(missed)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=5, help="seconds per rep (max 60)")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--checks", type=int, default=3000, help="in-process checks per round")
    parser.add_argument("--rounds", type=int, default=5, help="in-process rounds")
    parser.add_argument("--work", type=Path, help="the harness's work dir, kept (default: temp)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary work dir")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--serve-rs", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--pki", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--plan", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_rs is not None:
        serve_rs(args.serve_rs, args.pki, args.plan)
        return 0
    if not (SHARED_BENCH / "bench.py").is_file():
        print(
            f"token_bench: the shared harness is absent: expected ../shared/bench beside the "
            f"repository ({SHARED_BENCH}); this benchmark drives it (oidc-provider, the load "
            "generator) and has no generator of its own",
            file=sys.stderr,
        )
        return 2
    missing = need_tools(("node", "npm", "openssl"))
    if missing:
        print(
            f"token_bench: missing tools: {missing} (see ../shared/bench/README.md)",
            file=sys.stderr,
        )
        return 2
    signal.signal(signal.SIGTERM, interrupt)
    duration, reps = max(1, min(args.duration, 60)), max(1, args.reps)
    checks, rounds = max(1, min(args.checks, 200_000)), max(1, min(args.rounds, 50))
    work = args.work or Path(tempfile.mkdtemp(prefix="certbound-token-bench-"))
    print(f"token_bench: work dir {work}; {duration} s x {reps} reps per row", flush=True)
    try:
        prepare(work)
        missed = measure(work, duration, reps, checks, rounds)
    finally:
        if args.work is None and not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"token_bench: harness output kept in {work}")
    return 1 if missed and args.check else 0


if __name__ == "__main__":
    sys.exit(main())
