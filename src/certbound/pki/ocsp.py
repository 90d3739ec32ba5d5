"""OCSP: building a request, sending it, validating the response, and caching the answers.

``cryptography`` encodes requests and decodes responses; this module makes every RFC 6960
check a relying party owes: the response is successful, a SingleResponse carries our
CertID (serial, issuer name hash and issuer key hash, recomputed with the response's own
hash algorithm), it is signed by the CA or by a delegated responder certificate the CA
issued with the OCSPSigning EKU, thisUpdate / nextUpdate are fresh within a clock skew, and
the nonce sent comes back.

Nonces: with ``require_nonce`` (the default) a response that does not echo the nonce sent
is refused, since without the echo a replayed response cannot be told from a fresh one.
``openssl ocsp`` echoes nonces; responders that serve pre-signed responses (most public
CAs) do not, and need ``require_nonce=False``, where freshness rests on thisUpdate alone.
A nonce that is echoed but differs is always refused.

Responses signed with RSASSA-PSS, DSA, MD5 or SHA-1 are refused as ``signature``.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

import httpx
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID, SignatureAlgorithmOID

from certbound.pki.certificate import extension, signed_by
from certbound.pki.revocation_policy import RevocationSourceError

MAX_RESPONSE_BYTES = 1024 * 1024
DEFAULT_SKEW = dt.timedelta(minutes=5)
DEFAULT_MAX_AGE = dt.timedelta(hours=1)
PROBLEMS = frozenset(
    {
        "unavailable",
        "malformed",
        "unsuccessful",
        "signature",
        "responder",
        "certid",
        "stale",
        "nonce",
    }
)
OcspStatus = Literal["GOOD", "REVOKED", "UNKNOWN"]
_STATUS: dict[ocsp.OCSPCertStatus, OcspStatus] = {
    ocsp.OCSPCertStatus.GOOD: "GOOD",
    ocsp.OCSPCertStatus.REVOKED: "REVOKED",
    ocsp.OCSPCertStatus.UNKNOWN: "UNKNOWN",
}
_WEAK_HASHES = (hashes.MD5, hashes.SHA1)
CacheKey = tuple[str, int]


class OcspError(RevocationSourceError):
    """An OCSP exchange that gave no usable answer (every one leaves the status unknown:
    REVOCATION_UNAVAILABLE); ``problem`` is a word from PROBLEMS."""


@dataclass(frozen=True, slots=True)
class OcspAnswer:
    """A validated OCSP answer for one certificate."""

    status: OcspStatus
    serial: int
    revocation_time: dt.datetime | None
    revocation_reason: str | None
    this_update: dt.datetime
    next_update: dt.datetime | None
    produced_at: dt.datetime
    responder: str
    checked_at: dt.datetime


def build_request(
    cert: x509.Certificate, issuer: x509.Certificate, *, nonce: bytes | None
) -> bytes:
    """A DER OCSP request for ``cert`` with a SHA-1 CertID (what responders index by)."""
    builder = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hashes.SHA1())
    if nonce is not None:
        builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
    return builder.build().public_bytes(serialization.Encoding.DER)


def _read_capped(response: httpx.Response, deadline: float, url: str) -> bytes:
    body = bytearray()
    for chunk in response.iter_bytes():
        body += chunk
        if len(body) > MAX_RESPONSE_BYTES:
            raise OcspError("unavailable", f"{url} sent more than {MAX_RESPONSE_BYTES:,} bytes")
        if time.monotonic() > deadline:
            raise OcspError("unavailable", f"POST {url}: the response took longer than the timeout")
    return bytes(body)


def send(client: httpx.Client, url: str, request: bytes, *, timeout: float) -> bytes:
    """POST ``request`` to the responder at ``url``; the raw response body within ``timeout``."""
    if urlsplit(url).scheme.lower() not in {"http", "https"}:
        raise OcspError("unavailable", f"{url!r} is not an http or https URL")
    deadline = time.monotonic() + timeout
    headers = {"Content-Type": "application/ocsp-request", "Accept-Encoding": "identity"}
    try:
        with client.stream(
            "POST", url, content=request, headers=headers, timeout=timeout
        ) as response:
            if response.status_code != 200:
                raise OcspError("unavailable", f"POST {url}: HTTP {response.status_code}")
            return _read_capped(response, deadline, url)
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        raise OcspError("unavailable", f"POST {url}: {type(exc).__name__}: {exc}") from exc


def issuer_key_hash(issuer: x509.Certificate) -> str:
    """SHA-1 of the issuer's public key bits (the SHA-1 CertID's issuerKeyHash), as hex."""
    return x509.SubjectKeyIdentifier.from_public_key(issuer.public_key()).digest.hex()


def cache_key(issuer: x509.Certificate, serial: int) -> CacheKey:
    return issuer_key_hash(issuer), serial


def _load(data: bytes) -> ocsp.OCSPResponse:
    try:
        response = ocsp.load_der_ocsp_response(data)
    except ValueError as exc:
        raise OcspError("malformed", f"the OCSP response does not parse: {exc}") from exc
    if response.response_status != ocsp.OCSPResponseStatus.SUCCESSFUL:
        status = response.response_status.name
        raise OcspError("unsuccessful", f"the responder answered {status}")
    return response


def _names_responder(response: ocsp.OCSPResponse, cert: x509.Certificate) -> bool:
    """True when the response's ResponderID (byName or byKey) designates ``cert``."""
    if response.responder_name is not None:
        return response.responder_name == cert.subject
    return response.responder_key_hash == bytes.fromhex(issuer_key_hash(cert))


def _signature_hash(response: ocsp.OCSPResponse) -> hashes.HashAlgorithm | None:
    try:
        algorithm = response.signature_hash_algorithm
    except UnsupportedAlgorithm as exc:
        raise OcspError("signature", f"unsupported signature algorithm: {exc}") from exc
    if isinstance(algorithm, _WEAK_HASHES):
        raise OcspError("signature", f"the response is signed with {algorithm.name}: refused")
    return algorithm


def _verifies(response: ocsp.OCSPResponse, signer: x509.Certificate) -> bool:
    """True when ``signer``'s key verifies the response signature."""
    algorithm = _signature_hash(response)
    key = signer.public_key()
    data, signature = response.tbs_response_bytes, response.signature
    try:
        if isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
            key.verify(signature, data)
        elif algorithm is None:
            return False
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, data, ec.ECDSA(algorithm))
        elif isinstance(key, rsa.RSAPublicKey):
            if response.signature_algorithm_oid == SignatureAlgorithmOID.RSASSA_PSS:
                return False
            key.verify(signature, data, padding.PKCS1v15(), algorithm)
        else:
            return False
    except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm):
        return False
    return True


def _delegation_problem(
    responder: x509.Certificate, issuer: x509.Certificate, now: dt.datetime
) -> str | None:
    """Why ``responder`` may not answer for ``issuer``'s certificates, or None if it may."""
    if not signed_by(responder, issuer):
        return "was not issued by the CA"
    eku = extension(responder, x509.ExtendedKeyUsage)
    if eku is None or ExtendedKeyUsageOID.OCSP_SIGNING not in eku:
        return "lacks the OCSPSigning extended key usage"
    usage = extension(responder, x509.KeyUsage)
    if usage is not None and not usage.digital_signature:
        return "has a keyUsage without digitalSignature"
    if not responder.not_valid_before_utc <= now <= responder.not_valid_after_utc:
        return "is outside its validity period"
    return None


def _responder_id(response: ocsp.OCSPResponse) -> str:
    if response.responder_name is not None:
        return response.responder_name.rfc4514_string()
    return f"key hash {(response.responder_key_hash or b'').hex()}"


def _signer(
    response: ocsp.OCSPResponse, issuer: x509.Certificate, now: dt.datetime
) -> x509.Certificate:
    """The CA or authorised delegated responder that signed ``response``."""
    if _names_responder(response, issuer):
        if _verifies(response, issuer):
            return issuer
        raise OcspError("signature", "the response names the CA but its key did not sign it")
    named = [c for c in response.certificates if _names_responder(response, c)]
    refusals: list[str] = []
    for responder in named:
        problem = _delegation_problem(responder, issuer, now)
        if problem is not None:
            refusals.append(f"{responder.subject.rfc4514_string()} {problem}")
        elif _verifies(response, responder):
            return responder
        else:
            raise OcspError("signature", "the delegated responder's key did not sign it")
    why = "; ".join(refusals) or "neither the CA nor a certificate included in the response"
    raise OcspError("responder", f"responder {_responder_id(response)} is refused: {why}")


def _cert_id(
    cert: x509.Certificate, issuer: x509.Certificate, algorithm: hashes.HashAlgorithm
) -> tuple[bytes, bytes]:
    """(issuerNameHash, issuerKeyHash) of our CertID under ``algorithm``."""
    request = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, algorithm).build()
    return request.issuer_name_hash, request.issuer_key_hash


def _matches(
    single: ocsp.OCSPSingleResponse, cert: x509.Certificate, issuer: x509.Certificate
) -> bool:
    if single.serial_number != cert.serial_number:
        return False
    try:
        expected = _cert_id(cert, issuer, single.hash_algorithm)
    except (UnsupportedAlgorithm, ValueError):
        return False
    return (single.issuer_name_hash, single.issuer_key_hash) == expected


def _single(
    response: ocsp.OCSPResponse, cert: x509.Certificate, issuer: x509.Certificate
) -> ocsp.OCSPSingleResponse:
    """The one SingleResponse whose CertID is the certificate's."""
    found = [single for single in response.responses if _matches(single, cert, issuer)]
    if len(found) == 1:
        return found[0]
    serials = ", ".join(format(s.serial_number, "X") for s in response.responses)
    raise OcspError(
        "certid",
        f"{len(found)} answers match serial {cert.serial_number:X} and its issuer "
        f"(the response answers for: {serials or 'nothing'})",
    )


def _check_times(
    single: ocsp.OCSPSingleResponse,
    now: dt.datetime,
    skew: dt.timedelta,
    max_age: dt.timedelta,
) -> None:
    this_update, next_update = single.this_update_utc, single.next_update_utc
    if this_update > now + skew:
        raise OcspError("stale", f"thisUpdate {this_update} is in the future (now {now})")
    if next_update is not None and next_update < now - skew:
        raise OcspError("stale", f"nextUpdate {next_update} has passed (now {now})")
    if next_update is None and this_update < now - max_age:
        raise OcspError("stale", f"thisUpdate {this_update} is older than {max_age}")


def _check_nonce(response: ocsp.OCSPResponse, nonce: bytes | None, required: bool) -> None:
    if nonce is None:
        return
    try:
        echoed = response.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce
    except x509.ExtensionNotFound:
        if required:
            raise OcspError("nonce", "the responder did not echo the nonce") from None
        return
    except (ValueError, x509.DuplicateExtension) as exc:
        raise OcspError("malformed", f"the response extensions do not parse: {exc}") from exc
    if echoed != nonce:
        raise OcspError("nonce", "the response's nonce is not the one sent")


def _answer(
    single: ocsp.OCSPSingleResponse,
    response: ocsp.OCSPResponse,
    signer: x509.Certificate,
    now: dt.datetime,
) -> OcspAnswer:
    reason = single.revocation_reason
    return OcspAnswer(
        status=_STATUS[single.certificate_status],
        serial=single.serial_number,
        revocation_time=single.revocation_time_utc,
        revocation_reason=None if reason is None else reason.value,
        this_update=single.this_update_utc,
        next_update=single.next_update_utc,
        produced_at=response.produced_at_utc,
        responder=signer.subject.rfc4514_string(),
        checked_at=now,
    )


def validate_response(
    data: bytes,
    cert: x509.Certificate,
    issuer: x509.Certificate,
    *,
    nonce: bytes | None,
    now: dt.datetime,
    skew: dt.timedelta = DEFAULT_SKEW,
    max_age_without_next_update: dt.timedelta = DEFAULT_MAX_AGE,
    require_nonce: bool = True,
) -> OcspAnswer:
    """Validate a DER OCSP response about ``cert`` (issued by ``issuer``) at ``now``.

    Checks, in order: parse and status (malformed, unsuccessful); signer (responder,
    signature); CertID (certid); nonce (nonce); thisUpdate / nextUpdate (stale).
    """
    response = _load(data)
    try:
        signer = _signer(response, issuer, now)
        single = _single(response, cert, issuer)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise OcspError("malformed", f"the OCSP response is malformed: {exc}") from exc
    _check_nonce(response, nonce, require_nonce)
    _check_times(single, now, skew, max_age_without_next_update)
    return _answer(single, response, signer, now)


class OcspCache:
    """Validated GOOD / REVOKED answers by (issuer key hash hex, serial), LRU-bounded.

    An answer is served until its nextUpdate (and, with ``max_age``, no longer than that
    after it was checked). UNKNOWN answers and answers without nextUpdate are not cached.
    """

    def __init__(self, max_entries: int = 10_000, max_age: dt.timedelta | None = None) -> None:
        self.max_entries = max_entries
        self.max_age = max_age
        self._entries: OrderedDict[CacheKey, tuple[OcspAnswer, dt.datetime]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: CacheKey, now: dt.datetime) -> OcspAnswer | None:
        with self._lock:
            held = self._entries.get(key)
            if held is None:
                return None
            if now >= held[1]:
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
            return held[0]

    def put(self, answer: OcspAnswer, issuer_key_hash: str) -> None:
        if answer.status == "UNKNOWN" or answer.next_update is None:
            return
        expires = answer.next_update
        if self.max_age is not None:
            expires = min(expires, answer.checked_at + self.max_age)
        key = (issuer_key_hash, answer.serial)
        with self._lock:
            self._entries[key] = (answer, expires)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
