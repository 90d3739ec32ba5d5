"""The trust store (certbound.pki.truststore) on SQLite and PostgreSQL.

Every rejected upload must leave the database exactly as it was: no CA row, no certificate
row, and the generation unchanged.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from sqlalchemy import func, select

from certbound.clock import FixedClock
from certbound.errors import CertboundError, ReasonCode
from certbound.pki import devpki
from certbound.pki.certificate import der
from certbound.pki.truststore import StoredCA, TrustStore
from certbound.storage.database import Database
from certbound.storage.models import CACertificate, CertificateAuthority

DAY = dt.timedelta(days=1)


@pytest.fixture(scope="module")
def root() -> devpki.Issued:
    return devpki.ca("Store Root CA", not_after=dt.datetime.now(dt.UTC) + 3650 * DAY)


@pytest.fixture(scope="module")
def inter(root: devpki.Issued) -> devpki.Issued:
    return devpki.ca("Store Intermediate CA", root, path_length=0)


@pytest.fixture
def store(database: Database, clock: FixedClock) -> TrustStore:
    return TrustStore(database, clock)


def row_counts(db: Database) -> tuple[int, int]:
    with db.session() as session:
        cas = session.scalar(select(func.count()).select_from(CertificateAuthority))
        certs = session.scalar(select(func.count()).select_from(CACertificate))
    return int(cas or 0), int(certs or 0)


def rejected(store: TrustStore, data: bytes) -> CertboundError:
    with pytest.raises(CertboundError) as info:
        store.add(data)
    return info.value


# --- accepted uploads ----------------------------------------------------------------------


def test_add_intermediate_first(
    store: TrustStore, database: Database, root: devpki.Issued, inter: devpki.Issued
) -> None:
    result = store.add(devpki.pem_bundle([inter, root]))
    assert result.id.startswith("ca_") and len(result.id) == 19
    assert result.name == "Store Root CA"
    assert result.reordered is False
    assert result.notices == []
    assert result.generation == 1
    assert [c.role for c in result.certificates] == ["intermediate", "root"]
    assert [c.subject_dn for c in result.certificates] == [
        "CN=Store Intermediate CA,O=Certbound Dev",
        "CN=Store Root CA,O=Certbound Dev",
    ]
    assert row_counts(database) == (1, 2)
    assert store.generation() == 1


def test_add_root_first_is_reordered_and_remembered(
    store: TrustStore, root: devpki.Issued, inter: devpki.Issued
) -> None:
    result = store.add(devpki.pem_bundle([root, inter]), name="Reordered")
    assert result.reordered is True
    assert [n.code for n in result.notices] == [ReasonCode.CHAIN_OUT_OF_ORDER]
    stored = store.get(result.id)
    assert stored.reordered is True
    assert stored.notices == result.notices
    assert stored.name == "Reordered"
    assert [c.sha256_fingerprint for c in stored.certificates] == [
        c.sha256_fingerprint for c in result.certificates
    ]


def test_stored_facts_match_the_upload(
    store: TrustStore, clock: FixedClock, root: devpki.Issued, inter: devpki.Issued
) -> None:
    result = store.add(devpki.pem_bundle([inter, root]))
    stored = store.get(result.id)
    assert stored.certificates == result.certificates
    assert stored.created_at == clock.now()
    data = stored.to_dict()
    assert data["id"] == result.id
    assert data["certificates"][1]["role"] == "root"
    assert {"subject_dn", "issuer_dn", "serial_number", "not_before", "not_after"} <= set(
        data["certificates"][0]
    )
    assert {"sha256_fingerprint", "spki_sha256"} <= set(data["certificates"][0])
    assert result.to_dict()["generation"] == 1


def test_single_root_and_der_file(store: TrustStore, root: devpki.Issued) -> None:
    result = store.add(der(root.cert))
    assert [c.role for c in result.certificates] == ["root"]


def test_intermediate_only(store: TrustStore, inter: devpki.Issued) -> None:
    result = store.add(inter.cert_pem())
    assert result.name == "Store Intermediate CA"
    assert [c.role for c in result.certificates] == ["intermediate"]
    assert store.bundles() == (1, [[inter.cert]])


def test_expiring_soon_notice_is_stored(store: TrustStore, now: dt.datetime) -> None:
    soon = devpki.ca("Soon CA", not_after=now + 20 * DAY)
    result = store.add(soon.cert_pem())
    assert [n.code for n in result.notices] == [ReasonCode.CA_EXPIRING_SOON]
    assert store.get(result.id).notices == result.notices


def test_expiry_warning_days_is_configurable(
    database: Database, clock: FixedClock, now: dt.datetime
) -> None:
    soon = devpki.ca("Soon CA", not_after=now + 20 * DAY)
    assert TrustStore(database, clock, expiry_warning_days=7).add(soon.cert_pem()).notices == []


def test_list_bundles_and_generation(
    store: TrustStore, clock: FixedClock, root: devpki.Issued, inter: devpki.Issued
) -> None:
    assert store.list() == []
    assert store.bundles() == (0, [])
    first = store.add(root.cert_pem())
    clock.advance(dt.timedelta(seconds=1))
    second = store.add(devpki.pem_bundle([root, inter]))  # root again, under a new CA
    assert [ca.id for ca in store.list()] == [first.id, second.id]
    generation, chains = store.bundles()
    assert generation == 2
    assert chains == [[root.cert], [inter.cert, root.cert]]


def test_remove(store: TrustStore, database: Database, root: devpki.Issued) -> None:
    result = store.add(root.cert_pem())
    removed = store.remove(result.id)
    assert isinstance(removed, StoredCA)
    assert removed.id == result.id
    assert removed.certificates == result.certificates
    assert store.list() == []
    assert row_counts(database) == (0, 0)
    assert store.generation() == 2
    assert store.add(root.cert_pem()).generation == 3  # no longer a duplicate


def test_unknown_id(store: TrustStore) -> None:
    for action in (store.get, store.remove):
        with pytest.raises(CertboundError) as info:
            action("ca_0000000000000000")
        assert info.value.reason is ReasonCode.CA_NOT_FOUND
        assert info.value.context == {"ca_id": "ca_0000000000000000"}
    assert store.generation() == 0


# --- rejected uploads store nothing ---------------------------------------------------------


def _csr() -> bytes:
    key = devpki.make_key()
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(devpki.dn("csr.example"))
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM)


def _truncated(root: devpki.Issued, inter: devpki.Issued) -> bytes:
    data = devpki.pem_bundle([inter, root])
    return data[: len(data) - 100]


def _gap(root: devpki.Issued, inter: devpki.Issued) -> bytes:
    low = devpki.ca("Store Issuing CA", devpki.ca("Store Missing CA", root))
    return devpki.pem_bundle([low, root])


def _impostor(root: devpki.Issued, inter: devpki.Issued) -> bytes:
    return devpki.pem_bundle([inter, devpki.ca("Store Root CA")])


def _flipped(root: devpki.Issued, inter: devpki.Issued) -> bytes:
    data = bytearray(der(inter.cert))
    data[-1] ^= 0x01
    bad = x509.load_der_x509_certificate(bytes(data))
    return devpki.pem_bundle([bad, root])


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


BAD_UPLOADS: dict[str, tuple[Callable[[devpki.Issued, devpki.Issued], bytes], ReasonCode]] = {
    "empty": (lambda r, i: b"", ReasonCode.UPLOAD_EMPTY),
    "blank": (lambda r, i: b" \n\n", ReasonCode.UPLOAD_EMPTY),
    "20 MB": (lambda r, i: b"A" * (20 * 1024 * 1024), ReasonCode.UPLOAD_TOO_LARGE),
    "garbage": (lambda r, i: b"hello, this is not a certificate\n", ReasonCode.PEM_MALFORMED),
    "binary garbage": (lambda r, i: bytes(range(256)) * 4, ReasonCode.PEM_MALFORMED),
    "truncated PEM": (_truncated, ReasonCode.PEM_MALFORMED),
    "private key": (
        lambda r, i: devpki.pem_bundle([i]) + r.key_pem(),
        ReasonCode.PRIVATE_KEY_IN_UPLOAD,
    ),
    "CSR": (lambda r, i: _csr(), ReasonCode.NOT_A_CERTIFICATE),
    "leaf": (
        lambda r, i: devpki.pem_bundle([devpki.issue("device.example", i), i, r]),
        ReasonCode.NOT_A_CA,
    ),
    "gap": (_gap, ReasonCode.CHAIN_SIGNATURE_INVALID),
    "same-DN issuer": (_impostor, ReasonCode.CHAIN_SIGNATURE_INVALID),
    "flipped signature": (_flipped, ReasonCode.CHAIN_SIGNATURE_INVALID),
    "RSA 1024": (
        lambda r, i: devpki.ca("Weak CA", key_kind="rsa1024").cert_pem(),
        ReasonCode.WEAK_ALGORITHM,
    ),
    "Ed25519": (
        lambda r, i: devpki.ca("Edwards CA", key_kind="ed25519").cert_pem(),
        ReasonCode.WEAK_ALGORITHM,
    ),
    "expired": (
        lambda r, i: devpki.ca(
            "Old CA", r, not_before=_now() - 400 * DAY, not_after=_now() - DAY
        ).cert_pem(),
        ReasonCode.CA_EXPIRED,
    ),
    "path length": (
        lambda r, i: devpki.pem_bundle([devpki.ca("Too Deep CA", i), i, r]),
        ReasonCode.PATH_LENGTH_EXCEEDED,
    ),
}


@pytest.mark.parametrize("case", list(BAD_UPLOADS))
def test_rejected_upload_stores_nothing(
    case: str, store: TrustStore, database: Database, root: devpki.Issued, inter: devpki.Issued
) -> None:
    make, reason = BAD_UPLOADS[case]
    error = rejected(store, make(root, inter))
    assert error.reason is reason, error
    assert error.detail
    assert row_counts(database) == (0, 0)
    assert store.generation() == 0


def test_rejection_names_the_block(
    store: TrustStore, root: devpki.Issued, inter: devpki.Issued
) -> None:
    leaf = devpki.issue("device.example", inter)
    error = rejected(store, devpki.pem_bundle([inter, root, leaf]))
    assert error.reason is ReasonCode.NOT_A_CA
    assert error.detail.startswith("block 3 (CN=device.example")
    assert error.context["block"] == 3


def test_duplicate_upload(
    store: TrustStore, database: Database, root: devpki.Issued, inter: devpki.Issued
) -> None:
    first = store.add(devpki.pem_bundle([inter, root]))
    for data in (devpki.pem_bundle([inter, root]), devpki.pem_bundle([root, inter, root])):
        error = rejected(store, data)
        assert error.reason is ReasonCode.DUPLICATE_CA
        assert error.context["existing_ca_ids"] == [first.id]
    assert row_counts(database) == (1, 2)
    assert store.generation() == 1


def test_same_subject_different_key(
    store: TrustStore, database: Database, root: devpki.Issued
) -> None:
    first = store.add(root.cert_pem())
    impostor = devpki.ca("Store Root CA")
    error = rejected(store, impostor.cert_pem())
    assert error.reason is ReasonCode.CA_SUBJECT_CONFLICT
    assert error.context["existing_ca_ids"] == [first.id]
    assert first.id in error.detail
    assert row_counts(database) == (1, 1)
    assert store.generation() == 1

    allowed = store.add(impostor.cert_pem(), allow_same_subject=True)
    assert [n.code for n in allowed.notices] == [ReasonCode.CA_SUBJECT_CONFLICT]
    assert store.get(allowed.id).notices == allowed.notices
    assert row_counts(database) == (2, 2)


@pytest.mark.parametrize("name", ["", "   ", "x" * 201])
def test_bad_name(name: str, store: TrustStore, database: Database, root: devpki.Issued) -> None:
    with pytest.raises(ValueError, match="1 to 200"):
        store.add(root.cert_pem(), name)
    assert row_counts(database) == (0, 0)


def test_name_is_stripped(store: TrustStore, root: devpki.Issued) -> None:
    assert store.add(root.cert_pem(), "  Corporate Root  ").name == "Corporate Root"


def test_concurrent_duplicate_uploads_store_one(
    store: TrustStore, database: Database, root: devpki.Issued, inter: devpki.Issued
) -> None:
    data = devpki.pem_bundle([inter, root])
    barrier = threading.Barrier(4)

    def upload() -> ReasonCode | None:
        barrier.wait()
        try:
            store.add(data)
        except CertboundError as exc:
            return exc.reason
        return None

    with ThreadPoolExecutor(4) as pool:
        outcomes = list(pool.map(lambda _: upload(), range(4)))
    assert outcomes.count(None) == 1
    assert outcomes.count(ReasonCode.DUPLICATE_CA) == 3
    assert row_counts(database) == (1, 2)
    assert store.generation() == 1


def test_load_builds_anchors_from_the_stored_chains(
    store: TrustStore, root: devpki.Issued, inter: devpki.Issued
) -> None:
    store.add(devpki.pem_bundle([inter, root]))
    anchors = store.load()
    assert anchors.generation == store.generation() == 1
    assert anchors.anchors == (root.cert,)
    assert anchors.intermediates == (inter.cert,)
