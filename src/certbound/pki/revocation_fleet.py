"""Fleet-wide revocation health in the database: OCSP responders asked, cache counters.

Every instance writes what it learns so ``certbound ca health`` on any host sees the
fleet: one ``ocsp_responders`` row per (responder URL, issuer SPKI pin) with the outcome
of the last request, and one ``revocation_counters`` row per key (an issuer SPKI pin, or
:data:`ALL`) to which each instance *adds* its cache hits and misses with an atomic
``UPDATE ... SET hits = hits + :delta``, so concurrent instances never lose counts.

Writes are best-effort: a database error is logged and dropped, never raised, since they
happen on a login's path or in the background refresher.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from certbound.clock import format_rfc3339
from certbound.storage.database import Database
from certbound.storage.models import OCSPResponder, RevocationCounter

log = logging.getLogger(__name__)

ALL = "all"
Counts = tuple[int, int]  # (hits, misses)


def record_ocsp_request(
    db: Database,
    url: str,
    pin: str,
    *,
    at: dt.datetime,
    latency_ms: float,
    error: str | None,
) -> None:
    """Upsert the responder's row after one request (``error`` None: it answered)."""
    values: dict[str, Any] = {"last_latency_ms": latency_ms}
    if error is None:
        values["last_ok_at"] = at
    else:
        values |= {"last_error": error, "last_error_at": at}
    stmt = (
        update(OCSPResponder)
        .where(OCSPResponder.url == url, OCSPResponder.issuer_spki_sha256 == pin)
        .values(requests=OCSPResponder.requests + 1, **values)
    )
    for _attempt in range(2):  # a concurrent insert of the same row: update it instead
        try:
            with db.session() as session:
                if session.execute(stmt).rowcount == 0:  # type: ignore[attr-defined]
                    session.add(
                        OCSPResponder(url=url, issuer_spki_sha256=pin, requests=1, **values)
                    )
            return
        except IntegrityError:
            continue
        except SQLAlchemyError as exc:
            log.warning("ocsp_responders not written for %s: %s", url, exc)
            return


def ocsp_rows(db: Database, pin: str) -> list[dict[str, Any]]:
    """The responders asked about the certificates of the CA with SPKI hash ``pin``."""
    query = (
        select(OCSPResponder)
        .where(OCSPResponder.issuer_spki_sha256 == pin)
        .order_by(OCSPResponder.url)
    )
    try:
        with db.session() as session:
            return [_responder_facts(row) for row in session.scalars(query)]
    except SQLAlchemyError as exc:
        log.warning("ocsp_responders unreadable: %s", exc)
        return []


def _responder_facts(row: OCSPResponder) -> dict[str, Any]:
    return {
        "url": row.url,
        "lastOkAt": _stamp(row.last_ok_at),
        "lastError": row.last_error,
        "lastErrorAt": _stamp(row.last_error_at),
        "lastLatencyMs": None if row.last_latency_ms is None else round(row.last_latency_ms, 1),
        "requests": row.requests,
    }


def add_counts(db: Database, deltas: Mapping[str, Counts], at: dt.datetime) -> bool:
    """Add each key's (hits, misses) to its row, inserting missing rows, in one
    transaction; False (nothing added) on a database error, so the caller keeps them."""
    deltas = {key: counts for key, counts in deltas.items() if counts != (0, 0)}
    if not deltas:
        return True
    for _attempt in range(2):  # a concurrent insert of the same row: add to it instead
        try:
            with db.session() as session:
                for key, (hits, misses) in sorted(deltas.items()):
                    stmt = (
                        update(RevocationCounter)
                        .where(RevocationCounter.key == key)
                        .values(
                            hits=RevocationCounter.hits + hits,
                            misses=RevocationCounter.misses + misses,
                            updated_at=at,
                        )
                    )
                    if session.execute(stmt).rowcount == 0:  # type: ignore[attr-defined]
                        session.add(
                            RevocationCounter(key=key, hits=hits, misses=misses, updated_at=at)
                        )
                        session.flush()
            return True
        except IntegrityError:
            continue
        except SQLAlchemyError as exc:
            log.warning("revocation_counters not written: %s", exc)
            return False
    return False


def counts(db: Database, key: str) -> Counts | None:
    """The fleet's (hits, misses) for ``key``; None when unknown or unreadable."""
    try:
        with db.session() as session:
            row = session.get(RevocationCounter, key)
            return None if row is None else (row.hits, row.misses)
    except SQLAlchemyError as exc:
        log.warning("revocation_counters unreadable: %s", exc)
        return None


def _stamp(value: dt.datetime | None) -> str | None:
    return None if value is None else format_rfc3339(value)
