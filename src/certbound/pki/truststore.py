"""The trust store: uploaded CA chains, stored and listed, and the generation counter.

:class:`TrustStore` is the library API behind ``certbound ca`` and the admin API's
``trust/cas``. An upload is parsed (:mod:`certbound.pki.pem`), validated against what is
stored (:mod:`certbound.pki.bundle`) and stored in one transaction, or not at all. Every
change bumps ``trust_state.generation``, so each instance's validators notice it and
rebuild their anchors from :meth:`TrustStore.bundles`.

Each CA also has revocation settings (:mod:`certbound.pki.revocation_policy`): given on
upload (:meth:`TrustStore.add`), changed with :meth:`TrustStore.set_revocation` and read
with :meth:`TrustStore.revocation`; a CA without any uses the defaults.
"""

from __future__ import annotations

import builtins
import datetime as dt
import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from certbound.clock import Clock, format_rfc3339
from certbound.errors import CertboundError, ReasonCode
from certbound.pki import pem, revocation_policy
from certbound.pki.anchors import TrustAnchors
from certbound.pki.bundle import CheckedBundle, KnownCertificate, Notice, check_bundle
from certbound.pki.certificate import CertificateInfo, der, sha256_fingerprint
from certbound.pki.revocation_policy import RevocationPolicy
from certbound.storage.database import Database
from certbound.storage.models import CACertificate, CertificateAuthority, TrustState

MAX_NAME_LENGTH = 200


@dataclass(frozen=True, slots=True)
class StoredCA:
    """One uploaded CA chain as stored: certificates leaf-side first, top last."""

    id: str
    name: str
    created_at: dt.datetime
    certificates: list[CertificateInfo]
    notices: list[Notice]
    reordered: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "created_at": format_rfc3339(self.created_at),
            "reordered": self.reordered,
            "notices": [notice.to_dict() for notice in self.notices],
            "certificates": [info.to_dict() for info in self.certificates],
        }


@dataclass(frozen=True, slots=True)
class UploadResult(StoredCA):
    """A CA chain just stored, and the trust-store generation the upload produced."""

    generation: int

    def to_dict(self) -> dict[str, Any]:
        return {**StoredCA.to_dict(self), "generation": self.generation}


def new_ca_id() -> str:
    return "ca_" + secrets.token_hex(8)


def checked_name(name: str | None) -> str | None:
    """A given name, stripped; ValueError when it is blank or too long for the column."""
    if name is None:
        return None
    name = name.strip()
    if not name or len(name) > MAX_NAME_LENGTH:
        raise ValueError(f"a CA name has 1 to {MAX_NAME_LENGTH} characters")
    return name


def default_name(top: x509.Certificate) -> str:
    """The top certificate's common name, else its whole subject DN."""
    names = top.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    value = names[0].value if names else top.subject.rfc4514_string()
    text = value if isinstance(value, str) else value.decode(errors="replace")
    return (text.strip() or top.subject.rfc4514_string() or "unnamed CA")[:MAX_NAME_LENGTH]


def bump_generation(session: Session) -> int:
    """Increment the generation and return it; also takes the trust store's write lock
    (the row lock on PostgreSQL, the database write lock on SQLite) until commit."""
    stmt = (
        update(TrustState)
        .where(TrustState.id == 1)
        .values(generation=TrustState.generation + 1)
        .returning(TrustState.generation)
    )
    return int(session.execute(stmt).scalar_one())


def read_generation(session: Session) -> int:
    return int(
        session.execute(select(TrustState.generation).where(TrustState.id == 1)).scalar_one()
    )


def known_certificates(
    session: Session, certs: Sequence[x509.Certificate]
) -> list[KnownCertificate]:
    """The stored certificates an upload could duplicate or clash with (same fingerprint
    or same subject DN)."""
    fingerprints = [sha256_fingerprint(cert) for cert in certs]
    subjects = [cert.subject.rfc4514_string() for cert in certs]
    rows = session.execute(
        select(
            CACertificate.ca_id,
            CACertificate.subject_dn,
            CACertificate.sha256_fingerprint,
            CACertificate.spki_sha256,
        ).where(
            or_(
                CACertificate.sha256_fingerprint.in_(fingerprints),
                CACertificate.subject_dn.in_(subjects),
            )
        )
    )
    return [KnownCertificate(*row) for row in rows]


def certificate_row(position: int, cert: x509.Certificate) -> CACertificate:
    info = CertificateInfo.of(cert)
    return CACertificate(
        position=position,
        role=info.role,
        subject_dn=info.subject_dn,
        issuer_dn=info.issuer_dn,
        serial_number=info.serial_number,
        not_before=info.not_before,
        not_after=info.not_after,
        sha256_fingerprint=info.sha256_fingerprint,
        spki_sha256=info.spki_sha256,
        der=der(cert),
    )


def authority_row(
    checked: CheckedBundle, name: str, created_at: dt.datetime
) -> CertificateAuthority:
    return CertificateAuthority(
        id=new_ca_id(),
        name=name,
        created_at=created_at,
        notices=json.dumps([notice.to_dict() for notice in checked.notices]),
        certificates=[certificate_row(i, cert) for i, cert in enumerate(checked.chain)],
    )


def load_notices(text: str) -> list[Notice]:
    return [Notice(ReasonCode(item["code"]), item["detail"]) for item in json.loads(text or "[]")]


def chain_of(row: CertificateAuthority) -> list[x509.Certificate]:
    return [x509.load_der_x509_certificate(cert.der) for cert in row.certificates]


def stored_ca(row: CertificateAuthority) -> StoredCA:
    notices = load_notices(row.notices)
    return StoredCA(
        id=row.id,
        name=row.name,
        created_at=row.created_at,
        certificates=[CertificateInfo.of(cert) for cert in chain_of(row)],
        notices=notices,
        reordered=any(n.code is ReasonCode.CHAIN_OUT_OF_ORDER for n in notices),
    )


def not_found(ca_id: str) -> CertboundError:
    return CertboundError(
        ReasonCode.CA_NOT_FOUND, f"no CA with id {ca_id!r} is in the trust store", {"ca_id": ca_id}
    )


class TrustStore:
    """Uploaded CA chains in the database; see the module docstring."""

    def __init__(self, db: Database, clock: Clock, expiry_warning_days: int = 90) -> None:
        self._db = db
        self._clock = clock
        self._expiry_warning_days = expiry_warning_days

    def add(
        self,
        data: bytes,
        name: str | None = None,
        *,
        allow_same_subject: bool = False,
        revocation: RevocationPolicy | None = None,
    ) -> UploadResult:
        """Validate and store one upload (PEM bundle or DER file); nothing is stored when
        it is rejected (CertboundError, or ValueError for a blank or over-long name).
        ``revocation`` is stored with it; None leaves the CA on the defaults."""
        name = checked_name(name)
        certs = pem.load_certificates(data)
        with self._db.session() as session:
            generation = bump_generation(session)  # first: serialises concurrent uploads
            now = self._clock.now()
            checked = check_bundle(
                certs,
                now=now,
                existing=known_certificates(session, certs),
                allow_same_subject=allow_same_subject,
                expiry_warning_days=self._expiry_warning_days,
            )
            row = authority_row(checked, name or default_name(checked.top), now)
            session.add(row)
            if revocation is not None:
                session.flush()  # the CA row first: ca_revocation references it
                revocation_policy.store(session, row.id, revocation)
        return UploadResult(
            id=row.id,
            name=row.name,
            created_at=now,
            certificates=[CertificateInfo.of(cert) for cert in checked.chain],
            notices=checked.notices,
            reordered=checked.reordered,
            generation=generation,
        )

    def list(self) -> builtins.list[StoredCA]:
        """Every stored CA chain, oldest first."""
        with self._db.session() as session:
            query = select(CertificateAuthority).order_by(
                CertificateAuthority.created_at, CertificateAuthority.id
            )
            return [stored_ca(row) for row in session.scalars(query)]

    def get(self, ca_id: str) -> StoredCA:
        with self._db.session() as session:
            row = session.get(CertificateAuthority, ca_id)
            if row is None:
                raise not_found(ca_id)
            return stored_ca(row)

    def remove(self, ca_id: str) -> StoredCA:
        """Delete a CA chain (all its certificates) and bump the generation."""
        with self._db.session() as session:
            bump_generation(session)
            row = session.get(CertificateAuthority, ca_id)
            if row is None:
                raise not_found(ca_id)
            removed = stored_ca(row)
            session.delete(row)
        return removed

    def chain(self, ca_id: str) -> builtins.list[x509.Certificate]:
        """The CA's certificates, leaf-side first (CA_NOT_FOUND when there is none)."""
        with self._db.session() as session:
            row = session.get(CertificateAuthority, ca_id)
            if row is None:
                raise not_found(ca_id)
            return chain_of(row)

    def revocation(self, ca_id: str) -> RevocationPolicy:
        """The CA's revocation settings (the defaults when none were set)."""
        with self._db.session() as session:
            if session.get(CertificateAuthority, ca_id) is None:
                raise not_found(ca_id)
            return revocation_policy.load(session, ca_id)

    def set_revocation(self, ca_id: str, policy: RevocationPolicy) -> RevocationPolicy:
        """Replace the CA's revocation settings and bump the generation (so every instance
        picks them up); returns the settings they replace."""
        with self._db.session() as session:
            bump_generation(session)
            if session.get(CertificateAuthority, ca_id) is None:
                raise not_found(ca_id)
            before = revocation_policy.load(session, ca_id)
            revocation_policy.store(session, ca_id, policy)
        return before

    def generation(self) -> int:
        with self._db.session() as session:
            return read_generation(session)

    def bundles(self) -> tuple[int, builtins.list[builtins.list[x509.Certificate]]]:
        """The generation and each stored chain (leaf-side first), for building anchors.

        The generation is read before the chains: a change committed in between makes the
        chains newer than the generation says, never older, so a validator caching by
        generation rebuilds again rather than keeping stale anchors.
        """
        with self._db.session() as session:
            generation = read_generation(session)
            query = select(CertificateAuthority).order_by(
                CertificateAuthority.created_at, CertificateAuthority.id
            )
            return generation, [chain_of(row) for row in session.scalars(query)]

    def load(self) -> TrustAnchors:
        """The trusted set built like :meth:`bundles` (generation first), each certificate
        tagged with its CA id: with :meth:`generation` this makes the store a
        :class:`certbound.pki.anchors.AnchorSource`."""
        with self._db.session() as session:
            generation = read_generation(session)
            query = select(CertificateAuthority).order_by(
                CertificateAuthority.created_at, CertificateAuthority.id
            )
            rows = list(session.scalars(query))
            chains = [chain_of(row) for row in rows]
            return TrustAnchors.from_bundles(chains, generation, [row.id for row in rows])
