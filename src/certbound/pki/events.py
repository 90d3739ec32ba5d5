"""The PKI layer's System Log events: trust-store changes, CA expiry warnings, verifications.

Each builder turns one PKI decision into one :class:`certbound.syslog.events.Event`; the
caller hands it to the recorder. ``docs/events.md`` describes every field these fill.

- ``security.trust.ca.add``: :func:`ca_added` (SUCCESS) and :func:`ca_rejected` (FAILURE
  with the upload's reason code).
- ``security.trust.ca.remove``: :func:`ca_removed` and :func:`ca_remove_failed`.
- ``pki.ca.expiration.warn``: :func:`ca_expiring`, one event per CA chain naming every
  certificate of it that expires within the warning window; :func:`expiry_warned` tells
  whether a CA was already warned about since a time (the once-a-day rule of ``ca list``).
- ``device.trust.verify``: :func:`device_verified`. The event carries the presented leaf's
  facts even when validation failed, plus what a later ``certbound diagnose`` needs to
  explain the failure from the event alone (detail, culprit, authority key id), and the
  revocation answer (``deviceTrust.revocation``; a fail-open allow is flagged with
  ``debugData.revocationFailOpen`` so admins can count them).
- ``pki.crl.download_failure``, ``pki.crl.stale``, ``pki.ocsp.failure``:
  :func:`crl_download_failed`, :func:`crl_stale`, :func:`ocsp_failed`, recorded by the
  revocation checker (:mod:`certbound.pki.revocation`, :mod:`certbound.pki.crl_store`).
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
from collections.abc import Mapping, Sequence
from typing import Any

from cryptography import x509
from sqlalchemy import select

from certbound.clock import format_rfc3339
from certbound.errors import CertboundError, ReasonCode
from certbound.pki import certificate as facts
from certbound.pki.certificate import UNDECODABLE, CertificateInfo
from certbound.pki.revocation_policy import Mode, RevocationPolicy
from certbound.pki.truststore import StoredCA
from certbound.pki.validation import DeviceIdentity, Rejected, ValidationResult, Verified
from certbound.storage.database import Database
from certbound.storage.models import LogEvent
from certbound.syslog.events import (
    CLI_ACTOR,
    SYSTEM_ACTOR,
    Actor,
    Client,
    Event,
    EventType,
    Outcome,
    Result,
    Severity,
    Target,
)

CA_TARGET = "CertificateAuthority"
CERTIFICATE_TARGET = "X509Certificate"
CREDENTIAL = {"credentialType": "CERTIFICATE"}


# targets and certificate facts ---------------------------------------------------------


def ca_target(stored: StoredCA) -> Target:
    """The CA chain as an event target: its id, and its top certificate's subject DN."""
    top = stored.certificates[-1].subject_dn if stored.certificates else None
    return Target(stored.id, CA_TARGET, top, stored.name)


def certificate_target(info: CertificateInfo) -> Target:
    """A certificate as an event target, identified by its SHA-256 fingerprint."""
    return Target(info.sha256_fingerprint, CERTIFICATE_TARGET, info.subject_dn, info.serial_number)


def certificate_facts(info: CertificateInfo) -> dict[str, Any]:
    """``deviceTrust.certificate`` for a certificate (DESIGN.md, "System Log event")."""
    return {
        "subjectDn": info.subject_dn,
        "issuerDn": info.issuer_dn,
        "serialNumber": info.serial_number,
        "sha256Thumbprint": info.sha256_fingerprint,
        "notBefore": format_rfc3339(info.not_before),
        "notAfter": format_rfc3339(info.not_after),
        "sans": list(info.sans),
    }


def identity_facts(identity: DeviceIdentity) -> dict[str, Any]:
    """``deviceTrust.certificate`` for a verified device; the thumbprint is the lower-case
    hex form of the identity's ``x5t#S256`` (both are SHA-256 over the leaf's DER).
    Computed once per identity (devices connect again and again); a copy each call."""
    return dict(_identity_facts(identity))


@functools.lru_cache(maxsize=4096)
def _identity_facts(identity: DeviceIdentity) -> dict[str, Any]:
    padded = identity.x5t_s256 + "=" * (-len(identity.x5t_s256) % 4)
    return {
        "subjectDn": identity.subject_dn,
        "issuerDn": identity.issuer_dn,
        "serialNumber": identity.serial_number,
        "sha256Thumbprint": base64.urlsafe_b64decode(padded).hex(),
        "notBefore": format_rfc3339(identity.not_before),
        "notAfter": format_rfc3339(identity.not_after),
        "sans": list(identity.sans),
    }


def _culprit(info: CertificateInfo) -> dict[str, Any]:
    return {
        "subjectDn": info.subject_dn,
        "issuerDn": info.issuer_dn,
        "serialNumber": info.serial_number,
        "role": info.role,
        "notBefore": format_rfc3339(info.not_before),
        "notAfter": format_rfc3339(info.not_after),
    }


def _leaf_info(result: Rejected, presented_leaf: x509.Certificate | None) -> CertificateInfo | None:
    """The presented leaf's facts: the validator's, else parsed here when the leaf parses."""
    if result.leaf is not None:
        return result.leaf
    if presented_leaf is None:
        return None
    try:
        return CertificateInfo.of(presented_leaf)
    except UNDECODABLE:
        return None


@functools.lru_cache(maxsize=4096)
def _subjects(chain: tuple[x509.Certificate, ...]) -> tuple[str, ...]:
    return tuple(cert.subject.rfc4514_string() for cert in chain)


@functools.lru_cache(maxsize=4096)
def _authority_key_id(presented_leaf: x509.Certificate | None) -> str | None:
    if presented_leaf is None:
        return None
    try:
        return facts.key_id(presented_leaf)
    except UNDECODABLE:
        return None


# device.trust.verify -------------------------------------------------------------------


def device_trust_object(
    result: ValidationResult,
    presented_leaf: x509.Certificate | None,
    *,
    context: Mapping[str, Any] | None = None,
    refusal: tuple[ReasonCode, str] | None = None,
) -> dict[str, Any]:
    """``deviceTrust`` for one validation (see :func:`device_verified`): what an event
    of another type carries when the decision is part of its action (a token request)."""
    certificate, reason = _verdict(result, presented_leaf, refusal)
    revocation = result.revocation
    return {
        "verified": reason is None,
        "reason": reason.value if reason is not None else None,
        "certificate": certificate,
        "revocation": revocation.to_dict() if revocation is not None else None,
        **(context or {}),
    }


def _verdict(
    result: ValidationResult,
    presented_leaf: x509.Certificate | None,
    refusal: tuple[ReasonCode, str] | None,
) -> tuple[dict[str, Any] | None, ReasonCode | None]:
    """``deviceTrust.certificate`` and the refusing code (None: verified)."""
    if isinstance(result, Rejected):
        leaf = _leaf_info(result, presented_leaf)
        return (certificate_facts(leaf) if leaf else None), result.reason
    return identity_facts(result.identity), (refusal[0] if refusal is not None else None)


def device_verified(
    result: ValidationResult,
    presented_leaf: x509.Certificate | None,
    actor: Actor = CLI_ACTOR,
    client: Client | None = None,
    *,
    at: dt.datetime | None = None,
    generation: int | None = None,
    extra: Mapping[str, Any] | None = None,
    context: Mapping[str, Any] | None = None,
    refusal: tuple[ReasonCode, str] | None = None,
) -> Event:
    """One validation of a presented chain against the trust store.

    ``at`` is the validation time (``verify --at``; None: when it ran), ``generation`` the
    trust-store generation validated against, ``extra`` more ``debugData`` (the file, the
    command), ``context`` more ``deviceTrust`` members (``intake``, ``device``), and
    ``refusal`` a later layer's refusal of a chain that validated (DEVICE_SUSPENDED).
    """
    device_trust = device_trust_object(result, presented_leaf, context=context, refusal=refusal)
    certificate = device_trust["certificate"]
    debug = _debug(result, presented_leaf, at, generation, extra)
    if isinstance(result, Rejected):
        debug["detail"] = result.detail
        debug["culprit"] = _culprit(result.culprit) if result.culprit else None
        subject = certificate["subjectDn"] if certificate else "an unreadable certificate"
        message = f"Device certificate rejected ({result.reason.value}): {subject}"
        outcome, severity = Outcome(Result.FAILURE, result.reason), Severity.WARN
    elif refusal is not None:
        code, debug["detail"] = refusal
        message = f"Device refused ({code.value}): {result.identity.subject_dn}"
        outcome, severity = Outcome(Result.FAILURE, code), Severity.WARN
    else:
        message = _verified_message(result)
        outcome, severity = Outcome(Result.SUCCESS), Severity.INFO
    return Event(
        event_type=EventType.DEVICE_TRUST_VERIFY,
        display_message=message,
        outcome=outcome,
        actor=actor,
        severity=severity,
        targets=_certificate_target(certificate),
        client=client or Client(),
        authentication_context=dict(CREDENTIAL),
        device_trust=device_trust,
        debug_data=debug,
    )


def _debug(
    result: ValidationResult,
    presented_leaf: x509.Certificate | None,
    at: dt.datetime | None,
    generation: int | None,
    extra: Mapping[str, Any] | None,
) -> dict[str, Any]:
    debug: dict[str, Any] = {
        "trustSource": "store",
        "authorityKeyId": _authority_key_id(presented_leaf),
        **({"validationTime": format_rfc3339(at)} if at is not None else {}),
        **({"trustStoreGeneration": generation} if generation is not None else {}),
        **(extra or {}),
    }
    if result.revocation is not None and result.revocation.fail_open:
        debug["revocationFailOpen"] = True
    if not isinstance(result, Rejected):
        debug["chain"] = list(_subjects(result.chain))
    return debug


def _verified_message(result: Verified) -> str:
    revocation = result.revocation
    if revocation is not None and revocation.fail_open:
        return (
            f"Device certificate verified (revocation {revocation.status.value}, "
            f"allowed by fail-open): {result.identity.subject_dn}"
        )
    return f"Device certificate verified: {result.identity.subject_dn}"


def _certificate_target(certificate: Mapping[str, Any] | None) -> tuple[Target, ...]:
    if certificate is None:
        return ()
    return (
        Target(
            certificate["sha256Thumbprint"],
            CERTIFICATE_TARGET,
            certificate["subjectDn"],
            certificate["serialNumber"],
        ),
    )


# security.trust.ca.add / .remove -------------------------------------------------------


def _chain_summary(stored: StoredCA) -> list[dict[str, Any]]:
    return [
        {
            "subjectDn": info.subject_dn,
            "serialNumber": info.serial_number,
            "role": info.role,
            "sha256Fingerprint": info.sha256_fingerprint,
            "spkiSha256": info.spki_sha256,
            "notAfter": format_rfc3339(info.not_after),
        }
        for info in stored.certificates
    ]


def ca_added(
    stored: StoredCA,
    actor: Actor = CLI_ACTOR,
    client: Client | None = None,
    *,
    filename: str | None = None,
) -> Event:
    """A CA chain stored in the trust store (notices, e.g. a reorder, in ``debugData``)."""
    notices = [notice.to_dict() for notice in stored.notices]
    return Event(
        event_type=EventType.SECURITY_TRUST_CA_ADD,
        display_message=f"CA chain added to the trust store: {stored.name}",
        outcome=Outcome(Result.SUCCESS),
        actor=actor,
        severity=Severity.WARN if notices else Severity.INFO,
        targets=(ca_target(stored),),
        client=client or Client(),
        debug_data={"file": filename, "certificates": _chain_summary(stored), "notices": notices},
    )


def ca_rejected(
    error: CertboundError,
    filename: str | None,
    actor: Actor = CLI_ACTOR,
    client: Client | None = None,
) -> Event:
    """An upload the trust store refused; nothing was stored. ``error.context`` (which
    block, its subject) goes to ``debugData.context``."""
    return Event(
        event_type=EventType.SECURITY_TRUST_CA_ADD,
        display_message=f"CA upload rejected ({error.reason.value})",
        outcome=Outcome(Result.FAILURE, error.reason),
        actor=actor,
        severity=Severity.WARN,
        client=client or Client(),
        debug_data={"file": filename, "detail": error.detail, "context": dict(error.context)},
    )


def ca_removed(stored: StoredCA, actor: Actor = CLI_ACTOR, client: Client | None = None) -> Event:
    """A CA chain deleted from the trust store."""
    return Event(
        event_type=EventType.SECURITY_TRUST_CA_REMOVE,
        display_message=f"CA chain removed from the trust store: {stored.name}",
        outcome=Outcome(Result.SUCCESS),
        actor=actor,
        severity=Severity.INFO,
        targets=(ca_target(stored),),
        client=client or Client(),
        debug_data={"certificates": _chain_summary(stored)},
    )


def ca_remove_failed(
    error: CertboundError, ca_id: str, actor: Actor = CLI_ACTOR, client: Client | None = None
) -> Event:
    """A removal that changed nothing (CA_NOT_FOUND)."""
    return Event(
        event_type=EventType.SECURITY_TRUST_CA_REMOVE,
        display_message=f"CA removal failed ({error.reason.value}): {ca_id}",
        outcome=Outcome(Result.FAILURE, error.reason),
        actor=actor,
        severity=Severity.WARN,
        targets=(Target(ca_id, CA_TARGET),),
        client=client or Client(),
        debug_data={"detail": error.detail, "caId": ca_id},
    )


# pki.ca.expiration.warn ----------------------------------------------------------------


def expiring(stored: StoredCA, now: dt.datetime, warning_days: int) -> Sequence[CertificateInfo]:
    """The certificates of a CA chain whose notAfter is within ``warning_days`` of ``now``
    (already expired ones included), soonest first."""
    window = dt.timedelta(days=warning_days)
    soon = [info for info in stored.certificates if info.not_after - now <= window]
    return sorted(soon, key=lambda info: info.not_after)


def changed_settings(before: RevocationPolicy, after: RevocationPolicy) -> list[str]:
    """The revocation settings (JSON keys) that differ."""
    old, new = before.to_dict(), after.to_dict()
    return [key for key in new if old[key] != new[key]]


def ca_updated(
    stored: StoredCA,
    before: RevocationPolicy,
    after: RevocationPolicy,
    actor: Actor = CLI_ACTOR,
) -> Event:
    """``security.trust.ca.update``: WARN when the CA is left unchecked or failing open."""
    changed = changed_settings(before, after)
    weak = after.mode is Mode.OFF or after.fail_open
    return Event(
        event_type=EventType.SECURITY_TRUST_CA_UPDATE,
        display_message=f"CA revocation settings updated: {stored.name}",
        outcome=Outcome(Result.SUCCESS),
        actor=actor,
        severity=Severity.WARN if weak or not changed else Severity.INFO,
        targets=(ca_target(stored),),
        debug_data={"before": before.to_dict(), "after": after.to_dict(), "changed": changed},
    )


def ca_update_failed(
    error: CertboundError, ca_id: str, requested: dict[str, Any], actor: Actor = CLI_ACTOR
) -> Event:
    return Event(
        event_type=EventType.SECURITY_TRUST_CA_UPDATE,
        display_message=f"CA update failed ({error.reason.value}): {ca_id}",
        outcome=Outcome(Result.FAILURE, error.reason),
        actor=actor,
        severity=Severity.WARN,
        targets=(Target(ca_id, CA_TARGET),),
        debug_data={"detail": error.detail, "caId": ca_id, "requested": requested},
    )


def ca_expiring(
    stored: StoredCA,
    now: dt.datetime,
    warning_days: int,
    actor: Actor = SYSTEM_ACTOR,
    client: Client | None = None,
    *,
    trigger: str,
) -> Event | None:
    """The warning for a CA chain with certificates expiring within ``warning_days``, or
    None when it has none. ``trigger`` says what noticed it: ``"upload"`` or ``"list"``.

    The reason is CA_EXPIRING_SOON (severity WARN), or CA_EXPIRED (severity ERROR) when a
    certificate of the chain has already expired.
    """
    soon = expiring(stored, now, warning_days)
    if not soon:
        return None
    expired = soon[0].not_after <= now
    reason = ReasonCode.CA_EXPIRED if expired else ReasonCode.CA_EXPIRING_SOON
    first = soon[0]
    when = format_rfc3339(first.not_after)
    verb = "expired" if expired else "expires"
    return Event(
        event_type=EventType.PKI_CA_EXPIRATION_WARN,
        display_message=f"CA certificate {verb} {when}: {first.subject_dn} (CA {stored.name})",
        outcome=Outcome(Result.SUCCESS, reason),
        actor=actor,
        severity=Severity.ERROR if expired else Severity.WARN,
        targets=(ca_target(stored), *(certificate_target(info) for info in soon)),
        client=client or Client(),
        debug_data={
            "trigger": trigger,
            "warningDays": warning_days,
            "certificates": [
                {
                    "subjectDn": info.subject_dn,
                    "serialNumber": info.serial_number,
                    "role": info.role,
                    "notAfter": format_rfc3339(info.not_after),
                    "daysLeft": (info.not_after - now).days,
                }
                for info in soon
            ],
        },
    )


def start_of_day(now: dt.datetime) -> dt.datetime:
    """Midnight UTC of ``now``'s day: ``ca list`` warns about a CA once per UTC day."""
    return now.astimezone(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def expiry_warned(db: Database, ca_id: str, since: dt.datetime) -> bool:
    """Whether the log holds a ``pki.ca.expiration.warn`` for the CA published at or after
    ``since`` (from an upload or an earlier listing)."""
    query = (
        select(LogEvent.seq)
        .where(
            LogEvent.event_type == EventType.PKI_CA_EXPIRATION_WARN.value,
            LogEvent.target_ids.contains(f" {ca_id} ", autoescape=True),
            LogEvent.published >= since,
        )
        .limit(1)
    )
    with db.session() as session:
        return session.execute(query).first() is not None


# pki.crl.download_failure / pki.crl.stale / pki.ocsp.failure ---------------------------

# Problems that point at an attack or a misconfigured CA rather than a network hiccup.
_SERIOUS_PROBLEMS = frozenset({"signature", "issuer", "rollback", "responder", "certid", "nonce"})


def _revocation_target(
    fingerprint: str | None, subject_dn: str, serial: str | None
) -> tuple[Target, ...]:
    if fingerprint is None:
        return ()
    return (Target(fingerprint, CERTIFICATE_TARGET, subject_dn, serial),)


def _seconds(value: dt.timedelta | None) -> int | None:
    return None if value is None else int(value.total_seconds())


def _stamp(value: dt.datetime | None) -> str | None:
    return None if value is None else format_rfc3339(value)


def crl_download_failed(
    url: str,
    ca_subject: str,
    error: str,
    *,
    problem: str,
    trigger: str = "login",
    ca_fingerprint: str | None = None,
    latency_ms: float | None = None,
    held_next_update: dt.datetime | None = None,
) -> Event:
    """A CRL that could not be had or used: unreachable, slow, not a CRL, signed by another
    CA or key, older than the one held (``problem``: a word of ``crl.PROBLEMS``).
    ``trigger`` is ``login`` (a verification needed it), ``refresh`` (the background
    refresher) or ``health``; ``held_next_update`` is the nextUpdate of the CRL still held."""
    severity = Severity.ERROR if problem in _SERIOUS_PROBLEMS else Severity.WARN
    return Event(
        event_type=EventType.PKI_CRL_DOWNLOAD_FAILURE,
        display_message=f"CRL download failed ({problem}): {url}",
        outcome=Outcome(Result.FAILURE, ReasonCode.REVOCATION_UNAVAILABLE),
        actor=SYSTEM_ACTOR,
        severity=severity,
        targets=_revocation_target(ca_fingerprint, ca_subject, None),
        transaction_type="JOB" if trigger == "refresh" else "CLI",
        debug_data={
            "url": url,
            "caSubjectDn": ca_subject,
            "problem": problem,
            "error": error,
            "trigger": trigger,
            "latencyMs": None if latency_ms is None else round(latency_ms, 1),
            "heldNextUpdate": _stamp(held_next_update),
        },
    )


def crl_stale(
    url: str,
    ca_subject: str,
    *,
    this_update: dt.datetime,
    next_update: dt.datetime | None,
    stale_by: dt.timedelta,
    max_staleness: dt.timedelta,
    fail_open: bool,
    ca_fingerprint: str | None = None,
) -> Event:
    """The newest CRL to be had is more than ``max_staleness`` past its nextUpdate: its
    certificates' status is REVOCATION_STALE (refused, or allowed when ``fail_open``)."""
    return Event(
        event_type=EventType.PKI_CRL_STALE,
        display_message=f"CRL stale by {stale_by} (allowed {max_staleness}): {url}",
        outcome=Outcome(Result.FAILURE, ReasonCode.REVOCATION_STALE),
        actor=SYSTEM_ACTOR,
        severity=Severity.WARN,
        targets=_revocation_target(ca_fingerprint, ca_subject, None),
        debug_data={
            "url": url,
            "caSubjectDn": ca_subject,
            "thisUpdate": format_rfc3339(this_update),
            "nextUpdate": _stamp(next_update),
            "staleBySeconds": _seconds(stale_by),
            "maxStalenessSeconds": _seconds(max_staleness),
            "failOpen": fail_open,
        },
    )


def ocsp_failed(
    url: str,
    subject_dn: str,
    serial_number: str,
    error: str,
    *,
    problem: str,
    issuer_dn: str,
    fingerprint: str | None = None,
    latency_ms: float | None = None,
) -> Event:
    """An OCSP exchange about one certificate that gave no usable answer (``problem``: a
    word of ``ocsp.PROBLEMS``: unavailable, malformed, signature, certid, stale...)."""
    severity = Severity.ERROR if problem in _SERIOUS_PROBLEMS else Severity.WARN
    return Event(
        event_type=EventType.PKI_OCSP_FAILURE,
        display_message=f"OCSP check failed ({problem}) for serial {serial_number}: {url}",
        outcome=Outcome(Result.FAILURE, ReasonCode.REVOCATION_UNAVAILABLE),
        actor=SYSTEM_ACTOR,
        severity=severity,
        targets=_revocation_target(fingerprint, subject_dn, serial_number),
        debug_data={
            "url": url,
            "subjectDn": subject_dn,
            "serialNumber": serial_number,
            "issuerDn": issuer_dn,
            "problem": problem,
            "error": error,
            "latencyMs": None if latency_ms is None else round(latency_ms, 1),
        },
    )
