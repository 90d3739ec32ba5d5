"""System Log ingest benchmark: sustained EventRecorder throughput on SQLite and PostgreSQL.

For each backend it makes a fresh database (a temporary SQLite file; a PostgreSQL database
created for the run and dropped after it), records ``--events`` realistic
``device.trust.verify`` events (deviceTrust of real dev-PKI certificates, a mix of SUCCESS
and FAILURE) as fast as one thread can call ``record()``, and times record -> flushed: the
clock stops when ``flush()`` says every event is committed. It reports events/s against the
20,000/s target, the CPU the benchmark process used (recorder + caller; 100% = one core),
the PostgreSQL server's CPU (its processes in /proc), everything else the machine ran meanwhile
("other": a busy neighbour makes the run meaningless), record()'s cost on the caller's thread,
and how fast ``verify_chain`` then walks the result. Exit status 1 when a row misses the target.

    python bench/log_ingest_bench.py                       # both backends, 100,000 events
    python bench/log_ingest_bench.py --backends sqlite --events 20000 --batch-size 1000
    python bench/log_ingest_bench.py --batch-size 500 --batch-size 5000   # several batch sizes

PostgreSQL: ``--pg-admin-url`` (default $CERTBOUND_TEST_POSTGRES or the local server) must
be allowed to CREATE DATABASE. Every loop is bounded (``flush`` has a timeout).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import secrets
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine, text

from certbound.clock import SystemClock, format_rfc3339
from certbound.errors import ReasonCode
from certbound.pki import devpki
from certbound.pki.certificate import CertificateInfo
from certbound.storage.database import Database, normalise_url
from certbound.syslog.chain import verify_chain
from certbound.syslog.events import Actor, Client, Event, EventType, Outcome, Result, Target
from certbound.syslog.recorder import EventRecorder

TARGET = 20_000  # events per second, per backend (the goal)
DEFAULT_PG = os.environ.get(
    "CERTBOUND_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"
)
# device name -> the reason code verification gives it (None: verified)
DEVICES = {
    "good": None,
    "cn-only": None,
    "expired": ReasonCode.CERTIFICATE_EXPIRED,
    "foreign": ReasonCode.UNKNOWN_CA,
    "server-auth-only": ReasonCode.EKU_NOT_CLIENT_AUTH,
    "revoked": ReasonCode.REVOKED_CERTIFICATE,
}


@dataclasses.dataclass(frozen=True)
class Measurement:
    backend: str
    events: int
    batch_size: int
    seconds: float
    process_cpu: float
    server_cpu: float | None
    other_cpu: float | None
    record_us: float
    verify_rate: float
    dropped: int
    spooled: int

    @property
    def rate(self) -> float:
        return self.events / self.seconds


def device_trust(info: CertificateInfo, reason: ReasonCode | None) -> dict[str, object]:
    return {
        "verified": reason is None,
        "reason": reason.value if reason else None,
        "certificate": {
            "subjectDn": info.subject_dn,
            "issuerDn": info.issuer_dn,
            "serialNumber": info.serial_number,
            "sha256Thumbprint": info.sha256_fingerprint,
            "notBefore": format_rfc3339(info.not_before),
            "notAfter": format_rfc3339(info.not_after),
            "sans": list(info.sans),
        },
        "revocation": None,
    }


def make_events(count: int) -> list[Event]:
    """Distinct events (each its own uuid, client and transaction), unpublished."""
    pki = devpki.build_dev_pki()
    kinds = [
        (name, CertificateInfo.of(pki.devices[name].cert), reason)
        for name, reason in DEVICES.items()
    ]
    events = []
    for i in range(count):
        name, info, reason = kinds[i % len(kinds)]
        events.append(
            Event(
                event_type=EventType.DEVICE_TRUST_VERIFY,
                display_message="Device certificate verified"
                if reason is None
                else f"Device certificate refused: {reason.value}",
                outcome=Outcome(Result.FAILURE if reason else Result.SUCCESS, reason),
                actor=Actor(f"device-{name}", "Device", info.subject_dn, name),
                client=Client(f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", "curl/8.5.0"),
                targets=(Target("quickstart-app", "AppInstance", "quickstart-app"),),
                transaction_id=secrets.token_hex(8),
                transaction_type="WEB",
                authentication_context={"credentialType": "CERTIFICATE"},
                device_trust=device_trust(info, reason),
                debug_data={"requestUri": "/oauth2/v1/token", "tlsVersion": "TLSv1.3"},
            )
        )
    return events


def server_cpu_seconds() -> float | None:
    """CPU seconds used so far by every ``postgres`` process (Linux /proc), or None."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    found = False
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)
            if "postgres" not in fields[0]:
                continue
            parts = fields[1].split()
            total += (int(parts[11]) + int(parts[12])) / ticks  # utime + stime
            found = True
        except (OSError, IndexError, ValueError):
            continue
    return total if found else None


def machine_busy_seconds() -> float | None:
    """CPU seconds all cores spent busy so far (Linux /proc/stat), or None."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except (OSError, IndexError):
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


@contextmanager
def sqlite_database() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="certbound-bench-") as tmp:
        yield f"sqlite:///{Path(tmp) / 'bench.db'}"


@contextmanager
def postgres_database(admin_url: str) -> Iterator[str]:
    admin = create_engine(normalise_url(admin_url), isolation_level="AUTOCOMMIT")
    name = f"certbound_bench_{os.getpid()}_{secrets.token_hex(3)}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        base = normalise_url(admin_url).rpartition("/")[0]
        yield f"{base}/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def measure(
    backend: str, url: str, events: list[Event], batch_size: int, warmup: int
) -> Measurement:
    db = Database(url)
    db.migrate()
    with tempfile.TemporaryDirectory(prefix="certbound-spool-") as spool:
        recorder = EventRecorder(
            db,
            SystemClock(),
            spool_dir=Path(spool),
            queue_size=len(events) + warmup + 1,
            batch_size=batch_size,
        )
        try:
            for event in make_events(warmup):  # connections, caches, the first pages
                recorder.record(event)
            if not recorder.flush(120):
                raise SystemExit(f"{backend}: warm-up did not flush within 120 s")
            server0 = server_cpu_seconds() if backend == "postgresql" else None
            busy0 = machine_busy_seconds()
            cpu0, t0 = time.process_time(), time.perf_counter()
            for event in events:
                recorder.record(event)
            recorded = time.perf_counter()
            if not recorder.flush(600):
                raise SystemExit(f"{backend}: not flushed within 600 s")
            seconds = time.perf_counter() - t0
            cpu = time.process_time() - cpu0
            server1 = server_cpu_seconds() if server0 is not None else None
            busy1 = machine_busy_seconds()
            stats = recorder.stats
        finally:
            recorder.close()
    v0 = time.perf_counter()
    report = verify_chain(db)
    verify_seconds = time.perf_counter() - v0
    db.dispose()
    if not report.ok:
        raise SystemExit(f"{backend}: chain does not verify: {report}")
    server_cpu = server1 - server0 if server0 is not None and server1 is not None else None
    other = None
    if busy0 is not None and busy1 is not None:
        other = max(0.0, busy1 - busy0 - cpu - (server_cpu or 0.0)) / seconds * 100
    return Measurement(
        backend=backend,
        events=len(events),
        batch_size=batch_size,
        seconds=seconds,
        process_cpu=cpu / seconds * 100,
        server_cpu=server_cpu / seconds * 100 if server_cpu is not None else None,
        other_cpu=other,
        record_us=(recorded - t0) / len(events) * 1e6,
        verify_rate=report.checked / verify_seconds,
        dropped=stats.dropped,
        spooled=stats.spooled,
    )


def table(results: list[Measurement]) -> str:
    lines = [
        "| backend | events | batch | seconds | events/s | target | met | bench CPU% | "
        "db server CPU% | other CPU% | record() µs | verify rows/s | spooled | dropped |",
        "|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for m in results:
        server = f"{m.server_cpu:.0f}" if m.server_cpu is not None else "-"
        other = f"{m.other_cpu:.0f}" if m.other_cpu is not None else "-"
        lines.append(
            f"| {m.backend} | {m.events:,} | {m.batch_size} | {m.seconds:.2f} | {m.rate:,.0f} | "
            f"{TARGET:,} | {'yes' if m.rate >= TARGET else 'NO'} | {m.process_cpu:.0f} | "
            f"{server} | {other} | {m.record_us:.1f} | {m.verify_rate:,.0f} | {m.spooled} | "
            f"{m.dropped} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, action="append", dest="batch_sizes")
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--pg-admin-url", default=DEFAULT_PG)
    parser.add_argument("--warmup", type=int, default=2_000)
    args = parser.parse_args(argv)
    batch_sizes = args.batch_sizes or [500, 5_000]
    events = make_events(args.events)
    results = []
    for backend in args.backends.split(","):
        for batch_size in batch_sizes:
            database = (
                sqlite_database() if backend == "sqlite" else postgres_database(args.pg_admin_url)
            )
            with database as url:
                results.append(measure(backend, url, events, batch_size, args.warmup))
                print(table(results[-1:]).splitlines()[-1], file=sys.stderr, flush=True)
    print(f"cores: {os.cpu_count()}  python: {sys.version.split()[0]}")
    print(table(results))
    return 0 if all(m.rate >= TARGET and m.dropped == 0 for m in results) else 1


if __name__ == "__main__":
    sys.exit(main())
