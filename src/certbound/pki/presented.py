"""The chain a client presented: parsed, deduplicated and bounded before path building.

cryptography's path builder explores every combination of candidate issuers, so a hostile
client can make it run for minutes (four self-issued intermediates with one subject and key
took over 30 s with cryptography 48). Before any verifier sees a chain, this module:

1. refuses more than ``MAX_PRESENTED`` certificates outright;
2. drops duplicate intermediates, copies of the leaf, and self-issued intermediates (a
   presented root or key-rollover certificate is never needed: anchors come from the store);
3. keeps only intermediates linked to the leaf by issuer names;
4. refuses a chain whose issuer-name graph offers more than ``MAX_PATHS`` candidate paths
   or more than ``MAX_PER_SUBJECT`` certificates with one subject.

What is left is small enough that verification stays within a few milliseconds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509

from certbound.errors import CertboundError, ReasonCode

MAX_PRESENTED = 10
MAX_PER_SUBJECT = 2
MAX_PATHS = 16
MAX_DEPTH = 8

# What cryptography raises when a certificate's extensions do not decode (they decode
# lazily, on first access to ``Certificate.extensions``).
UNDECODABLE = (ValueError, TypeError, x509.DuplicateExtension)


@dataclass(frozen=True, slots=True)
class PresentedChain:
    leaf: x509.Certificate
    intermediates: tuple[x509.Certificate, ...]
    dropped: int  # presented certificates removed by the bounds


def parse_presented(ders: Sequence[bytes]) -> list[x509.Certificate]:
    """Parse the presented DER certificates (leaf first), dropping exact duplicates and
    naming a bad one by its position."""
    if not ders:
        raise CertboundError(ReasonCode.NO_CLIENT_CERTIFICATE, "no certificate was presented")
    if len(ders) > MAX_PRESENTED:
        raise CertboundError(
            ReasonCode.CHAIN_TOO_COMPLEX,
            f"{len(ders)} certificates presented; at most {MAX_PRESENTED} are accepted",
            {"presented": len(ders)},
        )
    unique = list(dict.fromkeys(ders))
    certs = []
    for position, data in enumerate(unique):
        try:
            cert = x509.load_der_x509_certificate(data)
            # Extensions decode lazily; one that does not decode would otherwise surface
            # as a ValueError deep inside diagnosis (or the CLI) instead of a reason code.
            _ = cert.extensions
        except UNDECODABLE as exc:
            what = "the leaf" if position == 0 else f"presented certificate {position + 1}"
            raise CertboundError(
                ReasonCode.MALFORMED_CERTIFICATE,
                f"{what} is not a valid X.509 certificate: {exc}",
                {"position": position + 1},
            ) from exc
        certs.append(cert)
    return certs


def _linked(
    leaf: x509.Certificate, candidates: Sequence[x509.Certificate]
) -> list[x509.Certificate]:
    """The candidates reachable from the leaf by following issuer names."""
    by_subject: dict[x509.Name, list[x509.Certificate]] = {}
    for cert in candidates:
        by_subject.setdefault(cert.subject, []).append(cert)
    keep: list[x509.Certificate] = []
    frontier, seen = [leaf.issuer], set()
    while frontier:
        name = frontier.pop()
        if name in seen:
            continue
        seen.add(name)
        for cert in by_subject.get(name, ()):
            keep.append(cert)
            frontier.append(cert.issuer)
    return keep


def _count_paths(
    leaf: x509.Certificate,
    by_subject: dict[x509.Name, list[x509.Certificate]],
    limit: int,
) -> int:
    """Issuer-name paths from the leaf (depth-bounded, acyclic), counted up to ``limit``."""
    count = 0
    stack: list[tuple[x509.Name, frozenset[x509.Name], int]] = [(leaf.issuer, frozenset(), 1)]
    while stack and count <= limit:
        name, on_path, depth = stack.pop()
        issuers = by_subject.get(name, [])
        if not issuers or name in on_path or depth > MAX_DEPTH:
            count += 1
            continue
        stack.extend((c.issuer, on_path | {name}, depth + 1) for c in issuers)
    return count


def bound(
    certs: Sequence[x509.Certificate], store_cas: Sequence[x509.Certificate]
) -> PresentedChain:
    """Apply the work bounds to a parsed presented chain (leaf first)."""
    leaf, rest = certs[0], certs[1:]
    candidates = [cert for cert in rest if cert.subject != cert.issuer]
    kept = _linked(leaf, candidates)
    presented_by_subject: dict[x509.Name, int] = {}
    for cert in kept:
        presented_by_subject[cert.subject] = presented_by_subject.get(cert.subject, 0) + 1
    for name, count in presented_by_subject.items():
        if count > MAX_PER_SUBJECT:
            raise CertboundError(
                ReasonCode.CHAIN_TOO_COMPLEX,
                f"{count} presented certificates share the subject {name.rfc4514_string()!r}; "
                f"at most {MAX_PER_SUBJECT} are accepted",
            )
    by_subject: dict[x509.Name, list[x509.Certificate]] = {}
    for cert in (*kept, *store_cas):
        by_subject.setdefault(cert.subject, []).append(cert)
    paths = _count_paths(leaf, by_subject, MAX_PATHS)
    if paths > MAX_PATHS:
        raise CertboundError(
            ReasonCode.CHAIN_TOO_COMPLEX,
            f"the presented certificates offer more than {MAX_PATHS} candidate paths",
        )
    return PresentedChain(leaf, tuple(kept), len(rest) - len(kept))
