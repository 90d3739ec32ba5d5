"""OCSP request, transport, response validation and the answer cache, against real
``openssl ocsp`` responders (signed by the CA, by delegated responders, by impostors) that
certificates name in their AIA extension, plus a local HTTP server and a silent TCP socket
for the transport faults (all from tests/pki/conftest.py)."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp as x509_ocsp
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID

from certbound.errors import ReasonCode
from certbound.pki import devpki, ocsp
from certbound.pki.certificate import extension, serial_hex
from certbound.pki.devpki import DAY, Issued, Profile

if TYPE_CHECKING:
    from conftest import CrlServer, Responder, Responders

OPENSSL = shutil.which("openssl")
pytestmark = pytest.mark.skipif(OPENSSL is None, reason="openssl is not installed")
MINUTE = dt.timedelta(minutes=1)
OCSP_METHOD = AuthorityInformationAccessOID.OCSP
REVOKED_AT = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)


# --- openssl ocsp responders ---------------------------------------------------------------


def write_index(path: Path, good: Issued, revoked: Issued) -> None:
    path.write_text(
        f"V\t300101000000Z\t\t{serial_hex(good.cert)}\tunknown\t/CN=good\n"
        f"R\t300101000000Z\t240101000000Z,keyCompromise\t{serial_hex(revoked.cert)}"
        "\tunknown\t/CN=revoked\n"
    )


@dataclass
class Pki:
    ca: Issued
    good: Issued
    revoked: Issued
    unknown: Issued
    delegate: Issued
    responders: dict[str, Responder]


def aia(url: str) -> tuple[x509.ExtensionType, bool]:
    access = x509.AccessDescription(
        AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier(url)
    )
    return x509.AuthorityInformationAccess([access]), False


def responder_cert(name: str, issuer: Issued | None, eku: bool) -> Issued:
    usage = [ExtendedKeyUsageOID.OCSP_SIGNING] if eku else [ExtendedKeyUsageOID.CLIENT_AUTH]
    return devpki.issue(name, issuer, profile=Profile(eku=usage))


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory, ocsp_responders: Responders) -> Pki:
    """One CA, three devices and six responders over one index (good, revoked listed)."""
    directory = tmp_path_factory.mktemp("ocsp")
    names = ["ca", "delegate", "no-eku", "unrelated", "impostor", "no-next-update"]
    ports = dict(zip(names, ocsp_responders.reserve_ports(len(names)), strict=True))
    ca = devpki.ca("OCSP Test CA")
    device = Profile(extra=[aia(f"http://127.0.0.1:{ports['ca']}")])
    good, revoked, unknown = (devpki.issue(n, ca, profile=device) for n in ("g", "r", "u"))
    index = directory / "index.txt"
    write_index(index, good, revoked)
    delegate = responder_cert("OCSP Responder", ca, eku=True)
    impostor = devpki.issue(ca.name, None, profile=Profile(ca=True, eku=None))
    setups: dict[str, tuple[Issued, tuple[str, ...]]] = {
        "ca": (ca, ("-nmin", "5")),
        "delegate": (delegate, ("-nmin", "5", "-resp_key_id")),
        "no-eku": (responder_cert("Client Cert As Responder", ca, eku=False), ("-nmin", "5")),
        "unrelated": (responder_cert("Unrelated Responder", None, eku=True), ("-nmin", "5")),
        "impostor": (impostor, ("-nmin", "5", "-resp_no_certs")),
        "no-next-update": (ca, ()),
    }
    responders = {
        name: ocsp_responders.start(
            directory / name, ports[name], signer, ca, index=index, extra=extra
        )
        for name, (signer, extra) in setups.items()
    }
    return Pki(ca, good, revoked, unknown, delegate, responders)


def ocsp_url(cert: x509.Certificate) -> str:
    access: x509.AuthorityInformationAccess = extension(cert, x509.AuthorityInformationAccess)
    urls = [d.access_location.value for d in access if d.access_method == OCSP_METHOD]
    return str(urls[0])


def ask(
    client: httpx.Client, pki: Pki, cert: Issued, responder: str = "ca", nonce: bytes | None = b""
) -> tuple[bytes, bytes | None]:
    """(response DER, nonce sent) for ``cert`` from a responder; nonce b"" means random."""
    nonce = os.urandom(16) if nonce == b"" else nonce
    request = ocsp.build_request(cert.cert, pki.ca.cert, nonce=nonce)
    return ocsp.send(client, pki.responders[responder].url, request, timeout=5), nonce


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def refused(problem: str, data: bytes, pki: Pki, cert: Issued, **kwargs: object) -> str:
    options: dict[str, object] = {"nonce": None, "now": now()} | kwargs
    with pytest.raises(ocsp.OcspError) as excinfo:
        ocsp.validate_response(data, cert.cert, pki.ca.cert, **options)  # type: ignore[arg-type]
    assert excinfo.value.problem == problem, str(excinfo.value)
    assert excinfo.value.reason is ReasonCode.REVOCATION_UNAVAILABLE
    return str(excinfo.value)


# --- answers -------------------------------------------------------------------------------


def test_good_from_the_url_in_the_certificates_aia(pki: Pki, client: httpx.Client) -> None:
    url = ocsp_url(pki.good.cert)
    assert url == pki.responders["ca"].url
    nonce = os.urandom(16)
    request = ocsp.build_request(pki.good.cert, pki.ca.cert, nonce=nonce)
    data = ocsp.send(client, url, request, timeout=5)
    checked = now()
    answer = ocsp.validate_response(data, pki.good.cert, pki.ca.cert, nonce=nonce, now=checked)
    assert answer.status == "GOOD" and answer.serial == pki.good.cert.serial_number
    assert answer.revocation_time is None and answer.revocation_reason is None
    assert answer.responder == "CN=OCSP Test CA,O=Certbound Dev"
    assert answer.next_update is not None
    assert answer.next_update - answer.this_update == 5 * MINUTE
    assert abs(answer.this_update - checked) < MINUTE
    assert answer.checked_at == checked and answer.produced_at <= checked


def test_revoked_with_reason_and_time(pki: Pki, client: httpx.Client) -> None:
    data, nonce = ask(client, pki, pki.revoked)
    answer = ocsp.validate_response(data, pki.revoked.cert, pki.ca.cert, nonce=nonce, now=now())
    assert answer.status == "REVOKED"
    assert (answer.revocation_time, answer.revocation_reason) == (REVOKED_AT, "keyCompromise")


def test_serial_missing_from_the_index_is_unknown(pki: Pki, client: httpx.Client) -> None:
    data, nonce = ask(client, pki, pki.unknown)
    answer = ocsp.validate_response(data, pki.unknown.cert, pki.ca.cert, nonce=nonce, now=now())
    assert answer.status == "UNKNOWN"


def test_sha256_cert_id_is_matched_with_sha256(pki: Pki, client: httpx.Client) -> None:
    builder = x509_ocsp.OCSPRequestBuilder().add_certificate(
        pki.good.cert, pki.ca.cert, hashes.SHA256()
    )
    request = builder.build().public_bytes(serialization.Encoding.DER)
    data = ocsp.send(client, pki.responders["ca"].url, request, timeout=5)
    single = next(iter(x509_ocsp.load_der_ocsp_response(data).responses))
    assert isinstance(single.hash_algorithm, hashes.SHA256)
    answer = ocsp.validate_response(data, pki.good.cert, pki.ca.cert, nonce=None, now=now())
    assert answer.status == "GOOD"


# --- who signed it -------------------------------------------------------------------------


def test_delegated_responder_with_ocsp_signing(pki: Pki, client: httpx.Client) -> None:
    data, nonce = ask(client, pki, pki.revoked, "delegate")
    response = x509_ocsp.load_der_ocsp_response(data)
    assert response.responder_name is None  # -resp_key_id: ResponderID byKey
    answer = ocsp.validate_response(data, pki.revoked.cert, pki.ca.cert, nonce=nonce, now=now())
    assert answer.status == "REVOKED"
    assert answer.responder == "CN=OCSP Responder,O=Certbound Dev"


def test_delegated_responder_without_ocsp_signing(pki: Pki, client: httpx.Client) -> None:
    data, nonce = ask(client, pki, pki.good, "no-eku")
    message = refused("responder", data, pki, pki.good, nonce=nonce)
    assert "OCSPSigning" in message


def test_delegated_responder_outside_its_validity(pki: Pki, client: httpx.Client) -> None:
    data, nonce = ask(client, pki, pki.good, "delegate")
    later = pki.delegate.cert.not_valid_after_utc + DAY
    message = refused("responder", data, pki, pki.good, nonce=nonce, now=later)
    assert "validity" in message


def test_responder_the_ca_did_not_issue(pki: Pki, client: httpx.Client) -> None:
    data, nonce = ask(client, pki, pki.good, "unrelated")
    message = refused("responder", data, pki, pki.good, nonce=nonce)
    assert "not issued by the CA" in message


def test_response_signed_by_the_wrong_key(pki: Pki, client: httpx.Client) -> None:
    """An impostor with the CA's name signs: the name matches, the CA's key does not verify."""
    data, nonce = ask(client, pki, pki.good, "impostor")
    assert x509_ocsp.load_der_ocsp_response(data).certificates == []
    refused("signature", data, pki, pki.good, nonce=nonce)


def test_tampered_response(pki: Pki, client: httpx.Client) -> None:
    data, nonce = ask(client, pki, pki.good)
    response = x509_ocsp.load_der_ocsp_response(data)
    flipped = bytearray(data)
    flipped[data.index(response.signature) + 5] ^= 0x01
    refused("signature", bytes(flipped), pki, pki.good, nonce=nonce)


# --- CertID, freshness, nonce --------------------------------------------------------------


def test_answer_for_another_serial(pki: Pki, client: httpx.Client) -> None:
    data, nonce = ask(client, pki, pki.good)
    message = refused("certid", data, pki, pki.revoked, nonce=nonce)
    assert format(pki.good.cert.serial_number, "X") in message


def test_answer_for_the_same_serial_under_another_issuer(pki: Pki) -> None:
    """Signed by the CA, right serial, but the CertID names another issuer."""
    other_ca = devpki.ca("Other CA")
    twin = devpki.issue("twin", other_ca, profile=Profile(serial=pki.good.cert.serial_number))
    at = now()
    builder = (
        x509_ocsp.OCSPResponseBuilder()
        .add_response(
            twin.cert,
            other_ca.cert,
            hashes.SHA1(),
            x509_ocsp.OCSPCertStatus.GOOD,
            at,
            at + 5 * MINUTE,
            None,
            None,
        )
        .responder_id(x509_ocsp.OCSPResponderEncoding.NAME, pki.ca.cert)
    )
    response = builder.sign(pki.ca.key, hashes.SHA256())
    data = response.public_bytes(serialization.Encoding.DER)
    refused("certid", data, pki, pki.good)


def test_stale_after_next_update_plus_skew(pki: Pki, client: httpx.Client) -> None:
    data, nonce = ask(client, pki, pki.good)
    at = now()
    inside = at + 5 * MINUTE + 4 * MINUTE  # nextUpdate (5 min) + less than the 5-minute skew
    ocsp.validate_response(data, pki.good.cert, pki.ca.cert, nonce=nonce, now=inside)
    message = refused("stale", data, pki, pki.good, nonce=nonce, now=at + 11 * MINUTE)
    assert "nextUpdate" in message
    refused("stale", data, pki, pki.good, nonce=nonce, now=at + 7 * MINUTE, skew=MINUTE)


def test_this_update_in_the_future(pki: Pki, client: httpx.Client) -> None:
    data, nonce = ask(client, pki, pki.good)
    message = refused("stale", data, pki, pki.good, nonce=nonce, now=now() - 10 * MINUTE)
    assert "future" in message


def test_no_next_update_ages_out(pki: Pki, client: httpx.Client) -> None:
    data, nonce = ask(client, pki, pki.good, "no-next-update")
    answer = ocsp.validate_response(data, pki.good.cert, pki.ca.cert, nonce=nonce, now=now())
    assert answer.next_update is None
    refused("stale", data, pki, pki.good, nonce=nonce, now=now() + 2 * dt.timedelta(hours=1))
    ocsp.validate_response(
        data,
        pki.good.cert,
        pki.ca.cert,
        nonce=nonce,
        now=now() + 2 * dt.timedelta(hours=1),
        max_age_without_next_update=3 * dt.timedelta(hours=1),
    )


def test_nonce_mismatch(pki: Pki, client: httpx.Client) -> None:
    data, _ = ask(client, pki, pki.good)
    message = refused("nonce", data, pki, pki.good, nonce=os.urandom(16))
    assert "not the one sent" in message


def test_nonce_not_echoed(pki: Pki, client: httpx.Client) -> None:
    data, _ = ask(client, pki, pki.good, nonce=None)
    refused("nonce", data, pki, pki.good, nonce=os.urandom(16))
    answer = ocsp.validate_response(
        data, pki.good.cert, pki.ca.cert, nonce=os.urandom(16), now=now(), require_nonce=False
    )
    assert answer.status == "GOOD"
    ocsp.validate_response(data, pki.good.cert, pki.ca.cert, nonce=None, now=now())


# --- transport faults and bad bodies -------------------------------------------------------


@pytest.fixture(scope="module")
def faults(crl_server: CrlServer) -> str:
    """The local HTTP server answering POSTs with bodies that are not usable responses."""
    unsuccessful = x509_ocsp.OCSPResponseBuilder.build_unsuccessful(
        x509_ocsp.OCSPResponseStatus.TRY_LATER
    ).public_bytes(serialization.Encoding.DER)
    crl_server.serve("/garbage", b"<html>definitely not OCSP</html>")
    crl_server.serve("/empty", b"")
    crl_server.serve("/try-later", unsuccessful)
    crl_server.serve("/huge", b"\x30" * (ocsp.MAX_RESPONSE_BYTES + 1))
    return crl_server.base


def request_for(pki: Pki) -> bytes:
    return ocsp.build_request(pki.good.cert, pki.ca.cert, nonce=None)


@pytest.mark.parametrize(
    ("path", "problem"),
    [("/garbage", "malformed"), ("/empty", "malformed"), ("/try-later", "unsuccessful")],
)
def test_bad_bodies(pki: Pki, client: httpx.Client, faults: str, path: str, problem: str) -> None:
    data = ocsp.send(client, faults + path, request_for(pki), timeout=5)
    message = refused(problem, data, pki, pki.good)
    if problem == "unsuccessful":
        assert "TRY_LATER" in message


@pytest.mark.parametrize("path", ["/missing", "/huge"])
def test_http_error_and_oversized_body(
    pki: Pki, client: httpx.Client, faults: str, path: str
) -> None:
    with pytest.raises(ocsp.OcspError) as excinfo:
        ocsp.send(client, faults + path, request_for(pki), timeout=5)
    assert excinfo.value.problem == "unavailable"


def test_responder_down_fails_fast(pki: Pki, client: httpx.Client, down_url: str) -> None:
    started = time.monotonic()
    with pytest.raises(ocsp.OcspError) as excinfo:
        ocsp.send(client, down_url, request_for(pki), timeout=5)
    assert time.monotonic() - started < 1.0
    assert excinfo.value.problem == "unavailable"
    assert isinstance(excinfo.value.__cause__, httpx.ConnectError)


def test_slow_responder_timeout_is_honoured(
    pki: Pki, client: httpx.Client, silent_url: str
) -> None:
    """A socket that accepts (the kernel completes the handshake) and never answers."""
    started = time.monotonic()
    with pytest.raises(ocsp.OcspError) as excinfo:
        ocsp.send(client, silent_url, request_for(pki), timeout=0.5)
    elapsed = time.monotonic() - started
    assert 0.4 < elapsed < 1.0
    assert excinfo.value.problem == "unavailable" and "Timeout" in str(excinfo.value)


@pytest.mark.parametrize("url", ["ldap://127.0.0.1/", "file:///etc/passwd", "not a url"])
def test_only_http_urls(pki: Pki, client: httpx.Client, url: str) -> None:
    with pytest.raises(ocsp.OcspError) as excinfo:
        ocsp.send(client, url, request_for(pki), timeout=1)
    assert excinfo.value.problem == "unavailable"


# --- the request ---------------------------------------------------------------------------


def test_request_carries_sha1_cert_id_and_nonce(pki: Pki) -> None:
    nonce = os.urandom(16)
    request = x509_ocsp.load_der_ocsp_request(
        ocsp.build_request(pki.good.cert, pki.ca.cert, nonce=nonce)
    )
    assert isinstance(request.hash_algorithm, hashes.SHA1)
    assert request.serial_number == pki.good.cert.serial_number
    assert request.issuer_key_hash.hex() == ocsp.issuer_key_hash(pki.ca.cert)
    assert request.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce == nonce
    bare = x509_ocsp.load_der_ocsp_request(
        ocsp.build_request(pki.good.cert, pki.ca.cert, nonce=None)
    )
    assert len(bare.extensions) == 0


# --- the cache -----------------------------------------------------------------------------


def answer(status: ocsp.OcspStatus, serial: int, at: dt.datetime, **kw: object) -> ocsp.OcspAnswer:
    fields: dict[str, object] = {
        "status": status,
        "serial": serial,
        "revocation_time": None,
        "revocation_reason": None,
        "this_update": at,
        "next_update": at + 10 * MINUTE,
        "produced_at": at,
        "responder": "CN=R",
        "checked_at": at,
    } | kw
    return ocsp.OcspAnswer(**fields)  # type: ignore[arg-type]


def test_cache_serves_until_next_update() -> None:
    at, cache = now(), ocsp.OcspCache()
    cache.put(answer("GOOD", 1, at), "aa")
    cache.put(answer("REVOKED", 2, at), "aa")
    assert cache.get(("aa", 1), at + 9 * MINUTE) == answer("GOOD", 1, at)
    assert cache.get(("aa", 2), at) is not None
    assert cache.get(("bb", 1), at) is None
    assert cache.get(("aa", 1), at + 10 * MINUTE) is None
    assert len(cache) == 1


def test_cache_skips_unknown_and_answers_without_next_update() -> None:
    at, cache = now(), ocsp.OcspCache()
    cache.put(answer("UNKNOWN", 1, at), "aa")
    cache.put(answer("GOOD", 2, at, next_update=None), "aa")
    assert len(cache) == 0


def test_cache_max_age_and_lru_bound() -> None:
    at = now()
    cache = ocsp.OcspCache(max_entries=2, max_age=2 * MINUTE)
    cache.put(answer("GOOD", 1, at), "aa")
    cache.put(answer("GOOD", 2, at), "aa")
    assert cache.get(("aa", 1), at) is not None  # 1 is now the most recently used
    cache.put(answer("GOOD", 3, at), "aa")
    assert cache.get(("aa", 2), at) is None
    assert cache.get(("aa", 1), at + MINUTE) is not None
    assert cache.get(("aa", 1), at + 2 * MINUTE) is None


def test_cache_key_of_a_real_answer(pki: Pki, client: httpx.Client) -> None:
    data, nonce = ask(client, pki, pki.good)
    good = ocsp.validate_response(data, pki.good.cert, pki.ca.cert, nonce=nonce, now=now())
    cache = ocsp.OcspCache()
    cache.put(good, ocsp.issuer_key_hash(pki.ca.cert))
    assert cache.get(ocsp.cache_key(pki.ca.cert, pki.good.cert.serial_number), now()) is good
