"""CrlStore on SQLite and PostgreSQL against a real local HTTP server (requests counted at the
server): bounded login downloads and their hold-off, the held CRL kept through failures,
the shared table (verified before use, one download for the fleet through the lease),
concurrent logins, a database that is down, and the refresher thread's lifecycle."""

from __future__ import annotations

import datetime as dt
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy import update

from certbound.clock import FixedClock
from certbound.pki import devpki
from certbound.pki.crl import CrlError
from certbound.pki.crl_store import CrlEntry, CrlStore, issuer_pin, lead
from certbound.pki.devpki import DAY, Issued
from certbound.storage.database import Database
from certbound.storage.models import CRLCacheEntry
from certbound.syslog.events import EventType
from certbound.syslog.recorder import EventRecorder

if TYPE_CHECKING:
    from conftest import CrlServer

MINUTE = dt.timedelta(minutes=1)
HOUR = dt.timedelta(hours=1)
Logged = Callable[[str], list[dict[str, Any]]]


def crl_der(
    issuer: Issued, serials: list[int], *, this_update: dt.datetime, hours: int = 24, number: int
) -> bytes:
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.name)
        .last_update(this_update)
        .next_update(this_update + hours * HOUR)
        .add_extension(x509.CRLNumber(number), False)
    )
    for serial in serials:
        entry = x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(this_update)
        builder = builder.add_revoked_certificate(entry.build())
    return builder.sign(issuer.key, hashes.SHA256()).public_bytes(Encoding.DER)


@dataclass
class Published:
    """One CA and the URL (its own path on the module's server) of its CRL."""

    ca: Issued
    server: CrlServer
    path: str
    now: dt.datetime

    @property
    def url(self) -> str:
        return self.server.base + self.path

    def publish(
        self, serials: list[int], *, number: int, at: dt.datetime | None = None, **kw: Any
    ) -> None:
        body = crl_der(self.ca, serials, this_update=at or self.now, number=number)
        self.server.serve(self.path, body, **kw)

    @property
    def hits(self) -> int:
        return self.server.hits(self.path)


@pytest.fixture
def published(crl_server: CrlServer, clock: FixedClock) -> Published:
    site = Published(devpki.ca("Store CA"), crl_server, f"/{uuid.uuid4().hex}.crl", clock.now())
    site.publish([7], number=1)
    return site


@pytest.fixture
def stores(
    database: Database, clock: FixedClock, recorder: EventRecorder, client: httpx.Client
) -> Iterator[Callable[..., CrlStore]]:
    made: list[CrlStore] = []

    def make(**kw: Any) -> CrlStore:
        options: dict[str, Any] = {"recorder": recorder} | kw
        store = CrlStore(options.pop("db", database), clock, client, **options)
        made.append(store)
        return store

    yield make
    for store in made:
        store.close()


def entry_of(store: CrlStore, site: Published, timeout: float = 2.0) -> CrlEntry:
    return store.entry(site.url, site.ca.cert, issuer_pin(site.ca.cert), timeout=timeout)


def budget(seconds: float = 2.0) -> float:
    return time.monotonic() + seconds


def test_memory_answers_until_next_update(
    published: Published, stores: Callable[..., CrlStore], clock: FixedClock
) -> None:
    store = stores()
    entry = entry_of(store, published)
    first = store.get(entry, now=clock.now(), deadline=budget())
    for _ in range(100):
        assert store.get(entry, now=clock.now(), deadline=budget()) is first
    assert first.is_revoked(7) and published.hits == 1 and store.downloads == 1
    published.publish([7, 8], number=2, at=clock.now() + HOUR)
    clock.advance(DAY)
    second = store.get(entry, now=clock.now(), deadline=budget())
    assert second.crl_number == 2 and second.is_revoked(8) and published.hits == 2


def test_a_login_download_is_bounded_and_then_held_off(
    published: Published, stores: Callable[..., CrlStore], clock: FixedClock, logged: Logged
) -> None:
    published.publish([7], number=1, delay=3.0)
    store = stores(retry_seconds=30)
    entry = entry_of(store, published)
    started = time.monotonic()
    with pytest.raises(CrlError) as excinfo:
        store.get(entry, now=clock.now(), deadline=budget(0.4))
    assert time.monotonic() - started < 0.9
    assert excinfo.value.problem == "fetch"
    with pytest.raises(CrlError):  # held off: no second download within retry_seconds
        store.get(entry, now=clock.now(), deadline=budget(0.4))
    assert published.hits == 1
    published.publish([7], number=1)
    clock.advance(dt.timedelta(seconds=31))
    assert store.get(entry, now=clock.now(), deadline=budget()).is_revoked(7)
    assert published.hits == 2
    (event,) = logged(EventType.PKI_CRL_DOWNLOAD_FAILURE.value)
    assert event["debugContext"]["debugData"]["url"] == published.url


def test_the_held_crl_is_kept_when_a_download_fails(
    published: Published,
    stores: Callable[..., CrlStore],
    clock: FixedClock,
    database: Database,
    logged: Logged,
) -> None:
    store = stores()
    entry = entry_of(store, published)
    held = store.get(entry, now=clock.now(), deadline=budget())
    published.server.serve(published.path, b"oops", status=500)
    clock.advance(DAY + MINUTE)
    assert store.get(entry, now=clock.now(), deadline=budget()) is held  # stale, but held
    with database.session() as session:
        row = session.get(CRLCacheEntry, entry.key)
        assert row is not None and row.der == held.der
        assert row.last_error is not None and "HTTP 500" in row.last_error
    (event,) = logged(EventType.PKI_CRL_DOWNLOAD_FAILURE.value)
    data = event["debugContext"]["debugData"]
    assert data["problem"] == "fetch" and data["heldNextUpdate"] is not None


def test_the_shared_table_spares_the_second_instance_a_download(
    published: Published, stores: Callable[..., CrlStore], clock: FixedClock, database: Database
) -> None:
    first, second = stores(), stores()
    first.get(entry_of(first, published), now=clock.now(), deadline=budget())
    index = second.get(entry_of(second, published), now=clock.now(), deadline=budget())
    assert index.is_revoked(7) and published.hits == 1 and second.downloads == 0
    with database.session() as session:
        row = session.get(CRLCacheEntry, (published.url, issuer_pin(published.ca.cert)))
        assert row is not None
        assert (row.crl_number, row.entry_count, row.size) == ("1", 1, len(index.der))
        assert row.next_update == clock.now() + DAY and row.last_error is None


def test_a_table_crl_is_verified_before_use(
    published: Published, stores: Callable[..., CrlStore], clock: FixedClock, database: Database
) -> None:
    first = stores()
    first.get(entry_of(first, published), now=clock.now(), deadline=budget())
    forged = crl_der(devpki.ca("Store CA"), [], this_update=clock.now(), number=9)
    key = (published.url, issuer_pin(published.ca.cert))
    with database.session() as session:
        session.execute(
            update(CRLCacheEntry)
            .where(CRLCacheEntry.url == key[0])
            .values(der=forged, crl_number="9")
        )
    second = stores()
    index = second.get(entry_of(second, published), now=clock.now(), deadline=budget())
    assert index.crl_number == 1 and index.is_revoked(7)
    assert published.hits == 2  # the forged row was ignored: downloaded again


def test_one_instance_of_the_fleet_refreshes_the_others_read_the_table(
    published: Published, stores: Callable[..., CrlStore], clock: FixedClock
) -> None:
    first, second = stores(), stores()
    entries = [entry_of(store, published) for store in (first, second)]
    for store, entry in zip((first, second), entries, strict=True):
        store.get(entry, now=clock.now(), deadline=budget())
    assert published.hits == 1
    index = entries[0].index
    assert index is not None
    published.publish([7, 9], number=2, at=clock.now() + HOUR)
    clock.advance(DAY - lead(index) + MINUTE)  # inside the refresh window, before nextUpdate
    assert first.refresh_once() == 1 and published.hits == 2
    assert second.refresh_once() == 0 and published.hits == 2
    newer = entries[1].index
    assert newer is not None and newer.crl_number == 2 and newer.is_revoked(9)
    assert first.refresh_once() == 0 and second.refresh_once() == 0  # nothing due now


def test_concurrent_logins_share_one_download(
    published: Published, stores: Callable[..., CrlStore], clock: FixedClock
) -> None:
    published.publish([7], number=1, delay=0.3)
    store = stores()
    entry = entry_of(store, published)
    answers: list[object] = []

    def login() -> None:
        try:
            answers.append(store.get(entry, now=clock.now(), deadline=budget()))
        except CrlError as error:
            answers.append(error)

    threads = [threading.Thread(target=login) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    assert len(answers) == 16 and len({id(answer) for answer in answers}) == 1
    assert published.hits == 1


def test_a_database_that_is_down_never_reaches_a_login(
    published: Published, clock: FixedClock, client: httpx.Client
) -> None:
    down = Database("postgresql://postgres@127.0.0.1:1/nowhere")
    store = CrlStore(down, clock, client)
    try:
        entry = entry_of(store, published)
        assert store.get(entry, now=clock.now(), deadline=budget()).is_revoked(7)
        assert store.refresh_once() == 0 and store.table_rows(issuer_pin(published.ca.cert)) == []
    finally:
        store.close()
        down.dispose()


def test_the_refresher_thread_stops_on_close(
    published: Published, stores: Callable[..., CrlStore], clock: FixedClock
) -> None:
    store = stores()
    entry = entry_of(store, published)
    store.start(interval=0.01)
    deadline = time.monotonic() + 5
    while entry.index is None and time.monotonic() < deadline:  # a new entry is due at once
        time.sleep(0.01)
    assert entry.index is not None and published.hits == 1
    thread = store._thread
    assert thread is not None and thread.is_alive()
    store.close()
    assert not thread.is_alive()
    clock.advance(2 * DAY)
    time.sleep(0.05)
    assert published.hits == 1
