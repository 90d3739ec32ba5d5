"""Storage: migrations on SQLite and PostgreSQL, SQLite's WAL mode, aware UTC datetimes."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from alembic.config import Config as AlembicConfig
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, select, text
from sqlalchemy.exc import StatementError

from certbound.storage.database import HEAD_REVISION, MIGRATIONS, Database, normalise_url
from certbound.storage.models import CACertificate, CertificateAuthority, TrustState


def head_revision() -> str:
    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS))
    head = ScriptDirectory.from_config(config).get_current_head()
    assert head is not None
    return head


TABLES = {"alembic_version", "trust_state", "certificate_authorities", "ca_certificates"}


def test_migrations_are_idempotent(database: Database) -> None:
    database.migrate()  # the fixture migrated once already
    database.migrate()
    assert set(inspect(database.engine).get_table_names()) >= TABLES
    with database.session() as session:
        versions = session.scalars(text("SELECT version_num FROM alembic_version")).all()
        assert versions == [head_revision()]
        assert session.scalars(select(TrustState.id)).all() == [1]


def test_two_handles_migrate_the_same_database(database_url: str) -> None:
    first, second = Database(database_url), Database(database_url)
    try:
        first.migrate()
        second.migrate()
        with second.session() as session:
            assert session.scalar(select(TrustState.generation)) is not None
    finally:
        first.dispose()
        second.dispose()


def test_sqlite_uses_wal(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'nested' / 'dir' / 'certbound.db'}")
    try:
        db.migrate()
        with db.engine.connect() as conn:
            assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
            assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert (tmp_path / "nested" / "dir" / "certbound.db").is_file()
    finally:
        db.dispose()


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://u@h:5432/d", "postgresql+psycopg://u@h:5432/d"),
        ("postgres://u@h/d", "postgresql+psycopg://u@h/d"),
        ("postgresql+psycopg://u@h/d", "postgresql+psycopg://u@h/d"),
        ("sqlite:////tmp/x.db", "sqlite:////tmp/x.db"),
    ],
)
def test_postgres_urls_use_psycopg3(url: str, expected: str) -> None:
    assert normalise_url(url) == expected


def test_utc_datetimes_round_trip_aware(database: Database) -> None:
    created = dt.datetime(2031, 3, 4, 5, 6, 7, 890123, tzinfo=dt.UTC)
    # Same instant written with another offset: stored and read back as UTC.
    not_after = dt.datetime(2031, 3, 4, 7, 6, 7, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    with database.session() as session:
        authority = CertificateAuthority(id="ca-utc", name="UTC test", created_at=created)
        authority.certificates.append(
            CACertificate(
                position=0,
                role="root",
                subject_dn="CN=UTC",
                issuer_dn="CN=UTC",
                serial_number="01",
                not_before=created,
                not_after=not_after,
                sha256_fingerprint="a" * 64,
                spki_sha256="b" * 64,
                der=b"\x30\x00",
            )
        )
        session.add(authority)

    with database.session() as session:
        stored = session.get(CertificateAuthority, "ca-utc")
        assert stored is not None
        assert stored.created_at == created
        assert stored.created_at.tzinfo is dt.UTC
        [cert] = stored.certificates
        assert cert.not_after == dt.datetime(2031, 3, 4, 5, 6, 7, tzinfo=dt.UTC)
        assert cert.not_after.utcoffset() == dt.timedelta(0)
        assert cert.not_before.tzinfo is dt.UTC


def test_naive_datetime_is_refused(database: Database) -> None:
    with pytest.raises(StatementError, match="naive datetime"), database.session() as session:
        naive = dt.datetime(2030, 1, 1)  # naive on purpose
        session.add(CertificateAuthority(id="ca-naive", name="n", created_at=naive))
        session.flush()
    with database.session() as session:
        assert session.get(CertificateAuthority, "ca-naive") is None


def test_deleting_an_authority_deletes_its_certificates(database: Database) -> None:
    now = dt.datetime.now(dt.UTC)
    with database.session() as session:
        authority = CertificateAuthority(id="ca-del", name="d", created_at=now)
        authority.certificates.append(
            CACertificate(
                position=0,
                role="root",
                subject_dn="CN=D",
                issuer_dn="CN=D",
                serial_number="02",
                not_before=now,
                not_after=now,
                sha256_fingerprint="c" * 64,
                spki_sha256="d" * 64,
                der=b"\x30\x00",
            )
        )
        session.add(authority)
    with database.session() as session:
        session.execute(text("DELETE FROM certificate_authorities WHERE id = 'ca-del'"))
    with database.session() as session:
        assert session.scalars(select(CACertificate)).all() == []


def test_head_revision_constant_is_alembics_head() -> None:
    assert head_revision() == HEAD_REVISION
