"""Client-certificate path validation: the only importer of ``cryptography.x509.verification``.

:class:`Validator` answers one question: does this presented chain lead to an uploaded CA at
this time, and if not, exactly why. It

- bounds the work a hostile chain can cause (:mod:`certbound.pki.presented`);
- validates with cryptography's client verifier under a device-friendly profile: certificates
  without a SAN (CN-only) pass, and an EKU, when present, must contain clientAuth;
- fills in intermediates from the trust store;
- names the failure with a stable reason code (:mod:`certbound.pki.diagnosis`);
- reuses verifiers (rebuilt when the store changes and every second, since a verifier carries
  its validation time) and caches results keyed by the presented chain's exact bytes, for no
  longer than the chain stays valid;
- with a :class:`certbound.pki.revocation.RevocationChecker`, checks the validated path's
  revocation under the policy of the stored CA the path belongs to, on every call (cached
  paths included: revocation has its own caches, and a revocation answer is never put in
  the path cache). A refusal becomes a :class:`Rejected` naming the revoked (or unchecked)
  certificate; every result carries the answer as ``revocation``.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.x509.verification import (
    ClientVerifier,
    Criticality,
    ExtensionPolicy,
    PolicyBuilder,
    Store,
    VerificationError,
)

from certbound.clock import Clock, SystemClock, as_utc, format_rfc3339
from certbound.errors import CertboundError, ReasonCode, WouldBlockError
from certbound.pki import certificate as facts
from certbound.pki.algorithms import key_problem
from certbound.pki.anchors import AnchorSource, TrustAnchors
from certbound.pki.certificate import UNDECODABLE
from certbound.pki.diagnosis import Diagnosis, diagnose
from certbound.pki.presented import MAX_DEPTH, present
from certbound.pki.revocation_policy import DEFAULT_POLICY, Mode, RevocationPolicy

if TYPE_CHECKING:
    from certbound.pki.revocation import RevocationChecker, RevocationResult

log = logging.getLogger(__name__)

REJECTION_CACHE_SECONDS = 10
GENERATION_POLL_SECONDS = 2.0
_REJECTION_CACHE = dt.timedelta(seconds=REJECTION_CACHE_SECONDS)


@dataclass(frozen=True, slots=True)
class DeviceIdentity:
    """What a verified certificate says about the device (DESIGN.md deviceTrust.certificate)."""

    subject_dn: str
    issuer_dn: str
    serial_number: str
    sans: tuple[str, ...]
    x5t_s256: str
    spki_sha256: str
    not_before: dt.datetime
    not_after: dt.datetime

    @classmethod
    def of(cls, cert: x509.Certificate, cert_der: bytes) -> DeviceIdentity:
        return cls(
            subject_dn=cert.subject.rfc4514_string(),
            issuer_dn=cert.issuer.rfc4514_string(),
            serial_number=facts.serial_hex(cert),
            sans=tuple(facts.san_strings(cert)),
            x5t_s256=facts.x5t_s256(cert_der),
            spki_sha256=facts.spki_sha256(cert),
            not_before=cert.not_valid_before_utc,
            not_after=cert.not_valid_after_utc,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "subjectDn": self.subject_dn,
            "issuerDn": self.issuer_dn,
            "serialNumber": self.serial_number,
            "sans": list(self.sans),
            "x5t#S256": self.x5t_s256,
            "spkiSha256": self.spki_sha256,
            "notBefore": format_rfc3339(self.not_before),
            "notAfter": format_rfc3339(self.not_after),
        }


class Verified:
    """A chain that validated: the path used (leaf to anchor) and the device identity.

    The identity is extracted on first use: a caller that needs only the verdict (or a
    cached result) does not pay for DN formatting and key serialisation.
    """

    __slots__ = ("_identity", "_leaf_der", "chain", "revocation")
    ok = True

    def __init__(
        self,
        chain: tuple[x509.Certificate, ...],
        leaf_der: bytes,
        revocation: RevocationResult | None = None,
    ) -> None:
        self.chain = chain
        self._leaf_der = leaf_der
        self._identity: DeviceIdentity | None = None
        self.revocation = revocation

    def with_revocation(self, revocation: RevocationResult) -> Verified:
        """This result with a revocation answer; the identity is extracted once, on this
        (cached) result, and shared by every copy."""
        copy = Verified(self.chain, self._leaf_der, revocation)
        copy._identity = self.identity
        return copy

    @property
    def identity(self) -> DeviceIdentity:
        if self._identity is None:
            self._identity = DeviceIdentity.of(self.chain[0], self._leaf_der)
        return self._identity

    def to_dict(self) -> dict[str, Any]:
        return {
            "result": "OK",
            "certificate": self.identity.to_dict(),
            "chain": [c.subject.rfc4514_string() for c in self.chain],
            "revocation": self.revocation.to_dict() if self.revocation else None,
        }


@dataclass(frozen=True, slots=True)
class Rejected:
    """A chain that did not validate, the reason code, and the certificate at fault."""

    reason: ReasonCode
    detail: str
    culprit: facts.CertificateInfo | None = None
    leaf: facts.CertificateInfo | None = None
    revocation: RevocationResult | None = None
    ok: bool = field(default=False, init=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "result": "FAILED",
            "reason": self.reason.value,
            "detail": self.detail,
            "fix": self.reason.fix,
            "culprit": self.culprit.to_dict() if self.culprit else None,
            "certificate": self.leaf.to_dict() if self.leaf else None,
            "revocation": self.revocation.to_dict() if self.revocation else None,
        }


ValidationResult = Verified | Rejected


def _answered_for(chain: Sequence[x509.Certificate], answer: RevocationResult) -> x509.Certificate:
    """The certificate of the path a revocation answer is about (the leaf by default)."""
    for cert in chain:
        same_serial = facts.serial_hex(cert) == answer.serial_number
        if same_serial and cert.subject.rfc4514_string() == answer.subject_dn:
            return cert
    return chain[0]


def client_extension_policies() -> tuple[ExtensionPolicy, ExtensionPolicy]:
    """The CA and end-entity profiles: Web PKI defaults, except that devices need no SAN.

    ``ExtensionPolicy.permit_all()`` would also accept device certificates, but it drops the
    EKU check; relaxing only the SAN rule keeps clientAuth enforced whenever an EKU exists.
    """
    ee = ExtensionPolicy.webpki_defaults_ee().may_be_present(
        x509.SubjectAlternativeName, Criticality.AGNOSTIC, None
    )
    return ExtensionPolicy.webpki_defaults_ca(), ee


def _describe(cert: x509.Certificate | None) -> facts.CertificateInfo | None:
    """What a rejection shows about the certificate at fault: None when there is none, or
    when it is a CA certificate whose extensions do not decode."""
    if cert is None:
        return None
    try:
        return facts.CertificateInfo.of(cert)
    except UNDECODABLE:
        return None


@dataclass(slots=True)
class _Cached:
    result: ValidationResult
    valid_from: dt.datetime
    valid_until: dt.datetime
    generation: int
    owner: str | None = None  # the stored CA a validated path belongs to


class _ResultCache:
    """A bounded LRU of results, each usable only inside its own time window."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._entries: OrderedDict[tuple[bytes, ...], _Cached] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[bytes, ...], at: dt.datetime, generation: int) -> _Cached | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if entry.generation != generation or not entry.valid_from <= at < entry.valid_until:
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
            return entry

    def put(self, key: tuple[bytes, ...], entry: _Cached) -> None:
        if self._size <= 0:
            return
        with self._lock:
            self._entries[key] = entry
            self._entries.move_to_end(key)
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


class Validator:
    """Validates presented client-certificate chains against an :class:`AnchorSource`."""

    def __init__(
        self,
        source: AnchorSource,
        clock: Clock | None = None,
        *,
        cache_size: int = 10_000,
        cache_seconds: int = 300,
        max_depth: int = MAX_DEPTH,
        revocation: RevocationChecker | None = None,
        policies: Callable[[str | None], RevocationPolicy] | None = None,
    ) -> None:
        """``revocation`` checks validated paths; ``policies`` gives the policy of a stored
        CA by id (None: a path of no stored CA); without it every path gets the defaults.
        Policies are cached until the trust store's generation moves."""
        self._source = source
        self._clock = clock or SystemClock()
        self._cache = _ResultCache(cache_size)
        self._cache_for = dt.timedelta(seconds=cache_seconds)
        self._max_depth = max_depth
        self._anchors = TrustAnchors((), ())
        self._store: Store | None = None
        self._verifier: tuple[int, float, ClientVerifier] | None = None
        self._checked_at = -1e9
        self._lock = threading.Lock()
        self._ca_policy, self._ee_policy = client_extension_policies()
        self._revocation = revocation
        self._policies = policies or (lambda _ca_id: DEFAULT_POLICY)
        self._policy_cache: dict[str | None, RevocationPolicy] = {}

    # trust set ---------------------------------------------------------------------

    def refresh(self) -> TrustAnchors:
        """Reload the trusted set now (after a change this process made)."""
        with self._lock:
            self._anchors = self._source.load()
            self._store = Store(list(self._anchors.anchors)) if self._anchors.anchors else None
            self._verifier = None
            self._checked_at = time.monotonic()
            self._cache.clear()
            self._policy_cache = {}
            return self._anchors

    def anchors(self, *, offline: bool = False) -> TrustAnchors:
        """The trusted set, reloaded when the source's generation moved (polled; with
        ``offline`` a poll that is due raises WouldBlockError instead)."""
        if time.monotonic() - self._checked_at >= GENERATION_POLL_SECONDS:
            if offline:
                raise WouldBlockError("trust-store generation poll due")
            self._checked_at = time.monotonic()
            if self._store is None or self._source.generation() != self._anchors.generation:
                return self.refresh()
        return self._anchors

    def _verifier_at(self, at: dt.datetime) -> ClientVerifier | None:
        if self._store is None:
            return None
        second = at.replace(microsecond=0)
        stamp = second.timestamp()
        cached = self._verifier
        if cached and cached[0] == self._anchors.generation and cached[1] == stamp:
            return cached[2]
        verifier = (
            PolicyBuilder()
            .store(self._store)
            .time(second)
            .max_chain_depth(self._max_depth)
            .extension_policies(ca_policy=self._ca_policy, ee_policy=self._ee_policy)
            .build_client_verifier()
        )
        self._verifier = (self._anchors.generation, stamp, verifier)
        return verifier

    # validation --------------------------------------------------------------------

    def verify(
        self, presented: Sequence[bytes], at: dt.datetime | None = None, *, offline: bool = False
    ) -> ValidationResult:
        """Validate the presented chain (DER, leaf first) at ``at`` (default: the clock's now).
        With ``offline`` (a caller on the event loop), only cached answers: WouldBlockError instead
        of a cold validation or any database or network I/O (a trust-store poll, a policy
        read, a CRL download, an OCSP request)."""
        at = as_utc(at) if at is not None else self._clock.now()
        anchors = self.anchors(offline=offline)
        key = tuple(presented)
        hit = self._cache.get(key, at, anchors.generation)
        if hit is None and offline:  # cold validation may take a hostile chain's budget
            raise WouldBlockError("chain not validated recently")
        if hit is None:
            result, valid_from, valid_until = self._verify_cold(presented, anchors, at)
            owner = None
            if self._revocation is not None and isinstance(result, Verified):
                owner = anchors.path_owner(result.chain)
            hit = _Cached(result, valid_from, valid_until, anchors.generation, owner)
            self._cache.put(key, hit)
        if self._revocation is None or not isinstance(hit.result, Verified):
            return hit.result
        return self._check_revocation(hit.result, hit.owner, at, offline)

    # revocation --------------------------------------------------------------------

    def policy(self, ca_id: str | None) -> RevocationPolicy:
        """The revocation policy of a stored CA (cached per trust-store generation); the
        defaults, uncached, when it cannot be read."""
        found = self._policy_cache.get(ca_id)
        if found is None:
            try:
                found = self._policies(ca_id)
            except Exception:  # a policy that cannot be read must not break a login
                log.exception("revocation policy of %s unreadable; using the defaults", ca_id)
                return DEFAULT_POLICY
            self._policy_cache[ca_id] = found
        return found

    def _check_revocation(
        self, verified: Verified, owner: str | None, at: dt.datetime, offline: bool = False
    ) -> ValidationResult:
        assert self._revocation is not None
        if offline and owner not in self._policy_cache:
            raise WouldBlockError("revocation policy not cached")
        policy = self.policy(owner)
        if policy.mode is Mode.OFF:
            return verified
        answer = self._revocation.check(verified.chain, policy, at, offline=offline)
        if not answer.denied:
            return verified.with_revocation(answer)
        assert answer.reason is not None
        leaf = facts.CertificateInfo.of(verified.chain[0])
        culprit = _describe(_answered_for(verified.chain, answer))
        return Rejected(answer.reason, answer.detail, culprit, leaf, answer)

    def _verify_cold(
        self, presented: Sequence[bytes], anchors: TrustAnchors, at: dt.datetime
    ) -> tuple[ValidationResult, dt.datetime, dt.datetime]:
        reject_window = (at, at + _REJECTION_CACHE)
        try:
            chain = present(presented, anchors, self._max_depth)
        except CertboundError as exc:
            return Rejected(exc.reason, exc.detail), *reject_window
        leaf_info = None
        verifier = self._verifier_at(at)
        try:
            if verifier is None:
                raise VerificationError("the trust store is empty")
            verified = verifier.verify(chain.leaf, [*chain.intermediates, *anchors.intermediates])
        except VerificationError as exc:
            leaf_info = facts.CertificateInfo.of(chain.leaf)
            try:
                found = diagnose(
                    chain.leaf,
                    chain.intermediates,
                    anchors,
                    at.replace(microsecond=0),  # the verifier's time (see _verifier_at)
                    verifier_message=str(exc),
                    max_depth=self._max_depth,
                )
            except UNDECODABLE as undecodable:
                # The leaf's extensions are decoded on intake; a CA's may not decode.
                found = Diagnosis(
                    ReasonCode.CERTIFICATE_POLICY_VIOLATION,
                    f"the verifier rejected the chain: {exc} (a CA certificate's "
                    f"extensions do not decode: {undecodable})",
                )
            culprit = _describe(found.culprit)
            return Rejected(found.reason, found.detail, culprit, leaf_info), *reject_window
        # The verifier checks the keys that verify signatures (the CAs'), never the leaf's
        # own key: apply the algorithm policy to it here.
        weak_key = key_problem(chain.leaf)
        if weak_key:
            leaf_info = facts.CertificateInfo.of(chain.leaf)
            detail = f"the device certificate {leaf_info.subject_dn!r}: {weak_key}"
            return (
                Rejected(ReasonCode.WEAK_ALGORITHM, detail, leaf_info, leaf_info),
                *reject_window,
            )
        path = tuple(verified.chain)
        valid_from = max(c.not_valid_before_utc for c in path)
        valid_until = min(*(c.not_valid_after_utc for c in path), at + self._cache_for)
        return Verified(path, presented[0]), valid_from, valid_until
