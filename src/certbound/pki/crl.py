"""CRLs: fetching one over HTTP(S), checking who signed it and when, and the revoked-serial index.

``cryptography`` decodes every CRL; this module makes the decisions RFC 5280 leaves to the
relying party: the signer is the CA itself or a CRL issuer the CA authorised (keyUsage
cRLSign), thisUpdate is not in the future, a newer CRL never rolls back to an older one, and
CRLs whose scope this index cannot represent (delta CRLs, indirect or reason-partitioned
CRLs, unknown critical extensions) are refused rather than misread as "nothing revoked".

A :class:`CrlIndex` answers "is serial S revoked?" with a set lookup; the entry's details
(time, reason) are fetched from the parsed CRL only on a hit and remembered, because
``get_revoked_certificate_by_serial_number`` is a linear scan. How stale a CRL may be is
the policy layer's decision: :func:`staleness` only measures it.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpx
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes

from certbound.errors import CertboundError, ReasonCode
from certbound.pki import pem
from certbound.pki.certificate import extension, signed_by
from certbound.pki.revocation_policy import RevocationSourceError

MiB = 1024 * 1024
MAX_CRL_BYTES = 64 * MiB
CLOCK_SKEW = dt.timedelta(minutes=5)
MAX_AGE_WITHOUT_NEXT_UPDATE = dt.timedelta(days=1)
PROBLEMS = frozenset(
    {
        "malformed",
        "signature",
        "issuer",
        "not_yet_valid",
        "stale",
        "rollback",
        "too_large",
        "fetch",
        "unsupported",
    }
)
_WEAK_HASHES = (hashes.MD5, hashes.SHA1)
_CRL_LABEL = "X509 CRL"


class CrlError(RevocationSourceError):
    """A CRL that cannot be used; ``problem`` is a short machine word (see PROBLEMS)."""

    @property
    def reason(self) -> ReasonCode:
        """The reason code a caller reports when this CRL was its only source of status."""
        if self.problem == "stale":
            return ReasonCode.REVOCATION_STALE
        return ReasonCode.REVOCATION_UNAVAILABLE


@dataclass(frozen=True, slots=True)
class RevokedEntry:
    """One CRL entry: which serial, when it was revoked and why (the CRLReason value)."""

    serial: int
    revocation_time: dt.datetime
    reason: str | None


@dataclass(frozen=True, slots=True)
class CrlIndex:
    """A verified CRL, indexed by revoked serial number.

    ``scope`` is "all", "user" (onlyContainsUserCerts) or "ca" (onlyContainsCACerts), from
    the issuingDistributionPoint extension; the caller must not use a "ca" CRL for a leaf.
    """

    issuer_dn: str
    issuer: x509.Name
    this_update: dt.datetime
    next_update: dt.datetime | None
    crl_number: int | None
    entry_count: int
    size: int
    der: bytes = field(repr=False, compare=False)
    fetched_at: dt.datetime
    source: str
    signer_dn: str
    scope: str
    serials: frozenset[int] = field(repr=False, compare=False)
    crl: x509.CertificateRevocationList = field(repr=False, compare=False)
    _details: dict[int, RevokedEntry] = field(default_factory=dict, repr=False, compare=False)

    def is_revoked(self, serial: int) -> bool:
        return serial in self.serials

    def entry(self, serial: int) -> RevokedEntry | None:
        """The entry for ``serial`` when it is revoked; one linear scan per serial, ever."""
        if serial not in self.serials:
            return None
        found = self._details.get(serial)
        if found is None:
            revoked = self.crl.get_revoked_certificate_by_serial_number(serial)
            if revoked is None:  # pragma: no cover - serials come from this very CRL
                return None
            found = _revoked_entry(revoked)
            self._details[serial] = found
        return found


def _revoked_entry(revoked: x509.RevokedCertificate) -> RevokedEntry:
    try:
        reason_ext = revoked.extensions.get_extension_for_class(x509.CRLReason)
        reason: str | None = reason_ext.value.reason.value
    except x509.ExtensionNotFound:
        reason = None
    except ValueError:  # a malformed entry extension: the entry still revokes
        reason = None
    return RevokedEntry(revoked.serial_number, revoked.revocation_date_utc, reason)


def crl_der(data: bytes) -> bytes:
    """The DER of a CRL given as DER or as PEM (exactly one ``X509 CRL`` block)."""
    if data[:1] == b"\x30":
        return data
    try:
        blocks = pem.split_pem(data.decode("latin-1"))
    except CertboundError as exc:
        raise CrlError("malformed", f"the CRL is not valid PEM: {exc.detail}") from exc
    crls = [block for block in blocks if block.label == _CRL_LABEL]
    if len(crls) != 1:
        raise CrlError("malformed", f"expected one {_CRL_LABEL} PEM block, found {len(crls)}")
    return crls[0].der


def parse_crl(data: bytes) -> x509.CertificateRevocationList:
    """Parse a CRL from DER or PEM; CrlError("malformed") when it is neither."""
    try:
        return x509.load_der_x509_crl(crl_der(data))
    except ValueError as exc:
        raise CrlError("malformed", f"the CRL does not parse: {exc}") from exc


def _may_sign_crls(cert: x509.Certificate, *, usage_required: bool) -> bool:
    usage = extension(cert, x509.KeyUsage)
    if usage is None:
        return not usage_required
    return bool(usage.crl_sign)


def _valid_at(cert: x509.Certificate, now: dt.datetime | None) -> bool:
    if now is None:
        return True
    return cert.not_valid_before_utc <= now <= cert.not_valid_after_utc


def _signature_valid(crl: x509.CertificateRevocationList, cert: x509.Certificate) -> bool:
    try:
        return crl.is_signature_valid(cert.public_key())  # type: ignore[arg-type]
    except (TypeError, ValueError, UnsupportedAlgorithm):
        return False


def _check_algorithm(crl: x509.CertificateRevocationList) -> None:
    try:
        algorithm = crl.signature_hash_algorithm
    except UnsupportedAlgorithm as exc:
        raise CrlError("signature", f"unsupported CRL signature algorithm: {exc}") from exc
    if isinstance(algorithm, _WEAK_HASHES):
        raise CrlError("signature", f"the CRL is signed with {algorithm.name}, which is refused")


def _delegate_problem(
    candidate: x509.Certificate, ca: x509.Certificate, now: dt.datetime | None
) -> str | None:
    """Why ``candidate`` may not sign CRLs for ``ca``, or None when it may."""
    if not _may_sign_crls(candidate, usage_required=True):
        return "has no keyUsage cRLSign"
    if not signed_by(candidate, ca):
        return "was not issued by the CA"
    if not _valid_at(candidate, now):
        return "is outside its validity period"
    return None


def _eligible_signers(
    crl: x509.CertificateRevocationList,
    ca: x509.Certificate,
    candidates: Sequence[x509.Certificate],
    now: dt.datetime | None,
) -> tuple[list[x509.Certificate], list[str]]:
    """The certificates that may have signed ``crl`` for ``ca``, and why others may not."""
    eligible: list[x509.Certificate] = []
    refusals: list[str] = []
    if crl.issuer == ca.subject:
        if _may_sign_crls(ca, usage_required=False):
            eligible.append(ca)
        else:
            refusals.append("the CA's keyUsage lacks cRLSign")
    for candidate in candidates:
        if candidate.subject != crl.issuer:
            continue
        problem = _delegate_problem(candidate, ca, now)
        if problem is None:
            eligible.append(candidate)
        else:
            name = candidate.subject.rfc4514_string()
            refusals.append(f"CRL issuer certificate {name} {problem}")
    return eligible, refusals


def crl_signer(
    crl: x509.CertificateRevocationList,
    ca: x509.Certificate,
    candidates: Sequence[x509.Certificate] = (),
    *,
    now: dt.datetime | None = None,
) -> x509.Certificate:
    """The certificate whose key signed ``crl`` on behalf of ``ca``.

    Either ``ca`` itself (same name, cRLSign when it has keyUsage) or a candidate naming the
    CRL's issuer, with keyUsage cRLSign, issued by ``ca`` (and valid at ``now``, when given).
    CrlError("signature") when an eligible signer's key did not sign it, else ("issuer").
    """
    _check_algorithm(crl)
    eligible, refusals = _eligible_signers(crl, ca, candidates, now)
    for signer in eligible:
        if _signature_valid(crl, signer):
            return signer
    issuer = crl.issuer.rfc4514_string()
    if eligible:
        raise CrlError("signature", f"the CRL names {issuer} but that key did not sign it")
    why = "; ".join(refusals) or "no authorised CRL issuer has that name"
    ca_dn = ca.subject.rfc4514_string()
    raise CrlError("issuer", f"the CRL is issued by {issuer}, not usable for {ca_dn}: {why}")


def _crl_number(crl: x509.CertificateRevocationList) -> int | None:
    try:
        return crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    except x509.ExtensionNotFound:
        return None


def _scope(crl: x509.CertificateRevocationList) -> str:
    """Refuse CRL kinds the index cannot represent; return the scope of the rest."""
    try:
        extensions = crl.extensions
    except (ValueError, x509.DuplicateExtension) as exc:
        raise CrlError("malformed", f"the CRL's extensions do not parse: {exc}") from exc
    for ext in extensions:
        if ext.critical and isinstance(ext.value, x509.UnrecognizedExtension):
            raise CrlError("unsupported", f"unknown critical CRL extension {ext.oid.dotted_string}")
    if any(isinstance(ext.value, x509.DeltaCRLIndicator) for ext in extensions):
        raise CrlError("unsupported", "delta CRLs are not supported; publish full CRLs")
    try:
        idp = extensions.get_extension_for_class(x509.IssuingDistributionPoint).value
    except x509.ExtensionNotFound:
        return "all"
    if idp.indirect_crl or idp.only_some_reasons or idp.only_contains_attribute_certs:
        raise CrlError("unsupported", "indirect, reason-partitioned or attribute CRLs")
    if idp.only_contains_ca_certs:
        return "ca"
    return "user" if idp.only_contains_user_certs else "all"


def _check_times(
    crl: x509.CertificateRevocationList, now: dt.datetime
) -> tuple[dt.datetime, dt.datetime | None]:
    this_update, next_update = crl.last_update_utc, crl.next_update_utc
    if this_update > now + CLOCK_SKEW:
        raise CrlError("not_yet_valid", f"the CRL's thisUpdate {this_update} is in the future")
    if next_update is not None and next_update < this_update:
        raise CrlError("malformed", "the CRL's nextUpdate is before its thisUpdate")
    return this_update, next_update


def _serials(crl: x509.CertificateRevocationList) -> frozenset[int]:
    try:
        return frozenset(revoked.serial_number for revoked in crl)
    except ValueError as exc:
        raise CrlError("malformed", f"a CRL entry does not parse: {exc}") from exc


def index_crl(
    data: bytes,
    ca: x509.Certificate,
    *,
    candidates: Sequence[x509.Certificate] = (),
    now: dt.datetime,
    source: str,
    max_bytes: int = MAX_CRL_BYTES,
) -> CrlIndex:
    """Parse, verify and index a CRL for ``ca`` (DER or PEM ``data`` from ``source``)."""
    if len(data) > max_bytes:
        raise CrlError("too_large", f"the CRL is {len(data):,} bytes; the limit is {max_bytes:,}")
    der = crl_der(data)
    crl = parse_crl(der)
    scope = _scope(crl)
    signer = crl_signer(crl, ca, candidates, now=now)
    this_update, next_update = _check_times(crl, now)
    serials = _serials(crl)
    return CrlIndex(
        issuer_dn=crl.issuer.rfc4514_string(),
        issuer=crl.issuer,
        this_update=this_update,
        next_update=next_update,
        crl_number=_crl_number(crl),
        entry_count=len(crl),
        size=len(der),
        der=der,
        fetched_at=now,
        source=source,
        signer_dn=signer.subject.rfc4514_string(),
        scope=scope,
        serials=serials,
        crl=crl,
    )


def staleness(
    index: CrlIndex,
    now: dt.datetime,
    *,
    max_age_without_next_update: dt.timedelta = MAX_AGE_WITHOUT_NEXT_UPDATE,
) -> dt.timedelta | None:
    """How far past its nextUpdate the CRL is at ``now``; None while it is fresh.

    A CRL without nextUpdate (RFC 5280 requires one) is taken to expire
    ``max_age_without_next_update`` after its thisUpdate.
    """
    expires = index.next_update or index.this_update + max_age_without_next_update
    return now - expires if now > expires else None


def check_fresh(index: CrlIndex, now: dt.datetime, *, allowed: dt.timedelta) -> None:
    """CrlError("stale") when the CRL is more than ``allowed`` past its nextUpdate."""
    late = staleness(index, now)
    if late is not None and late > allowed:
        raise CrlError("stale", f"the CRL from {index.source} is {late} past its nextUpdate")


def check_rollback(new: CrlIndex, held: CrlIndex | None) -> None:
    """CrlError("rollback") when ``new`` is older than the CRL already held.

    Compares CRL numbers when both have one (an equal number with an older thisUpdate is a
    rollback too), else thisUpdate. CrlError("issuer") when the two CRLs have different issuers.
    """
    if held is None:
        return
    if new.issuer != held.issuer:
        raise CrlError("issuer", f"CRL from {new.issuer_dn} compared with {held.issuer_dn}")
    older = new.this_update < held.this_update
    if new.crl_number is not None and held.crl_number is not None:
        lower = new.crl_number < held.crl_number
        if lower or (new.crl_number == held.crl_number and older):
            raise CrlError(
                "rollback",
                f"CRL number {new.crl_number} (thisUpdate {new.this_update}) is older than the "
                f"held {held.crl_number} (thisUpdate {held.this_update})",
            )
    elif older:
        raise CrlError(
            "rollback", f"thisUpdate {new.this_update} is older than the held {held.this_update}"
        )


def _read_capped(response: httpx.Response, max_bytes: int, deadline: float, url: str) -> bytes:
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise CrlError("too_large", f"{url} declares {int(declared):,} bytes; limit {max_bytes:,}")
    body = bytearray()
    for chunk in response.iter_bytes():
        body += chunk
        if len(body) > max_bytes:
            raise CrlError("too_large", f"{url} sent more than {max_bytes:,} bytes")
        if time.monotonic() > deadline:
            raise CrlError("fetch", f"GET {url}: the download took longer than the timeout")
    return bytes(body)


def fetch(
    client: httpx.Client, url: str, *, timeout: float, max_bytes: int = MAX_CRL_BYTES
) -> bytes:
    """GET a CRL from an http(s) URL within ``timeout`` seconds and ``max_bytes`` bytes."""
    if urlsplit(url).scheme.lower() not in {"http", "https"}:
        raise CrlError("fetch", f"{url!r} is not an http or https URL")
    deadline = time.monotonic() + timeout
    headers = {"Accept-Encoding": "identity"}
    try:
        with client.stream("GET", url, timeout=timeout, headers=headers) as response:
            if response.status_code != 200:
                raise CrlError("fetch", f"GET {url}: HTTP {response.status_code}")
            return _read_capped(response, max_bytes, deadline, url)
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        raise CrlError("fetch", f"GET {url}: {type(exc).__name__}: {exc}") from exc
