"""The handshake check: what ``curl -v --cert`` shows, judged layer by layer.

:func:`check_handshake` connects to the server (``tcp``), runs the TLS handshake and judges
the server's certificate (``tls``), watches the client certificate being requested, sent
and accepted or refused with an alert (``client-certificate``), then asks Certbound for its
verdict on that very connection (``certbound``): the intake echo, or with ``token`` a
client-credentials token whose binding must be this certificate. Every layer is reported
PASS, FAIL or SKIPPED; an untrusted server certificate is reported and the check goes on
(never to report success), so the remaining layers are still diagnosed.

A pure library: it returns a :class:`~certbound.probe.report.HandshakeReport` and prints
nothing. Input errors were raised before, by :mod:`certbound.probe.inputs`.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlencode

from cryptography import x509

from certbound.clock import Clock, SystemClock
from certbound.errors import ReasonCode

from .alerts import Alert
from .http11 import HttpError, HttpResponse, exchange
from .inputs import ClientCredentials, ServerAnchors, Target
from .next_steps import next_steps
from .report import HandshakeReport, LayerName, LayerResult
from .server_trust import ServerTrust, certificate_facts, judge_server
from .session import Observation, SessionError, TlsSession, client_context
from .verdict import ECHO_PATH, TOKEN_PATH, echo_layer, token_layer

DEFAULT_CLIENT_ID = "quickstart-app"
DEFAULT_TIMEOUT = 10.0


@dataclass(frozen=True, slots=True)
class ProbeOptions:
    """What to check. ``timeout`` bounds each network step (connect, handshake, request)."""

    target: Target
    credentials: ClientCredentials
    anchors: ServerAnchors
    token: bool = False
    client_id: str = DEFAULT_CLIENT_ID
    timeout: float = DEFAULT_TIMEOUT


def check_handshake(options: ProbeOptions, clock: Clock | None = None) -> HandshakeReport:
    """Check every layer in order; the report passes only when every layer passed."""
    clock = clock or SystemClock()
    tcp, sock = _connect(options.target, options.timeout)
    if sock is None:
        skipped = _skipped("no TCP connection", LayerName.TLS, LayerName.CLIENT_CERTIFICATE)
        layers = (tcp, *skipped, _skipped_certbound("no TCP connection"))
    else:
        context = client_context(options.credentials)
        session = TlsSession(sock, context, options.target.server_name)
        try:
            layers = (tcp, *_over_tls(options, clock, session))
        finally:
            session.close()
    return HandshakeReport(options.target.url, layers, next_steps(layers, options))


def _skipped(why: str, *names: LayerName) -> tuple[LayerResult, ...]:
    return tuple(LayerResult.skipped(name, why) for name in names)


def _skipped_certbound(why: str) -> LayerResult:
    return LayerResult.skipped(LayerName.CERTBOUND, why)


def _elapsed_ms(start: float) -> float:
    return round((time.monotonic() - start) * 1000, 1)


# --- tcp ---------------------------------------------------------------------------------


def _connect(target: Target, timeout: float) -> tuple[LayerResult, socket.socket | None]:
    facts: dict[str, Any] = {"host": target.host, "port": target.port}
    start = time.monotonic()
    try:
        sock = socket.create_connection((target.host, target.port), timeout=timeout)
    except socket.gaierror as exc:
        detail = f"cannot resolve {target.host}: {exc.strerror}"
    except TimeoutError:
        detail = f"no TCP answer from {target.authority} within {timeout:g} s"
    except ConnectionRefusedError:
        detail = f"connection refused by {target.authority}: nothing listens on that port"
    except OSError as exc:
        detail = f"cannot connect to {target.authority}: {exc.strerror or exc}"
    else:
        facts.update(address=sock.getpeername()[0], elapsedMs=_elapsed_ms(start))
        detail = f"connected to {facts['address']} port {target.port} in {facts['elapsedMs']} ms"
        return LayerResult.passed(LayerName.TCP, detail, facts), sock
    facts["elapsedMs"] = _elapsed_ms(start)
    return LayerResult.failed(LayerName.TCP, detail, ReasonCode.TCP_CONNECT_FAILED, facts), None


# --- tls, client certificate, certbound ----------------------------------------------------


def _over_tls(
    options: ProbeOptions, clock: Clock, session: TlsSession
) -> tuple[LayerResult, LayerResult, LayerResult]:
    start = time.monotonic()
    session.deadline = start + options.timeout
    failure: SessionError | None = None
    try:
        session.handshake()
    except SessionError as exc:
        failure = exc
    tls_facts = _tls_facts(session, options.target, _elapsed_ms(start))
    chain = session.peer_chain()
    trust = None
    if chain:
        trust = judge_server(chain, options.target.host, options.anchors, clock.now())
    refusal = _refusal(session.observation, failure)
    if failure is not None and refusal is None:
        tls = _tls_failed(session, failure, trust, tls_facts, options.timeout)
        why = "the TLS handshake failed"
        return tls, LayerResult.skipped(LayerName.CLIENT_CERTIFICATE, why), _skipped_certbound(why)
    tls = _tls_layer(tls_facts, trust, chain)
    client_facts = _client_facts(options.credentials, session, clock)
    if refusal is not None:
        return tls, _refused(refusal, client_facts), _skipped_certbound(_REFUSED)
    client, certbound = _certbound(options, session, client_facts)
    return tls, client, certbound


_REFUSED = "the server refused the client certificate; no request could be sent"


def _tls_facts(session: TlsSession, target: Target, elapsed_ms: float) -> dict[str, Any]:
    return {
        "version": session.version,
        "cipher": session.cipher,
        "serverName": None if target.is_ip else target.host,
        "elapsedMs": elapsed_ms,
    }


def _tls_layer(
    facts: dict[str, Any], trust: ServerTrust | None, chain: list[x509.Certificate]
) -> LayerResult:
    negotiated = f"{facts['version']} {facts['cipher']}"
    if trust is None:
        detail = f"{negotiated}; the server sent no certificate"
        return LayerResult.failed(
            LayerName.TLS, detail, ReasonCode.SERVER_CERTIFICATE_UNTRUSTED, facts
        )
    server = certificate_facts(chain)
    facts = {**facts, "serverCertificate": server, "trusted": trust.trusted}
    facts.update(trustAnchors=trust.anchors, trustProblems=list(trust.problems))
    subject = server["subjectDn"]
    if trust.trusted:
        detail = f"{negotiated}; server certificate {subject} trusted ({trust.anchors})"
        return LayerResult.passed(LayerName.TLS, detail, facts)
    detail = (
        f"{negotiated}; server certificate {subject} NOT trusted: {'; '.join(trust.problems)}"
        " (the other layers were checked without server verification)"
    )
    return LayerResult.failed(LayerName.TLS, detail, ReasonCode.SERVER_CERTIFICATE_UNTRUSTED, facts)


def _plain_text(data: bytes) -> str | None:
    """The first line of a server's answer when it is printable text, not a TLS record."""
    if not data or not all(32 <= b < 127 or b in b"\r\n\t" for b in data):
        return None
    return data.splitlines()[0].decode("ascii") if data.strip() else None


def _tls_failed(
    session: TlsSession,
    failure: SessionError,
    trust: ServerTrust | None,
    facts: dict[str, Any],
    timeout: float,
) -> LayerResult:
    alert = session.observation.fatal_alert
    text = _plain_text(session.first_bytes)
    if text is not None:
        detail = (
            f"the server answered in plain text ({text!r}), not TLS: the URL's port is not a "
            "TLS listener (use the port of tls_listen)"
        )
    elif failure.kind == "timeout":
        detail = f"no TLS handshake answer within {timeout:g} s: the port may not speak TLS"
    elif alert is not None:
        detail = f"the server ended the handshake with the alert {alert}: {failure.message}"
    elif failure.kind in ("closed", "reset"):
        when = "during the handshake" if session.first_bytes else "before answering the ClientHello"
        how = "reset" if failure.kind == "reset" else "closed"
        detail = f"the server {how} the connection {when}, without a TLS alert (its log says why)"
    else:
        detail = f"the TLS handshake failed: {failure.message}"
    facts = {**facts, "error": failure.message, "alert": _alert_facts(alert)}
    if trust is not None:
        facts.update(trusted=trust.trusted, trustProblems=list(trust.problems))
    return LayerResult.failed(LayerName.TLS, detail, ReasonCode.TLS_HANDSHAKE_FAILED, facts)


def _alert_facts(alert: Alert | None) -> dict[str, Any] | None:
    return None if alert is None else {"name": alert.name, "code": alert.code}


def _refusal(seen: Observation, failure: SessionError | None) -> Alert | None:
    """The alert with which the server refused the client certificate, if that is what
    ended the connection: a certificate alert once the certificate was sent, or
    certificate_required when none was."""
    alert = seen.fatal_alert
    if failure is None or alert is None or not alert.refuses_certificate:
        return None
    if alert.reason is ReasonCode.NO_CLIENT_CERTIFICATE:
        return alert
    return alert if seen.certificate_sent else None


def _client_facts(
    credentials: ClientCredentials, session: TlsSession, clock: Clock
) -> dict[str, Any]:
    seen = session.observation
    acceptable = session.acceptable_cas
    issuer = credentials.leaf.issuer.rfc4514_string()
    return {
        **credentials.facts(clock.now()),
        "requested": seen.certificate_requested,
        "sent": seen.certificate_sent,
        "acceptableCas": acceptable,
        "issuerAcceptable": (issuer in acceptable) if acceptable else None,
        "alert": None,
    }


def _refused(alert: Alert, facts: dict[str, Any]) -> LayerResult:
    facts = {**facts, "alert": _alert_facts(alert)}
    reason = alert.reason
    said = f"TLS alert {alert}"
    if reason is None:
        detail = f"the server refused the certificate with the {said} without saying why"
    else:
        detail = f"the server refused the certificate with the {said}"
    return LayerResult.failed(LayerName.CLIENT_CERTIFICATE, detail, reason, facts)


def _client_layer(facts: dict[str, Any]) -> LayerResult:
    name = LayerName.CLIENT_CERTIFICATE
    if not facts["requested"]:
        detail = (
            "the server did not ask for a client certificate (no CertificateRequest), so none "
            "was sent: the URL does not reach a listener that requests one"
        )
        return LayerResult.failed(name, detail, ReasonCode.NO_CLIENT_CERTIFICATE, facts)
    if not facts["sent"]:
        detail = (
            "the server asked for a client certificate but none was sent (its key or "
            "signature algorithm is not one the server accepts)"
        )
        return LayerResult.failed(name, detail, ReasonCode.NO_CLIENT_CERTIFICATE, facts)
    detail = f"sent {facts['subjectDn']} on request; the server did not refuse it in TLS"
    if facts["issuerAcceptable"] is False:
        detail += "; note: the server's acceptable CA list does not name its issuer"
    if not facts["validNow"]:
        detail += f"; note: it is not valid now ({facts['notBefore']} .. {facts['notAfter']})"
    return LayerResult.passed(name, detail, facts)


def _certbound(
    options: ProbeOptions, session: TlsSession, client_facts: dict[str, Any]
) -> tuple[LayerResult, LayerResult]:
    """Ask Certbound over the same connection; under TLS 1.3 a refusal of the client
    certificate arrives here, on the first read."""
    start = time.monotonic()
    session.deadline = start + options.timeout
    what = f"POST {TOKEN_PATH}" if options.token else f"GET {ECHO_PATH}"
    try:
        response = _request(options, session)
    except SessionError as exc:
        refusal = _refusal(session.observation, exc)
        if refusal is not None:
            return _refused(refusal, client_facts), _skipped_certbound(_REFUSED)
        detail = f"{what}: {exc.message} (no TLS alert, no HTTP answer)"
        return _client_layer(client_facts), LayerResult.failed(LayerName.CERTBOUND, detail, None)
    except HttpError as exc:
        detail = f"{what}: {exc}"
        return _client_layer(client_facts), LayerResult.failed(LayerName.CERTBOUND, detail, None)
    judge = token_layer if options.token else echo_layer
    verdict = judge(response, options.credentials)
    timed = replace(verdict, facts={**verdict.facts, "elapsedMs": _elapsed_ms(start)})
    return _client_layer(client_facts), timed


def _request(options: ProbeOptions, session: TlsSession) -> HttpResponse:
    if not options.token:
        return exchange(session, options.target, "GET", ECHO_PATH)
    form = {"grant_type": "client_credentials", "client_id": options.client_id}
    body = urlencode(form).encode()
    content_type = "application/x-www-form-urlencoded"
    return exchange(
        session, options.target, "POST", TOKEN_PATH, body=body, content_type=content_type
    )
