"""Why a chain failed: turn a verifier rejection into one stable reason code.

cryptography decides whether a chain is valid; its error messages are not an interface, so
this module never reads them for the code. It re-examines the chain with its own checks, in
a fixed order (trust first, then the facts of each certificate on the path) and names the
first problem and the certificate it is about. A rejection no check explains becomes
CERTIFICATE_POLICY_VIOLATION with the verifier's message as detail.

The path here is found by following issuer names and signatures, only to point at the
certificate at fault; the verdict itself always comes from the verifier.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from certbound.errors import ReasonCode
from certbound.pki import certificate as facts
from certbound.pki.algorithms import algorithm_problem
from certbound.pki.anchors import TrustAnchors
from certbound.pki.presented import MAX_DEPTH


@dataclass(frozen=True, slots=True)
class Diagnosis:
    reason: ReasonCode
    detail: str
    culprit: x509.Certificate | None = None


def _label(cert: x509.Certificate) -> str:
    return f"{cert.subject.rfc4514_string()!r} (serial {facts.serial_hex(cert)})"


def _candidates(cert: x509.Certificate, pool: Sequence[x509.Certificate]) -> list[x509.Certificate]:
    return [c for c in pool if c.subject == cert.issuer and c is not cert]


def _find_path(
    leaf: x509.Certificate, pool: Sequence[x509.Certificate], anchors: TrustAnchors
) -> tuple[list[x509.Certificate], Diagnosis | None]:
    """Follow issuers from the leaf to an anchor; on a break, say where and why."""
    path = [leaf]
    while not anchors.is_anchor(path[-1]):
        cert = path[-1]
        named = [c for c in _candidates(cert, pool) if c not in path]
        signers = [c for c in named if facts.signed_by(cert, c)]
        if not named:
            return path, _unknown_issuer(cert, path, pool, anchors)
        if not signers:
            return path, Diagnosis(
                ReasonCode.SIGNATURE_INVALID,
                f"{_label(cert)} names {cert.issuer.rfc4514_string()!r} as issuer, but no "
                "CA with that name holds the key that signed it "
                f"(authority key id {facts.key_id(cert) or 'absent'})",
                cert,
            )
        if len(path) > MAX_DEPTH:
            break
        path.append(next((c for c in signers if anchors.is_anchor(c)), signers[0]))
    return path, None


def _namespace(name: x509.Name) -> frozenset[x509.NameAttribute[Any]]:
    """A name's attributes other than CN (O, OU, DC, C ...): the organisation it belongs to."""
    return frozenset(a for a in name if a.oid != NameOID.COMMON_NAME)


def _unknown_issuer(
    cert: x509.Certificate,
    path: list[x509.Certificate],
    pool: Sequence[x509.Certificate],
    anchors: TrustAnchors,
) -> Diagnosis:
    issuer = cert.issuer.rfc4514_string()
    keyid = facts.key_id(cert) or "absent"
    if len(path) > 1:
        return Diagnosis(
            ReasonCode.UNKNOWN_CA,
            f"the chain reaches {_label(cert)}, whose issuer {issuer!r} "
            f"(key id {keyid}) is not in the trust store",
            cert,
        )
    evidence = _belongs_under_store(cert, pool, anchors)
    if evidence:
        return Diagnosis(
            ReasonCode.INTERMEDIATE_MISSING,
            f"issued by {issuer!r} (key id {keyid}), which was neither uploaded nor "
            f"presented; {evidence}",
            cert,
        )
    return Diagnosis(
        ReasonCode.UNKNOWN_CA,
        f"issuer {issuer!r} (key id {keyid}) is not in the trust store",
        cert,
    )


def _belongs_under_store(
    cert: x509.Certificate, pool: Sequence[x509.Certificate], anchors: TrustAnchors
) -> str | None:
    """Evidence that the missing issuer sits under an uploaded CA, or None."""
    for presented in pool:
        if presented in anchors.all_cas:
            continue
        if any(facts.signed_by(presented, ca) for ca in anchors.all_cas):
            return (
                f"the presented {_label(presented)} chains to an uploaded CA, but the "
                "intermediate between it and the certificate is missing"
            )
    namespace = _namespace(cert.issuer)
    if namespace:
        for ca in anchors.all_cas:
            if _namespace(ca.subject) == namespace:
                return (
                    f"it belongs to the same organisation as uploaded CA "
                    f"{ca.subject.rfc4514_string()!r}: upload its intermediate too"
                )
    return None


def _validity(path: list[x509.Certificate], at: dt.datetime) -> Diagnosis | None:
    for index, cert in enumerate(path):
        leaf = index == 0
        if cert.not_valid_before_utc > at:
            code = ReasonCode.CERTIFICATE_NOT_YET_VALID if leaf else ReasonCode.CA_NOT_YET_VALID
            when = cert.not_valid_before_utc.isoformat()
            return Diagnosis(code, f"{_label(cert)} is not valid before {when}", cert)
        if cert.not_valid_after_utc < at:
            code = ReasonCode.CERTIFICATE_EXPIRED if leaf else ReasonCode.CA_EXPIRED
            when = cert.not_valid_after_utc.isoformat()
            return Diagnosis(code, f"{_label(cert)} expired at {when}", cert)
    return None


def _algorithms(path: list[x509.Certificate], anchors: TrustAnchors) -> Diagnosis | None:
    for cert in path:
        problem = algorithm_problem(cert)
        if problem and not (anchors.is_anchor(cert) and "signed with" in problem):
            return Diagnosis(ReasonCode.WEAK_ALGORITHM, f"{_label(cert)}: {problem}", cert)
    return None


def _usages(path: list[x509.Certificate]) -> Diagnosis | None:
    leaf, cas = path[0], path[1:]
    eku = facts.extension(leaf, x509.ExtendedKeyUsage)
    if eku is not None and ExtendedKeyUsageOID.CLIENT_AUTH not in eku:
        names = ", ".join(getattr(o, "_name", o.dotted_string) for o in eku)
        return Diagnosis(
            ReasonCode.EKU_NOT_CLIENT_AUTH,
            f"{_label(leaf)} allows only {names}, not clientAuth",
            leaf,
        )
    for ca in cas:
        ca_eku = facts.extension(ca, x509.ExtendedKeyUsage)
        if ca_eku is not None and ExtendedKeyUsageOID.CLIENT_AUTH not in ca_eku:
            return Diagnosis(
                ReasonCode.EKU_NOT_CLIENT_AUTH,
                f"CA {_label(ca)} restricts its certificates to usages without clientAuth",
                ca,
            )
        if not facts.is_ca(ca):
            return Diagnosis(
                ReasonCode.KEY_USAGE_INVALID,
                f"{_label(ca)} issued a certificate but is not a CA (basicConstraints)",
                ca,
            )
        if not facts.can_sign_certificates(ca):
            return Diagnosis(
                ReasonCode.KEY_USAGE_INVALID,
                f"CA {_label(ca)} has a keyUsage without keyCertSign",
                ca,
            )
    usage = facts.extension(leaf, x509.KeyUsage)
    if usage is not None and usage.key_cert_sign and not facts.is_ca(leaf):
        return Diagnosis(
            ReasonCode.KEY_USAGE_INVALID,
            f"{_label(leaf)} asserts keyCertSign without being a CA",
            leaf,
        )
    return None


def _path_length(path: list[x509.Certificate], max_depth: int) -> Diagnosis | None:
    if len(path) > max_depth + 1:
        return Diagnosis(
            ReasonCode.PATH_LENGTH_EXCEEDED,
            f"the chain has {len(path)} certificates; at most {max_depth + 1} are allowed",
            path[0],
        )
    for index, ca in enumerate(path[1:], start=1):
        constraints = facts.basic_constraints(ca)
        if constraints is None or constraints.path_length is None:
            continue
        below = sum(1 for c in path[1:index] if not facts.is_self_issued(c))
        if below > constraints.path_length:
            return Diagnosis(
                ReasonCode.PATH_LENGTH_EXCEEDED,
                f"CA {_label(ca)} has pathLenConstraint {constraints.path_length} but "
                f"{below} intermediate(s) follow it",
                ca,
            )
    return None


def _name_constraints(path: list[x509.Certificate]) -> Diagnosis | None:
    for ca in path[1:]:
        if facts.extension(ca, x509.NameConstraints) is not None:
            return Diagnosis(
                ReasonCode.NAME_CONSTRAINT_VIOLATION,
                f"CA {_label(ca)} carries name constraints that {_label(path[0])} does not "
                "satisfy (every other check passes)",
                ca,
            )
    return None


def diagnose(
    leaf: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    anchors: TrustAnchors,
    at: dt.datetime,
    *,
    verifier_message: str,
    max_depth: int = MAX_DEPTH,
) -> Diagnosis:
    """The reason code for a chain the verifier rejected."""
    pool = [*intermediates, *anchors.intermediates, *anchors.anchors]
    path, broken = _find_path(leaf, pool, anchors)
    if broken:
        return broken
    return (
        _validity(path, at)
        or _algorithms(path, anchors)
        or _usages(path)
        or _path_length(path, max_depth)
        or _name_constraints(path)
        or Diagnosis(
            ReasonCode.CERTIFICATE_POLICY_VIOLATION,
            f"the verifier rejected the chain: {verifier_message}",
            leaf,
        )
    )
