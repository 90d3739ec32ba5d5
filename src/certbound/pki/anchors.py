"""What validation trusts: anchors and known intermediates, built from stored CA chains.

Each uploaded CA chain is stored leaf-side first. Its top certificate (the root, or the
highest CA when only part of a chain was uploaded) becomes a trust anchor; the CAs below it
are known intermediates, offered to path building so devices (or proxies that forward only
the leaf) need not send them. Intermediates are never anchors, so a root's expiry or
constraints still apply to every path through it.

Each certificate remembers which stored CA chain (its ``ca_id``) it came from, when the
source knows (:meth:`TrustAnchors.owner`): the validator checks revocation with that CA's
settings. A certificate in several uploads belongs to the first.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from cryptography import x509

from certbound.pki.certificate import der, name_constraint_subtrees


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
    owners: Mapping[bytes, str] = field(default_factory=dict, compare=False)
    # The most name-constraint subtrees any stored CA holds (bounds constraint matching).
    max_subtrees: int = field(default=0, compare=False)

    @classmethod
    def from_bundles(
        cls,
        bundles: Iterable[Sequence[x509.Certificate]],
        generation: int = 0,
        ids: Sequence[str | None] | None = None,
    ) -> TrustAnchors:
        """Anchors and intermediates of the chains; ``ids[i]`` is chain i's stored CA id."""
        anchors: dict[bytes, x509.Certificate] = {}
        intermediates: dict[bytes, x509.Certificate] = {}
        owners: dict[bytes, str] = {}
        for position, chain in enumerate(bundles):
            if not chain:
                continue
            anchors.setdefault(der(chain[-1]), chain[-1])
            for cert in chain[:-1]:
                intermediates.setdefault(der(cert), cert)
            ca_id = ids[position] if ids is not None else None
            if ca_id is not None:
                for cert in chain:
                    owners.setdefault(der(cert), ca_id)
        for key in anchors:
            intermediates.pop(key, None)
        cas = [*anchors.values(), *intermediates.values()]
        return cls(
            tuple(anchors.values()),
            tuple(intermediates.values()),
            generation,
            frozenset(anchors),
            owners,
            max((name_constraint_subtrees(c) for c in cas), default=0),
        )

    def is_anchor(self, cert: x509.Certificate) -> bool:
        return der(cert) in self.anchor_ders

    def owner(self, cert: x509.Certificate) -> str | None:
        """The id of the stored CA chain ``cert`` comes from; None when it is not stored
        (or the source has no ids: a file given to the CLI)."""
        if not self.owners:
            return None
        return self.owners.get(der(cert))

    def path_owner(self, path: Sequence[x509.Certificate]) -> str | None:
        """The CA whose settings apply to a validated path (leaf to anchor): the owner of
        the stored certificate closest to the leaf, so a root shared by two uploads still
        gives each intermediate's devices their own CA's settings."""
        for cert in path[1:]:
            found = self.owner(cert)
            if found is not None:
                return found
        return None

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
