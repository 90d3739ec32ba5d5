"""Explaining a logged decision: which layer decided, the reason code, and what to do.

Backs ``certbound diagnose``. It finds one event in the System Log (by uuid, by the device
certificate's serial number, or the newest FAILURE/DENY) and explains it from the event
alone plus the trust store as it is now: for UNKNOWN_CA the issuer the certificate names and
the CAs that are uploaded, for INTERMEDIATE_MISSING which intermediate to upload, for
CERTIFICATE_EXPIRED when and how long ago, for REVOKED_CERTIFICATE when and why the
certificate was revoked and which CRL or OCSP responder said so, and so on. Every reason
code gets at least its catalogue meaning, the detail the deciding layer logged and the
catalogue fix (``docs/errors.md``); later layers add their own codes' explanations here.

Revocation answers are read from the event's ``deviceTrust.revocation``; the fail mode and
allowed staleness are the issuing CA's revocation settings now (they may have changed since).
A device allowed although its revocation status was unknown (a fail-open allow) is explained
as such, by the revocation layer.

A sign-on refused by a policy (POLICY_NOT_MATCHED, POLICY_DENIED, on a token request or a
``policy.evaluate_sign_on``) is explained from its ``policyEvaluationDetail``: the policy, the
rule that matched, the rule the admin probably meant (the first NOT_MATCHED ALLOW rule with
the fewest failed conditions) and the conditions it failed; given the policies as they are
now (``explain(..., policies=...)``), also the earlier rule that shadows it
(:func:`certbound.policy.analysis.analyse`).

The deciding layer is the reason code's layer (``certbound.errors``), except for
trust-store events (``security.trust.ca.*``, ``pki.ca.expiration.warn``), which the
upload layer decides whatever their code (an upload refused with CA_EXPIRED or
WEAK_ALGORITHM was refused by the upload checks, not by device validation).
"""

from __future__ import annotations

import datetime as dt
import json
import uuid as uuid_mod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Select, select

from certbound.clock import format_rfc3339, parse_rfc3339
from certbound.errors import Layer, ReasonCode
from certbound.pki import certificate as facts
from certbound.pki.certificate import CertificateInfo
from certbound.pki.revocation_policy import RevocationPolicy
from certbound.pki.revocation_policy import load as load_policy
from certbound.pki.truststore import chain_of
from certbound.policy.analysis import SHADOWED, KnownIds, analyse
from certbound.policy.model import Action, Policy
from certbound.storage.database import Database
from certbound.storage.models import CertificateAuthority, LogEvent
from certbound.syslog.events import EventType, Result

FAILED_RESULTS = (Result.FAILURE.value, Result.DENY.value)
FAIL_OPEN_MEANING = (
    "The device was allowed without a revocation answer, because its CA is set to fail "
    "open: a revoked certificate would have been let in too."
)
FAIL_OPEN_FIX = (
    "Make the CRL distribution point or OCSP responder above reachable (or have the CA "
    "publish a fresh CRL); to refuse devices when no answer can be had, "
    "`certbound ca update ID --fail-closed`."
)
_UPLOAD_EVENTS = {
    EventType.SECURITY_TRUST_CA_ADD.value,
    EventType.SECURITY_TRUST_CA_REMOVE.value,
    EventType.SECURITY_TRUST_CA_UPDATE.value,
    EventType.PKI_CA_EXPIRATION_WARN.value,
}
_DEVICE_EVENTS = {EventType.DEVICE_TRUST_VERIFY.value}


class SelectorError(ValueError):
    """An event selector that cannot name an event (not a uuid, not a hex serial)."""


# finding the event ---------------------------------------------------------------------


def normalise_serial(text: str) -> str:
    """A serial number as events store it: upper-case hex, even length, no leading zero
    bytes beyond that (``certbound.pki.certificate.serial_hex``). Colons, spaces and a
    ``0x`` prefix are allowed in the input; SelectorError when it is not hex."""
    cleaned = text.strip().replace(":", "").replace(" ", "")
    if cleaned[:2].lower() == "0x":
        cleaned = cleaned[2:]
    try:
        number = int(cleaned, 16)
    except ValueError as exc:
        raise SelectorError(f"not a hexadecimal serial number: {text!r}") from exc
    if number < 0 or not cleaned.isalnum():
        raise SelectorError(f"not a hexadecimal serial number: {text!r}")
    hex_text = format(number, "X")
    return hex_text if len(hex_text) % 2 == 0 else "0" + hex_text


def normalise_uuid(text: str) -> str:
    try:
        return str(uuid_mod.UUID(text.strip()))
    except ValueError as exc:
        raise SelectorError(f"not an event uuid: {text!r}") from exc


def _newest(db: Database, query: Select[tuple[str]]) -> dict[str, Any] | None:
    query = query.order_by(LogEvent.published.desc(), LogEvent.seq.desc()).limit(1)
    with db.session() as session:
        body = session.execute(query).scalar_one_or_none()
    if body is None:
        return None
    data: dict[str, Any] = json.loads(body)
    return data


def event_by_uuid(db: Database, event_uuid: str) -> dict[str, Any] | None:
    """The event with that uuid (SelectorError when the text is not a uuid)."""
    return _newest(db, select(LogEvent.body).where(LogEvent.uuid == normalise_uuid(event_uuid)))


def event_by_serial(db: Database, serial: str) -> dict[str, Any] | None:
    """The newest event whose ``deviceTrust.certificate.serialNumber`` is ``serial``."""
    wanted = normalise_serial(serial)
    return _newest(db, select(LogEvent.body).where(LogEvent.device_serial == wanted))


def last_failure(db: Database) -> dict[str, Any] | None:
    """The newest event whose outcome is FAILURE or DENY."""
    return _newest(db, select(LogEvent.body).where(LogEvent.outcome_result.in_(FAILED_RESULTS)))


# the trust store now -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StoredCertificate:
    """One certificate in the trust store now, with its CA chain and key identifier."""

    ca_id: str
    ca_name: str
    info: CertificateInfo
    key_id: str | None
    revocation: RevocationPolicy | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "caId": self.ca_id,
            "caName": self.ca_name,
            "subjectDn": self.info.subject_dn,
            "serialNumber": self.info.serial_number,
            "role": self.info.role,
            "subjectKeyId": self.key_id,
            "notAfter": format_rfc3339(self.info.not_after),
        }

    def line(self) -> str:
        key = f", key id {self.key_id}" if self.key_id else ""
        return (
            f"{self.ca_id} ({self.ca_name}): {self.info.subject_dn} "
            f"[{self.info.role}, serial {self.info.serial_number}{key}]"
        )


def stored_certificates(db: Database) -> list[StoredCertificate]:
    """Every certificate of every stored CA chain, oldest chain first, leaf-side first,
    each with its CA's revocation settings."""
    query = select(CertificateAuthority).order_by(
        CertificateAuthority.created_at, CertificateAuthority.id
    )
    out: list[StoredCertificate] = []
    with db.session() as session:
        for row in session.scalars(query):
            policy = load_policy(session, row.id)
            for cert in chain_of(row):
                info = CertificateInfo.of(cert)
                key = facts.subject_key_id(cert)
                out.append(StoredCertificate(row.id, row.name, info, key, policy))
    return out


# the explanation -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Explanation:
    """What ``certbound diagnose`` says about one event."""

    event: Mapping[str, Any]
    layer: Layer | None
    reason: str | None
    meaning: str
    what_happened: list[str]
    fix: str
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def device(self) -> Mapping[str, Any] | None:
        certificate = _obj(self.event, "deviceTrust").get("certificate")
        return certificate if isinstance(certificate, Mapping) else None

    def to_dict(self) -> dict[str, Any]:
        outcome = _obj(self.event, "outcome")
        return {
            "event": {
                "uuid": self.event.get("uuid"),
                "published": self.event.get("published"),
                "eventType": self.event.get("eventType"),
                "displayMessage": self.event.get("displayMessage"),
                "outcome": {"result": outcome.get("result"), "reason": outcome.get("reason")},
            },
            "device": dict(self.device) if self.device else None,
            "layer": self.layer.value if self.layer else None,
            "reason": self.reason,
            "meaning": self.meaning,
            "whatHappened": self.what_happened,
            "fix": self.fix,
            "facts": self.facts,
        }


def _obj(data: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = data.get(key)
    return value if isinstance(value, Mapping) else {}


@dataclass(frozen=True, slots=True)
class _Facts:
    """What one event says, read defensively (older or foreign events may lack fields)."""

    event: Mapping[str, Any]
    store: list[StoredCertificate]
    now: dt.datetime
    policies: Mapping[str, Policy] = field(default_factory=dict)

    @property
    def debug(self) -> Mapping[str, Any]:
        return _obj(_obj(self.event, "debugContext"), "debugData")

    @property
    def certificate(self) -> Mapping[str, Any]:
        return _obj(_obj(self.event, "deviceTrust"), "certificate")

    @property
    def culprit(self) -> Mapping[str, Any]:
        return _obj(self.debug, "culprit")

    @property
    def detail(self) -> str | None:
        detail = self.debug.get("detail")
        return str(detail) if detail else None

    @property
    def checked_at(self) -> dt.datetime | None:
        """The validation time: ``verify --at`` when given, else when it was logged."""
        text = self.debug.get("validationTime") or self.event.get("published")
        try:
            return parse_rfc3339(str(text)) if text else None
        except ValueError:
            return None

    @property
    def revocation(self) -> Mapping[str, Any]:
        """``deviceTrust.revocation``: the revocation answer (empty when none)."""
        return _obj(_obj(self.event, "deviceTrust"), "revocation")

    def ca_deciding(self) -> StoredCertificate | None:
        """The stored CA whose revocation settings applied: the one holding the revoked
        (or unanswered) CA certificate, else the one holding the device's issuer."""
        for subject in (self.revocation.get("subjectDn"), self.certificate.get("issuerDn")):
            found = self.with_subject(str(subject)) if subject else []
            if found:
                return found[0]
        return None

    def leaf_label(self) -> str:
        cert = self.certificate
        if not cert:
            return "the presented certificate (it could not be read)"
        subject, serial = cert.get("subjectDn"), cert.get("serialNumber")
        return f"the device certificate {subject!r} (serial {serial})"

    def with_subject(self, subject_dn: str) -> list[StoredCertificate]:
        return [s for s in self.store if s.info.subject_dn == subject_dn]

    def cas_lines(self) -> list[str]:
        """Every uploaded certificate, one line each, under a count of the CA chains."""
        count = len({s.ca_id for s in self.store})
        if not count:
            return ["The trust store is empty: no CA is uploaded."]
        lines = [f"Uploaded CAs ({count} chain{'s' if count != 1 else ''}):"]
        return lines + [f"  - {s.line()}" for s in self.store]


def _cap(text: str) -> str:
    """The text with its first letter upper-case (``str.capitalize`` would lower the rest)."""
    return text[:1].upper() + text[1:]


def _ago(delta: dt.timedelta) -> str:
    """``3 days``, ``5 hours``, ``12 minutes`` (absolute value)."""
    seconds = abs(delta.total_seconds())
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            count = int(seconds // size)
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return f"{int(seconds)} seconds"


def _when(text: Any) -> dt.datetime | None:
    try:
        return parse_rfc3339(str(text)) if text else None
    except ValueError:
        return None


# per-code explanations -----------------------------------------------------------------


def _unknown_ca(f: _Facts) -> tuple[list[str], dict[str, Any]]:
    cert, culprit = f.certificate, f.culprit
    issuer = culprit.get("issuerDn") or cert.get("issuerDn")
    aki = f.debug.get("authorityKeyId")
    if not culprit or culprit.get("subjectDn") == cert.get("subjectDn"):
        key = f" (authority key id {aki})" if aki else ""
        first = f"{_cap(f.leaf_label())} names the issuer {issuer!r}{key}."
    else:
        first = (
            f"The chain of {f.leaf_label()} reaches {culprit.get('subjectDn')!r}, whose "
            f"issuer {issuer!r} is not in the trust store."
        )
    lines = [
        first,
        f"No uploaded CA has the subject {issuer!r}, and no presented or stored certificate "
        "links it to one that has.",
    ]
    now_present = f.with_subject(str(issuer)) if issuer else []
    if now_present:
        lines.append(
            f"A CA with that subject is in the trust store now ({now_present[0].ca_id}): it was "
            "uploaded after this event. Verify the device again."
        )
    lines += f.cas_lines()
    return lines, {"issuerDn": issuer, "uploadedCas": [s.to_dict() for s in f.store]}


def _intermediate_missing(f: _Facts) -> tuple[list[str], dict[str, Any]]:
    cert = f.certificate
    issuer = cert.get("issuerDn")
    aki = f.debug.get("authorityKeyId")
    key = f" (subject key id {aki})" if aki else ""
    lines = [
        f"{_cap(f.leaf_label())} was issued by {issuer!r}, an intermediate that was "
        "neither uploaded nor presented.",
        f"Upload that intermediate: the CA certificate with subject {issuer!r}{key}, "
        "together with its root (`certbound ca add chain.pem`, intermediate first), or have "
        "the device send it with its certificate.",
    ]
    if f.detail:
        lines.append(f"Why it belongs under an uploaded CA: {f.detail}")
    present = [s for s in f.with_subject(str(issuer)) if not aki or s.key_id == aki]
    if present:
        lines.append(f"It is in the trust store now ({present[0].ca_id}): verify the device again.")
    lines += f.cas_lines()
    return lines, {
        "missingIntermediate": {"subjectDn": issuer, "subjectKeyId": aki},
        "uploadedCas": [s.to_dict() for s in f.store],
    }


def _validity(f: _Facts, expired: bool) -> tuple[list[str], dict[str, Any]]:
    """CERTIFICATE_EXPIRED / CERTIFICATE_NOT_YET_VALID: the limit, the validation time and
    how far apart they are, then where the certificate stands now."""
    cert = f.certificate
    key = "notAfter" if expired else "notBefore"
    limit = _when(cert.get(key))
    at = f.checked_at
    lines = []
    if limit is not None and at is not None:
        relation = "after" if expired else "before"
        lines.append(
            f"{_cap(f.leaf_label())} has {key} {format_rfc3339(limit)}; it was "
            f"checked at {format_rfc3339(at)}, {_ago(at - limit)} {relation} that."
        )
        past = f.now >= limit
        if expired:
            lines.append(
                f"It expired {_ago(f.now - limit)} ago."
                if past
                else f"It is still valid now (for {_ago(limit - f.now)}): it was checked at "
                "a later time (verify --at)."
            )
        else:
            lines.append(
                f"It became valid {_ago(f.now - limit)} ago: verify the device again."
                if past
                else f"It becomes valid in {_ago(limit - f.now)}."
            )
    elif f.detail:
        lines.append(f.detail)
    facts_out = {key: cert.get(key), "checkedAt": format_rfc3339(at) if at else None}
    return lines, facts_out


def _ca_validity(f: _Facts) -> tuple[list[str], dict[str, Any]]:
    culprit = f.culprit
    lines = []
    if culprit:
        lines.append(
            f"The CA certificate {culprit.get('subjectDn')!r} (serial "
            f"{culprit.get('serialNumber')}) in the chain of {f.leaf_label()} is valid from "
            f"{culprit.get('notBefore')} to {culprit.get('notAfter')}."
        )
    if f.detail:
        lines.append(f"The validator said: {f.detail}")
    return lines, {"culprit": dict(culprit) or None}


def _signature_invalid(f: _Facts) -> tuple[list[str], dict[str, Any]]:
    cert, culprit = f.certificate, f.culprit
    signed = culprit or cert
    issuer = signed.get("issuerDn")
    # The event carries the leaf's authority key id; a CA culprit's is in the detail.
    is_leaf = signed.get("serialNumber") == cert.get("serialNumber")
    aki = f.debug.get("authorityKeyId") if is_leaf else None
    same_dn = f.with_subject(str(issuer)) if issuer else []
    key = f" (authority key id {aki})" if aki else ""
    lines = [
        f"{signed.get('subjectDn')!r} names {issuer!r} as its issuer{key}, but no CA with "
        "that name holds the key that signed it."
    ]
    if not is_leaf and f.detail:
        lines.append(f"The validator said: {f.detail}")
    if same_dn:
        lines.append(f"CAs in the trust store with the subject {issuer!r}:")
        lines += [f"  - {s.line()}" for s in same_dn]
        if aki and not any(s.key_id == aki for s in same_dn):
            lines.append(
                f"None of them has the key id {aki}: the real issuer is a different CA with "
                "the same name."
            )
    else:
        lines.append(f"No CA with the subject {issuer!r} is in the trust store now.")
    return lines, {
        "issuerDn": issuer,
        "authorityKeyId": aki,
        "sameNameCas": [s.to_dict() for s in same_dn],
    }


def _culprit_detail(f: _Facts) -> tuple[list[str], dict[str, Any]]:
    """The certificate at fault and the validator's detail (EKU, key usage, ...)."""
    culprit = f.culprit
    lines = []
    if culprit and culprit.get("subjectDn") != f.certificate.get("subjectDn"):
        lines.append(
            f"The certificate at fault is {culprit.get('subjectDn')!r} (serial "
            f"{culprit.get('serialNumber')}, {culprit.get('role')}) in the chain of "
            f"{f.leaf_label()}."
        )
    elif f.certificate:
        lines.append(f"The certificate at fault is {f.leaf_label()}.")
    if f.detail:
        lines.append(f"The validator said: {f.detail}")
    return lines, {"culprit": dict(culprit) or None}


def _upload_rejected(f: _Facts) -> tuple[list[str], dict[str, Any]]:
    name = f.debug.get("file") or "the upload"
    context = _obj(f.debug, "context")
    lines = [f"The trust store refused {name}; nothing was stored."]
    if context.get("subject"):
        lines.append(
            f"The certificate at fault: block {context.get('block')}, {context['subject']}."
        )
    if f.detail:
        lines.append(f"The upload check said: {f.detail}")
    reason = _obj(f.event, "outcome").get("reason")
    if reason == ReasonCode.NOT_A_CA.value:
        lines.append(
            "That is a device or server certificate, not a CA: upload the CA chain that "
            "issued it (intermediate then root) instead."
        )
    clash = context.get("existing_ca_ids")
    if clash:
        lines.append(f"Conflicting stored CA(s): {', '.join(map(str, clash))}.")
    return lines, {"file": f.debug.get("file"), "context": dict(context)}


def _ca_missing(f: _Facts, nothing_was: str) -> tuple[list[str], dict[str, Any]]:
    ca_id = f.debug.get("caId")
    lines = [f"No CA with id {ca_id!r} was in the trust store; nothing was {nothing_was}."]
    lines += f.cas_lines()
    return lines, {"caId": ca_id, "uploadedCas": [s.to_dict() for s in f.store]}


def _ca_updated(f: _Facts) -> tuple[list[str], dict[str, Any]]:
    before, after = _obj(f.debug, "before"), _obj(f.debug, "after")
    changed = f.debug.get("changed")
    keys = changed if isinstance(changed, list) else []
    lines = [f"{f.event.get('displayMessage')}."]
    lines += [f"{key}: {before.get(key)} -> {after.get(key)}" for key in keys]
    if not keys:
        lines.append("Nothing changed: the settings were already so.")
    return lines, {"before": dict(before), "after": dict(after), "changed": keys}


def _expiry_warning(f: _Facts) -> tuple[list[str], dict[str, Any]]:
    certs = f.debug.get("certificates") or []
    lines = []
    for cert in certs if isinstance(certs, list) else []:
        if not isinstance(cert, Mapping):
            continue
        ends = _when(cert.get("notAfter"))
        left = f"in {_ago(ends - f.now)}" if ends and ends > f.now else "already"
        lines.append(
            f"CA certificate {cert.get('subjectDn')!r} (serial {cert.get('serialNumber')}) "
            f"expires at {cert.get('notAfter')}: {left}."
            if left != "already"
            else f"CA certificate {cert.get('subjectDn')!r} (serial "
            f"{cert.get('serialNumber')}) expired at {cert.get('notAfter')}."
        )
    return lines, {"certificates": certs}


_SOURCES = {
    "crl": "the CRL",
    "ocsp": "the OCSP responder",
    "cache": "a cached answer from",
    "file": "the CRL file",
}


def _checked_what(f: _Facts) -> str:
    """The certificate the revocation answer is about."""
    rev = f.revocation
    serial = rev.get("serialNumber")
    if not serial or serial == f.certificate.get("serialNumber"):
        return f.leaf_label()
    return (
        f"the CA certificate {rev.get('subjectDn')!r} (serial {serial}) in the chain of "
        f"{f.leaf_label()}"
    )


def _answered_by(f: _Facts) -> str:
    rev = f.revocation
    source = str(rev.get("source") or "")
    where = _SOURCES.get(source, "the revocation source")
    url = rev.get("url")
    checked = rev.get("checkedAt")
    if url:
        text = f"{where} {url}"
    elif source == "file":
        text = "a CRL file given to the check (`verify --crl`)"
    else:
        text = f"{where} (no URL)"
    return text + (f", checked at {checked}" if checked else "")


def _settings_line(ca: StoredCertificate | None) -> str | None:
    policy = ca.revocation if ca else None
    if ca is None or policy is None:
        return None
    fail = "fail open" if policy.fail_open else "fail closed"
    staleness = int(policy.max_staleness.total_seconds())
    return (
        f"Revocation settings of {ca.ca_id} ({ca.ca_name}) now: mode {policy.mode.value}, "
        f"{fail}, timeout {policy.timeout:g} s, allowed staleness {staleness} s."
    )


def _revocation_facts(f: _Facts) -> dict[str, Any]:
    ca = f.ca_deciding()
    return {
        "revocation": dict(f.revocation) or None,
        "caId": ca.ca_id if ca else None,
        "caRevocation": ca.revocation.to_dict() if ca and ca.revocation else None,
    }


def _with_context(f: _Facts, lines: list[str]) -> tuple[list[str], dict[str, Any]]:
    """The explainer's lines plus the check's own words and the CA's settings."""
    detail = f.revocation.get("detail") or f.detail
    if detail:
        lines.append(f"The revocation check said: {detail}")
    settings = _settings_line(f.ca_deciding())
    if settings:
        lines.append(settings)
    return lines, _revocation_facts(f)


def _revoked(f: _Facts) -> tuple[list[str], dict[str, Any]]:
    rev = f.revocation
    revoked_at = _when(rev.get("revokedAt"))
    when = ""
    if revoked_at is not None:
        when = f" at {format_rfc3339(revoked_at)} ({_ago(f.now - revoked_at)} ago)"
    why = rev.get("revocationReason") or "no reason given"
    lines = [
        f"{_cap(_checked_what(f))} was revoked{when}: {why}.",
        f"Answered by {_answered_by(f)}.",
    ]
    if rev.get("serialNumber") not in (None, f.certificate.get("serialNumber")):
        lines.append(
            "A revoked CA certificate refuses every device under it: upload the CA's "
            "replacement chain and reissue the devices' certificates under it."
        )
    return _with_context(f, lines)


def _unavailable(f: _Facts) -> tuple[list[str], dict[str, Any]]:
    rev = f.revocation
    status = rev.get("status") or "UNAVAILABLE"
    lines = [f"No revocation answer could be had for {_checked_what(f)} (status {status})."]
    if rev.get("url"):
        lines.append(f"Tried {_answered_by(f)}.")
    else:
        lines.append(
            "No CRL or OCSP URL was known for it: the certificate names no CRL distribution "
            "point or OCSP responder and its CA has no --crl-url / --ocsp-url."
        )
    lines.append(
        "The check failed closed, so the device was refused; a CA set to fail open "
        "(`certbound ca update ID --fail-open`) lets such a device in as a fail-open allow."
    )
    return _with_context(f, lines)


def _stale(f: _Facts) -> tuple[list[str], dict[str, Any]]:
    rev = f.revocation
    next_update = rev.get("nextUpdate")
    stale_by = _seconds(rev.get("staleBySeconds"))
    past = f" ({next_update})" if next_update else ""
    by = f" by {_ago(dt.timedelta(seconds=stale_by))}" if stale_by is not None else ""
    lines = [
        f"The newest CRL held for {_checked_what(f)} is past its nextUpdate{past}{by}, "
        "beyond the staleness its CA allows.",
        f"It came from {_answered_by(f)}.",
        "Until the CA publishes a fresh CRL there, devices under it are refused.",
    ]
    return _with_context(f, lines)


def _seconds(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def fail_open_allow(event: Mapping[str, Any]) -> bool:
    """Whether the event is a device let in without a revocation answer (fail open)."""
    revocation = _obj(_obj(event, "deviceTrust"), "revocation")
    debug = _obj(_obj(event, "debugContext"), "debugData")
    return bool(revocation.get("failOpen") or debug.get("revocationFailOpen"))


def _fail_open(f: _Facts) -> tuple[list[str], dict[str, Any]]:
    rev = f.revocation
    lines = [
        f"{_cap(f.leaf_label())} was allowed although no revocation answer could be had "
        f"for {_checked_what(f)} (status {rev.get('status') or 'unknown'}): its CA fails "
        "open. This is a fail-open allow (deviceTrust.revocation.failOpen).",
        f"Tried {_answered_by(f)}.",
    ]
    return _with_context(f, lines)


def _success(f: _Facts) -> tuple[list[str], dict[str, Any]]:
    if fail_open_allow(f.event):
        return _fail_open(f)
    result = _obj(f.event, "outcome").get("result")
    lines = [f"The outcome was {result}: {f.event.get('displayMessage')}."]
    chain = f.debug.get("chain")
    if isinstance(chain, list) and chain:
        lines.append("Validated path: " + " -> ".join(map(str, chain)))
    status = f.revocation.get("status")
    if status:
        lines.append(f"Revocation: {status} from {_answered_by(f)}.")
    return lines, {"revocation": dict(f.revocation)} if f.revocation else {}


def _intake(f: _Facts) -> Mapping[str, Any]:
    return _obj(_obj(f.event, "deviceTrust"), "intake")


def _no_certificate(f: _Facts) -> tuple[list[str], dict[str, Any]]:
    intake = _intake(f)
    path, peer = intake.get("listener"), intake.get("peer") or "the client"
    if path == "http" and intake.get("trustedHop"):
        fmt = intake.get("headerFormat")
        lines = [
            f"The trusted proxy {peer} forwarded no client certificate ({fmt} header absent "
            "or empty). Either the device sent none, or the proxy did not ask for one or "
            "does not set the header.",
            "Check the proxy: nginx needs `ssl_verify_client optional_no_ca` and "
            "`proxy_set_header X-SSL-Client-Cert $ssl_client_escaped_cert` (docs/deploy/).",
        ]
    elif path == "http":
        lines = [
            f"The request reached the plain-HTTP listener from {peer}, which is not a trusted "
            "proxy, without a certificate: only the TLS listener or a trusted proxy can "
            "bring one."
        ]
    else:
        lines = [
            f"{_cap(str(peer))} completed the TLS handshake without sending a certificate. "
            "The listener asks every client for one; the client has none configured "
            "(curl: --cert and --key) or none its CA list accepts."
        ]
    return lines, {"intake": dict(intake)}


def _untrusted_header(f: _Facts) -> tuple[list[str], dict[str, Any]]:
    intake = _intake(f)
    headers = ", ".join(map(str, intake.get("ignoredHeaders") or [])) or "a certificate header"
    lines = [
        f"{headers} arrived from {intake.get('peer') or 'an unknown peer'} on the "
        f"{intake.get('listener') or '?'} listener and was ignored: certificate headers count "
        "only from a peer in trusted_proxies on the plain-HTTP listener, never on the TLS "
        "listener and never because of X-Forwarded-For.",
        "If that peer is your proxy, add its address to trusted_proxies (docs/config.md); "
        "otherwise someone tried to forge a certificate: nothing was authenticated.",
    ]
    return lines, {"intake": dict(intake)}


def _header_malformed(f: _Facts) -> tuple[list[str], dict[str, Any]]:
    intake = _intake(f)
    lines = [
        f"The trusted proxy {intake.get('peer')} sent a {intake.get('headerFormat')} "
        f"certificate header that does not decode: {f.detail or 'no detail'}.",
        "Make the proxy's header match proxy_header (docs/deploy/README.md has a tested "
        "config per proxy).",
    ]
    return lines, {"intake": dict(intake)}


def _device_status(f: _Facts) -> tuple[list[str], dict[str, Any]]:
    device = _obj(_obj(f.event, "deviceTrust"), "device")
    status = str(device.get("status") or "?").lower()
    lines = [
        f"The certificate validated, but the device it maps to ({device.get('id')}, user "
        f"{device.get('user') or '(unmapped)'}) is {status}.",
    ]
    if status == "suspended":
        lines.append(f"Resume it if intended: certbound device resume {device.get('id')}")
    return lines, {"device": dict(device)}


def _token_refused(f: _Facts) -> tuple[list[str], dict[str, Any]]:
    """A refused token request: which client, which step, and for certificate problems the
    certificate it came with (device codes are explained by the device layer's own words)."""
    debug = f.debug
    actor = _obj(f.event, "actor")
    client = actor.get("alternateId") or debug.get("claimedClientId") or "an unidentified client"
    lines = [
        f"The token request of {client} (grant_type {debug.get('grantType') or '?'}) was "
        f"refused with OAuth error {debug.get('error')}: {debug.get('detail') or 'no detail'}."
    ]
    certificate = f.certificate
    if certificate:
        lines.append(
            f"It came with the certificate {certificate.get('subjectDn')!r} issued by "
            f"{certificate.get('issuerDn')!r} (serial {certificate.get('serialNumber')})."
        )
    reason = _obj(f.event, "outcome").get("reason")
    if reason == ReasonCode.CERTIFICATE_NOT_BOUND_TO_CLIENT.value:
        lines.append(
            f"Compare it with the client's registration: certbound app show {client} "
            "(tls_client_auth_* identity and the pinned CA keys)."
        )
    return lines, {"client": client, "oauthError": debug.get("error")}


def _meant(verdicts: list[Mapping[str, Any]], policy: Policy | None) -> Mapping[str, Any] | None:
    """The rule the admin probably meant: the first NOT_MATCHED ALLOW rule with the fewest
    failed conditions (any NOT_MATCHED rule when the policy, and so the actions, is gone)."""
    best: Mapping[str, Any] | None = None
    for verdict in verdicts:
        if verdict.get("verdict") != "NOT_MATCHED":
            continue
        rule = policy.rule(str(verdict.get("id"))) if policy is not None else None
        if policy is not None and (rule is None or rule.action is not Action.ALLOW):
            continue
        failed = len(verdict.get("failedConditions") or [])
        if best is None or failed < len(best.get("failedConditions") or []):
            best = verdict
    return best


def _shadowing(policy: Policy | None, rule_id: str) -> str | None:
    """The id of the earlier rule that shadows ``rule_id`` in the policy as it is now."""
    if policy is None:
        return None
    none = frozenset[str]()
    known = KnownIds(none, none, none, none)
    for finding in analyse(policy, known=known, apps_requiring_device_trust=none):
        if finding.kind == SHADOWED and finding.rule_id == rule_id:
            return finding.shadowed_by
    return None


def _rule_name(policy: Policy | None, verdicts: list[Mapping[str, Any]], rule_id: str) -> str:
    rule = policy.rule(rule_id) if policy is not None else None
    if rule is not None:
        return f"{rule.name!r} ({rule.id}, {rule.action.value})"
    named = next((v.get("name") for v in verdicts if v.get("id") == rule_id), None)
    return f"{named!r} ({rule_id})"


def _policy_refused(f: _Facts) -> tuple[list[str], dict[str, Any]]:
    """A sign-on a policy refused: the matched rule, the rule meant, what it failed, and
    what shadows it."""
    detail = _obj(f.event, "policyEvaluationDetail")
    verdicts = [v for v in detail.get("rules") or [] if isinstance(v, Mapping)]
    policy_id = str(detail.get("policyId"))
    policy = f.policies.get(policy_id)
    matched = str(detail.get("matchedRuleId"))
    lines = [
        f"The sign-on policy {detail.get('policyName')!r} ({policy_id}) decided "
        f"{detail.get('decision')}: rule {_rule_name(policy, verdicts, matched)} matched."
    ]
    if detail.get("reason") == ReasonCode.POLICY_NOT_MATCHED.value:
        lines.append("That is the catch-all: no rule above it matched, and it denies.")
    meant = _meant(verdicts, policy)
    found: dict[str, Any] = {"policyId": policy_id, "matchedRuleId": matched}
    if meant is None:
        lines.append("No ALLOW rule was tried before it.")
        return lines, found
    meant_id = str(meant.get("id"))
    failed = [str(c) for c in meant.get("failedConditions") or []]
    lines.append(
        f"The rule probably meant is {_rule_name(policy, verdicts, meant_id)} (priority "
        f"{meant.get('priority')}); it failed: {', '.join(failed) or 'nothing'}."
    )
    shadow = _shadowing(policy, meant_id)
    if shadow is not None:
        lines.append(
            f"Rule {_rule_name(policy, verdicts, shadow)} above it matches every request it "
            "would match: move it below, or narrow it (certbound doctor)."
        )
    lines += _device_lines(_obj(detail, "request"), failed)
    found.update(meantRuleId=meant_id, failedConditions=failed, shadowedBy=shadow)
    return lines, found


def _device_lines(request: Mapping[str, Any], failed: list[str]) -> list[str]:
    if not any(c == "deviceTrust" or c.startswith("certificate") for c in failed):
        return []
    if request.get("deviceVerified"):
        return ["The device was verified, but its certificate did not meet the rule."]
    reason = request.get("deviceReason") or "no verified certificate"
    return [f"The device was not verified ({reason}); check it with certbound diagnose."]


def _token_policy_refused(f: _Facts) -> tuple[list[str], dict[str, Any]]:
    first, found = _token_refused(f)
    more, policy = _policy_refused(f)
    return first + more, {**found, **policy}


_Explainer = Callable[[_Facts], tuple[list[str], dict[str, Any]]]
_POLICY_CODES = frozenset({ReasonCode.POLICY_NOT_MATCHED, ReasonCode.POLICY_DENIED})

_DEVICE: dict[ReasonCode, _Explainer] = {
    ReasonCode.UNKNOWN_CA: _unknown_ca,
    ReasonCode.INTERMEDIATE_MISSING: _intermediate_missing,
    ReasonCode.CERTIFICATE_EXPIRED: lambda f: _validity(f, expired=True),
    ReasonCode.CERTIFICATE_NOT_YET_VALID: lambda f: _validity(f, expired=False),
    ReasonCode.CA_EXPIRED: _ca_validity,
    ReasonCode.CA_NOT_YET_VALID: _ca_validity,
    ReasonCode.SIGNATURE_INVALID: _signature_invalid,
    ReasonCode.REVOKED_CERTIFICATE: _revoked,
    ReasonCode.REVOCATION_UNAVAILABLE: _unavailable,
    ReasonCode.REVOCATION_STALE: _stale,
    ReasonCode.NO_CLIENT_CERTIFICATE: _no_certificate,
    ReasonCode.UNTRUSTED_PROXY_HEADER: _untrusted_header,
    ReasonCode.PROXY_HEADER_MALFORMED: _header_malformed,
    ReasonCode.DEVICE_SUSPENDED: _device_status,
    ReasonCode.DEVICE_DEACTIVATED: _device_status,
}


def _explainer(event_type: str, result: str | None, reason: ReasonCode | None) -> _Explainer:
    if event_type == EventType.PKI_CA_EXPIRATION_WARN.value:
        return _expiry_warning
    failed = reason is not None and result in FAILED_RESULTS
    if event_type == EventType.SECURITY_TRUST_CA_UPDATE.value:
        return (lambda f: _ca_missing(f, "changed")) if failed else _ca_updated
    if reason is None or not failed:
        return _success
    if event_type == EventType.SECURITY_TRUST_CA_ADD.value:
        return _upload_rejected
    if event_type == EventType.SECURITY_TRUST_CA_REMOVE.value:
        return lambda f: _ca_missing(f, "removed")
    if event_type == EventType.APP_OAUTH2_TOKEN_GRANT.value:
        return _token_policy_refused if reason in _POLICY_CODES else _token_refused
    if reason in _POLICY_CODES:
        return _policy_refused
    return _DEVICE.get(reason, _culprit_detail)


def deciding_layer(
    event_type: str, reason: ReasonCode | None, *, fail_open: bool = False
) -> Layer | None:
    """The layer that decided (see the module docstring); a fail-open allow was decided
    by the revocation layer."""
    if event_type in _UPLOAD_EVENTS:
        return Layer.UPLOAD
    if reason is not None:
        return reason.layer
    if fail_open:
        return Layer.REVOCATION
    if event_type in _DEVICE_EVENTS:
        return Layer.CERTIFICATE
    return None


def explain(
    event: Mapping[str, Any],
    store: list[StoredCertificate],
    now: dt.datetime,
    *,
    policies: Mapping[str, Policy] | None = None,
) -> Explanation:
    """Explain one stored event (its JSON) against the trust store's certificates now
    (``policies``: the sign-on policies now, by id, for a policy's refusal)."""
    outcome = _obj(event, "outcome")
    reason_text = outcome.get("reason")
    result = outcome.get("result")
    try:
        reason = ReasonCode(reason_text) if reason_text else None
    except ValueError:  # a code from a newer Certbound: explain what the event says
        reason = None
    event_type = str(event.get("eventType"))
    facts = _Facts(event, store, now, policies or {})
    lines, found = _explainer(event_type, result, reason)(facts)
    fail_open = reason is None and fail_open_allow(event)
    if reason is not None:
        meaning, fix = reason.meaning, reason.fix
    elif fail_open:
        meaning, fix = FAIL_OPEN_MEANING, FAIL_OPEN_FIX
    elif reason_text:
        meaning = f"{reason_text} is not a reason code this version of Certbound knows."
        fix = "Upgrade Certbound, or see docs/errors.md of the version that wrote the event."
        detail = _obj(_obj(event, "debugContext"), "debugData").get("detail")
        lines = lines + ([str(detail)] if detail else [])
    else:
        meaning = "Nothing failed."
        fix = "Nothing to fix."
    return Explanation(
        event=event,
        layer=deciding_layer(event_type, reason, fail_open=fail_open),
        reason=reason_text,
        meaning=meaning,
        what_happened=lines,
        fix=fix,
        facts=found,
    )
