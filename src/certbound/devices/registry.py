"""The device registry: one record per client certificate seen over mTLS, and its status.

A device is one certificate: its issuer and serial number, the SHA-256 thumbprint of its
DER, subject, SANs, when it was first and last seen, its status (ACTIVE, SUSPENDED,
DEACTIVATED) and the user its mapping rules (:mod:`certbound.devices.mapping`) gave it.
The mTLS path calls :meth:`DeviceRegistry.observe` on every request whose chain validated;
the caller refuses a SUSPENDED or DEACTIVATED device (``DEVICE_SUSPENDED`` /
``DEVICE_DEACTIVATED``). Admins change statuses with :meth:`~DeviceRegistry.suspend`,
:meth:`~DeviceRegistry.resume` and :meth:`~DeviceRegistry.deactivate` (final).

Caching and consistency. ``observe`` answers a known device from an in-memory cache keyed
by thumbprint (a hash, a clock read and a dictionary look-up); the database is touched only

- on a device's first sighting by this registry: one read, and an insert when it is new.
  Two processes inserting the same certificate at once collide on the unique thumbprint
  (or issuer and serial) constraint; the loser reads the winner's row. A certificate whose
  issuer and serial number are registered under another thumbprint (a CA that reused a
  serial) gets that device, and so its status;
- once every ``status_ttl`` seconds per registry (not per device), to read the statuses
  changed since the last look. Every status change bumps a generation (``device_state``,
  whose row lock orders the changes) and stamps it on the device (``status_seq``), so one
  indexed query returns just the devices changed anywhere, by the CLI or another instance:
  a change takes effect everywhere within ``status_ttl``. If that read fails, ``observe``
  raises rather than answer with a status older than ``status_ttl``;
- ``last_seen`` moves at most once per ``touch_interval`` per device; the new times are
  written in one statement with the next status read (or :meth:`~DeviceRegistry.flush`).

Status changes made through a registry update its own cache at once. A device seen again
after the mapping rules changed is mapped again. The cache holds at most ``max_cached``
devices (the oldest loaded are dropped first, to be read again when next seen). The
registry is thread-safe: the cache is read without a lock, everything that reads or writes
the database runs under one lock.
"""

from __future__ import annotations

import builtins
import dataclasses
import datetime as dt
import enum
import functools
import hashlib
import itertools
import json
import logging
import re
import secrets
import threading
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from sqlalchemy import and_, bindparam, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from certbound.clock import Clock, format_rfc3339
from certbound.devices.mapping import MappingRules
from certbound.errors import CertboundError, ReasonCode, WouldBlockError
from certbound.pki.certificate import san_strings, serial_hex
from certbound.storage.database import Database
from certbound.storage.models import Device as DeviceRow
from certbound.storage.models import DeviceState

log = logging.getLogger(__name__)

ID_PREFIX = "dev_"
MAX_REF_LENGTH = 200
# How many devices an ambiguous serial number's error names at most.
_AMBIGUOUS_SHOWN = 10
_HEX = re.compile(r"^[0-9a-fA-F]+$")
_EPOCH = dt.datetime.min.replace(tzinfo=dt.UTC)


class DeviceStatus(enum.StrEnum):
    ACTIVE = "ACTIVE"
    SUSPENDED = "SUSPENDED"
    DEACTIVATED = "DEACTIVATED"


@dataclass(frozen=True, slots=True)
class Device:
    """A device record. ``user`` None: unmapped (no rule yielded a value)."""

    id: str
    issuer_dn: str
    serial_number: str
    thumbprint: str
    subject_dn: str
    sans: tuple[str, ...]
    user: str | None
    mapped_by: str | None
    status: DeviceStatus
    first_seen: dt.datetime
    last_seen: dt.datetime
    not_after: dt.datetime

    def to_dict(self) -> dict[str, Any]:
        """The device as JSON (events, the echo endpoint); formatted once per device state,
        since every request of a device asks for it."""
        return dict(_device_json(self))


@functools.lru_cache(maxsize=4096)
def _device_json(self: Device) -> dict[str, Any]:
    return {
        "id": self.id,
        "issuerDn": self.issuer_dn,
        "serialNumber": self.serial_number,
        "sha256Thumbprint": self.thumbprint,
        "subjectDn": self.subject_dn,
        "sans": list(self.sans),
        "user": self.user,
        "mappedBy": self.mapped_by,
        "status": self.status.value,
        "firstSeen": format_rfc3339(self.first_seen),
        "lastSeen": format_rfc3339(self.last_seen),
        "notAfter": format_rfc3339(self.not_after),
    }


@dataclass(frozen=True, slots=True)
class RegistryStats:
    """What a registry did since it was made (the cache hits are not counted: they are
    the fast path)."""

    cached: int
    loads: int
    inserts: int
    insert_races: int
    polls: int
    touches_written: int


@dataclass(frozen=True, slots=True)
class _Facts:
    """What a certificate says about its device."""

    thumbprint: str
    issuer_dn: str
    issuer_sha256: str
    serial_number: str
    subject_dn: str
    sans: tuple[str, ...]
    not_after: dt.datetime

    @classmethod
    def of(cls, leaf: x509.Certificate, thumbprint: str) -> _Facts:
        issuer = leaf.issuer.rfc4514_string()
        return cls(
            thumbprint=thumbprint,
            issuer_dn=issuer,
            issuer_sha256=issuer_key(issuer),
            serial_number=serial_hex(leaf),
            subject_dn=leaf.subject.rfc4514_string(),
            sans=tuple(san_strings(leaf)),
            not_after=leaf.not_valid_after_utc,
        )


def issuer_key(issuer_dn: str) -> str:
    """The issuer DN as the unique (issuer, serial) constraint holds it."""
    return hashlib.sha256(issuer_dn.encode("utf-8", "surrogatepass")).hexdigest()


def normalise_serial(text: str) -> str | None:
    """A serial number as :func:`certbound.pki.certificate.serial_hex` writes it (upper-case
    hex, even length), from hex in any case with optional colons; None if it is not hex."""
    cleaned = text.strip().replace(":", "")
    if not cleaned or len(cleaned) > MAX_REF_LENGTH or not _HEX.match(cleaned):
        return None
    digits = format(int(cleaned, 16), "X")
    return digits if len(digits) % 2 == 0 else "0" + digits


def _device(row: DeviceRow) -> Device:
    return Device(
        id=row.id,
        issuer_dn=row.issuer_dn,
        serial_number=row.serial_number,
        thumbprint=row.thumbprint,
        subject_dn=row.subject_dn,
        sans=tuple(json.loads(row.sans)),
        user=row.user_name,
        mapped_by=row.mapped_by,
        status=DeviceStatus(row.status),
        first_seen=row.first_seen,
        last_seen=row.last_seen,
        not_after=row.not_after,
    )


def _not_found(detail: str, **context: Any) -> CertboundError:
    return CertboundError(ReasonCode.DEVICE_NOT_FOUND, detail, dict(context))


def _by_serial(session: Session, ref: str, serial: str) -> DeviceRow:
    query = (
        select(DeviceRow)
        .where(DeviceRow.serial_number == serial)
        .order_by(DeviceRow.first_seen, DeviceRow.id)
        .limit(_AMBIGUOUS_SHOWN)
    )
    rows = session.scalars(query).all()
    if len(rows) == 1:
        return rows[0]
    if not rows:
        raise _not_found(f"no device has the id, serial number or thumbprint {ref!r}", ref=ref)
    ids = [row.id for row in rows]
    named = ", ".join(f"{row.id} (issuer {row.issuer_dn})" for row in rows)
    raise _not_found(
        f"serial number {serial} is ambiguous: devices {named}; name one by its id or thumbprint",
        ref=ref,
        ids=ids,
    )


def lookup(session: Session, ref: str) -> DeviceRow:
    """The device a reference names: its id, serial number (hex, any case, optional
    colons) or thumbprint; CertboundError DEVICE_NOT_FOUND when none or several do."""
    text = ref.strip()
    if text.startswith(ID_PREFIX):
        row = session.get(DeviceRow, text)
        if row is None:
            raise _not_found(f"no device has the id {text!r}", ref=ref)
        return row
    serial = normalise_serial(text)
    if serial is None:
        raise _not_found(
            f"{ref!r} is not a device id ({ID_PREFIX}...), serial number (hex) or SHA-256 "
            "thumbprint",
            ref=ref,
        )
    cleaned = text.replace(":", "").lower()
    if len(cleaned) == 64:
        found = session.scalars(select(DeviceRow).where(DeviceRow.thumbprint == cleaned)).first()
        if found is not None:
            return found
    return _by_serial(session, ref, serial)


def _bump(session: Session) -> int:
    """The next device-state generation. Taking the counter row's lock orders concurrent
    status changes, so generations are stamped in commit order."""
    seq = session.execute(
        update(DeviceState)
        .where(DeviceState.id == 1)
        .values(generation=DeviceState.generation + 1)
        .returning(DeviceState.generation)
        .execution_options(synchronize_session=False)
    ).scalar_one_or_none()
    if seq is None:  # the row is gone (a wiped table): start again above every stamp
        top = session.scalar(select(func.coalesce(func.max(DeviceRow.status_seq), 0))) or 0
        seq = top + 1
        session.add(DeviceState(id=1, generation=seq))
        session.flush()
    return int(seq)


# last_seen moves forward only (another instance may have written a later time).
_TOUCH = (
    update(DeviceRow)
    .where(DeviceRow.id == bindparam("device_id"))
    .where(DeviceRow.last_seen < bindparam("seen"))
    .values(last_seen=bindparam("seen"))
)


class DeviceRegistry:
    """The devices in the database, with the cache ``observe`` answers from."""

    def __init__(
        self,
        db: Database,
        clock: Clock,
        mapping: MappingRules,
        *,
        touch_interval: float = 60.0,
        status_ttl: float = 2.0,
        max_cached: int = 100_000,
    ) -> None:
        if touch_interval < 0 or status_ttl < 0 or max_cached < 1:
            raise ValueError("touch_interval and status_ttl are >= 0, max_cached >= 1")
        self._db = db
        self._clock = clock
        self._mapping = mapping
        self._touch_interval = dt.timedelta(seconds=touch_interval)
        self._status_ttl = dt.timedelta(seconds=status_ttl)
        self._max_cached = max_cached
        self._lock = threading.Lock()
        # thumbprint -> (device, when its last_seen may move again)
        self._cache: dict[str, tuple[Device, dt.datetime]] = {}
        self._keys: dict[str, builtins.list[str]] = {}  # device id -> its cache keys
        self._pending: dict[str, dt.datetime] = {}  # device id -> last_seen to write
        self._poll_due = _EPOCH
        self._seen_seq: int | None = None
        self._counts = dict.fromkeys(("loads", "inserts", "races", "polls", "touches"), 0)

    # the mTLS path -----------------------------------------------------------------------

    def observe(self, leaf: x509.Certificate, leaf_der: bytes, *, offline: bool = False) -> Device:
        """The device of a validated leaf certificate, registered now if it is new. With
        ``offline`` (a caller on the event loop), WouldBlockError when the answer needs the
        database (a new device, a last_seen write or status poll that is due)."""
        key = hashlib.sha256(leaf_der).hexdigest()
        now = self._clock.now()
        hit = self._cache.get(key)
        if hit is not None and now < hit[1] and now < self._poll_due:
            return hit[0]
        if offline:
            raise WouldBlockError("device registry needs the database")
        return self._observe_slow(leaf, key, now)

    def _observe_slow(self, leaf: x509.Certificate, key: str, now: dt.datetime) -> Device:
        with self._lock:
            if now >= self._poll_due:
                self._poll(now)
            hit = self._cache.get(key)
            if hit is None:
                hit = self._load(leaf, key)
            device, touch_due = hit
            if now >= touch_due:
                device = dataclasses.replace(device, last_seen=now)
                self._cache[key] = (device, now + self._touch_interval)
                self._pending[device.id] = now
            return device

    def _load(self, leaf: x509.Certificate, key: str) -> tuple[Device, dt.datetime]:
        facts = _Facts.of(leaf, key)
        mapped = self._mapping.map(leaf)
        self._counts["loads"] += 1
        device = self._find(facts)
        if device is None:
            device = self._insert(facts, mapped)
        elif device.thumbprint == key:
            device = self._remap(device, mapped)
        if len(self._cache) >= self._max_cached:
            self._evict()
        entry = (device, device.last_seen + self._touch_interval)
        self._cache[key] = entry
        self._keys.setdefault(device.id, []).append(key)
        return entry

    def _find(self, facts: _Facts) -> Device | None:
        query = select(DeviceRow).where(
            or_(
                DeviceRow.thumbprint == facts.thumbprint,
                and_(
                    DeviceRow.issuer_sha256 == facts.issuer_sha256,
                    DeviceRow.serial_number == facts.serial_number,
                ),
            )
        )
        with self._db.session() as session:
            row = session.scalars(query).first()
            return None if row is None else _device(row)

    def _insert(self, facts: _Facts, mapped: tuple[str, str] | None) -> Device:
        now = self._clock.now()
        user, rule = mapped or (None, None)
        row = DeviceRow(
            id=ID_PREFIX + secrets.token_hex(8),
            issuer_dn=facts.issuer_dn,
            issuer_sha256=facts.issuer_sha256,
            serial_number=facts.serial_number,
            thumbprint=facts.thumbprint,
            subject_dn=facts.subject_dn,
            sans=json.dumps(list(facts.sans)),
            user_name=user,
            mapped_by=rule,
            status=DeviceStatus.ACTIVE.value,
            status_seq=0,
            first_seen=now,
            last_seen=now,
            not_after=facts.not_after,
        )
        try:
            with self._db.session() as session:
                session.add(row)
        except IntegrityError:
            # Another process registered it between our read and our insert: use theirs.
            found = self._find(facts)
            if found is None:
                raise
            self._counts["races"] += 1
            return found
        self._counts["inserts"] += 1
        return _device(row)

    def _remap(self, device: Device, mapped: tuple[str, str] | None) -> Device:
        """The device mapped by the current rules (they may have changed since it was)."""
        user, rule = mapped or (None, None)
        if (device.user, device.mapped_by) == (user, rule):
            return device
        with self._db.session() as session:
            session.execute(
                update(DeviceRow)
                .where(DeviceRow.id == device.id)
                .values(user_name=user, mapped_by=rule)
            )
        log.info("device %s mapped again: %r (%s)", device.id, user, rule)
        return dataclasses.replace(device, user=user, mapped_by=rule)

    def _evict(self) -> None:
        """Drop the oldest tenth of the cache (insertion order)."""
        for key in list(itertools.islice(self._cache, max(1, self._max_cached // 10))):
            device, _ = self._cache.pop(key)
            keys = self._keys.get(device.id, [])
            if key in keys:
                keys.remove(key)
            if not keys:
                self._keys.pop(device.id, None)

    def _poll(self, now: dt.datetime) -> None:
        """Write the pending last_seen times and read the statuses changed since the last
        poll (the first poll only learns the current generation)."""
        pending, self._pending = self._pending, {}
        try:
            with self._db.session() as session:
                if pending:
                    rows = [{"device_id": i, "seen": t} for i, t in pending.items()]
                    session.connection().execute(_TOUCH, rows)
                changed = self._changed(session)
        except Exception:
            for device_id, seen in pending.items():  # kept for the next poll
                self._pending[device_id] = max(seen, self._pending.get(device_id, seen))
            raise
        self._counts["polls"] += 1
        self._counts["touches"] += len(pending)
        for device_id, status, seq in changed:
            self._apply(device_id, DeviceStatus(status))
            self._seen_seq = max(self._seen_seq or 0, seq)
        self._poll_due = now + self._status_ttl

    def _changed(self, session: Session) -> builtins.list[tuple[str, str, int]]:
        if self._seen_seq is None:
            top = select(func.coalesce(func.max(DeviceRow.status_seq), 0))
            self._seen_seq = int(session.scalar(top) or 0)
            return []
        query = select(DeviceRow.id, DeviceRow.status, DeviceRow.status_seq).where(
            DeviceRow.status_seq > self._seen_seq
        )
        return [(i, s, int(q)) for i, s, q in session.execute(query).all()]

    def _apply(self, device_id: str, status: DeviceStatus) -> None:
        """Set a device's status in the cache (under the lock)."""
        for key in self._keys.get(device_id, ()):
            hit = self._cache.get(key)
            if hit is not None and hit[0].status is not status:
                self._cache[key] = (dataclasses.replace(hit[0], status=status), hit[1])

    def flush(self) -> None:
        """Write pending last_seen times and read status changes now (call before exit)."""
        with self._lock:
            self._poll(self._clock.now())

    def stats(self) -> RegistryStats:
        counts = self._counts
        return RegistryStats(
            cached=len(self._cache),
            loads=counts["loads"],
            inserts=counts["inserts"],
            insert_races=counts["races"],
            polls=counts["polls"],
            touches_written=counts["touches"],
        )

    # administration ----------------------------------------------------------------------

    def get(self, ref: str) -> Device:
        """The device ``ref`` names (id, serial number or thumbprint), from the database."""
        with self._db.session() as session:
            return _device(lookup(session, ref))

    def list(
        self,
        *,
        status: DeviceStatus | None = None,
        user: str | None = None,
        limit: int = 100,
        after: str | None = None,
        unmapped: bool = False,
    ) -> builtins.list[Device]:
        """Devices in the order first seen (then id); ``after``: the last id of the
        previous page. ``user`` keeps one user's devices, ``unmapped`` the unmapped ones."""
        if limit < 1:
            raise ValueError("limit must be at least 1")
        query = select(DeviceRow)
        if status is not None:
            query = query.where(DeviceRow.status == status.value)
        if user is not None:
            query = query.where(DeviceRow.user_name == user)
        if unmapped:
            query = query.where(DeviceRow.user_name.is_(None))
        with self._db.session() as session:
            if after is not None:
                anchor = session.get(DeviceRow, after)
                if anchor is None:
                    raise _not_found(f"no device has the id {after!r} to list after", ref=after)
                query = query.where(
                    or_(
                        DeviceRow.first_seen > anchor.first_seen,
                        and_(DeviceRow.first_seen == anchor.first_seen, DeviceRow.id > anchor.id),
                    )
                )
            order = (DeviceRow.first_seen, DeviceRow.id)
            rows = session.scalars(query.order_by(*order).limit(limit)).all()
            return [_device(row) for row in rows]

    def suspend(self, ref: str) -> tuple[Device, Device]:
        """Suspend a device: ``(before, after)``; suspending a suspended one changes nothing."""
        return self._change(ref, DeviceStatus.SUSPENDED)

    def resume(self, ref: str) -> tuple[Device, Device]:
        """Make a suspended device ACTIVE again: ``(before, after)``."""
        return self._change(ref, DeviceStatus.ACTIVE)

    def deactivate(self, ref: str) -> tuple[Device, Device]:
        """Deactivate a device for good: ``(before, after)``."""
        return self._change(ref, DeviceStatus.DEACTIVATED)

    def _change(self, ref: str, status: DeviceStatus) -> tuple[Device, Device]:
        with self._lock:
            with self._db.session() as session:
                seq = _bump(session)  # first: it orders this change after every other
                row = lookup(session, ref)
                before = _device(row)
                if before.status is DeviceStatus.DEACTIVATED and status is not before.status:
                    raise CertboundError(
                        ReasonCode.DEVICE_DEACTIVATED,
                        f"device {row.id} is deactivated; a deactivated device is never "
                        f"{'resumed' if status is DeviceStatus.ACTIVE else 'suspended'}",
                        {"id": row.id, "ref": ref},
                    )
                if before.status is not status:
                    row.status, row.status_seq = status.value, seq
                after = _device(row)
            self._apply(after.id, after.status)
        return before, after
