"""The CRL cache: verified CRLs in memory, shared by every instance through ``crl_cache``.

One CRL is identified by where it is published and whose it is: (URL, SHA-256 of the
issuing CA's SubjectPublicKeyInfo, hex). For each, a process holds a :class:`CrlEntry`:
the verified :class:`certbound.pki.crl.CrlIndex` in memory, answered without any I/O while
it is fresh (before its nextUpdate). The fleet shares the ``crl_cache`` table, one row per
CRL with its DER, its metadata and the health of the last download. When memory holds
nothing fresh, a process reads the row first and downloads only when the row holds
nothing fresh either; what it downloads it writes back. So N instances download a CRL
about once per nextUpdate between them, not once per login or per instance.

Rules:

- every CRL, from the network or from the table, is verified (:func:`crl.index_crl`)
  against the issuing CA before use, and a CRL older than the one held (CRL number, else
  thisUpdate: :func:`crl.check_rollback`) is refused and the held one kept;
- a login's download is bounded by the deadline it brings (the policy timeout); after a
  failed download (or one that gave a stale CRL) no login downloads that CRL again for
  ``retry_seconds``, so a dead CDP costs one timeout, not one per login;
- the background refresher (:meth:`CrlStore.start`, stopped by :meth:`CrlStore.close`)
  downloads each CRL in use ``lead`` before its nextUpdate (a tenth of its validity,
  between 1 minute and 1 hour), with a longer timeout since no login waits on it. Before
  downloading it takes a lease in the table (``last_attempt_at``), so one instance of the
  fleet downloads while the others read the row;
- every failed download or refused CRL records ``pki.crl.download_failure``;
- ``file:`` URLs (an admin's override for a CRL synced to disk) are read from disk and
  never stored in the table, since each host has its own file;
- database errors never reach a login: the store then works from memory and the network.

Staleness is measured by the caller (:mod:`certbound.pki.revocation`), which knows the
policy; :meth:`CrlStore.get` returns the newest CRL held, fresh or not.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from certbound.clock import Clock, format_rfc3339
from certbound.pki import crl, events
from certbound.pki.certificate import sha256_fingerprint
from certbound.pki.crl import CrlError, CrlIndex
from certbound.storage.database import Database
from certbound.storage.models import CRLCacheEntry
from certbound.syslog.recorder import EventRecorder

log = logging.getLogger(__name__)

CrlKey = tuple[str, str]
RETRY_SECONDS = 30.0
REFRESH_INTERVAL_SECONDS = 30.0
BACKGROUND_TIMEOUT_SECONDS = 30.0
MIN_LEAD = dt.timedelta(minutes=1)
MAX_LEAD = dt.timedelta(hours=1)
_TIME_LEFT = 0.001  # seconds: less than this left of a login's budget is no time at all


def issuer_pin(cert: x509.Certificate) -> str:
    """Lower-case hex SHA-256 of a CA's SubjectPublicKeyInfo: the CRL's issuer key."""
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(spki).hexdigest()


def expires(index: CrlIndex) -> dt.datetime:
    """When the CRL stops being fresh: its nextUpdate (thisUpdate + 1 day without one)."""
    return index.next_update or index.this_update + crl.MAX_AGE_WITHOUT_NEXT_UPDATE


def lead(index: CrlIndex) -> dt.timedelta:
    """How long before it expires a CRL is refreshed: a tenth of its validity, 1 min-1 h."""
    validity = expires(index) - index.this_update
    return min(max(validity / 10, MIN_LEAD), MAX_LEAD)


Version = tuple[int | None, dt.datetime]


def later(a: Version, b: Version) -> bool:
    """Whether CRL version ``a`` (CRL number, thisUpdate) is later than ``b``: by number when
    both have one and they differ, else by thisUpdate."""
    if a[0] is not None and b[0] is not None and a[0] != b[0]:
        return a[0] > b[0]
    return a[1] > b[1]


def version(index: CrlIndex) -> Version:
    return index.crl_number, index.this_update


def row_version(row: CRLCacheEntry) -> Version | None:
    if row.der is None or row.this_update is None:
        return None
    return (int(row.crl_number) if row.crl_number else None), row.this_update


def is_newer(index: CrlIndex, than: CrlIndex | None) -> bool:
    """Whether ``index`` is a later CRL than ``than`` (None: nothing held)."""
    return than is None or later(version(index), version(than))


class CrlEntry:
    """One CRL this process uses: where, whose, and the newest verified copy held.

    ``held`` is (index, fresh until) replaced as one value, so the lock-free read of a login
    never sees an index with another CRL's freshness.
    """

    __slots__ = (
        "candidates",
        "held",
        "is_file",
        "issuer",
        "key",
        "last_error",
        "lock",
        "refresh_at",
        "retry_at",
        "stale_reported_at",
        "timeout",
        "url",
    )

    def __init__(
        self,
        url: str,
        issuer: x509.Certificate,
        pin: str,
        candidates: tuple[x509.Certificate, ...],
        timeout: float,
    ) -> None:
        self.url = url
        self.is_file = url.startswith("file:")
        self.key: CrlKey = (url, pin)
        self.issuer = issuer
        self.candidates = candidates
        self.timeout = timeout
        self.held: tuple[CrlIndex, dt.datetime] | None = None
        self.refresh_at: dt.datetime | None = None
        self.retry_at: dt.datetime | None = None
        self.last_error: CrlError | None = None
        self.stale_reported_at: dt.datetime | None = None
        self.lock = threading.Lock()

    @property
    def index(self) -> CrlIndex | None:
        held = self.held
        return None if held is None else held[0]

    def fresh_at(self, now: dt.datetime) -> bool:
        held = self.held
        return held is not None and now < held[1]

    def may_retry(self, now: dt.datetime) -> bool:
        return self.retry_at is None or now >= self.retry_at


def read_file(url: str, max_bytes: int = crl.MAX_CRL_BYTES) -> bytes:
    """A ``file:`` CRL URL's bytes (at most ``max_bytes``); CrlError("fetch") otherwise."""
    path = Path(unquote(urlsplit(url).path))
    try:
        with path.open("rb") as handle:
            data = handle.read(max_bytes + 1)
    except OSError as exc:
        raise CrlError("fetch", f"cannot read {url}: {exc.strerror or exc}") from exc
    if len(data) > max_bytes:
        raise CrlError("too_large", f"{url} is larger than {max_bytes:,} bytes")
    return data


class CrlStore:
    """The CRL cache of one process; see the module docstring."""

    def __init__(
        self,
        db: Database | None,
        clock: Clock,
        http: httpx.Client,
        *,
        recorder: EventRecorder | None = None,
        retry_seconds: float = RETRY_SECONDS,
        background_timeout: float = BACKGROUND_TIMEOUT_SECONDS,
        after_pass: Callable[[], None] | None = None,
    ) -> None:
        self._db = db
        self._after_pass = after_pass
        self._clock = clock
        self._http = http
        self._recorder = recorder
        self._retry = dt.timedelta(seconds=retry_seconds)
        self._background_timeout = background_timeout
        self._entries: dict[CrlKey, CrlEntry] = {}
        self._entries_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.downloads = 0

    # --- entries ---------------------------------------------------------------------

    def entry(
        self,
        url: str,
        issuer: x509.Certificate,
        pin: str,
        candidates: Sequence[x509.Certificate] = (),
        timeout: float = 2.0,
    ) -> CrlEntry:
        """The entry for (url, pin), created on first use (and then kept for the refresher)."""
        found = self._entries.get((url, pin))
        if found is not None:
            return found
        with self._entries_lock:
            found = self._entries.get((url, pin))
            if found is None:
                found = CrlEntry(url, issuer, pin, tuple(candidates), timeout)
                self._entries[found.key] = found
            return found

    def entries(self) -> list[CrlEntry]:
        return list(self._entries.values())

    # --- a login's lookup ------------------------------------------------------------

    def get(self, entry: CrlEntry, *, now: dt.datetime, deadline: float) -> CrlIndex:
        """The newest verified CRL of ``entry`` (fresh at ``now`` when it can be had), doing
        I/O only when memory holds nothing fresh, and none after ``deadline`` (monotonic).
        CrlError when no CRL is held at all."""
        held = entry.held
        if held is not None and now < held[1]:
            return held[0]
        if not entry.lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
            return self._held_or_raise(
                entry, CrlError("fetch", f"{entry.url}: another download is still running")
            )
        try:
            if not entry.fresh_at(now):
                self._update(entry, now, deadline)
            return self._held_or_raise(entry, entry.last_error)
        finally:
            entry.lock.release()

    def _update(self, entry: CrlEntry, now: dt.datetime, deadline: float) -> None:
        """The table, then a download; neither while held off after a failure (so a dead
        distribution point costs logins neither a download nor a database read)."""
        if not entry.may_retry(self._clock.now()):
            return
        self._adopt_from_table(entry)
        if entry.fresh_at(now):
            return
        remaining = deadline - time.monotonic()
        if remaining < _TIME_LEFT:
            entry.last_error = CrlError("fetch", f"GET {entry.url}: no time left to download")
            return
        self._download(entry, remaining, trigger="login", now=now)

    @staticmethod
    def _held_or_raise(entry: CrlEntry, error: CrlError | None) -> CrlIndex:
        index = entry.index
        if index is not None:
            return index
        raise error or CrlError("fetch", f"no CRL from {entry.url} is held")

    # --- adopting a CRL --------------------------------------------------------------

    def _ingest(self, entry: CrlEntry, data: bytes) -> CrlIndex:
        return crl.index_crl(
            data,
            entry.issuer,
            candidates=entry.candidates,
            now=self._clock.now(),
            source=entry.url,
        )

    def _adopt(self, entry: CrlEntry, index: CrlIndex) -> None:
        """Hold ``index`` unless it is older than the CRL held (CrlError("rollback"))."""
        crl.check_rollback(index, entry.index)
        until = expires(index)
        entry.held = (index, until)
        entry.refresh_at = until - lead(index)

    def _adopt_from_table(self, entry: CrlEntry) -> bool:
        """Hold the table's CRL when it is newer than the one held (another instance
        downloaded it); a table CRL that does not verify is ignored, and logged."""
        if self._db is None or entry.is_file:
            return False
        row = self._row(entry)
        stored = None if row is None else row_version(row)
        if row is None or row.der is None or stored is None:  # nothing shared yet
            return False
        held = entry.index
        if held is not None and not later(stored, version(held)):
            return False
        try:
            index = self._ingest(entry, row.der)
            if not is_newer(index, entry.index):
                return False
            self._adopt(entry, index)
        except CrlError as error:
            log.warning("crl_cache holds an unusable CRL for %s: %s", entry.url, error)
            return False
        return True

    # --- downloading -----------------------------------------------------------------

    def _fetch(self, entry: CrlEntry, timeout: float) -> bytes:
        self.downloads += 1
        if entry.is_file:
            return read_file(entry.url)
        return crl.fetch(self._http, entry.url, timeout=timeout)

    def _download(
        self, entry: CrlEntry, timeout: float, *, trigger: str, now: dt.datetime | None = None
    ) -> bool:
        """Download, verify and hold the CRL; on failure record why (table, event) and hold
        off further login downloads for ``retry_seconds``. True when a CRL was adopted."""
        started = time.monotonic()
        try:
            index = self._ingest(entry, self._fetch(entry, timeout))
            latency_ms = (time.monotonic() - started) * 1000
            self._adopt(entry, index)
        except CrlError as error:
            latency_ms = (time.monotonic() - started) * 1000
            self._failed(entry, error, latency_ms, trigger)
            return False
        entry.last_error = None
        entry.retry_at = None if entry.fresh_at(now or self._clock.now()) else self._retry_time()
        self._store(entry, index, latency_ms)
        return True

    def _retry_time(self) -> dt.datetime:
        return self._clock.now() + self._retry

    def _failed(self, entry: CrlEntry, error: CrlError, latency_ms: float, trigger: str) -> None:
        """Record a failed download (table, event); but for a health probe, also hold off
        login downloads for ``retry_seconds``."""
        if trigger != "health":
            entry.last_error = error
            entry.retry_at = self._retry_time()
        log.warning("CRL %s (%s): %s", entry.url, trigger, error.message)
        self._store_failure(entry, error, latency_ms)
        if self._recorder is None:
            return
        index = entry.index
        self._recorder.record(
            events.crl_download_failed(
                entry.url,
                entry.issuer.subject.rfc4514_string(),
                error.message,
                problem=error.problem,
                trigger=trigger,
                ca_fingerprint=sha256_fingerprint(entry.issuer),
                latency_ms=latency_ms,
                held_next_update=None if index is None else index.next_update,
            )
        )

    # --- the shared table ------------------------------------------------------------

    def _row(self, entry: CrlEntry) -> CRLCacheEntry | None:
        assert self._db is not None
        try:
            with self._db.session() as session:
                return session.get(CRLCacheEntry, entry.key)
        except SQLAlchemyError as exc:
            log.warning("crl_cache unreadable for %s: %s", entry.url, exc)
            return None

    def _store(self, entry: CrlEntry, index: CrlIndex, latency_ms: float) -> None:
        """Write the CRL and a healthy download to the table, unless the row holds a newer
        CRL already (another instance's)."""
        if self._db is None or entry.is_file:
            return
        now = self._clock.now()

        def write(row: CRLCacheEntry) -> None:
            row.last_attempt_at = now
            row.last_error = None
            row.last_latency_ms = latency_ms
            stored = row_version(row)
            if stored is not None and not later(version(index), stored):
                return  # the row holds this CRL, or a newer one
            row.der = index.der
            row.this_update = index.this_update
            row.next_update = index.next_update
            row.crl_number = None if index.crl_number is None else str(index.crl_number)
            row.entry_count = index.entry_count
            row.size = index.size
            row.fetched_at = now

        self._upsert(entry, write)

    def _store_failure(self, entry: CrlEntry, error: CrlError, latency_ms: float) -> None:
        if self._db is None or entry.is_file:
            return
        now = self._clock.now()

        def write(row: CRLCacheEntry) -> None:
            row.last_attempt_at = now
            row.last_error = f"{error.problem}: {error.message}"
            row.last_latency_ms = latency_ms

        self._upsert(entry, write)

    def _upsert(self, entry: CrlEntry, write: Any) -> None:
        assert self._db is not None
        for _attempt in range(2):  # a concurrent insert of the same row: update it instead
            try:
                with self._db.session() as session:
                    row = session.get(CRLCacheEntry, entry.key, with_for_update=True)
                    if row is None:
                        row = CRLCacheEntry(url=entry.key[0], issuer_spki_sha256=entry.key[1])
                        session.add(row)
                    write(row)
                return
            except IntegrityError:
                continue
            except SQLAlchemyError as exc:
                log.warning("crl_cache not written for %s: %s", entry.url, exc)
                return

    def _claim(self, entry: CrlEntry, now: dt.datetime) -> bool:
        """Take the fleet's lease on downloading this CRL: no other instance attempted it
        within ``retry_seconds``. Without a database (or for files) always True."""
        if self._db is None or entry.is_file:
            return True
        url, pin = entry.key
        stmt = (
            update(CRLCacheEntry)
            .where(CRLCacheEntry.url == url, CRLCacheEntry.issuer_spki_sha256 == pin)
            .where(
                or_(
                    CRLCacheEntry.last_attempt_at.is_(None),
                    CRLCacheEntry.last_attempt_at <= now - self._retry,
                )
            )
            .values(last_attempt_at=now)
        )
        try:
            with self._db.session() as session:
                if session.execute(stmt).rowcount == 1:  # type: ignore[attr-defined]
                    return True
                if session.get(CRLCacheEntry, entry.key) is not None:
                    return False
                session.add(CRLCacheEntry(url=url, issuer_spki_sha256=pin, last_attempt_at=now))
            return True
        except IntegrityError:
            return False
        except SQLAlchemyError as exc:
            log.warning("crl_cache lease not taken for %s: %s", entry.url, exc)
            return True

    def table_rows(self, pin: str) -> list[dict[str, Any]]:
        """What the shared table holds about the CRLs of the CA with SPKI hash ``pin``."""
        if self._db is None:
            return []
        query = select(CRLCacheEntry).where(CRLCacheEntry.issuer_spki_sha256 == pin)
        try:
            with self._db.session() as session:
                return [_row_facts(row) for row in session.scalars(query)]
        except SQLAlchemyError as exc:
            log.warning("crl_cache unreadable: %s", exc)
            return []

    # --- the background refresher ----------------------------------------------------

    def due(self, entry: CrlEntry, now: dt.datetime) -> bool:
        """Whether the refresher should get a newer CRL for ``entry`` now."""
        if not entry.may_retry(now):
            return False
        return entry.held is None or entry.refresh_at is None or now >= entry.refresh_at

    def refresh_once(self) -> int:
        """One pass of the refresher over every CRL in use; the number of downloads made."""
        downloads = 0
        for entry in self.entries():
            if self._stop.is_set():
                break
            now = self._clock.now()
            if not self.due(entry, now) or not entry.lock.acquire(blocking=False):
                continue
            try:
                downloads += self._refresh(entry, now)
            finally:
                entry.lock.release()
        return downloads

    def _refresh(self, entry: CrlEntry, now: dt.datetime) -> int:
        if self._adopt_from_table(entry) and not self.due(entry, now):
            return 0
        if not self._claim(entry, now):  # another instance is downloading it
            entry.refresh_at = now + self._retry
            return 0
        before = entry.index
        self._download(entry, self._background_timeout, trigger="refresh", now=now)
        if entry.index is before or self.due(entry, now):  # nothing newer yet: ask later
            entry.refresh_at = now + self._retry
        return 1

    def start(self, interval: float = REFRESH_INTERVAL_SECONDS) -> None:
        """Run :meth:`refresh_once` (then ``after_pass``) every ``interval`` seconds in a
        daemon thread."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._run, args=(interval,), name="certbound-crl-refresher", daemon=True
        )
        self._thread.start()

    def _run(self, interval: float) -> None:
        while not self._stop.is_set():
            try:
                self.refresh_once()
                if self._after_pass is not None:
                    self._after_pass()
            except Exception:  # the refresher must outlive any surprise
                log.exception("CRL refresher pass failed")
            self._stop.wait(interval)

    def close(self, timeout: float = 5.0) -> None:
        """Stop the refresher (waiting up to ``timeout`` s for a download in progress)."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout)

    # --- health ----------------------------------------------------------------------

    def probe(self, entry: CrlEntry, timeout: float) -> dict[str, Any]:
        """Download the CRL now (``ca health``): reachability, latency, size, and the CRL's
        facts when it verifies (a newer one is adopted and shared, like a refresh)."""
        started = time.monotonic()
        facts: dict[str, Any] = {"url": entry.url, "reachable": False, "error": None}
        try:
            data = self._fetch(entry, timeout)
        except CrlError as error:
            facts |= {"latencyMs": _ms(started), "error": f"{error.problem}: {error.message}"}
            self._failed(entry, error, facts["latencyMs"], "health")
            return facts
        facts |= {"reachable": True, "latencyMs": _ms(started), "size": len(data)}
        try:
            index = self._ingest(entry, data)
        except CrlError as error:
            facts["error"] = f"{error.problem}: {error.message}"
            self._failed(entry, error, facts["latencyMs"], "health")
            return facts
        facts |= _index_facts(index)
        with entry.lock:
            if is_newer(index, entry.index):
                self._adopt(entry, index)
                self._store(entry, index, facts["latencyMs"])
        return facts


def _ms(started: float) -> float:
    return round((time.monotonic() - started) * 1000, 1)


def _stamp(value: dt.datetime | None) -> str | None:
    return None if value is None else format_rfc3339(value)


def _index_facts(index: CrlIndex) -> dict[str, Any]:
    return {
        "issuerDn": index.issuer_dn,
        "thisUpdate": _stamp(index.this_update),
        "nextUpdate": _stamp(index.next_update),
        "crlNumber": index.crl_number,
        "entryCount": index.entry_count,
    }


def _row_facts(row: CRLCacheEntry) -> dict[str, Any]:
    return {
        "url": row.url,
        "held": row.der is not None,
        "thisUpdate": _stamp(row.this_update),
        "nextUpdate": _stamp(row.next_update),
        "crlNumber": int(row.crl_number) if row.crl_number else None,
        "entryCount": row.entry_count,
        "size": row.size,
        "fetchedAt": _stamp(row.fetched_at),
        "lastAttemptAt": _stamp(row.last_attempt_at),
        "lastError": row.last_error,
        "lastLatencyMs": row.last_latency_ms,
    }
