"""What validation trusts: anchors and known intermediates, built from stored CA chains.

Each uploaded CA chain is stored leaf-side first. Its top certificate (the root, or the
highest CA when only part of a chain was uploaded) becomes a trust anchor; the CAs below it
are known intermediates, offered to path building so devices (or proxies that forward only
the leaf) need not send them. Intermediates are never anchors, so a root's expiry or
constraints still apply to every path through it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from cryptography import x509

from certbound.pki.certificate import der


class AnchorSource(Protocol):
    """Where a validator gets its trust: the trust store, or a file given to the CLI."""

    def generation(self) -> int:
        """A number that changes whenever the trusted set changes."""
        ...

    def load(self) -> TrustAnchors:
        """The current trusted set."""
        ...


@dataclass(frozen=True)
class TrustAnchors:
    anchors: tuple[x509.Certificate, ...]
    intermediates: tuple[x509.Certificate, ...]
    generation: int = 0
    anchor_ders: frozenset[bytes] = field(default=frozenset(), compare=False)

    @classmethod
    def from_bundles(
        cls, bundles: Iterable[Sequence[x509.Certificate]], generation: int = 0
    ) -> TrustAnchors:
        anchors: dict[bytes, x509.Certificate] = {}
        intermediates: dict[bytes, x509.Certificate] = {}
        for chain in bundles:
            if not chain:
                continue
            anchors.setdefault(der(chain[-1]), chain[-1])
            for cert in chain[:-1]:
                intermediates.setdefault(der(cert), cert)
        for key in anchors:
            intermediates.pop(key, None)
        return cls(
            tuple(anchors.values()),
            tuple(intermediates.values()),
            generation,
            frozenset(anchors),
        )

    def is_anchor(self, cert: x509.Certificate) -> bool:
        return der(cert) in self.anchor_ders

    @property
    def all_cas(self) -> tuple[x509.Certificate, ...]:
        return self.anchors + self.intermediates

    @classmethod
    def from_file_certificates(cls, certs: Sequence[x509.Certificate]) -> TrustAnchors:
        """Like ``openssl verify -CAfile``: self-signed certificates are anchors and the rest
        intermediates; a file without any self-signed certificate is trusted as it is."""
        roots = [c for c in certs if c.subject == c.issuer]
        if not roots:
            return cls.from_bundles([[c] for c in certs])
        others = [c for c in certs if c.subject != c.issuer]
        return cls.from_bundles([[*others, roots[0]], *([r] for r in roots[1:])])


class StaticAnchors:
    """A fixed trusted set (``verify --ca FILE``, tests); its generation never changes."""

    def __init__(self, anchors: TrustAnchors) -> None:
        self._anchors = anchors

    def generation(self) -> int:
        return self._anchors.generation

    def load(self) -> TrustAnchors:
        return self._anchors
