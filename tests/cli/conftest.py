"""What the CLI tests share: the real ``certbound`` command in a subprocess, pointed at the
test database (SQLite and PostgreSQL), the System Log events it recorded, and real
revocation sources (``revocation_pki``: CRLs served by a local ``http.server``, an
``openssl ocsp`` responder, and the certificates that name them)."""

from __future__ import annotations

import collections
import contextlib
import datetime as dt
import http.server
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import AuthorityInformationAccessOID
from sqlalchemy import select

from certbound.pki import devpki, ocsp
from certbound.pki.certificate import serial_hex
from certbound.pki.devpki import DAY, Issued
from certbound.storage.database import Database
from certbound.storage.models import LogEvent

OPENSSL = shutil.which("openssl")

Run = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def env(database: Database, database_url: str) -> dict[str, str]:
    """The environment of a user whose every command uses the test database."""
    out = {k: v for k, v in os.environ.items() if not k.startswith("CERTBOUND_")}
    out["CERTBOUND_DATABASE_URL"] = database_url
    return out


@pytest.fixture
def cmd(env: dict[str, str]) -> Run:
    """``cmd("ca", "show", ID)``: run ``python -m certbound`` with the test database."""

    def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "certbound", *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=timeout,
            check=False,
        )

    return run


@pytest.fixture
def logged(database: Database) -> Callable[[str], list[dict[str, Any]]]:
    """The recorded events of one type, oldest first, as JSON."""

    def events(event_type: str) -> list[dict[str, Any]]:
        query = select(LogEvent.body).where(LogEvent.event_type == event_type)
        with database.session() as session:
            bodies = session.scalars(query.order_by(LogEvent.seq)).all()
        return [json.loads(body) for body in bodies]

    return events


# --- real revocation sources: a CRL server and an openssl ocsp responder ------------------


@dataclass
class Route:
    body: bytes
    status: int = 200
    delay: float = 0.0


class CrlServer(http.server.ThreadingHTTPServer):
    """Serves fixed bodies by path, counting the requests that reached each."""

    daemon_threads = True
    block_on_close = False
    routes: dict[str, Route]
    counts: collections.Counter[str]

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(http.server.BaseHTTPRequestHandler):
    server: CrlServer

    def do_GET(self) -> None:
        self.server.counts[self.path] += 1
        route = self.server.routes.get(self.path, Route(b"not found", 404))
        time.sleep(route.delay)
        self.send_response(route.status)
        self.send_header("Content-Type", "application/pkix-crl")
        self.send_header("Content-Length", str(len(route.body)))
        self.end_headers()
        with contextlib.suppress(OSError):  # the client gave up (timeout tests)
            self.wfile.write(route.body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def down_url() -> str:
    """An http URL on a port nothing listens on (connection refused)."""
    return f"http://127.0.0.1:{free_port()}/"


def crl(
    issuer: Issued,
    revoked: dict[int, x509.ReasonFlags] | None = None,
    *,
    this_update: dt.datetime | None = None,
    days: float = 1,
) -> x509.CertificateRevocationList:
    """A CRL of ``issuer`` revoking ``revoked`` (serial -> reason), number 1."""
    start = this_update or dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.name)
        .last_update(start)
        .next_update(start + dt.timedelta(days=days))
        .add_extension(x509.CRLNumber(1), False)
    )
    for serial, reason in (revoked or {}).items():
        entry = x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(start)
        entry = entry.add_extension(x509.CRLReason(reason), False)
        builder = builder.add_revoked_certificate(entry.build())
    return builder.sign(issuer.key, hashes.SHA256())


def der_of(item: x509.CertificateRevocationList) -> bytes:
    return item.public_bytes(serialization.Encoding.DER)


@dataclass
class RevocationPki:
    """root -> issuing (CRL at /issuing.crl, OCSP responder) -> devices good, revoked
    (keyCompromise), plain (no CDP, no AIA); root -> pulled (revoked by the root's CRL) ->
    orphan. Certificates name the server's URLs; files are under ``directory``."""

    directory: Path
    server: CrlServer
    ocsp_url: str
    root: Issued
    issuing: Issued
    pulled: Issued
    devices: dict[str, Issued]
    crls: dict[str, x509.CertificateRevocationList]

    def path(self, name: str) -> str:
        return str(self.directory / name)

    def url(self, name: str) -> str:
        return f"{self.server.base}/{name}"

    def publish(self) -> None:
        """Serve every CRL, fresh, as DER; reset the request counts."""
        self.server.routes = {f"/{name}": Route(der_of(item)) for name, item in self.crls.items()}
        self.server.counts.clear()

    def withdraw(self, name: str) -> None:
        """Stop serving a CRL (404 from now on)."""
        del self.server.routes[f"/{name}"]

    def slow(self, name: str, delay: float) -> None:
        """Serve a CRL only after ``delay`` seconds."""
        self.server.routes[f"/{name}"] = Route(der_of(self.crls[name]), delay=delay)

    def serve_issuing_crl(self, this_update: dt.datetime, days: float) -> None:
        """Serve a new CRL of the issuing CA (nothing revoked) with these times."""
        fresh = crl(self.issuing, this_update=this_update, days=days)
        self.server.routes["/issuing.crl"] = Route(der_of(fresh))

    def hits(self, name: str) -> int:
        return self.server.counts[f"/{name}"]

    def requests(self) -> int:
        return sum(self.server.counts.values())


def _responder(directory: Path, port: int, pki: RevocationPki) -> subprocess.Popen[bytes]:
    assert OPENSSL is not None
    good, revoked = pki.devices["good"], pki.devices["revoked"]
    (directory / "index.txt").write_text(
        f"V\t300101000000Z\t\t{serial_hex(good.cert)}\tunknown\t/CN=good\n"
        f"R\t300101000000Z\t240101000000Z,keyCompromise\t{serial_hex(revoked.cert)}"
        "\tunknown\t/CN=revoked\n"
    )
    (directory / "issuing.pem").write_bytes(pki.issuing.cert_pem())
    (directory / "issuing.key").write_bytes(pki.issuing.key_pem())
    args = [OPENSSL, "ocsp", "-index", str(directory / "index.txt"), "-port", str(port)]
    args += ["-rsigner", str(directory / "issuing.pem"), "-rkey", str(directory / "issuing.key")]
    args += ["-CA", str(directory / "issuing.pem"), "-nmin", "5", "-timeout", "5"]
    log = (directory / "ocsp.log").open("wb")
    return subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)


def _wait_until_answering(url: str, process: subprocess.Popen[bytes], pki: RevocationPki) -> None:
    """Poll with a real request (openssl 3.0 ocsp jams on a connection closed unused)."""
    probe = ocsp.build_request(pki.devices["good"].cert, pki.issuing.cert, nonce=None)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        assert process.poll() is None, "openssl ocsp exited"
        try:
            httpx.post(url, content=probe, timeout=2)
            return
        except httpx.TransportError:
            time.sleep(0.05)
    raise RuntimeError("openssl ocsp did not answer")


def _issue_pki(directory: Path, server: CrlServer, ocsp_url: str) -> RevocationPki:
    base = server.base
    aia = x509.AuthorityInformationAccess(
        [
            x509.AccessDescription(
                AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier(ocsp_url)
            )
        ]
    )
    root = devpki.ca("CLI Revocation Root", not_after=dt.datetime.now(dt.UTC) + 3650 * DAY)
    issuing = devpki.ca("CLI Revocation Issuing", root, crl_urls=[f"{base}/root.crl"])
    pulled = devpki.ca("CLI Revocation Pulled", root, crl_urls=[f"{base}/root.crl"])
    device = devpki.Profile(crl_urls=[f"{base}/issuing.crl"], extra=[(aia, False)])
    devices = {
        "good": devpki.issue("good.cli.test", issuing, profile=device),
        "revoked": devpki.issue("revoked.cli.test", issuing, profile=device),
        "plain": devpki.issue("plain.cli.test", issuing),
        "orphan": devpki.issue(
            "orphan.cli.test", pulled, profile=devpki.Profile(crl_urls=[f"{base}/pulled.crl"])
        ),
    }
    compromised = {devices["revoked"].cert.serial_number: x509.ReasonFlags.key_compromise}
    crls = {
        "root.crl": crl(root, {pulled.cert.serial_number: x509.ReasonFlags.ca_compromise}),
        "issuing.crl": crl(issuing, compromised),
        "pulled.crl": crl(pulled),
    }
    return RevocationPki(directory, server, ocsp_url, root, issuing, pulled, devices, crls)


def _write(pki: RevocationPki) -> None:
    files = {
        "chain.pem": devpki.pem_bundle([pki.issuing, pki.root]),
        "root.pem": pki.root.cert_pem(),
        "issuing.pem": pki.issuing.cert_pem(),
        "pulled.pem": pki.pulled.cert_pem(),
        **{f"{name}.pem": item.cert_pem() for name, item in pki.devices.items()},
        "issuing.crl.pem": pki.crls["issuing.crl"].public_bytes(serialization.Encoding.PEM),
        "issuing.crl": der_of(pki.crls["issuing.crl"]),
        "root.crl": der_of(pki.crls["root.crl"]),
    }
    for name, data in files.items():
        (pki.directory / name).write_bytes(data)


@pytest.fixture(scope="module")
def revocation_pki(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RevocationPki]:
    """The PKI, its CRLs served by a local HTTP server and an openssl ocsp responder."""
    if OPENSSL is None:
        pytest.skip("openssl is not installed")
    directory = tmp_path_factory.mktemp("revocation")
    httpd = CrlServer(("127.0.0.1", 0), _Handler)
    httpd.routes, httpd.counts = {}, collections.Counter()
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    port = free_port()
    pki = _issue_pki(directory, httpd, f"http://127.0.0.1:{port}")
    _write(pki)
    process = _responder(directory, port, pki)
    try:
        _wait_until_answering(pki.ocsp_url, process, pki)
        yield pki
    finally:
        process.terminate()
        process.wait(timeout=5)
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def pki(revocation_pki: RevocationPki) -> RevocationPki:
    """The PKI with every CRL served fresh again and the request counts at zero."""
    revocation_pki.publish()
    return revocation_pki
