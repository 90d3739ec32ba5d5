"""Benchmark: System Log queries (eventType + time window) over millions of events on PostgreSQL.

Creates a scratch database, migrates it, generates ``--rows`` events server-side
(``INSERT ... SELECT generate_series``: 30 days of ``published`` times, a skewed spread of event
types, every filterable column filled, a short JSON body), builds the migrated indexes after
loading, runs ``VACUUM (ANALYZE)``, then times ``eventType eq X`` queries over random 1-hour and
1-day windows (limit 100) through :func:`certbound.syslog.query.search` and prints p50/p95/p99
and the EXPLAIN of one query. The database is dropped at the end unless ``--keep``.

    .venv/bin/python bench/log_query_bench.py [--rows 10000000] [--queries 200] [--keep]

The admin URL comes from ``--admin-url`` or CERTBOUND_TEST_POSTGRES (default: the local server).
The generated rows do not form a valid hash chain (prev_hash/hash are filler): queries never
read the chain.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import os
import random
import secrets
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, create_engine, text

from certbound.storage.database import Database, normalise_url
from certbound.syslog.query import LogQuery, search, statement

DEFAULT_ADMIN_URL = os.environ.get(
    "CERTBOUND_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"
)
TARGET_P95_MS = 100.0
CHUNK = 1_000_000
SPAN = dt.timedelta(days=30)

# (event type, share of all events): a device-trust server is dominated by verifications,
# authentications, policy decisions and token grants; admin events are rare.
EVENT_TYPES: Sequence[tuple[str, float]] = (
    ("device.trust.verify", 0.40),
    ("user.authentication.verify", 0.15),
    ("policy.evaluate_sign_on", 0.15),
    ("app.oauth2.token.grant", 0.15),
    ("app.oauth2.token.revoke", 0.05),
    ("pki.crl.download_failure", 0.03),
    ("pki.ocsp.failure", 0.03),
    ("security.trust.ca.add", 0.01),
    ("security.trust.ca.remove", 0.01),
    ("pki.ca.expiration.warn", 0.01),
    ("system.api_token.create", 0.005),
    ("system.log.purge", 0.005),
)
REASONS = (
    "UNKNOWN_CA",
    "CERTIFICATE_EXPIRED",
    "INTERMEDIATE_MISSING",
    "REVOKED_CERTIFICATE",
    "POLICY_DENIED",
    "EKU_NOT_CLIENT_AUTH",
)


def _event_type_case() -> str:
    """A CASE over the row's random ``r`` choosing an event type with the shares above."""
    arms, edge = [], 0.0
    for name, share in EVENT_TYPES:
        edge += share
        arms.append(f"WHEN r < {edge:.4f} THEN '{name}'")
    return "CASE " + " ".join(arms) + f" ELSE '{EVENT_TYPES[0][0]}' END"


def _reason_case() -> str:
    arms = " ".join(f"WHEN {i} THEN '{code}'" for i, code in enumerate(REASONS))
    return f"CASE (i % {len(REASONS)}) {arms} END"


# The inner SELECT draws the random numbers once per row; the middle one derives the columns;
# the outer one adds the JSON body built from them.
_GENERATE = f"""
INSERT INTO log_events (uuid, published, event_type, severity, outcome_result, outcome_reason,
    actor_id, actor_alternate_id, client_ip, transaction_id, device_serial, device_subject_dn,
    device_issuer_dn, device_thumbprint, target_ids, display_message, body, prev_hash, hash)
SELECT uuid, published, event_type, severity, outcome_result, outcome_reason, actor_id,
    actor_alternate_id, client_ip, transaction_id, device_serial, device_subject_dn,
    device_issuer_dn, device_thumbprint, target_ids, display_message,
    json_build_object(
        'uuid', uuid,
        'published', to_char(published AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
        'eventType', event_type, 'version', '0', 'severity', severity,
        'displayMessage', display_message,
        'actor', json_build_object('id', actor_id, 'type', 'User',
                                   'alternateId', actor_alternate_id),
        'client', json_build_object('ipAddress', client_ip),
        'outcome', json_build_object('result', outcome_result, 'reason', outcome_reason),
        'transaction', json_build_object('id', transaction_id, 'type', 'WEB'),
        'deviceTrust', CASE WHEN device_serial IS NULL THEN NULL ELSE json_build_object(
            'certificate', json_build_object('serialNumber', device_serial,
                'subjectDn', device_subject_dn, 'issuerDn', device_issuer_dn,
                'sha256Thumbprint', device_thumbprint)) END
    )::text,
    md5(uuid) || md5(uuid || 'p'), md5(uuid) || md5(uuid || 'h')
FROM (
    SELECT i, uuid, published, event_type, outcome_result, actor_id,
        CASE WHEN outcome_result = 'FAILURE' THEN 'WARN' ELSE 'INFO' END AS severity,
        CASE WHEN outcome_result = 'FAILURE' THEN {_reason_case()} END AS outcome_reason,
        'user' || (i % 5000) || '@example.com' AS actor_alternate_id,
        '10.' || (i % 250) || '.' || ((i / 250) % 250) || '.' || ((i / 62500) % 250)
            AS client_ip,
        md5(i::text || 'tx') AS transaction_id,
        CASE WHEN device THEN upper(md5((i % 20000)::text)) END AS device_serial,
        CASE WHEN device THEN 'CN=device-' || (i % 20000) || '.devices.example.com,O=Example'
            END AS device_subject_dn,
        CASE WHEN device THEN 'CN=Example Issuing CA,O=Example' END AS device_issuer_dn,
        CASE WHEN device THEN md5((i % 20000)::text || 'a') || md5((i % 20000)::text || 'b')
            END AS device_thumbprint,
        ' app-' || (i % 50) || ' ' AS target_ids,
        event_type || ' ' || outcome_result || ' for user' || (i % 5000) AS display_message
    FROM (
        SELECT i, md5(i::text || :salt)::uuid::text AS uuid,
            CAST(:start AS timestamptz) + (i - 1) * CAST(:step AS interval)
                + random() * CAST(:step AS interval) AS published,
            {_event_type_case()} AS event_type,
            CASE WHEN r2 < 0.08 THEN 'FAILURE' ELSE 'SUCCESS' END AS outcome_result,
            'u' || (i % 5000) AS actor_id,
            r < 0.55 AS device
        FROM (SELECT i, random() AS r, random() AS r2 FROM generate_series(:lo, :hi) AS i) AS g
    ) AS base
) AS cols
"""


@dataclass(frozen=True, slots=True)
class Index:
    name: str
    definition: str
    constraint: bool


def _indexes(conn: Connection) -> list[Index]:
    """log_events' secondary indexes (and its uuid UNIQUE constraint), as created by Alembic."""
    rows = conn.execute(
        text(
            "SELECT i.indexname, i.indexdef, c.conname IS NOT NULL FROM pg_indexes i "
            "LEFT JOIN pg_constraint c ON c.conname = i.indexname "
            "WHERE i.tablename = 'log_events' AND i.indexname <> 'log_events_pkey'"
        )
    ).all()
    return [Index(name, definition, bool(constraint)) for name, definition, constraint in rows]


def _drop(conn: Connection, index: Index) -> None:
    if index.constraint:
        conn.execute(text(f'ALTER TABLE log_events DROP CONSTRAINT "{index.name}"'))
    else:
        conn.execute(text(f'DROP INDEX "{index.name}"'))


def _run(conn: Connection, label: str, sql: str, params: dict[str, object] | None = None) -> None:
    """Execute and commit one statement, printing how long it took."""
    started = time.perf_counter()
    conn.execute(text(sql), params or {})
    conn.commit()
    print(f"  {label}: {time.perf_counter() - started:.1f} s", flush=True)


def generate(engine: Engine, rows: int, end: dt.datetime) -> float:
    """Load ``rows`` events spread over the 30 days before ``end``, then rebuild the indexes
    and VACUUM ANALYZE (loading first and indexing after is how a bulk load is done); seconds
    taken in total."""
    step = SPAN / rows
    started = time.perf_counter()
    with engine.connect() as conn:
        conn.execute(text("SET maintenance_work_mem = '1GB'"))
        conn.execute(text("SET synchronous_commit = off"))
        indexes = _indexes(conn)
        for index in indexes:
            _drop(conn, index)
        conn.commit()
        salt = secrets.token_hex(4)
        for lo in range(1, rows + 1, CHUNK):
            hi = min(lo + CHUNK - 1, rows)
            params = {"lo": lo, "hi": hi, "salt": salt, "start": end - SPAN, "step": step}
            _run(conn, f"rows {lo:,}..{hi:,}", _GENERATE, params)
        for index in indexes:
            _run(conn, f"index {index.name}", index.definition)
            if index.constraint:
                _run(
                    conn,
                    f"constraint {index.name}",
                    f'ALTER TABLE log_events ADD CONSTRAINT "{index.name}" '
                    f'UNIQUE USING INDEX "{index.name}"',
                )
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        _run(conn, "VACUUM (ANALYZE) log_events", "VACUUM (ANALYZE) log_events")
    return time.perf_counter() - started


def percentile(samples: Sequence[float], pct: float) -> float:
    ordered = sorted(samples)
    rank = max(0, min(len(ordered) - 1, round(pct / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def _query(event_type: str, since: dt.datetime, window: dt.timedelta) -> LogQuery:
    return LogQuery(
        filter=f'eventType eq "{event_type}"', since=since, until=since + window, limit=100
    )


def measure(
    db: Database, end: dt.datetime, window: dt.timedelta, count: int, rng: random.Random
) -> tuple[list[float], list[int]]:
    """Milliseconds per search() over ``count`` random windows and event types; and page sizes."""
    timings, sizes = [], []
    types = [name for name, _ in EVENT_TYPES]
    for _ in range(count):
        since = end - SPAN + rng.random() * (SPAN - window)
        query = _query(rng.choice(types), since, window)
        started = time.perf_counter()
        page = search(db, query, end)
        timings.append((time.perf_counter() - started) * 1000)
        sizes.append(len(page.events))
    return timings, sizes


def other_shapes(db: Database, end: dt.datetime, count: int, rng: random.Random) -> None:
    """Other common queries, for information (not part of the target)."""
    types = [name for name, _ in EVENT_TYPES]

    def since() -> dt.datetime:
        return end - SPAN + rng.random() * (SPAN - dt.timedelta(days=1))

    def one_day(filter: str | None = None, q: str | None = None) -> LogQuery:
        start = since()
        return LogQuery(filter=filter, q=q, since=start, until=start + dt.timedelta(days=1))

    shapes: dict[str, Callable[[], LogQuery]] = {
        "polling eventType eq X + since (no until)": lambda: LogQuery(
            filter=f'eventType eq "{rng.choice(types)}"', since=since()
        ),
        "polling, no filter, since": lambda: LogQuery(since=since()),
        "serialNumber eq S, default 7-day window": lambda: LogQuery(
            filter=f'deviceTrust.certificate.serialNumber eq "{_serial(rng.randrange(20000))}"'
        ),
        "outcome.reason eq R + 1-day window": lambda: one_day(
            filter=f'outcome.reason eq "{rng.choice(REASONS)}"'
        ),
        "q=<one user> + 1-day window (no index)": lambda: one_day(q=f"user{rng.randrange(5000)}@"),
    }
    for label, make in shapes.items():
        timings, sizes = [], []
        for _ in range(count):
            query = make()
            started = time.perf_counter()
            sizes.append(len(search(db, query, end).events))
            timings.append((time.perf_counter() - started) * 1000)
        report(label, timings, sizes)


def _serial(n: int) -> str:
    """A device serial as the generator writes it: upper(md5(n))."""
    return hashlib.md5(str(n).encode()).hexdigest().upper()


def explain(db: Database, query: LogQuery, now: dt.datetime) -> str:
    compiled = statement(query, now).compile(dialect=db.engine.dialect)
    with db.engine.connect() as conn:
        rows = conn.exec_driver_sql(
            "EXPLAIN (ANALYZE, BUFFERS) " + str(compiled), compiled.params
        ).all()
    return "\n".join(f"    {row[0]}" for row in rows)


def report(label: str, timings: Sequence[float], sizes: Sequence[int]) -> float:
    p95 = percentile(timings, 95)
    print(
        f"  {label}: n={len(timings)} p50={percentile(timings, 50):.1f} ms "
        f"p95={p95:.1f} ms p99={percentile(timings, 99):.1f} ms max={max(timings):.1f} ms "
        f"(mean page {statistics.mean(sizes):.0f} events)"
    )
    return p95


def run(admin_url: str, rows: int, queries: int, keep: bool, seed: int) -> int:
    admin = create_engine(normalise_url(admin_url), isolation_level="AUTOCOMMIT")
    name = f"certbound_bench_{secrets.token_hex(4)}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = f"{normalise_url(admin_url).rpartition('/')[0]}/{name}"
    db = Database(url)
    try:
        db.migrate()
        end = dt.datetime.now(dt.UTC).replace(microsecond=0)
        print(f"database {name}: generating {rows:,} events over 30 days", flush=True)
        seconds = generate(db.engine, rows, end)
        print(f"generation, indexes and VACUUM ANALYZE took {seconds:.1f} s in total")
        with db.engine.connect() as conn:
            size = conn.execute(text("SELECT pg_size_pretty(pg_total_relation_size('log_events'))"))
            print(f"log_events with indexes: {size.scalar()}")
        rng = random.Random(seed)
        measure(db, end, dt.timedelta(hours=1), 20, rng)  # warm the pool and the caches
        print(f"search() eventType eq X + since/until, limit 100, {queries} random windows each:")
        p95s = []
        all_timings: list[float] = []
        for label, window in (("1-hour", dt.timedelta(hours=1)), ("1-day", dt.timedelta(days=1))):
            timings, sizes = measure(db, end, window, queries, rng)
            p95s.append(report(label, timings, sizes))
            all_timings += timings
        overall = percentile(all_timings, 95)
        print(f"  overall p95={overall:.1f} ms (target <= {TARGET_P95_MS:.0f} ms)")
        print("other query shapes (information only), 50 each:")
        other_shapes(db, end, 50, rng)
        sample = _query("device.trust.verify", end - dt.timedelta(days=12), dt.timedelta(days=1))
        print("EXPLAIN (ANALYZE, BUFFERS) of one query (device.trust.verify, 1-day window):")
        print(explain(db, sample, end))
        follow = LogQuery(filter='eventType eq "device.trust.verify"', since=end - SPAN)
        print("EXPLAIN (ANALYZE, BUFFERS) of a polling query (no until):")
        print(explain(db, follow, end))
        return 0 if overall <= TARGET_P95_MS else 1
    finally:
        db.dispose()
        if keep:
            print(f"kept database {name}: {url}")
        else:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            print(f"dropped database {name}")
        admin.dispose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--queries", type=int, default=200, help="per window size")
    parser.add_argument("--admin-url", default=DEFAULT_ADMIN_URL)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--keep", action="store_true", help="do not drop the database")
    args = parser.parse_args()
    if args.rows < 1 or args.queries < 1:
        parser.error("--rows and --queries must be positive")
    return run(args.admin_url, args.rows, args.queries, args.keep, args.seed)


if __name__ == "__main__":
    raise SystemExit(main())
