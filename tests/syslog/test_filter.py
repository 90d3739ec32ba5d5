"""The SCIM filter grammar: every operator against real stored events on SQLite and PostgreSQL,
precedence, the allow-list, escaping, and hostile or broken filters (always an error, never
"all rows")."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy import create_engine, insert, inspect, select

from certbound.clock import format_rfc3339
from certbound.errors import ReasonCode
from certbound.pki.certificate import CertificateInfo
from certbound.pki.devpki import DevPKI, Issued, build_dev_pki
from certbound.storage.database import Database
from certbound.storage.models import LogEvent
from certbound.syslog.events import (
    SYSTEM_ACTOR,
    Actor,
    Client,
    Event,
    EventType,
    Outcome,
    Result,
    Severity,
    Target,
)
from certbound.syslog.filter import (
    ATTRIBUTES,
    MAX_COMPARISONS,
    MAX_DEPTH,
    MAX_FILTER_LENGTH,
    FilterError,
    like_escape,
    parse_filter,
)
from certbound.syslog.rows import event_row

POSTGRESQL = create_engine("postgresql+psycopg://").dialect
SQLITE = create_engine("sqlite://").dialect
ALICE = Actor("u-alice", "User", "alice@example.com", "Alice")
SNEAKY = Actor("u-sneaky", "User", "x' OR '1'='1", "Sneaky")


@pytest.fixture(scope="module")
def pki() -> DevPKI:
    return build_dev_pki()


def device_trust(device: Issued, reason: ReasonCode | None) -> dict[str, Any]:
    info = CertificateInfo.of(device.cert)
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


def verify_event(
    device: Issued, message: str, reason: ReasonCode | None, **kw: Any
) -> dict[str, Any]:
    return {
        "event_type": EventType.DEVICE_TRUST_VERIFY,
        "display_message": message,
        "outcome": Outcome(Result.FAILURE if reason else Result.SUCCESS, reason),
        "device_trust": device_trust(device, reason),
        "authentication_context": {"credentialType": "CERTIFICATE"},
        **kw,
    }


def insert_events(db: Database, events: list[Event]) -> None:
    rows = [{**event_row(e), "prev_hash": "0" * 64, "hash": "0" * 64} for e in events]
    with db.session() as session:
        session.execute(insert(LogEvent), rows)


@pytest.fixture
def base() -> dt.datetime:
    return dt.datetime(2025, 3, 1, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
def labels(database: Database, pki: DevPKI, base: dt.datetime) -> dict[str, str]:
    """Seven stored events; the label of each is the first word of its display message."""
    specs: dict[str, dict[str, Any]] = {
        "good": verify_event(
            pki.devices["good"],
            "good: device certificate verified",
            None,
            actor=ALICE,
            client=Client("10.0.0.1", "curl/8"),
            targets=(Target("dev-1", "Device"),),
        ),
        "expired": verify_event(
            pki.devices["expired"],
            "expired: device certificate rejected",
            ReasonCode.CERTIFICATE_EXPIRED,
            severity=Severity.WARN,
            targets=(Target("dev-2", "Device"), Target("app 7", "App")),
        ),
        "foreign": verify_event(
            pki.devices["foreign"],
            "foreign: device certificate rejected, unknown CA",
            ReasonCode.UNKNOWN_CA,
            severity=Severity.WARN,
        ),
        "ca-add": {
            "event_type": EventType.SECURITY_TRUST_CA_ADD,
            "display_message": "ca-add: 100% sure_thing/x added",
            "outcome": Outcome(Result.SUCCESS),
            "targets": (Target("ca-1", "CertificateAuthority"),),
        },
        "ca-reject": {
            "event_type": EventType.SECURITY_TRUST_CA_ADD,
            "display_message": "ca-reject: CA upload rejected",
            "outcome": Outcome(Result.FAILURE, ReasonCode.PEM_MALFORMED),
            "severity": Severity.WARN,
        },
        "purge": {
            "event_type": EventType.SYSTEM_LOG_PURGE,
            "display_message": "purge: 100 events removed",
            "outcome": Outcome(Result.SUCCESS),
            "actor": SYSTEM_ACTOR,
        },
        "quote": {
            "event_type": EventType.SYSTEM_API_TOKEN_CREATE,
            "display_message": 'quote: He said "hi" \\ Ünïcode',
            "outcome": Outcome(Result.SUCCESS),
            "actor": SNEAKY,
        },
    }
    events = [
        Event(**spec, published=base + dt.timedelta(minutes=i))
        for i, spec in enumerate(specs.values())
    ]
    insert_events(database, events)
    return {label: e.uuid for label, e in zip(specs, events, strict=True)}


def matching(db: Database, expr: str) -> set[str]:
    with db.session() as session:
        messages = session.scalars(select(LogEvent.display_message).where(parse_filter(expr)))
        return {m.split(":")[0] for m in messages}


ALL = {"good", "expired", "foreign", "ca-add", "ca-reject", "purge", "quote"}
VERIFY = {"good", "expired", "foreign"}


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ('eventType eq "device.trust.verify"', VERIFY),
        ('eventType eq "device.trust"', set()),
        (
            'eventType EQ "device.trust.verify" AnD outcome.result Eq "FAILURE"',
            {"expired", "foreign"},
        ),
        ('outcome.reason eq "UNKNOWN_CA"', {"foreign"}),
        ('outcome.result eq "failure"', set()),  # eq is case-sensitive
        ('severity eq "WARN" and not (eventType sw "device.")', {"ca-reject"}),
        ('actor.id eq "u-alice"', {"good"}),
        ('actor.alternateId eq "alice@example.com"', {"good"}),
        ('client.ipAddress sw "10.0."', {"good"}),
        ('eventType sw "SECURITY.trust"', {"ca-add", "ca-reject"}),
        ('eventType ew ".VERIFY"', VERIFY),
        ('displayMessage co "REJECTED"', {"expired", "foreign", "ca-reject"}),
        ('displayMessage ew "unknown ca"', {"foreign"}),
        ('severity gt "INFO"', {"expired", "foreign", "ca-reject"}),
        ('severity ge "WARN"', {"expired", "foreign", "ca-reject"}),
        ('severity lt "WARN"', ALL - {"expired", "foreign", "ca-reject"}),
        # code-point order on both databases: every upper-case value sorts before "a".
        ('severity lt "a"', ALL),
        ('severity le "INFO" and severity gt "ERROR"', ALL - {"expired", "foreign", "ca-reject"}),
    ],
)
def test_operators_select_exactly_the_matching_events(
    database: Database, labels: dict[str, str], expr: str, expected: set[str]
) -> None:
    assert matching(database, expr) == expected


def test_uuid_and_transaction_attributes(database: Database, labels: dict[str, str]) -> None:
    uuid = labels["foreign"]
    assert matching(database, f'uuid eq "{uuid}"') == {"foreign"}
    # Without a transaction id an event is its own transaction (events.py).
    assert matching(database, f'transaction.id eq "{uuid}"') == {"foreign"}
    assert matching(database, f'uuid eq "{uuid.upper()}"') == set()


def test_and_binds_tighter_than_or(database: Database, labels: dict[str, str]) -> None:
    bare = (
        'eventType eq "system.log.purge" or eventType sw "device" and outcome.result eq "FAILURE"'
    )
    grouped = (
        '(eventType eq "system.log.purge" or eventType sw "device") and outcome.result eq "FAILURE"'
    )
    assert matching(database, bare) == {"purge", "expired", "foreign"}
    assert matching(database, grouped) == {"expired", "foreign"}


def test_not_selects_events_without_the_attribute_too(
    database: Database, labels: dict[str, str]
) -> None:
    # outcome.reason is NULL on most events: NOT must not turn NULL into "no match".
    assert matching(database, 'not (outcome.reason eq "UNKNOWN_CA")') == ALL - {"foreign"}
    assert matching(database, 'not (outcome.reason co "A")') == ALL - {
        "foreign",
        "expired",
        "ca-reject",
    }
    assert matching(database, 'not (not (outcome.reason eq "UNKNOWN_CA"))') == {"foreign"}
    assert matching(database, 'not (target.id eq "dev-1")') == ALL - {"good"}


def test_present(database: Database, labels: dict[str, str]) -> None:
    assert matching(database, "outcome.reason pr") == {"expired", "foreign", "ca-reject"}
    assert matching(database, "outcome.reason PR") == {"expired", "foreign", "ca-reject"}
    assert matching(database, "not (deviceTrust.certificate.serialNumber pr)") == ALL - VERIFY
    assert matching(database, "target.id pr") == {"good", "expired", "ca-add"}
    assert matching(database, "published pr") == ALL


def test_like_wildcards_match_themselves(database: Database, labels: dict[str, str]) -> None:
    assert matching(database, 'displayMessage co "100%"') == {"ca-add"}
    assert matching(database, 'displayMessage co "100"') == {"ca-add", "purge"}
    assert matching(database, 'displayMessage co "%"') == {"ca-add"}
    assert matching(database, 'displayMessage co "_"') == {"ca-add"}
    assert matching(database, 'displayMessage co "e_t"') == {"ca-add"}  # not "ent" in events
    assert matching(database, 'displayMessage co "/"') == {"ca-add"}
    assert matching(database, 'displayMessage co "//"') == set()
    assert matching(database, 'displayMessage sw "%"') == set()
    assert matching(database, 'displayMessage ew "_"') == set()
    assert like_escape("a%b_c/d") == "a/%b/_c//d"


def test_json_string_escapes(database: Database, labels: dict[str, str]) -> None:
    assert matching(database, r'displayMessage eq "quote: He said \"hi\" \\ Ünïcode"') == {"quote"}
    assert matching(database, r'displayMessage co "\u0048e said \"hi\""') == {"quote"}
    assert matching(database, r'displayMessage co "\u00dcn\u00efcode"') == {"quote"}


def test_sql_injection_is_just_a_value(database: Database, labels: dict[str, str]) -> None:
    hostile = [
        "x' OR '1'='1",
        "'; DROP TABLE log_events; --",
        '\\" or 1=1 --',
        "device.trust.verify' --",
    ]
    for value in hostile:
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        assert matching(database, f'eventType eq "{escaped}"') == set()
        assert matching(database, f'displayMessage co "{escaped}"') == set()
    # The actor's alternate id really is that string: equality finds it, nothing more.
    assert matching(database, "actor.alternateId eq \"x' OR '1'='1\"") == {"quote"}
    assert inspect(database.engine).has_table("log_events")
    assert matching(database, "published pr") == ALL


def test_values_are_bound_parameters() -> None:
    marker = "zz'; DROP TABLE log_events; --"
    condition = parse_filter(f'eventType eq "{marker}" or displayMessage co "{marker}"')
    for dialect in (POSTGRESQL, SQLITE):
        compiled = condition.compile(dialect=dialect)
        assert "DROP" not in str(compiled)
        assert marker in compiled.params.values()


def test_string_ordering_is_code_point_order_on_postgresql() -> None:
    compiled = str(parse_filter('severity gt "B"').compile(dialect=POSTGRESQL))
    assert 'COLLATE "C"' in compiled
    # eq keeps the plain column, so the (event_type, published, seq) index stays usable.
    compiled = str(parse_filter('eventType eq "B"').compile(dialect=POSTGRESQL))
    assert "COLLATE" not in compiled


def test_certificate_attributes(database: Database, labels: dict[str, str], pki: DevPKI) -> None:
    good = CertificateInfo.of(pki.devices["good"].cert)
    serial = good.serial_number
    assert serial == serial.upper()
    colons = ":".join(serial[i : i + 2] for i in range(0, len(serial), 2))
    for value in (serial, serial.lower(), colons.lower()):
        assert matching(database, f'deviceTrust.certificate.serialNumber eq "{value}"') == {"good"}
    assert matching(
        database, f'deviceTrust.certificate.serialNumber sw "{serial[:6].lower()}"'
    ) == {"good"}
    thumb = good.sha256_fingerprint
    assert matching(database, f'deviceTrust.certificate.sha256Thumbprint eq "{thumb.upper()}"') == {
        "good"
    }
    assert matching(database, 'deviceTrust.certificate.subjectDn co "EXPIRED.devices"') == {
        "expired"
    }
    issuer = pki.intermediate.cert.subject.rfc4514_string()
    assert matching(database, f'deviceTrust.certificate.issuerDn eq "{issuer}"') == {
        "good",
        "expired",
    }


def test_target_id_matches_one_whole_id(database: Database, labels: dict[str, str]) -> None:
    assert matching(database, 'target.id eq "dev-2"') == {"expired"}
    assert matching(database, 'target.id eq "app 7"') == {"expired"}
    assert matching(database, 'target.id eq "dev"') == set()
    assert matching(database, 'target.id eq "DEV-2"') == set()  # case-sensitive on both
    assert matching(database, 'target.id eq "dev%"') == set()
    assert matching(database, 'target.id eq "dev-2 app"') == set()
    assert matching(database, 'target.id eq "ca-1" or target.id eq "dev-1"') == {"ca-add", "good"}


def test_published_compares_instants(
    database: Database, labels: dict[str, str], base: dt.datetime
) -> None:
    third = base + dt.timedelta(minutes=2)
    assert matching(database, f'published eq "{format_rfc3339(third)}"') == {"foreign"}
    # The same instant written with an offset.
    assert matching(database, 'published eq "2025-03-01T13:02:00+01:00"') == {"foreign"}
    assert matching(database, 'published lt "2025-03-01T12:02:00Z"') == {"good", "expired"}
    assert matching(database, 'published ge "2025-03-01T12:05:00.000000Z"') == {
        "purge",
        "quote",
    }
    window = 'published gt "2025-03-01T12:00:00Z" and published le "2025-03-01T12:01:00Z"'
    assert matching(database, window) == {"expired"}


@pytest.mark.parametrize(
    ("expr", "message", "column"),
    [
        ('foo eq "a"', "unknown attribute 'foo' at character 1", 1),
        ('eventType eq "a" and actor.name eq "b"', "unknown attribute 'actor.name'", 22),
        ('EventType eq "a"', "did you mean eventType?", 1),
        ('deviceTrust.certificate eq "a"', "unknown attribute", 1),
        ('(eventType eq "a"', "at the end: expected 'and', 'or' or ')'", 18),
        ('eventType eq "a")', "unmatched ')'", 17),
        ('((eventType eq "a") or (severity eq "WARN")', "or ')'", 44),
        ('eventType eq "a" and', "expected an attribute name", 21),
        ('eventType xx "a"', "expected an operator (eq, co, sw, ew, gt, ge, lt, le) or pr", 11),
        ('eventType ne "a"', "expected an operator", 11),
        ("eventType eq", "expected a value", 13),
        ("eventType eq device.trust.verify", "expected a value", 14),
        ("eventType eq 'a'", "character 14", 14),
        ('eventType eq "a', "malformed string value at character 14", 14),
        (r'eventType eq "a\x"', "JSON escapes only", 14),
        ('"a" eq eventType', "expected an attribute name", 1),
        ('not eventType eq "a"', "expected '('", 5),
        ("()", "near ')': expected an attribute name, '(' or 'not'", 2),
        ('eventType eq "a" eventType eq "b"', "expected 'and', 'or' or the end of the", 18),
        ('(eventType eq "a" eventType eq "b")', "expected 'and', 'or' or ')'", 19),
        ('eventType eq "a" && severity eq "b"', "near '&& severity", 18),
        ("eventType eq 5", "takes a double-quoted string, not 5", 14),
        ("eventType eq true", "not true", 14),
        ("outcome.reason eq null", "'not (outcome.reason pr)'", 19),
        ('published gt "yesterday"', "RFC 3339", 14),
        ('published gt "2025-03-01"', "RFC 3339", 14),
        ('published gt "2025-03-01T12:00:00"', "RFC 3339", 14),  # no offset
        ('published gt "2025-13-01T12:00:00Z"', "not a valid date-time", 14),
        ('published gt "0001-01-01T00:00:00+01:00"', "not a valid date-time", 14),
        ('published gt "2025-03-01T12:00:00+24:00"', "not a valid date-time", 14),
        ("published gt 1700000000", "RFC 3339", 14),
        ('published co "2025"', "operator 'co' does not apply to published", 11),
        ('target.id co "dev"', "it supports: eq, pr", 11),
        ('target.id gt "dev"', "operator 'gt' does not apply", 11),
        (r'eventType eq "\u0000"', "NUL", 14),
        (r'eventType eq "\ud800"', "surrogate", 14),
    ],
)
def test_bad_filters_are_errors_with_position(expr: str, message: str, column: int) -> None:
    with pytest.raises(FilterError) as caught:
        parse_filter(expr)
    assert message in str(caught.value)
    assert caught.value.column == column
    assert isinstance(caught.value, ValueError)


def test_unknown_attribute_lists_the_allowed_ones() -> None:
    with pytest.raises(FilterError) as caught:
        parse_filter('debugContext.debugData.requestUri co "x"')
    for name in ATTRIBUTES:
        assert name in str(caught.value)


@pytest.mark.parametrize("expr", ["", "   ", "\n\t"])
def test_empty_filter_is_an_error_not_all_rows(expr: str) -> None:
    with pytest.raises(FilterError, match="filter is empty"):
        parse_filter(expr)


def test_filter_size_limits() -> None:
    padded = 'eventType eq "' + "a" * MAX_FILTER_LENGTH + '"'
    with pytest.raises(FilterError, match=f"at most {MAX_FILTER_LENGTH}"):
        parse_filter(padded)
    deep = "(" * (MAX_DEPTH + 1) + 'eventType eq "a"' + ")" * (MAX_DEPTH + 1)
    with pytest.raises(FilterError, match=f"deeper than {MAX_DEPTH}"):
        parse_filter(deep)
    nots = "not (" * (MAX_DEPTH + 1) + 'eventType eq "a"' + ")" * (MAX_DEPTH + 1)
    with pytest.raises(FilterError, match=f"deeper than {MAX_DEPTH}"):
        parse_filter(nots)
    shallow = "(" * MAX_DEPTH + 'eventType eq "a"' + ")" * MAX_DEPTH
    parse_filter(shallow)
    many = " or ".join(['severity eq "x"'] * (MAX_COMPARISONS + 1))
    assert len(many) <= MAX_FILTER_LENGTH
    with pytest.raises(FilterError, match=f"more than {MAX_COMPARISONS} comparisons"):
        parse_filter(many)
    parse_filter(" and ".join(['severity eq "x"'] * MAX_COMPARISONS))
    # A wall of parentheses up to the length cap is refused quickly, without recursion trouble.
    wall = "(" * (MAX_FILTER_LENGTH // 2) + ")" * (MAX_FILTER_LENGTH // 2)
    with pytest.raises(FilterError):
        parse_filter(wall)


def test_non_string_filter_is_an_error() -> None:
    with pytest.raises(FilterError):
        parse_filter(None)  # type: ignore[arg-type]


def test_allow_list_is_exactly_the_documented_attributes() -> None:
    assert set(ATTRIBUTES) == {
        "uuid",
        "published",
        "eventType",
        "severity",
        "displayMessage",
        "outcome.result",
        "outcome.reason",
        "actor.id",
        "actor.alternateId",
        "client.ipAddress",
        "transaction.id",
        "target.id",
        "deviceTrust.certificate.serialNumber",
        "deviceTrust.certificate.subjectDn",
        "deviceTrust.certificate.issuerDn",
        "deviceTrust.certificate.sha256Thumbprint",
    }
    columns = set(LogEvent.__table__.columns.keys())
    for attr in ATTRIBUTES.values():
        assert attr.column.key in columns
        assert attr.description


def test_every_attribute_compiles_with_each_of_its_operators() -> None:
    for attr in ATTRIBUTES.values():
        value = '"2025-01-01T00:00:00Z"' if attr.name == "published" else '"v"'
        for op in attr.operators:
            parse_filter(f"{attr.name} {op} {value}")
        parse_filter(f"{attr.name} pr")
