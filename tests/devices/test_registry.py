"""The device registry on SQLite and PostgreSQL: first sightings, the cache, last_seen
throttling, statuses seen across instances, the first-sighting race, look-ups and paging.

Two registries on one database (each with its own engine) stand for two processes.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat import asn1
from cryptography.x509.oid import NameOID
from sqlalchemy import select, text

from certbound.clock import FixedClock
from certbound.devices.mapping import UPN_OID, MappingRules
from certbound.devices.registry import (
    Device,
    DeviceRegistry,
    DeviceStatus,
    issuer_key,
)
from certbound.errors import CertboundError, ReasonCode
from certbound.pki import devpki
from certbound.pki.certificate import der, san_strings, serial_hex, sha256_fingerprint
from certbound.pki.devpki import Issued
from certbound.storage.database import Database
from certbound.storage.models import Device as DeviceRow
from certbound.storage.models import DeviceState

RULES = MappingRules.parse(["san_email", "san_upn", "dn:UID", "cn"])
SECOND = dt.timedelta(seconds=1)

Issue = Callable[..., x509.Certificate]


@pytest.fixture(scope="module")
def issuer() -> Issued:
    return devpki.ca("Registry Test CA")


@pytest.fixture
def issue(issuer: Issued) -> Issue:
    """A device certificate: ``issue("name", sans=[...], uid=..., by=CA, serial=N)``."""

    def make(
        name: str = "device",
        *,
        sans: list[x509.GeneralName] | None = None,
        uid: str | None = None,
        by: Issued | None = None,
        serial: int | None = None,
    ) -> x509.Certificate:
        attributes = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Registry Tests")]
        if uid is not None:
            attributes.append(x509.NameAttribute(NameOID.USER_ID, uid))
        attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, name))
        profile = devpki.Profile(sans=sans or [], serial=serial)
        return devpki.issue(x509.Name(attributes), by or issuer, profile=profile).cert

    return make


@pytest.fixture
def registry(database: Database, clock: FixedClock) -> DeviceRegistry:
    return DeviceRegistry(database, clock, RULES, touch_interval=60, status_ttl=2)


@pytest.fixture
def other_db(database: Database, database_url: str) -> Iterator[Database]:
    """A second engine on the test database: another process's view of it."""
    db = Database(database_url)
    yield db
    db.dispose()


def observe(registry: DeviceRegistry, leaf: x509.Certificate) -> Device:
    return registry.observe(leaf, der(leaf))


def rows(database: Database) -> list[DeviceRow]:
    with database.session() as session:
        return list(session.scalars(select(DeviceRow).order_by(DeviceRow.first_seen)).all())


def stored_last_seen(database: Database, device_id: str) -> dt.datetime:
    with database.session() as session:
        row = session.get(DeviceRow, device_id)
        assert row is not None
        return row.last_seen


# first sighting and the cache ------------------------------------------------------------


def test_a_new_certificate_is_registered_with_its_facts(
    registry: DeviceRegistry, database: Database, issue: Issue, now: dt.datetime
) -> None:
    leaf = issue("laptop-1", sans=[x509.RFC822Name("alice@corp.example")])
    device = observe(registry, leaf)
    assert device.id.startswith("dev_") and len(device.id) == 20
    assert device.issuer_dn == leaf.issuer.rfc4514_string()
    assert device.serial_number == serial_hex(leaf)
    assert device.thumbprint == sha256_fingerprint(leaf)
    assert device.subject_dn == "CN=laptop-1,O=Registry Tests"
    assert device.sans == tuple(san_strings(leaf)) == ("email:alice@corp.example",)
    assert (device.user, device.mapped_by) == ("alice@corp.example", "san_email")
    assert device.status is DeviceStatus.ACTIVE
    assert device.first_seen == device.last_seen == now
    assert device.not_after == leaf.not_valid_after_utc
    [row] = rows(database)
    assert (row.id, row.thumbprint, json.loads(row.sans)) == (
        device.id,
        device.thumbprint,
        ["email:alice@corp.example"],
    )
    assert registry.get(device.id) == device


def test_to_dict_is_camel_case_rfc3339(registry: DeviceRegistry, issue: Issue) -> None:
    device = observe(registry, issue("laptop-2"))
    data = device.to_dict()
    assert list(data) == [
        "id", "issuerDn", "serialNumber", "sha256Thumbprint", "subjectDn", "sans", "user",
        "mappedBy", "status", "firstSeen", "lastSeen", "notAfter",
    ]  # fmt: skip
    assert data["status"] == "ACTIVE" and data["sans"] == []
    assert data["firstSeen"].endswith("Z") and data["notAfter"].endswith("Z")
    assert (data["user"], data["mappedBy"]) == ("laptop-2", "cn")


def test_observing_again_answers_from_the_cache(
    registry: DeviceRegistry, database: Database, clock: FixedClock, issue: Issue
) -> None:
    leaf = issue("laptop-3")
    first = observe(registry, leaf)
    for _ in range(1000):  # within status_ttl and touch_interval: no database work at all
        assert observe(registry, leaf) is first
    clock.advance(30 * SECOND)
    again = observe(registry, leaf)  # a status poll, still no new row
    assert again == first
    stats = registry.stats()
    assert (stats.loads, stats.inserts, stats.cached) == (1, 1, 1)
    assert stats.polls == 2
    assert len(rows(database)) == 1


def test_a_second_registry_finds_the_existing_row(
    registry: DeviceRegistry,
    other_db: Database,
    database: Database,
    clock: FixedClock,
    issue: Issue,
) -> None:
    leaf = issue("laptop-4")
    first = observe(registry, leaf)
    other = DeviceRegistry(other_db, clock, RULES)
    assert observe(other, leaf) == first
    assert other.stats().inserts == 0 and len(rows(database)) == 1


def test_last_seen_is_written_at_most_once_per_touch_interval(
    registry: DeviceRegistry, database: Database, clock: FixedClock, issue: Issue, now: dt.datetime
) -> None:
    leaf = issue("laptop-5")
    device = observe(registry, leaf)
    clock.advance(30 * SECOND)
    assert observe(registry, leaf).last_seen == now  # within the interval: unchanged
    registry.flush()
    assert stored_last_seen(database, device.id) == now
    clock.advance(31 * SECOND)
    touched = observe(registry, leaf)
    assert touched.last_seen == now + 61 * SECOND and touched.first_seen == now
    assert stored_last_seen(database, device.id) == now  # written with the next poll
    clock.advance(2 * SECOND)
    assert observe(registry, leaf).last_seen == now + 61 * SECOND
    assert stored_last_seen(database, device.id) == now + 61 * SECOND
    assert registry.stats().touches_written == 1


def test_last_seen_never_moves_back(
    registry: DeviceRegistry,
    other_db: Database,
    database: Database,
    clock: FixedClock,
    issue: Issue,
) -> None:
    """Two instances touching one device: the later time stays."""
    now = clock.now()
    leaf = issue("laptop-6")
    device = observe(registry, leaf)
    late = FixedClock(now + 600 * SECOND)
    other = DeviceRegistry(other_db, late, RULES)
    observe(other, leaf)
    other.flush()
    assert stored_last_seen(database, device.id) == now + 600 * SECOND
    clock.advance(120 * SECOND)
    observe(registry, leaf)
    registry.flush()
    assert stored_last_seen(database, device.id) == now + 600 * SECOND


# statuses --------------------------------------------------------------------------------


def test_a_status_change_elsewhere_is_seen_within_status_ttl(
    registry: DeviceRegistry, other_db: Database, clock: FixedClock, issue: Issue
) -> None:
    leaf = issue("laptop-7")
    device = observe(registry, leaf)
    admin = DeviceRegistry(other_db, clock, RULES)  # the CLI, or another instance
    admin.suspend(device.id)
    assert observe(registry, leaf).status is DeviceStatus.ACTIVE  # cached for up to 2 s
    clock.advance(1.9 * SECOND)
    assert observe(registry, leaf).status is DeviceStatus.ACTIVE
    clock.advance(0.1 * SECOND)
    assert observe(registry, leaf).status is DeviceStatus.SUSPENDED
    admin.resume(device.serial_number)
    clock.advance(2 * SECOND)
    assert observe(registry, leaf).status is DeviceStatus.ACTIVE
    admin.deactivate(device.thumbprint)
    clock.advance(2 * SECOND)
    assert observe(registry, leaf).status is DeviceStatus.DEACTIVATED


def test_a_change_through_the_registry_updates_its_cache_at_once(
    registry: DeviceRegistry, issue: Issue
) -> None:
    leaf = issue("laptop-8")
    device = observe(registry, leaf)
    before, after = registry.suspend(device.id)
    assert (before.status, after.status) == (DeviceStatus.ACTIVE, DeviceStatus.SUSPENDED)
    assert observe(registry, leaf).status is DeviceStatus.SUSPENDED
    registry.resume(device.id)
    assert observe(registry, leaf).status is DeviceStatus.ACTIVE


def test_changes_are_idempotent_and_deactivation_is_final(
    registry: DeviceRegistry, issue: Issue
) -> None:
    device = observe(registry, issue("laptop-9"))
    registry.suspend(device.id)
    before, after = registry.suspend(device.id)
    assert before.status is after.status is DeviceStatus.SUSPENDED
    before, after = registry.resume(device.id)
    assert (before.status, after.status) == (DeviceStatus.SUSPENDED, DeviceStatus.ACTIVE)
    assert registry.resume(device.id)[1].status is DeviceStatus.ACTIVE
    before, after = registry.deactivate(device.id)
    assert (before.status, after.status) == (DeviceStatus.ACTIVE, DeviceStatus.DEACTIVATED)
    assert registry.deactivate(device.id)[1].status is DeviceStatus.DEACTIVATED
    for change in (registry.suspend, registry.resume):
        with pytest.raises(CertboundError) as caught:
            change(device.id)
        assert caught.value.reason is ReasonCode.DEVICE_DEACTIVATED
        assert device.id in caught.value.detail
    assert registry.get(device.id).status is DeviceStatus.DEACTIVATED


def test_status_changes_are_stamped_in_order(
    registry: DeviceRegistry, database: Database, issue: Issue
) -> None:
    first = observe(registry, issue("laptop-10"))
    second = observe(registry, issue("laptop-11"))
    registry.suspend(first.id)
    registry.suspend(second.id)
    registry.resume(first.id)
    with database.session() as session:
        query = select(DeviceRow.id, DeviceRow.status_seq)
        seqs = {device_id: seq for device_id, seq in session.execute(query).tuples()}
        generation = session.scalar(select(DeviceState.generation))
    assert 0 < seqs[second.id] < seqs[first.id] == generation


def test_the_migration_creates_the_generation_row(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path}/fresh.db")
    try:
        db.migrate()
        with db.session() as session:
            found = session.execute(text("SELECT id, generation FROM device_state")).all()
            assert [tuple(row) for row in found] == [(1, 0)]
    finally:
        db.dispose()


# the first-sighting race -----------------------------------------------------------------


def test_two_registries_racing_on_new_certificates_make_one_row_each(
    database: Database, other_db: Database, clock: FixedClock, issue: Issue
) -> None:
    leaves = [issue(f"race-{i}") for i in range(12)]
    registries = [
        DeviceRegistry(database, clock, RULES),
        DeviceRegistry(other_db, clock, RULES),
    ]
    barrier = threading.Barrier(2, timeout=10)
    seen: list[list[str]] = [[], []]
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            barrier.wait()
            seen[index] = [observe(registries[index], leaf).id for leaf in leaves]
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors and not any(thread.is_alive() for thread in threads)
    assert seen[0] == seen[1]
    assert len(rows(database)) == len(leaves) == len(set(seen[0]))
    stats = [registry.stats() for registry in registries]
    assert sum(s.inserts for s in stats) == len(leaves)


def _other_process_row(leaf: x509.Certificate, at: dt.datetime) -> DeviceRow:
    issuer = leaf.issuer.rfc4514_string()
    return DeviceRow(
        id="dev_0therpr0cess000",
        issuer_dn=issuer,
        issuer_sha256=issuer_key(issuer),
        serial_number=serial_hex(leaf),
        thumbprint=hashlib.sha256(der(leaf)).hexdigest(),
        subject_dn=leaf.subject.rfc4514_string(),
        sans="[]",
        user_name=None,
        mapped_by=None,
        status="SUSPENDED",
        status_seq=0,
        first_seen=at,
        last_seen=at,
        not_after=leaf.not_valid_after_utc,
    )


def _wait_until_blocked(database: Database, thread: threading.Thread) -> None:
    """Until the registry's INSERT waits for the other transaction (PostgreSQL shows it in
    pg_stat_activity; SQLite's busy wait shows nowhere, so give it half a second)."""
    if database.engine.dialect.name != "postgresql":
        time.sleep(0.5)
        return
    query = text(
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
        "AND query LIKE 'INSERT INTO devices%'"
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and thread.is_alive():
        with database.engine.connect() as conn:
            if conn.execute(query).scalar():
                return
        time.sleep(0.02)
    raise AssertionError("the registry's insert never waited for the other transaction")


def test_losing_the_insert_race_returns_the_winners_row(
    registry: DeviceRegistry, other_db: Database, database: Database, issue: Issue, now: dt.datetime
) -> None:
    """Another process inserts the same certificate between our read and our insert: our
    insert fails on the unique constraint and the registry returns the other's row."""
    leaf = issue("raced")
    inserted, release = threading.Event(), threading.Event()

    def other_process() -> None:
        with other_db.session() as session:
            session.add(_other_process_row(leaf, now))
            session.flush()  # inserted, not committed: our read cannot see it
            inserted.set()
            release.wait(10)

    writer = threading.Thread(target=other_process)
    writer.start()
    assert inserted.wait(10)
    result: list[Device] = []
    observer = threading.Thread(target=lambda: result.append(observe(registry, leaf)))
    observer.start()
    _wait_until_blocked(other_db, observer)
    release.set()
    writer.join(10)
    observer.join(10)
    [device] = result
    assert device.id == "dev_0therpr0cess000" and device.status is DeviceStatus.SUSPENDED
    assert registry.stats().insert_races == 1 and registry.stats().inserts == 0
    assert len(rows(database)) == 1


def test_a_reused_serial_is_the_same_device(
    registry: DeviceRegistry, database: Database, issue: Issue
) -> None:
    """A CA that issued two certificates with one serial: both are one device, and the
    first one's suspension holds for the second."""
    first = observe(registry, issue("reissued", serial=0x1234ABCD))
    registry.suspend(first.id)
    second_leaf = issue("reissued-again", serial=0x1234ABCD)
    second = observe(registry, second_leaf)
    assert second.id == first.id and second.status is DeviceStatus.SUSPENDED
    assert len(rows(database)) == 1


# mapping ---------------------------------------------------------------------------------


def test_devices_are_mapped_by_the_first_rule_that_yields(
    registry: DeviceRegistry, issue: Issue
) -> None:
    upn = x509.OtherName(UPN_OID, asn1.encode_der("bob@corp.example"))
    alice = x509.RFC822Name("alice@corp.example")
    cases = [
        (issue("a", sans=[alice]), "alice@corp.example", "san_email"),
        (issue("b", sans=[upn, x509.DNSName("b.corp.example")]), "bob@corp.example", "san_upn"),
        (issue("c", uid="carol"), "carol", "dn:UID"),
        (issue("dave-laptop"), "dave-laptop", "cn"),
    ]  # fmt: skip
    for leaf, user, rule in cases:
        device = observe(registry, leaf)
        assert (device.user, device.mapped_by) == (user, rule)
        assert registry.get(device.id).user == user


def test_an_unmapped_device_is_registered_and_listed(
    database: Database, clock: FixedClock, issue: Issue
) -> None:
    registry = DeviceRegistry(database, clock, MappingRules.parse(["san_email"]))
    device = observe(registry, issue("no-email"))
    assert (device.user, device.mapped_by) == (None, None)
    assert registry.list(unmapped=True) == [device]
    assert registry.list(user="no-email") == []


def test_a_device_is_mapped_again_when_the_rules_change(
    database: Database, clock: FixedClock, issue: Issue
) -> None:
    leaf = issue("frank-laptop", sans=[x509.RFC822Name("frank@corp.example")])
    by_cn = DeviceRegistry(database, clock, MappingRules.parse(["cn"]))
    assert observe(by_cn, leaf).user == "frank-laptop"
    by_email = DeviceRegistry(database, clock, MappingRules.parse(["san_email", "cn"]))
    device = observe(by_email, leaf)
    assert (device.user, device.mapped_by) == ("frank@corp.example", "san_email")
    assert by_cn.get(device.id).user == "frank@corp.example"


# look-ups and listing --------------------------------------------------------------------


def test_get_by_id_serial_and_thumbprint(registry: DeviceRegistry, issue: Issue) -> None:
    device = observe(registry, issue("lookup", serial=0x0ABCDEF012))
    serial = device.serial_number
    assert serial == "0ABCDEF012"
    colons = ":".join(serial[i : i + 2] for i in range(0, len(serial), 2))
    for ref in (
        device.id, serial, serial.lower(), colons.lower(), "abcdef012", f" {serial} ",
        device.thumbprint, device.thumbprint.upper(),
    ):  # fmt: skip
        assert registry.get(ref).id == device.id, ref


@pytest.mark.parametrize("ref", ["dev_nosuchdevice00", "DEADBEEF", "0" * 64, "not-hex", ""])
def test_get_unknown_is_device_not_found(registry: DeviceRegistry, issue: Issue, ref: str) -> None:
    observe(registry, issue("someone"))
    with pytest.raises(CertboundError) as caught:
        registry.get(ref)
    assert caught.value.reason is ReasonCode.DEVICE_NOT_FOUND
    assert repr(ref.strip()) in caught.value.detail or repr(ref) in caught.value.detail


def test_a_serial_two_issuers_used_is_ambiguous(registry: DeviceRegistry, issue: Issue) -> None:
    other_ca = devpki.ca("Registry Other CA")
    one = observe(registry, issue("twin-1", serial=0x5EED))
    two = observe(registry, issue("twin-2", serial=0x5EED, by=other_ca))
    assert one.id != two.id
    with pytest.raises(CertboundError) as caught:
        registry.get("5EED")
    error = caught.value
    assert error.reason is ReasonCode.DEVICE_NOT_FOUND
    assert "ambiguous" in error.detail and one.id in error.detail and two.id in error.detail
    assert error.context["ids"] == sorted([one.id, two.id])  # one first_seen: by id
    assert registry.get(two.thumbprint).id == two.id
    with pytest.raises(CertboundError, match="ambiguous"):
        registry.suspend("5eed")
    assert registry.get(one.id).status is DeviceStatus.ACTIVE


def test_list_pages_in_first_seen_order(
    registry: DeviceRegistry, clock: FixedClock, issue: Issue
) -> None:
    devices = []
    for i in range(5):
        devices.append(observe(registry, issue(f"page-{i}")))
        if i != 2:  # page-2 and page-3 share a first_seen: ordered by id
            clock.advance(SECOND)
    expected = sorted(devices, key=lambda d: (d.first_seen, d.id))
    assert [d.id for d in registry.list()] == [d.id for d in expected]
    pages: list[list[str]] = []
    after = None
    for _ in range(10):  # bounded
        page = registry.list(limit=2, after=after)
        if not page:
            break
        pages.append([d.id for d in page])
        after = page[-1].id
    assert pages == [[d.id for d in expected[i : i + 2]] for i in range(0, 5, 2)]


def test_list_filters(registry: DeviceRegistry, issue: Issue) -> None:
    alice = [observe(registry, issue(f"alice-{i}", uid="alice")) for i in range(2)]
    bob = observe(registry, issue("bob-1", uid="bob"))
    registry.suspend(alice[1].id)
    assert [d.id for d in registry.list(user="alice")] == sorted(d.id for d in alice)
    suspended = registry.list(status=DeviceStatus.SUSPENDED)
    assert [d.id for d in suspended] == [alice[1].id]
    assert [d.id for d in registry.list(status=DeviceStatus.ACTIVE, user="bob")] == [bob.id]
    assert registry.list(status=DeviceStatus.DEACTIVATED) == []
    with pytest.raises(CertboundError) as caught:
        registry.list(after="dev_nosuchdevice00")
    assert caught.value.reason is ReasonCode.DEVICE_NOT_FOUND
    with pytest.raises(ValueError, match="limit"):
        registry.list(limit=0)


def test_the_cache_is_bounded(database: Database, clock: FixedClock, issue: Issue) -> None:
    registry = DeviceRegistry(database, clock, RULES, max_cached=3)
    leaves = [issue(f"bounded-{i}") for i in range(4)]
    ids = [observe(registry, leaf).id for leaf in leaves]
    assert registry.stats().cached <= 3
    assert observe(registry, leaves[0]).id == ids[0]  # dropped first, read again
    assert registry.stats().loads == 5 and registry.stats().inserts == 4


def test_a_suspension_reaches_every_cached_key_of_a_device(
    registry: DeviceRegistry, other_db: Database, clock: FixedClock, issue: Issue
) -> None:
    """A reused serial gives one device two cache keys (thumbprints): a change made
    elsewhere reaches both."""
    first_leaf = issue("keys-1", serial=0x77)
    second_leaf = issue("keys-2", serial=0x77)
    device = observe(registry, first_leaf)
    assert observe(registry, second_leaf).id == device.id
    DeviceRegistry(other_db, clock, RULES).suspend(device.id)
    clock.advance(2 * SECOND)
    assert observe(registry, first_leaf).status is DeviceStatus.SUSPENDED
    assert observe(registry, second_leaf).status is DeviceStatus.SUSPENDED
