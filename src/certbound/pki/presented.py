"""The chain a client presented: parsed, deduplicated and bounded before path building.

cryptography 48's path builder tries every candidate issuer, has no cycle check and no
signature budget, so a hostile client can make it run for minutes (four self-issued
intermediates with one subject and key took over 30 s; two CAs issued by each other twice,
about 100 ms). Before any verifier sees a chain, this module:

1. refuses more than ``MAX_PRESENTED`` certificates outright;
2. drops duplicates, and certificates for a subject and key the store already trusts as an
   anchor (a presented copy of a root, a cross-certificate for it: a path can end at the
   anchor itself);
3. keeps only intermediates linked to the leaf by issuer names;
4. estimates the worst-case signature work of path building over the presented and stored
   CAs (cycles included, depth-bounded, weighted by each issuer's key type) and refuses a
   chain above ``WORK_BUDGET_US``;
5. refuses a leaf whose names (subject attributes and SANs) times the name-constraint
   subtrees of the presented CAs and of the most constrained stored CA exceed
   ``MAX_NAME_CHECKS`` (constraint matching is quadratic, and runs before signatures).

A leaf with at most one presented intermediate takes a fast path: one extra certificate
cannot create a cycle or a choice, so only the name-constraint bound applies.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from certbound.errors import CertboundError, ReasonCode
from certbound.pki import certificate as facts
from certbound.pki.anchors import TrustAnchors
from certbound.pki.certificate import UNDECODABLE

MAX_PRESENTED = 10
MAX_PER_SUBJECT = 2
MAX_DEPTH = 8
WORK_BUDGET_US = 25_000.0
MAX_NAME_CHECKS = 16_384

# Estimated CPU microseconds of one signature check, by the issuing key (measured here).
_EC_COST_US = {"secp256r1": 110.0, "secp384r1": 450.0, "secp521r1": 550.0}
_UNKNOWN_COST_US = 550.0


@dataclass(frozen=True, slots=True)
class PresentedChain:
    leaf: x509.Certificate
    intermediates: tuple[x509.Certificate, ...]
    dropped: int  # presented certificates removed by the bounds


def _too_complex(detail: str) -> CertboundError:
    return CertboundError(ReasonCode.CHAIN_TOO_COMPLEX, detail)


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
    certs = []
    for position, data in enumerate(dict.fromkeys(ders)):
        try:
            cert = x509.load_der_x509_certificate(data)
            if position == 0:
                # Extensions decode lazily. The leaf's must decode (the verifier's result
                # and the device identity are built from them); a CA's are cryptography's
                # business, and diagnosis copes with one that does not decode.
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


def signature_cost_us(issuer: x509.Certificate) -> float:
    """Estimated CPU microseconds to check one signature made by ``issuer``'s key."""
    try:
        key = issuer.public_key()
    except (ValueError, UnsupportedAlgorithm):
        return _UNKNOWN_COST_US
    if isinstance(key, ec.EllipticCurvePublicKey):
        return _EC_COST_US.get(key.curve.name, _UNKNOWN_COST_US)
    if isinstance(key, rsa.RSAPublicKey):
        return 45.0 * (key.key_size / 2048) ** 2
    return _UNKNOWN_COST_US


@dataclass(frozen=True, slots=True)
class _Node:
    cert: x509.Certificate
    issuer: x509.Name
    anchor: bool


def _graph(
    presented: Sequence[x509.Certificate], anchors: TrustAnchors
) -> dict[x509.Name, list[_Node]]:
    graph: dict[x509.Name, list[_Node]] = {}
    for cert in presented:
        node = _Node(cert, cert.issuer, False)
        graph.setdefault(cert.subject, []).append(node)
    for cert in anchors.all_cas:
        node = _Node(cert, cert.issuer, anchors.is_anchor(cert))
        graph.setdefault(cert.subject, []).append(node)
    return graph


def estimated_work_us(
    leaf: x509.Certificate,
    presented: Sequence[x509.Certificate],
    anchors: TrustAnchors,
    max_depth: int = MAX_DEPTH,
    budget: float = WORK_BUDGET_US,
) -> float:
    """Worst-case signature work of path building, in estimated CPU microseconds.

    Every candidate issuer (matched by name, as the builder does) costs one signature check
    by its key; a candidate that is not an anchor is expanded again, cycles included, up to
    ``max_depth``. Counting stops once ``budget`` is exceeded.
    """
    graph = _graph(presented, anchors)
    costs = {id(n.cert): signature_cost_us(n.cert) for group in graph.values() for n in group}
    memo: dict[tuple[x509.Name, int], float] = {}

    def below(name: x509.Name, depth: int) -> float:
        if depth > max_depth:
            return 0.0
        if (name, depth) in memo:
            return memo[(name, depth)]
        total = 0.0
        for node in graph.get(name, ()):
            total += costs[id(node.cert)]
            if not node.anchor:
                total += below(node.issuer, depth + 1)
            if total > budget:
                break
        memo[(name, depth)] = total
        return total

    return below(leaf.issuer, 1)


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


def _check_crowding(kept: Sequence[x509.Certificate]) -> None:
    per_subject: dict[x509.Name, int] = {}
    for cert in kept:
        per_subject[cert.subject] = per_subject.get(cert.subject, 0) + 1
    for name, count in per_subject.items():
        if count > MAX_PER_SUBJECT:
            raise _too_complex(
                f"{count} presented certificates share the subject {name.rfc4514_string()!r}; "
                f"at most {MAX_PER_SUBJECT} are accepted"
            )


def _leaf_names(leaf: x509.Certificate) -> int:
    """The names constraint matching checks: subject attributes and SANs."""
    sans = facts.extension(leaf, x509.SubjectAlternativeName)
    return len(leaf.subject) + 1 + (len(sans) if sans is not None else 0)


def _check_name_work(
    leaf: x509.Certificate,
    presented: Sequence[x509.Certificate],
    sizes: tuple[int, int],
    stored_subtrees: int,
) -> None:
    """Refuse when the leaf's names times the name-constraint subtrees of the presented CAs
    and of the most constrained stored CA exceed ``MAX_NAME_CHECKS``."""
    presented_bytes, leaf_bytes = sizes
    # A subtree takes at least 5 bytes of DER and a name at least 4: when even that many
    # could not exceed the bound, decode nothing (the common case, and the fast path).
    if (leaf_bytes // 4 + 1) * (presented_bytes // 5 + stored_subtrees) <= MAX_NAME_CHECKS:
        return
    names = _leaf_names(leaf)
    subtrees = sum(facts.name_constraint_subtrees(c) for c in presented) + stored_subtrees
    if names * subtrees > MAX_NAME_CHECKS:
        raise _too_complex(
            f"the leaf's {names} names against {subtrees} name-constraint subtrees of its "
            f"possible issuers exceed {MAX_NAME_CHECKS} checks"
        )


def present(
    ders: Sequence[bytes], anchors: TrustAnchors, max_depth: int = MAX_DEPTH
) -> PresentedChain:
    """Parse the presented chain (DER, leaf first) and apply the work bounds."""
    certs = parse_presented(ders)
    return bound(certs, anchors, max_depth, sum(len(d) for d in ders[1:]), len(ders[0]))


def bound(
    certs: Sequence[x509.Certificate],
    anchors: TrustAnchors,
    max_depth: int = MAX_DEPTH,
    presented_bytes: int | None = None,
    leaf_bytes: int | None = None,
) -> PresentedChain:
    """Apply the work bounds to a parsed presented chain (leaf first).

    ``presented_bytes`` and ``leaf_bytes`` (DER sizes of the certificates after the leaf, and
    of the leaf) let the name-constraint bound skip decoding extensions; without them the
    extensions are decoded and counted.
    """
    leaf, rest = certs[0], certs[1:]
    if presented_bytes is None or leaf_bytes is None:  # unknown: decode and count
        presented_bytes, leaf_bytes = MAX_NAME_CHECKS * 5 + 5, MAX_NAME_CHECKS * 4
    if len(rest) <= 1:
        _check_name_work(leaf, rest, (presented_bytes, leaf_bytes), anchors.max_subtrees)
        return PresentedChain(leaf, tuple(rest), 0)
    anchored = {(c.subject, facts.spki_sha256(c)) for c in anchors.anchors}
    candidates = [cert for cert in rest if (cert.subject, facts.spki_sha256(cert)) not in anchored]
    kept = _linked(leaf, candidates)
    _check_crowding(kept)
    _check_name_work(leaf, kept, (presented_bytes, leaf_bytes), anchors.max_subtrees)
    work = estimated_work_us(leaf, kept, anchors, max_depth)
    if work > WORK_BUDGET_US:
        raise _too_complex(
            "path building over the presented certificates could take more than "
            f"{WORK_BUDGET_US / 1000:.0f} ms of signature checks (cycles or too many "
            "candidate issuers)"
        )
    return PresentedChain(leaf, tuple(kept), len(rest) - len(kept))
