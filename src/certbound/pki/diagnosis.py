"""Why a chain failed: turn a verifier rejection into one stable reason code.

cryptography decides whether a chain is valid; its error messages are not an interface, so
this module never reads them for the code. It re-examines the chain with its own checks, in
a fixed order (trust first, then the facts of each certificate on the path) and names the
first problem and the certificate it is about. A rejection no check explains becomes
CERTIFICATE_POLICY_VIOLATION with the verifier's message as detail.

The paths here are found by following issuer names and signatures (backtracking over
cross-signed alternatives, as the verifier does), only to point at the certificate at
fault; the verdict itself always comes from the verifier.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from certbound.errors import ReasonCode
from certbound.pki import certificate as facts
from certbound.pki.algorithms import algorithm_problem, signature_problem
from certbound.pki.anchors import TrustAnchors
from certbound.pki.certificate import UNDECODABLE
from certbound.pki.presented import MAX_DEPTH


@dataclass(frozen=True, slots=True)
class Diagnosis:
    reason: ReasonCode
    detail: str
    culprit: x509.Certificate | None = None


def _label(cert: x509.Certificate) -> str:
    return f"{cert.subject.rfc4514_string()!r} (serial {facts.serial_hex(cert)})"


def _key_id(cert: x509.Certificate) -> str:
    """The authority key id a certificate names, for a message."""
    try:
        return facts.key_id(cert) or "absent"
    except UNDECODABLE:
        return "undecodable"


def _candidates(cert: x509.Certificate, pool: Sequence[x509.Certificate]) -> list[x509.Certificate]:
    return [c for c in pool if c.subject == cert.issuer and c is not cert]


MAX_DIAGNOSIS_STEPS = 256  # certificates examined while searching for paths


def _find_paths(
    leaf: x509.Certificate, pool: Sequence[x509.Certificate], anchors: TrustAnchors
) -> tuple[list[list[x509.Certificate]], Diagnosis | None]:
    """Every path from the leaf to an anchor by issuer names and signatures, as the verifier
    searches them (alternatives are backtracked, not just the first signer followed).

    With no complete path, the answer is the break found deepest in the chain, and why. A
    path longer than ``MAX_DEPTH`` is returned as it is, for the path-length check. The
    presented chain is already bounded, so this search is small; ``MAX_DIAGNOSIS_STEPS``
    caps it anyway.
    """
    complete: list[list[x509.Certificate]] = []
    overlong: list[list[x509.Certificate]] = []
    deepest: tuple[int, Diagnosis] | None = None
    stack: list[list[x509.Certificate]] = [[leaf]]
    steps = 0
    while stack and steps < MAX_DIAGNOSIS_STEPS:
        steps += 1
        path = stack.pop()
        cert = path[-1]
        if anchors.is_anchor(cert):
            complete.append(path)
            continue
        named = [c for c in _candidates(cert, pool) if c not in path]
        signers = [c for c in named if facts.signed_by(cert, c)]
        broken: Diagnosis | None = None
        if not named:
            broken = _unknown_issuer(cert, path, pool, anchors)
        elif not signers and signature_problem(cert):
            # Its signature cannot be checked at all (SHA-1, MD5 ...): name that, not a key.
            broken = Diagnosis(
                ReasonCode.WEAK_ALGORITHM, f"{_label(cert)}: {signature_problem(cert)}", cert
            )
        elif not signers:
            broken = Diagnosis(
                ReasonCode.SIGNATURE_INVALID,
                f"{_label(cert)} names {cert.issuer.rfc4514_string()!r} as issuer, but no "
                "CA with that name holds the key that signed it "
                f"(authority key id {_key_id(cert)})",
                cert,
            )
        if broken is not None:
            if deepest is None or len(path) > deepest[0]:
                deepest = (len(path), broken)
            continue
        if len(path) > MAX_DEPTH:
            overlong.append(path)
            continue
        # Depth first, trying anchors before other issuers, in the pool's order.
        ordered = sorted(signers, key=anchors.is_anchor, reverse=True)
        stack.extend([*path, c] for c in reversed(ordered))
    if complete or overlong:
        return complete or overlong, None
    return [], deepest[1] if deepest else _unknown_issuer(leaf, [leaf], pool, anchors)


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
    keyid = _key_id(cert)
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


def _undecodable(path: list[x509.Certificate]) -> Diagnosis | None:
    """A CA on the path whose extensions do not decode (cryptography's own parser may still
    have taken it), which the checks that read extensions would trip over."""
    for cert in path:
        try:
            _ = cert.extensions
        except UNDECODABLE as exc:
            return Diagnosis(
                ReasonCode.MALFORMED_CERTIFICATE,
                f"{_label(cert)} has extensions that cannot be decoded: {exc}",
                cert,
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


def _oid_name(oid: x509.ObjectIdentifier) -> str:
    if oid == ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE:
        return "anyExtendedKeyUsage"
    name = getattr(oid, "_name", "Unknown OID")
    return oid.dotted_string if name == "Unknown OID" else str(name)


def _usages(path: list[x509.Certificate]) -> Diagnosis | None:
    leaf, cas = path[0], path[1:]
    eku = facts.extension(leaf, x509.ExtendedKeyUsage)
    if eku is not None and ExtendedKeyUsageOID.CLIENT_AUTH not in eku:
        names = ", ".join(_oid_name(o) for o in eku)
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
    paths, broken = _find_paths(leaf, pool, anchors)
    if broken or not paths:
        return broken or _unknown_issuer(leaf, [leaf], pool, anchors)
    # The verifier rejected every path. Explain with the path that gets furthest through
    # the checks (its first problem comes latest in the order below): with cross-signed
    # intermediates, a dead-end alternative must not hide the real problem.
    explained = [_explain(path, anchors, at, max_depth, verifier_message) for path in paths]
    return max(explained, key=lambda found: found[0])[1]


def _explain(
    path: list[x509.Certificate],
    anchors: TrustAnchors,
    at: dt.datetime,
    max_depth: int,
    verifier_message: str,
) -> tuple[int, Diagnosis]:
    """The first problem on one path, and how late in the check order it was found."""
    checks: tuple[Callable[[], Diagnosis | None], ...] = (
        partial(_validity, path, at),
        partial(_algorithms, path, anchors),
        partial(_undecodable, path),  # the checks after it read extensions
        partial(_usages, path),
        partial(_path_length, path, max_depth),
        partial(_name_constraints, path),
    )
    for rank, check in enumerate(checks):
        problem = check()
        if problem is not None:
            return rank, problem
    return len(checks), Diagnosis(
        ReasonCode.CERTIFICATE_POLICY_VIOLATION,
        f"the verifier rejected the chain: {verifier_message}",
        path[0],
    )
