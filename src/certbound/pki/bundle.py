"""Upload validation for a CA bundle: pure checks, chain ordering and notices; no database.

:func:`check_bundle` takes the certificates of one upload in block order and returns the
chain normalised leaf-side first (intermediates, then the top: a root, or the highest CA of
a partial chain), or raises :class:`~certbound.errors.CertboundError` naming the offending
block. Which certificate issued which is decided by name *and* signature
(:func:`~certbound.pki.certificate.signed_by`), never by the order of the blocks, so any
input order gives the same chain.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from cryptography import x509

from certbound.clock import format_rfc3339
from certbound.errors import CertboundError, ReasonCode
from certbound.pki.algorithms import algorithm_problem
from certbound.pki.certificate import (
    UNDECODABLE,
    basic_constraints,
    is_self_issued,
    serial_hex,
    sha256_fingerprint,
    signed_by,
    spki_sha256,
)

# A CA chain is a handful of certificates; the bound keeps path building on hostile
# uploads (many certificates with one name) to a few hundred signature checks.
MAX_BUNDLE_CERTIFICATES = 16


class Notice(NamedTuple):
    """A warning attached to a successful upload."""

    code: ReasonCode
    detail: str

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code.value, "detail": self.detail}


@dataclass(frozen=True, slots=True)
class KnownCertificate:
    """What the upload is checked against: one certificate already in the trust store."""

    ca_id: str
    subject_dn: str
    sha256_fingerprint: str
    spki_sha256: str


@dataclass(frozen=True, slots=True)
class Block:
    """One distinct certificate of the upload and the (1-based) block it came from."""

    index: int
    cert: x509.Certificate

    @property
    def subject(self) -> str:
        return self.cert.subject.rfc4514_string()

    @property
    def label(self) -> str:
        return f"block {self.index} ({self.subject}, serial {serial_hex(self.cert)})"

    def context(self, **extra: Any) -> dict[str, Any]:
        return {"block": self.index, "subject": self.subject, **extra}


@dataclass(frozen=True, slots=True)
class CheckedBundle:
    """A validated upload: the chain leaf-side first, top last, and what to tell the user."""

    blocks: list[Block]
    notices: list[Notice]
    reordered: bool

    @property
    def chain(self) -> list[x509.Certificate]:
        return [block.cert for block in self.blocks]

    @property
    def top(self) -> x509.Certificate:
        return self.blocks[-1].cert


def _error(reason: ReasonCode, detail: str, block: Block, **extra: Any) -> CertboundError:
    return CertboundError(reason, detail, block.context(**extra))


def distinct_blocks(certs: Sequence[x509.Certificate]) -> list[Block]:
    """Number the certificates by block and drop repeats of one certificate (same DER)."""
    seen: set[str] = set()
    blocks: list[Block] = []
    for index, cert in enumerate(certs, start=1):
        fingerprint = sha256_fingerprint(cert)
        if fingerprint not in seen:
            seen.add(fingerprint)
            blocks.append(Block(index, cert))
    return blocks


def _check_size(blocks: list[Block]) -> None:
    if not blocks:
        raise CertboundError(ReasonCode.UPLOAD_EMPTY, "the upload holds no certificate")
    if len(blocks) > MAX_BUNDLE_CERTIFICATES:
        raise CertboundError(
            ReasonCode.CHAIN_TOO_COMPLEX,
            f"the upload holds {len(blocks)} distinct certificates; a CA chain is at most "
            f"{MAX_BUNDLE_CERTIFICATES}: upload each chain separately",
            {"certificates": len(blocks)},
        )


def ca_problem(extensions: x509.Extensions) -> str | None:
    """Why a certificate with these extensions cannot act as a CA, or None.

    Beyond CA:TRUE and keyCertSign, RFC 5280 requires basicConstraints to be critical and
    keyUsage to be present in a CA; cryptography's verifier enforces both, so such a CA is
    refused here rather than failing every device later.
    """
    try:
        constraints = extensions.get_extension_for_class(x509.BasicConstraints)
    except x509.ExtensionNotFound:
        return "has no basicConstraints extension, so it is not a CA"
    if not constraints.value.ca:
        return "has basicConstraints CA:FALSE: it is a device or server certificate"
    if not constraints.critical:
        return "has basicConstraints CA:TRUE not marked critical, which the verifier refuses"
    try:
        usage = extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return "has no keyUsage extension; a CA needs keyUsage with keyCertSign"
    if not usage.key_cert_sign:
        return "has a keyUsage without keyCertSign, so it may not issue certificates"
    return None


def check_is_ca(block: Block) -> None:
    """NOT_A_CA unless the certificate is a CA the verifier accepts (see :func:`ca_problem`);
    PEM_MALFORMED when its extensions cannot be parsed at all."""
    try:
        extensions = block.cert.extensions
    except UNDECODABLE as exc:
        detail = f"{block.label} has extensions that cannot be parsed ({exc})"
        raise _error(ReasonCode.PEM_MALFORMED, detail, block) from exc
    why = ca_problem(extensions)
    if why is not None:
        raise _error(ReasonCode.NOT_A_CA, f"{block.label} {why}", block)


def check_algorithms(block: Block) -> None:
    problem = algorithm_problem(block.cert)
    if problem is not None:
        raise _error(ReasonCode.WEAK_ALGORITHM, f"{block.label}: {problem}", block)


def check_validity(block: Block, now: dt.datetime) -> None:
    cert = block.cert
    if cert.not_valid_after_utc < now:
        when = format_rfc3339(cert.not_valid_after_utc)
        raise _error(ReasonCode.CA_EXPIRED, f"{block.label} expired at {when}", block)
    if cert.not_valid_before_utc > now:
        when = format_rfc3339(cert.not_valid_before_utc)
        raise _error(
            ReasonCode.CA_NOT_YET_VALID, f"{block.label} is not valid before {when}", block
        )


def _names(blocks: Sequence[Block]) -> str:
    return " and ".join(block.label for block in blocks)


def issuer_in_bundle(block: Block, blocks: Sequence[Block]) -> Block | None:
    """The block that issued ``block`` (name and signature), or None when it is a top.

    A self-issued certificate is a top and must verify with its own key. Otherwise a block
    is a top when no other block carries its issuer's name; when one does, exactly one such
    block's key must verify the signature.
    """
    cert = block.cert
    if is_self_issued(cert):
        if not signed_by(cert, cert):
            raise _error(
                ReasonCode.CHAIN_SIGNATURE_INVALID,
                f"{block.label} is self-issued but its signature does not verify with its "
                "own key: the certificate is corrupted or was tampered with",
                block,
            )
        return None
    named = [other for other in blocks if other is not block and other.cert.subject == cert.issuer]
    if not named:
        return None
    signers = [other for other in named if signed_by(cert, other.cert)]
    if not signers:
        raise _error(
            ReasonCode.CHAIN_SIGNATURE_INVALID,
            f"{block.label} names {cert.issuer.rfc4514_string()} as its issuer, but the "
            f"key of {_names(named)} does not verify its signature (a different CA with "
            "the same name, or a tampered certificate)",
            block,
            issuer_blocks=[other.index for other in named],
        )
    if len(signers) > 1:
        raise _error(
            ReasonCode.CHAIN_SIGNATURE_INVALID,
            f"{block.label} is signed by both {_names(signers)}: a bundle is one chain, "
            "keep only one of them",
            block,
            issuer_blocks=[other.index for other in signers],
        )
    return signers[0]


def _gap_error(tops: list[Block]) -> CertboundError:
    """The bundle has several tops: name the one that should have had an issuer."""
    dangling = [top for top in tops if not is_self_issued(top.cert)]
    if dangling:
        block = dangling[0]
        others = [top for top in tops if top is not block]
        return _error(
            ReasonCode.CHAIN_SIGNATURE_INVALID,
            f"{block.label} is issued by {block.cert.issuer.rfc4514_string()}, which is "
            f"not in the bundle, so it does not connect to {_names(others)}: a gap in the chain",
            block,
        )
    block = tops[1]
    return _error(
        ReasonCode.CHAIN_SIGNATURE_INVALID,
        f"{block.label} and {tops[0].label} are separate roots: a bundle is one chain, "
        "upload each root (with its intermediates) separately",
        block,
    )


def _single_child(parent: Block, children: list[Block]) -> Block | None:
    if len(children) > 1:
        raise _error(
            ReasonCode.CHAIN_SIGNATURE_INVALID,
            f"{parent.label} issues both {_names(children)}: a bundle is one chain, "
            "upload each branch separately",
            parent,
            child_blocks=[child.index for child in children],
        )
    return children[0] if children else None


def order_chain(blocks: Sequence[Block]) -> list[Block]:
    """The blocks as one chain, leaf-side first and top last; CHAIN_SIGNATURE_INVALID if
    they are not one linear chain whose every link is a verified signature."""
    parents = {block.index: issuer_in_bundle(block, blocks) for block in blocks}
    children: dict[int, list[Block]] = {block.index: [] for block in blocks}
    for block in blocks:
        parent = parents[block.index]
        if parent is not None:
            children[parent.index].append(block)
    tops = [block for block in blocks if parents[block.index] is None]
    if len(tops) > 1:
        raise _gap_error(tops)
    path: list[Block] = tops[:1]
    while path and (child := _single_child(path[-1], children[path[-1].index])) is not None:
        path.append(child)
    if len(path) != len(blocks):
        loop = [block for block in blocks if block not in path]
        raise _error(
            ReasonCode.CHAIN_SIGNATURE_INVALID,
            f"{_names(loop)} sign each other in a loop that never reaches a top certificate",
            loop[0],
        )
    return path[::-1]


def check_path_length(chain: Sequence[Block]) -> None:
    """PATH_LENGTH_EXCEEDED when a CA has more non-self-issued CAs below it than its
    pathLenConstraint allows (RFC 5280, 4.2.1.9). ``chain`` is leaf-side first."""
    for position, block in enumerate(chain):
        constraints = basic_constraints(block.cert)
        limit = None if constraints is None else constraints.path_length
        below = [other for other in chain[:position] if not is_self_issued(other.cert)]
        if limit is not None and len(below) > limit:
            raise _error(
                ReasonCode.PATH_LENGTH_EXCEEDED,
                f"{block.label} has pathLenConstraint {limit}, but {len(below)} CA "
                f"certificate(s) below it in the bundle: {_names(below)}",
                block,
            )


def reorder_notice(given: Sequence[Block], chain: Sequence[Block]) -> Notice | None:
    if [b.index for b in given] == [b.index for b in chain]:
        return None
    order = ", ".join(f"block {b.index} ({b.subject})" for b in chain)
    return Notice(
        ReasonCode.CHAIN_OUT_OF_ORDER,
        f"reordered to issuing order (leaf-side first, top last): {order}",
    )


def expiry_notices(chain: Sequence[Block], now: dt.datetime, days: int) -> list[Notice]:
    notices: list[Notice] = []
    for block in chain:
        left = block.cert.not_valid_after_utc - now
        if left <= dt.timedelta(days=days):
            when = format_rfc3339(block.cert.not_valid_after_utc)
            notices.append(
                Notice(
                    ReasonCode.CA_EXPIRING_SOON,
                    f"{block.label} expires at {when}, in {left.days} day(s)",
                )
            )
    return notices


def check_duplicate(chain: Sequence[Block], existing: Sequence[KnownCertificate]) -> None:
    """DUPLICATE_CA when every certificate of the upload is already stored."""
    stored = {known.sha256_fingerprint: known.ca_id for known in existing}
    fingerprints = [sha256_fingerprint(block.cert) for block in chain]
    if not all(fp in stored for fp in fingerprints):
        return
    ca_ids = sorted({stored[fp] for fp in fingerprints})
    top = chain[-1]
    raise _error(
        ReasonCode.DUPLICATE_CA,
        f"every certificate of the upload is already in the trust store (CA {', '.join(ca_ids)})",
        top,
        existing_ca_ids=ca_ids,
    )


def subject_conflicts(
    chain: Sequence[Block], existing: Sequence[KnownCertificate], allowed: bool
) -> list[Notice]:
    """CA_SUBJECT_CONFLICT for a certificate whose subject DN is stored with another key:
    an error, or (``allowed``, a genuine key rollover) a notice per certificate."""
    notices: list[Notice] = []
    for block in chain:
        pin = spki_sha256(block.cert)
        clash = sorted(
            {k.ca_id for k in existing if k.subject_dn == block.subject and k.spki_sha256 != pin}
        )
        if not clash:
            continue
        detail = (
            f"{block.label} has the same subject DN as a certificate of CA {', '.join(clash)} "
            f"but a different key (SPKI pin {pin}): a same-DN impostor or a key rollover"
        )
        if not allowed:
            raise _error(ReasonCode.CA_SUBJECT_CONFLICT, detail, block, existing_ca_ids=clash)
        notices.append(Notice(ReasonCode.CA_SUBJECT_CONFLICT, detail))
    return notices


def check_bundle(
    certs: Sequence[x509.Certificate],
    *,
    now: dt.datetime,
    existing: Sequence[KnownCertificate] = (),
    allow_same_subject: bool = False,
    expiry_warning_days: int = 90,
) -> CheckedBundle:
    """Validate one upload (certificates in block order) against what is already stored.

    Checks run in a fixed order, so one upload always gets the same reason: every block is
    a CA with accepted algorithms, the blocks form one signed chain, each is within its
    validity and pathLenConstraint, and the upload is neither a duplicate nor a same-DN
    conflict.
    """
    blocks = distinct_blocks(certs)
    _check_size(blocks)
    for block in blocks:
        check_is_ca(block)
        check_algorithms(block)
    chain = order_chain(blocks)
    for block in chain:
        check_validity(block, now)
    check_path_length(chain)
    check_duplicate(chain, existing)
    conflicts = subject_conflicts(chain, existing, allow_same_subject)
    reorder = reorder_notice(blocks, chain)
    notices = ([reorder] if reorder else []) + expiry_notices(chain, now, expiry_warning_days)
    return CheckedBundle(chain, notices + conflicts, reordered=reorder is not None)
