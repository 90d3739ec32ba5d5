"""Revocation checking of a validated path: CRL and OCSP, caches, fail modes, health.

:class:`RevocationChecker` answers, for a path the validator accepted (leaf to anchor):
is any certificate in it revoked? Every certificate but the anchor is checked against its
issuer in the path, CA certificates first, under the policy of the CA the path belongs to
(:class:`certbound.pki.revocation_policy.RevocationPolicy`):

- ``crl``: the CRL of each certificate's CRL distribution points (http/https only), held
  by :class:`certbound.pki.crl_store.CrlStore` (memory, then the shared table, then a
  download); ``ocsp``: the responder of its AIA extension, with a nonce, answers cached
  by (issuer key hash, serial) until their nextUpdate; ``ocsp-then-crl``: OCSP, and the CRL
  when OCSP gives no answer (unreachable, refused response, or UNKNOWN).
- The policy's ``crl_url`` / ``ocsp_url`` override the device certificate's own CDP / AIA;
  CA certificates of the path are checked with their own CDP / AIA.
- ``timeout`` bounds the whole check of one path: all downloads and OCSP requests of one
  login together never take longer (``deadline``), so a login is never held longer.
- A certificate revoked by any source is refused with REVOKED_CERTIFICATE (a stale CRL
  still proves a revocation). When no answer can be had (UNAVAILABLE: unreachable, refused
  answer, CRL more than ``max_staleness`` past its nextUpdate; UNKNOWN: the responder does
  not know the certificate, or there is nothing to ask) the fail mode decides: fail-closed
  refuses with REVOCATION_UNAVAILABLE (REVOCATION_STALE for a stale CRL), fail-open allows
  and says so (``fail_open``), so admins can count such allows.
- No source: a device certificate with no CDP / AIA for the mode and no override is
  UNKNOWN (source None), and the fail mode decides. A CA certificate of the path that names
  none is not checked (its trust is its upload: remove a compromised CA from the store);
  one that names a source is checked like a device certificate.
- With ``local_crls`` (``certbound verify --crl FILE``), CRLs come only from those files
  (source ``file``), for every certificate whose issuer signed one; nothing is fetched.

With a database, the fleet's view is kept in :mod:`certbound.pki.revocation_fleet`: every
OCSP request (a cache miss) upserts its responder's ``ocsp_responders`` row, and the
cache hits / misses are added to ``revocation_counters`` (per issuer SPKI pin and ``all``)
after each refresher pass and on :meth:`RevocationChecker.close`; both best-effort.

Failures record ``pki.crl.download_failure`` / ``pki.crl.stale`` / ``pki.ocsp.failure``
through the recorder; ``check`` never raises and never waits past the policy timeout.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp as x509_ocsp
from cryptography.x509.oid import AuthorityInformationAccessOID

from certbound.clock import Clock, as_utc, format_rfc3339
from certbound.errors import ReasonCode, WouldBlockError
from certbound.pki import crl, events, ocsp, revocation_fleet, revocation_policy
from certbound.pki.certificate import UNDECODABLE, extension, serial_hex, sha256_fingerprint
from certbound.pki.crl import CrlError, CrlIndex
from certbound.pki.crl_store import CrlEntry, CrlStore, issuer_pin
from certbound.pki.ocsp import OcspAnswer, OcspError
from certbound.pki.revocation_policy import DEFAULT_POLICY, Mode, RevocationPolicy
from certbound.storage.database import Database
from certbound.syslog.recorder import EventRecorder

log = logging.getLogger(__name__)

MAX_PLANS = 10_000
_WEB = ("http", "https")


class Status(enum.StrEnum):
    GOOD = "GOOD"
    REVOKED = "REVOKED"
    UNKNOWN = "UNKNOWN"
    UNAVAILABLE = "UNAVAILABLE"


_ANSWERED = (Status.GOOD, Status.REVOKED)


@dataclass(frozen=True, slots=True)
class RevocationResult:
    """The revocation answer for one certificate (``serial_number``, ``subject_dn``).

    ``reason`` is set exactly when the answer refuses the device; ``fail_open`` when the
    status could not be had and the policy allowed the device anyway. ``source`` is where
    the answer came from (``crl``, ``ocsp``, ``cache`` for a cached OCSP answer, ``file``),
    ``url`` the CRL / OCSP URL used or tried, ``next_update`` the nextUpdate of the CRL or
    OCSP answer used, ``stale_by`` how far past it a stale CRL was.
    """

    status: Status
    source: str | None
    checked_at: dt.datetime
    reason: ReasonCode | None = None
    fail_open: bool = False
    detail: str = ""
    url: str | None = None
    serial_number: str = ""
    subject_dn: str = ""
    revoked_at: dt.datetime | None = None
    revocation_reason: str | None = None
    stale_by: dt.timedelta | None = None
    next_update: dt.datetime | None = None

    @property
    def denied(self) -> bool:
        return self.reason is not None

    def to_dict(self) -> dict[str, Any]:
        """``deviceTrust.revocation`` of the System Log event."""
        return {
            "status": self.status.value,
            "source": self.source,
            "checkedAt": format_rfc3339(self.checked_at),
            "failOpen": self.fail_open,
            "reason": None if self.reason is None else self.reason.value,
            "detail": self.detail,
            "url": self.url,
            "serialNumber": self.serial_number,
            "subjectDn": self.subject_dn,
            "revokedAt": None if self.revoked_at is None else format_rfc3339(self.revoked_at),
            "revocationReason": self.revocation_reason,
            "nextUpdate": None if self.next_update is None else format_rfc3339(self.next_update),
            "staleBySeconds": None if self.stale_by is None else int(self.stale_by.total_seconds()),
        }


@dataclass(frozen=True, slots=True)
class RevocationStats:
    """This process's counts: answers from memory (CRL index, OCSP cache) and not, CRL
    downloads, and devices allowed by fail-open."""

    hits: int
    misses: int
    fetches: int
    fail_open_allows: int

    @property
    def hit_rate(self) -> float | None:
        total = self.hits + self.misses
        return None if total == 0 else self.hits / total


# --- what to ask about each certificate ----------------------------------------------


@dataclass(frozen=True, slots=True)
class _Link:
    """One certificate of a path, its issuer, and where its status is published."""

    cert: x509.Certificate
    issuer: x509.Certificate
    is_leaf: bool
    serial: int
    serial_number: str
    subject_dn: str
    crl_urls: tuple[str, ...]
    ocsp_urls: tuple[str, ...]
    pin: str
    ocsp_key: ocsp.CacheKey
    candidates: tuple[x509.Certificate, ...]


@dataclass(frozen=True, slots=True)
class _Plan:
    chain: Sequence[x509.Certificate]
    links: tuple[_Link, ...]  # anchor side first: CA certificates are checked first


def _web(url: str) -> bool:
    return urlsplit(url).scheme.lower() in _WEB


def distribution_points(cert: x509.Certificate) -> tuple[str, ...]:
    """The http(s) URLs of the full CRLs the certificate's issuer publishes for it (points
    naming another CRL issuer or only some reasons are skipped)."""
    try:
        points = extension(cert, x509.CRLDistributionPoints)
    except UNDECODABLE:
        return ()
    urls: list[str] = []
    for point in points or ():
        if point.crl_issuer or point.reasons or not point.full_name:
            continue
        for name in point.full_name:
            if isinstance(name, x509.UniformResourceIdentifier) and _web(name.value):
                urls.append(name.value)
    return tuple(dict.fromkeys(urls))


def ocsp_responders(cert: x509.Certificate) -> tuple[str, ...]:
    """The http(s) OCSP responder URLs of the certificate's AIA extension."""
    try:
        access = extension(cert, x509.AuthorityInformationAccess)
    except UNDECODABLE:
        return ()
    urls = [
        item.access_location.value
        for item in access or ()
        if item.access_method == AuthorityInformationAccessOID.OCSP
        and isinstance(item.access_location, x509.UniformResourceIdentifier)
        and _web(item.access_location.value)
    ]
    return tuple(dict.fromkeys(urls))


def _link(chain: Sequence[x509.Certificate], position: int) -> _Link:
    cert, issuer = chain[position], chain[position + 1]
    return _Link(
        cert=cert,
        issuer=issuer,
        is_leaf=position == 0,
        serial=cert.serial_number,
        serial_number=serial_hex(cert),
        subject_dn=cert.subject.rfc4514_string(),
        crl_urls=distribution_points(cert),
        ocsp_urls=ocsp_responders(cert),
        pin=issuer_pin(issuer),
        ocsp_key=ocsp.cache_key(issuer, cert.serial_number),
        candidates=tuple(c for c in chain if c is not cert),
    )


def _plan(chain: Sequence[x509.Certificate]) -> _Plan:
    links = tuple(_link(chain, i) for i in reversed(range(len(chain) - 1)))
    return _Plan(chain, links)


def _in_scope(index: CrlIndex, link: _Link) -> bool:
    """A CRL limited to CA (or to user) certificates says nothing about the others."""
    return index.scope == "all" or (index.scope == "ca") != link.is_leaf


def _stamp(value: dt.datetime | None) -> str:
    return "-" if value is None else format_rfc3339(value)


def _decide(result: RevocationResult, policy: RevocationPolicy) -> RevocationResult:
    """Apply the fail mode: set ``reason`` when the answer refuses, ``fail_open`` when the
    status is unknown but the policy allows the device."""
    if result.status is Status.GOOD:
        return result
    if result.status is Status.REVOKED:
        return dataclasses.replace(result, reason=ReasonCode.REVOKED_CERTIFICATE)
    if policy.fail_open:
        return dataclasses.replace(result, fail_open=True)
    stale = result.stale_by is not None
    reason = ReasonCode.REVOCATION_STALE if stale else ReasonCode.REVOCATION_UNAVAILABLE
    return dataclasses.replace(result, reason=reason)


class RevocationChecker:
    """Checks validated paths against CRLs and OCSP responders; see the module docstring.

    ``db`` shares CRLs with the other instances (None: memory only); ``http`` is the client
    used for downloads (one is made when None, and closed by :meth:`close`).
    """

    def __init__(
        self,
        db: Database | None,
        clock: Clock,
        *,
        http: httpx.Client | None = None,
        recorder: EventRecorder | None = None,
        local_crls: Sequence[bytes] = (),
        retry_seconds: float = 30.0,
        ocsp_cache_size: int = 10_000,
    ) -> None:
        self._db = db
        self._clock = clock
        self._own_http = http is None
        self._http = http or httpx.Client(follow_redirects=False)
        self._recorder = recorder
        self._retry = dt.timedelta(seconds=retry_seconds)
        self._store = CrlStore(
            db,
            clock,
            self._http,
            recorder=recorder,
            retry_seconds=retry_seconds,
            after_pass=self.flush_counters,
        )
        self._ocsp_cache = ocsp.OcspCache(max_entries=ocsp_cache_size)
        self._ocsp_down: dict[str, tuple[dt.datetime, str]] = {}
        self._ocsp_failed: dict[tuple[str, ocsp.CacheKey], tuple[dt.datetime, str]] = {}
        self._ocsp_urls: dict[str, set[str]] = {}  # issuer key hash -> responders asked
        self._local = _LocalCrls(local_crls, clock) if local_crls else None
        self._plans: dict[int, _Plan] = {}
        self._good_details: dict[tuple[str, str], tuple[CrlIndex, str]] = {}
        self._lock = threading.Lock()
        self._hits = self._misses = self._fail_open_allows = 0
        self._unflushed: dict[str, list[int]] = {}  # issuer pin -> [hits, misses] not yet added
        self._flush_lock = threading.Lock()

    # --- lifecycle ---------------------------------------------------------------------

    def start_refresher(self, interval: float = 30.0) -> None:
        """Refresh the CRLs in use before their nextUpdate, in a background thread."""
        self._store.start(interval)

    def refresh_once(self) -> int:
        """One refresher pass now (what the thread does every ``interval``)."""
        return self._store.refresh_once()

    def close(self) -> None:
        """Stop the refresher, add the unflushed counts to the fleet's counters; close the
        HTTP client if this checker made it. Idempotent."""
        self._store.close()
        self.flush_counters()
        if self._own_http and not self._http.is_closed:
            self._http.close()

    def flush_counters(self) -> None:
        """Add the hits and misses counted since the last flush to ``revocation_counters``
        (per issuer pin and ``all``); kept for the next flush when the database fails."""
        if self._db is None:
            return
        with self._flush_lock:
            with self._lock:
                taken, self._unflushed = self._unflushed, {}
            deltas = {pin: (hits, misses) for pin, (hits, misses) in taken.items()}
            total = (sum(h for h, _ in deltas.values()), sum(m for _, m in deltas.values()))
            if revocation_fleet.add_counts(
                self._db, {**deltas, revocation_fleet.ALL: total}, self._clock.now()
            ):
                return
            with self._lock:  # not added: count them again next time
                for pin, (hits, misses) in deltas.items():
                    held = self._unflushed.setdefault(pin, [0, 0])
                    held[0] += hits
                    held[1] += misses

    @property
    def stats(self) -> RevocationStats:
        return RevocationStats(
            self._hits, self._misses, self._store.downloads, self._fail_open_allows
        )

    # --- checking a path -------------------------------------------------------------

    def check(
        self,
        chain: Sequence[x509.Certificate],
        policy: RevocationPolicy,
        at: dt.datetime | None = None,
        *,
        offline: bool = False,
    ) -> RevocationResult:
        """The revocation answer for a validated path (leaf first, anchor last): the first
        refusal (CA certificates are checked first), else a fail-open allow if any, else
        GOOD for the leaf. Never raises; never takes longer than ``policy.timeout``. With
        ``offline``, answers only from what memory holds fresh, else raises WouldBlockError."""
        at = self._clock.now() if at is None else as_utc(at)
        try:
            result = self._check(chain, policy, at, offline)
        except WouldBlockError:
            raise
        except Exception as exc:  # a login must get an answer, whatever happened
            log.exception("revocation check failed unexpectedly")
            subject = chain[0].subject.rfc4514_string() if chain else ""
            failed = RevocationResult(
                Status.UNAVAILABLE, None, at, detail=f"internal error: {exc}", subject_dn=subject
            )
            result = _decide(failed, policy)
        if result.fail_open:
            with self._lock:
                self._fail_open_allows += 1
        return result

    def _check(
        self,
        chain: Sequence[x509.Certificate],
        policy: RevocationPolicy,
        at: dt.datetime,
        offline: bool = False,
    ) -> RevocationResult:
        if policy.mode is Mode.OFF or len(chain) < 2:
            detail = "revocation checking is off" if policy.mode is Mode.OFF else "no issuer"
            subject = chain[0].subject.rfc4514_string() if chain else ""
            return RevocationResult(Status.UNKNOWN, None, at, detail=detail, subject_dn=subject)
        deadline = time.monotonic() + policy.timeout
        allowed: RevocationResult | None = None
        leaf: RevocationResult | None = None
        for link in self._plan_of(chain).links:
            result = self._check_link(link, policy, at, deadline, offline)
            if result is None:
                continue
            if result.denied:
                return result
            if result.fail_open and allowed is None:
                allowed = result
            if link.is_leaf:
                leaf = result
        assert leaf is not None  # the leaf always gets an answer
        return allowed or leaf

    def _plan_of(self, chain: Sequence[x509.Certificate]) -> _Plan:
        """The links of a path, remembered for a path object seen before (the validator
        hands back the same tuple for a cached path): the plan keeps the tuple alive, so
        its id cannot be reused while the plan is held."""
        plan = self._plans.get(id(chain))
        if plan is not None and plan.chain is chain:
            return plan
        plan = _plan(chain)
        if isinstance(chain, tuple):
            if len(self._plans) >= MAX_PLANS:
                self._plans.clear()
            self._plans[id(chain)] = plan
        return plan

    def _check_link(
        self,
        link: _Link,
        policy: RevocationPolicy,
        at: dt.datetime,
        deadline: float,
        offline: bool = False,
    ) -> RevocationResult | None:
        """The decided answer for one certificate; None for a CA certificate without any
        source to ask (not checked)."""
        if self._local is not None:
            found = self._local.check(link, at)
            if found is None:
                return (
                    _decide(self._no_source(link, at, local=True), policy) if link.is_leaf else None
                )
            return _decide(self._stale_checked(found[0], found[1], link, policy, None), policy)
        crl_urls, ocsp_urls = self._sources(link, policy)
        if not crl_urls and not ocsp_urls:
            return _decide(self._no_source(link, at), policy) if link.is_leaf else None
        if offline:
            self._held_in_memory(link, crl_urls, ocsp_urls, policy, at)
        first: RevocationResult | None = None
        if ocsp_urls:
            first = self._by_ocsp(link, ocsp_urls, at, deadline)
            if first.status in _ANSWERED or not crl_urls:
                return _decide(first, policy)
        second = self._by_crl(link, crl_urls, policy, at, deadline)
        if first is not None and second.status not in _ANSWERED:
            detail = f"OCSP: {first.detail}; CRL: {second.detail}"
            second = dataclasses.replace(second, detail=detail)
        return _decide(second, policy)

    def _held_in_memory(
        self,
        link: _Link,
        crl_urls: Sequence[str],
        ocsp_urls: Sequence[str],
        policy: RevocationPolicy,
        at: dt.datetime,
    ) -> None:
        """WouldBlockError unless the first source the link is asked holds a fresh answer in
        memory (a cached OCSP answer, or a CRL before its nextUpdate)."""
        if ocsp_urls:
            if self._ocsp_cache.get(link.ocsp_key, at) is not None:
                return
            raise WouldBlockError("OCSP answer not cached")
        entry = self._store.entry(
            crl_urls[0], link.issuer, link.pin, link.candidates, policy.timeout
        )
        if not entry.fresh_at(at):
            raise WouldBlockError("CRL not held fresh")

    @staticmethod
    def _sources(link: _Link, policy: RevocationPolicy) -> tuple[tuple[str, ...], ...]:
        """(CRL URLs, OCSP URLs) to use for the certificate under the policy's mode."""
        crl_urls = link.crl_urls
        ocsp_urls = link.ocsp_urls
        if link.is_leaf:
            crl_urls = (policy.crl_url,) if policy.crl_url else crl_urls
            ocsp_urls = (policy.ocsp_url,) if policy.ocsp_url else ocsp_urls
        if policy.mode is Mode.CRL:
            return crl_urls, ()
        if policy.mode is Mode.OCSP:
            return (), ocsp_urls
        return crl_urls, ocsp_urls

    @staticmethod
    def _no_source(link: _Link, at: dt.datetime, *, local: bool = False) -> RevocationResult:
        detail = (
            "nothing to ask: the certificate names no CRL distribution point or OCSP "
            "responder for this mode, and the CA has no override"
        )
        if local:
            detail = (
                f"none of the CRL files given is signed by {link.issuer.subject.rfc4514_string()}"
            )
        return RevocationResult(
            Status.UNKNOWN,
            None,
            at,
            detail=detail,
            serial_number=link.serial_number,
            subject_dn=link.subject_dn,
        )

    def _result(self, link: _Link, at: dt.datetime, **fields: Any) -> RevocationResult:
        return RevocationResult(
            checked_at=at, serial_number=link.serial_number, subject_dn=link.subject_dn, **fields
        )

    # --- CRL -----------------------------------------------------------------------------

    def _by_crl(
        self,
        link: _Link,
        urls: Sequence[str],
        policy: RevocationPolicy,
        at: dt.datetime,
        deadline: float,
    ) -> RevocationResult:
        problems: list[str] = []
        for url in urls:
            entry = self._store.entry(url, link.issuer, link.pin, link.candidates, policy.timeout)
            fresh = entry.fresh_at(at)
            self._count(fresh, link.pin)
            try:
                index = self._store.get(entry, now=at, deadline=deadline)
            except CrlError as error:
                problems.append(f"{url}: {error.message}")
                continue
            if not _in_scope(index, link):
                problems.append(f"{url}: the CRL covers only {index.scope} certificates")
                continue
            found = self._from_index(link, index, entry, at)
            if fresh:  # a CRL before its nextUpdate cannot be stale
                return found
            return self._stale_checked(found, index, link, policy, entry)
        detail = "; ".join(problems) or "no CRL"
        return self._result(
            link, at, status=Status.UNAVAILABLE, source="crl", detail=detail, url=urls[0]
        )

    def _count(self, hit: bool, pin: str) -> None:
        with self._lock:
            unflushed = self._unflushed.get(pin)
            if unflushed is None:
                unflushed = self._unflushed[pin] = [0, 0]
            if hit:
                self._hits += 1
                unflushed[0] += 1
            else:
                self._misses += 1
                unflushed[1] += 1

    def _from_index(
        self, link: _Link, index: CrlIndex, entry: CrlEntry, at: dt.datetime
    ) -> RevocationResult:
        """The answer of a CRL about the certificate (the hot path of a cached login)."""
        url = entry.url
        source = "file" if entry.is_file else "crl"
        if link.serial not in index.serials:
            detail = self._good_detail(entry.key, index)
            return RevocationResult(
                Status.GOOD,
                source,
                at,
                detail=detail,
                url=url,
                serial_number=link.serial_number,
                subject_dn=link.subject_dn,
                next_update=index.next_update,
            )
        revoked = index.entry(link.serial)
        assert revoked is not None
        when = format_rfc3339(revoked.revocation_time)
        return self._result(
            link,
            at,
            status=Status.REVOKED,
            source=source,
            url=url,
            detail=f"serial {link.serial_number} is on the CRL from {url} "
            f"(revoked {when}, reason {revoked.reason or 'unspecified'}; "
            f"CRL thisUpdate {_stamp(index.this_update)})",
            revoked_at=revoked.revocation_time,
            revocation_reason=revoked.reason,
            next_update=index.next_update,
        )

    def _good_detail(self, key: tuple[str, str], index: CrlIndex) -> str:
        """ "not on the CRL ..." for the CRL held, formatted once per CRL."""
        known = self._good_details.get(key)
        if known is not None and known[0] is index:
            return known[1]
        detail = (
            f"not on the CRL from {key[0]} (thisUpdate {_stamp(index.this_update)}, "
            f"nextUpdate {_stamp(index.next_update)})"
        )
        self._good_details[key] = (index, detail)
        return detail

    def _stale_checked(
        self,
        found: RevocationResult,
        index: CrlIndex | None,
        link: _Link,
        policy: RevocationPolicy,
        entry: CrlEntry | None,
    ) -> RevocationResult:
        """A GOOD from a CRL more than ``max_staleness`` past its nextUpdate becomes
        UNAVAILABLE (stale), and ``pki.crl.stale`` is recorded (once per retry period)."""
        if found.status is not Status.GOOD or index is None:
            return found
        late = crl.staleness(index, found.checked_at)
        if late is None or late <= policy.max_staleness:
            return found
        where = found.url or index.source
        detail = (
            f"the CRL from {where} passed its nextUpdate {_stamp(index.next_update)} "
            f"{late} ago; at most {policy.max_staleness} is allowed"
        )
        self._report_stale(index, where, link, policy, late=late, entry=entry)
        return dataclasses.replace(found, status=Status.UNAVAILABLE, detail=detail, stale_by=late)

    def _report_stale(
        self,
        index: CrlIndex,
        url: str,
        link: _Link,
        policy: RevocationPolicy,
        *,
        late: dt.timedelta,
        entry: CrlEntry | None,
    ) -> None:
        now = self._clock.now()
        if entry is not None:
            reported = entry.stale_reported_at
            if reported is not None and now < reported + self._retry:
                return
            entry.stale_reported_at = now
        if self._recorder is None:
            return
        self._recorder.record(
            events.crl_stale(
                url,
                link.issuer.subject.rfc4514_string(),
                this_update=index.this_update,
                next_update=index.next_update,
                stale_by=late,
                max_staleness=policy.max_staleness,
                fail_open=policy.fail_open,
                ca_fingerprint=sha256_fingerprint(link.issuer),
            )
        )

    # --- OCSP ----------------------------------------------------------------------------

    def _by_ocsp(
        self, link: _Link, urls: Sequence[str], at: dt.datetime, deadline: float
    ) -> RevocationResult:
        cached = self._ocsp_cache.get(link.ocsp_key, at)
        self._count(cached is not None, link.pin)
        if cached is not None:
            return self._from_answer(link, cached, "cache", urls[0], at)
        problems: list[str] = []
        for url in urls:
            answer = self._ask(link, url, at, deadline, problems)
            if answer is not None:
                return self._from_answer(link, answer, "ocsp", url, at)
        return self._result(
            link,
            at,
            status=Status.UNAVAILABLE,
            source="ocsp",
            detail="; ".join(problems),
            url=urls[0],
        )

    def _ask(
        self, link: _Link, url: str, at: dt.datetime, deadline: float, problems: list[str]
    ) -> OcspAnswer | None:
        """One validated answer from the responder at ``url``, or None (why in ``problems``);
        a failure is recorded once, then not retried for ``retry_seconds``."""
        now = self._clock.now()
        held_off = self._ocsp_down.get(url) or self._ocsp_failed.get((url, link.ocsp_key))
        if held_off is not None and now < held_off[0]:
            problems.append(f"{url}: {held_off[1]} (not asked again before {_stamp(held_off[0])})")
            return None
        remaining = deadline - time.monotonic()
        if remaining < 0.001:
            problems.append(f"{url}: no time left to ask")
            return None
        nonce = os.urandom(16)
        started = time.monotonic()
        try:
            request = ocsp.build_request(link.cert, link.issuer, nonce=nonce)
            data = ocsp.send(self._http, url, request, timeout=remaining)
            answer = ocsp.validate_response(data, link.cert, link.issuer, nonce=nonce, now=at)
        except OcspError as error:
            latency_ms = (time.monotonic() - started) * 1000
            self._ocsp_error(link, url, error, latency_ms, now)
            self._record_responder(link, url, latency_ms, f"{error.problem}: {error.message}")
            problems.append(f"{url}: {error.problem}: {error.message}")
            return None
        self._record_responder(link, url, (time.monotonic() - started) * 1000, None)
        self._ocsp_cache.put(answer, link.ocsp_key[0])
        self._ocsp_urls.setdefault(link.ocsp_key[0], set()).add(url)
        return answer

    def _record_responder(
        self, link: _Link, url: str, latency_ms: float, error: str | None
    ) -> None:
        """Upsert the responder's ``ocsp_responders`` row; never fails a login."""
        if self._db is None:
            return
        try:
            revocation_fleet.record_ocsp_request(
                self._db, url, link.pin, at=self._clock.now(), latency_ms=latency_ms, error=error
            )
        except Exception:  # best-effort: the login goes on without the row
            log.exception("ocsp_responders not written for %s", url)

    def _ocsp_error(
        self, link: _Link, url: str, error: OcspError, latency_ms: float, now: dt.datetime
    ) -> None:
        held_off = (now + self._retry, f"{error.problem}: {error.message}")
        if error.problem == "unavailable":
            self._ocsp_down[url] = held_off
        else:
            if len(self._ocsp_failed) >= MAX_PLANS:
                self._ocsp_failed.clear()
            self._ocsp_failed[(url, link.ocsp_key)] = held_off
        log.warning("OCSP %s for serial %s: %s", url, link.serial_number, error.message)
        if self._recorder is None:
            return
        self._recorder.record(
            events.ocsp_failed(
                url,
                link.subject_dn,
                link.serial_number,
                error.message,
                problem=error.problem,
                issuer_dn=link.issuer.subject.rfc4514_string(),
                fingerprint=sha256_fingerprint(link.cert),
                latency_ms=latency_ms,
            )
        )

    def _from_answer(
        self, link: _Link, answer: OcspAnswer, source: str, url: str, at: dt.datetime
    ) -> RevocationResult:
        period = f"thisUpdate {_stamp(answer.this_update)}, nextUpdate {_stamp(answer.next_update)}"
        said = f"the OCSP responder {url} ({answer.responder}) answered {answer.status}"
        if source == "cache":
            checked = _stamp(answer.checked_at)
            said = f"cached OCSP answer {answer.status} from {url}, checked {checked}"
        status = Status(answer.status)
        return self._result(
            link,
            at,
            status=status,
            source=source,
            url=url,
            detail=f"{said} ({period})",
            revoked_at=answer.revocation_time,
            revocation_reason=answer.revocation_reason,
            next_update=answer.next_update,
        )

    # --- health --------------------------------------------------------------------------

    def health(self, chain: Sequence[x509.Certificate], policy: RevocationPolicy) -> dict[str, Any]:
        """Probe a stored CA's revocation sources now (``certbound ca health``).

        ``chain`` is the stored CA chain (leaf-side first): its first certificate issues
        the devices. CRL URLs: the override and every URL its devices' certificates named
        (the shared table, this process); OCSP URLs: the override, the responders asked
        (this process) and those any instance asked (``ocsp_responders``, under ``table``).
        Each is probed with the policy timeout. ``cache`` adds the fleet's counters.
        """
        ca = chain[0]
        pin = issuer_pin(ca)
        crl_urls = [policy.crl_url] if policy.crl_url else []
        crl_urls += [e.url for e in self._store.entries() if e.key[1] == pin]
        crl_urls += [row["url"] for row in self._store.table_rows(pin)]
        probes = []
        for url in dict.fromkeys(crl_urls):
            entry = self._store.entry(url, ca, pin, tuple(chain[1:]), policy.timeout)
            probes.append(self._store.probe(entry, policy.timeout))
        rows = {row["url"]: row for row in self._store.table_rows(pin)}
        crls = [{**probed, "table": rows.get(probed["url"])} for probed in probes]
        key_hash = ocsp.issuer_key_hash(ca)
        ocsp_urls = [policy.ocsp_url] if policy.ocsp_url else []
        ocsp_urls += sorted(self._ocsp_urls.get(key_hash, ()))
        responders = (
            {}
            if self._db is None
            else {row["url"]: row for row in revocation_fleet.ocsp_rows(self._db, pin)}
        )
        ocsp_urls += list(responders)
        ocsp_probes = [
            {**self._probe_ocsp(url, ca, policy.timeout), "table": responders.get(url)}
            for url in dict.fromkeys(ocsp_urls)
        ]
        stats = self.stats
        return {
            "policy": policy.to_dict(),
            "crl": crls,
            "ocsp": ocsp_probes,
            "cache": {
                "hits": stats.hits,
                "misses": stats.misses,
                "hitRate": stats.hit_rate,
                "fetches": stats.fetches,
                "failOpenAllows": stats.fail_open_allows,
                "ocspAnswersHeld": len(self._ocsp_cache),
                **self._fleet_cache(pin),
            },
        }

    def _fleet_cache(self, pin: str) -> dict[str, Any]:
        """The fleet's hits, misses and hit rate for the CA (``revocation_counters``, after
        adding this process's unflushed counts); None without a database."""
        if self._db is None:
            return {"fleetHits": None, "fleetMisses": None, "fleetHitRate": None}
        self.flush_counters()
        hits, misses = revocation_fleet.counts(self._db, pin) or (0, 0)
        total = hits + misses
        return {
            "fleetHits": hits,
            "fleetMisses": misses,
            "fleetHitRate": None if total == 0 else hits / total,
        }

    def _probe_ocsp(self, url: str, ca: x509.Certificate, timeout: float) -> dict[str, Any]:
        """POST a request about serial 1 of ``ca``: reachable when an OCSP response (of any
        status) comes back."""
        name_hash = hashlib.sha1(ca.subject.public_bytes(), usedforsecurity=False).digest()
        key_hash = bytes.fromhex(ocsp.issuer_key_hash(ca))
        request = (
            x509_ocsp.OCSPRequestBuilder()
            .add_certificate_by_hash(name_hash, key_hash, 1, hashes.SHA1())
            .build()
            .public_bytes(serialization.Encoding.DER)
        )
        started = time.monotonic()
        facts: dict[str, Any] = {"url": url, "reachable": False, "error": None}
        try:
            data = ocsp.send(self._http, url, request, timeout=timeout)
            status = x509_ocsp.load_der_ocsp_response(data).response_status.name
        except OcspError as error:
            facts["error"] = f"{error.problem}: {error.message}"
        except ValueError as exc:
            facts["error"] = f"malformed: the answer is not an OCSP response: {exc}"
        else:
            facts |= {"reachable": True, "responseStatus": status}
        facts["latencyMs"] = round((time.monotonic() - started) * 1000, 1)
        return facts


class _LocalCrls:
    """CRLs given as files (``verify --crl``): each is used for certificates whose issuer
    signed it, verified once per issuer; nothing is fetched."""

    def __init__(self, crls: Sequence[bytes], clock: Clock) -> None:
        self._clock = clock
        self._parsed: list[tuple[bytes, x509.Name | None]] = []
        for data in crls:
            try:
                self._parsed.append((data, crl.parse_crl(data).issuer))
            except CrlError:
                self._parsed.append((data, None))
        self._indexes: dict[tuple[int, str], CrlIndex | CrlError] = {}

    def check(
        self, link: _Link, at: dt.datetime
    ) -> tuple[RevocationResult, CrlIndex | None] | None:
        """The answer from the files for the certificate (and the CRL that gave it); None
        when no file is its issuer's."""
        problems: list[str] = []
        for position, (data, issuer) in enumerate(self._parsed):
            if issuer is None:
                problems.append(f"CRL file {position + 1} does not parse")
                continue
            if issuer != link.cert.issuer:
                continue
            index = self._index(position, data, link)
            if isinstance(index, CrlError):
                problems.append(f"CRL file {position + 1}: {index.message}")
                continue
            if _in_scope(index, link):
                return _file_answer(link, index, position, at), index
        if not problems:
            return None
        failed = RevocationResult(
            Status.UNAVAILABLE,
            "file",
            at,
            detail="; ".join(problems),
            serial_number=link.serial_number,
            subject_dn=link.subject_dn,
        )
        return failed, None

    def _index(self, position: int, data: bytes, link: _Link) -> CrlIndex | CrlError:
        key = (position, link.pin)
        if key not in self._indexes:
            try:
                self._indexes[key] = crl.index_crl(
                    data,
                    link.issuer,
                    candidates=link.candidates,
                    now=self._clock.now(),
                    source=f"CRL file {position + 1}",
                )
            except CrlError as error:
                self._indexes[key] = error
        return self._indexes[key]


def _file_answer(link: _Link, index: CrlIndex, position: int, at: dt.datetime) -> RevocationResult:
    name = f"CRL file {position + 1} ({index.issuer_dn})"
    entry = index.entry(link.serial)
    if entry is not None:
        return RevocationResult(
            Status.REVOKED,
            "file",
            at,
            detail=f"serial {link.serial_number} is on {name} "
            f"(revoked {format_rfc3339(entry.revocation_time)}, "
            f"reason {entry.reason or 'unspecified'})",
            serial_number=link.serial_number,
            subject_dn=link.subject_dn,
            revoked_at=entry.revocation_time,
            revocation_reason=entry.reason,
            next_update=index.next_update,
        )
    return RevocationResult(
        Status.GOOD,
        "file",
        at,
        detail=f"not on {name} (thisUpdate {_stamp(index.this_update)}, "
        f"nextUpdate {_stamp(index.next_update)})",
        serial_number=link.serial_number,
        subject_dn=link.subject_dn,
        next_update=index.next_update,
    )


def stored_policies(db: Database) -> Callable[[str | None], RevocationPolicy]:
    """The policies of the stored CAs, read from the database (the defaults for a path
    that belongs to no stored CA); the validator caches them per trust-store generation."""

    def policy(ca_id: str | None) -> RevocationPolicy:
        if ca_id is None:
            return DEFAULT_POLICY
        with db.session() as session:
            return revocation_policy.load(session, ca_id)

    return policy
