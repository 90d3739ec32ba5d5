"""Shared fixtures: a migrated database on SQLite and on PostgreSQL, and a fixed clock.

PostgreSQL comes from CERTBOUND_TEST_POSTGRES (default: the local server, database
``test``). Each test run creates its own database there and drops it at the end, so runs
never collide. Without a reachable server the PostgreSQL variants are skipped with a
visible reason, unless CERTBOUND_REQUIRE_POSTGRES=1 (CI), where they fail.
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from certbound.clock import FixedClock
from certbound.storage.database import Database, normalise_url
from certbound.storage.models import Base

PG_ADMIN_URL = os.environ.get(
    "CERTBOUND_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"
)
SHARED = Path(__file__).resolve().parents[1].parent / "shared"


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    admin_url = normalise_url(PG_ADMIN_URL)
    name = f"certbound_t_{os.getpid()}_{secrets.token_hex(4)}"
    try:
        admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # pragma: no cover - depends on the machine
        if os.environ.get("CERTBOUND_REQUIRE_POSTGRES") == "1":
            raise
        pytest.skip(f"PostgreSQL not reachable at {PG_ADMIN_URL}: {exc}")
    base, _, _ = admin_url.rpartition("/")
    yield f"{base}/{name}"
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


GENESIS = "0" * 64
# Tables holding one row that migrations create; reset, never deleted.
_SINGLETONS = {
    "trust_state": "UPDATE trust_state SET generation = 0",
    "device_state": "UPDATE device_state SET generation = 0",
    "log_chain": f"UPDATE log_chain SET last_seq = 0, last_hash = '{GENESIS}', "
    f"anchor_seq = 0, anchor_hash = '{GENESIS}'",
}


def _wipe(db: Database) -> None:
    with db.session() as session:
        for table in reversed(Base.metadata.sorted_tables):
            if table.name in _SINGLETONS:
                session.execute(text(_SINGLETONS[table.name]))
            else:
                session.execute(table.delete())


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'certbound.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def database(database_url: str) -> Iterator[Database]:
    db = Database(database_url)
    db.migrate()
    _wipe(db)
    yield db
    db.dispose()


@pytest.fixture
def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


@pytest.fixture
def clock(now: dt.datetime) -> FixedClock:
    return FixedClock(now)


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"../shared is absent ({SHARED}): shared vectors unavailable")
    return SHARED
