"""Per-CA revocation settings through the trust store's library API (TrustStore.add with
``revocation=``, set_revocation, revocation), on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, select

from certbound.clock import FixedClock
from certbound.errors import CertboundError, ReasonCode
from certbound.pki import devpki
from certbound.pki.revocation_policy import DEFAULT_POLICY, Mode, RevocationPolicy
from certbound.pki.truststore import TrustStore
from certbound.storage.database import Database
from certbound.storage.models import CARevocation

DAY = dt.timedelta(days=1)
STRICT_OCSP = RevocationPolicy(
    mode=Mode.OCSP_THEN_CRL,
    fail_open=True,
    crl_url="https://crl.example.test/issuing.crl",
    ocsp_url="http://ocsp.example.test/",
    max_staleness=dt.timedelta(minutes=10),
    timeout=0.5,
)


@pytest.fixture(scope="module")
def chain() -> bytes:
    root = devpki.ca("Revocation Store Root", not_after=dt.datetime.now(dt.UTC) + 3650 * DAY)
    return devpki.pem_bundle([devpki.ca("Revocation Store Issuing", root), root])


@pytest.fixture
def store(database: Database, clock: FixedClock) -> TrustStore:
    return TrustStore(database, clock)


def policy_rows(db: Database) -> int:
    with db.session() as session:
        return int(session.scalar(select(func.count()).select_from(CARevocation)) or 0)


def test_a_new_ca_has_the_defaults(store: TrustStore, chain: bytes, database: Database) -> None:
    ca_id = store.add(chain).id
    assert store.revocation(ca_id) == DEFAULT_POLICY
    assert DEFAULT_POLICY.mode is Mode.CRL and not DEFAULT_POLICY.fail_open
    assert policy_rows(database) == 0


def test_add_stores_the_given_policy(store: TrustStore, chain: bytes) -> None:
    ca_id = store.add(chain, revocation=STRICT_OCSP).id
    assert store.revocation(ca_id) == STRICT_OCSP


def test_set_revocation_replaces_it_and_bumps_the_generation(
    store: TrustStore, chain: bytes
) -> None:
    ca_id = store.add(chain).id
    generation = store.generation()
    before = store.set_revocation(ca_id, STRICT_OCSP)
    assert before == DEFAULT_POLICY
    assert store.revocation(ca_id) == STRICT_OCSP
    assert store.generation() == generation + 1
    off = RevocationPolicy(mode=Mode.OFF)
    assert store.set_revocation(ca_id, off) == STRICT_OCSP
    assert store.revocation(ca_id) == off


def test_a_file_crl_url_is_accepted(store: TrustStore, chain: bytes) -> None:
    policy = RevocationPolicy(crl_url="file:///var/lib/certbound/issuing.crl")
    ca_id = store.add(chain, revocation=policy).id
    assert store.revocation(ca_id).crl_url == "file:///var/lib/certbound/issuing.crl"


@pytest.mark.parametrize("call", ["get", "set"])
def test_unknown_ca(store: TrustStore, call: str) -> None:
    generation = store.generation()
    with pytest.raises(CertboundError) as info:
        if call == "get":
            store.revocation("ca_nope")
        else:
            store.set_revocation("ca_nope", STRICT_OCSP)
    assert info.value.reason is ReasonCode.CA_NOT_FOUND
    assert store.generation() == generation  # the failed change rolled back


def test_removing_the_ca_removes_its_policy(
    store: TrustStore, chain: bytes, database: Database
) -> None:
    ca_id = store.add(chain, revocation=STRICT_OCSP).id
    assert policy_rows(database) == 1
    store.remove(ca_id)
    assert policy_rows(database) == 0


def test_a_rejected_upload_stores_no_policy(
    store: TrustStore, chain: bytes, database: Database
) -> None:
    store.add(chain)
    with pytest.raises(CertboundError) as info:
        store.add(chain, revocation=STRICT_OCSP)  # the same chain again
    assert info.value.reason is ReasonCode.DUPLICATE_CA
    assert policy_rows(database) == 0


@pytest.mark.parametrize(
    "changes",
    [
        {"timeout": 0},
        {"timeout": 31},
        {"max_staleness": dt.timedelta(seconds=-1)},
        {"crl_url": "ftp://crl.example.test/x.crl"},
        {"ocsp_url": "file:///tmp/ocsp"},
        {"ocsp_url": "not a url"},
    ],
)
def test_invalid_settings_are_refused_before_storing(changes: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        RevocationPolicy(**changes)  # type: ignore[arg-type]
