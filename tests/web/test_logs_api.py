"""``GET /api/v1/logs`` over a real uvicorn server (httpx, and curl once), on both databases:
filter, q, since/until, limit, paging with Link headers, polling and bounded modes, and
400s (never 500s) for bad input."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from cryptography import x509
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from certbound.clock import FixedClock, format_rfc3339
from certbound.errors import ReasonCode
from certbound.pki import devpki
from certbound.pki.certificate import serial_hex, sha256_fingerprint
from certbound.syslog.events import Actor, Client, Event, EventType, Outcome, Result, Severity
from certbound.syslog.filter import ATTRIBUTES

MINUTE = dt.timedelta(minutes=1)
PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def certs() -> dict[str, x509.Certificate]:
    pki = devpki.build_dev_pki()
    return {name: issued.cert for name, issued in pki.devices.items()}


def verify_event(
    cert: x509.Certificate, reason: ReasonCode | None, published: dt.datetime
) -> Event:
    """A device.trust.verify event for a real certificate."""
    return Event(
        EventType.DEVICE_TRUST_VERIFY,
        f"device certificate {cert.subject.rfc4514_string()}: {reason or 'verified'}",
        Outcome(Result.FAILURE if reason else Result.SUCCESS, reason),
        actor=Actor("device-1", "Device", "laptop-42"),
        severity=Severity.WARN if reason else Severity.INFO,
        client=Client("192.0.2.7", "curl/8.5"),
        transaction_type="WEB",
        authentication_context={"credentialType": "CERTIFICATE"},
        device_trust={
            "verified": reason is None,
            "reason": reason.value if reason else None,
            "certificate": {
                "subjectDn": cert.subject.rfc4514_string(),
                "issuerDn": cert.issuer.rfc4514_string(),
                "serialNumber": serial_hex(cert),
                "sha256Thumbprint": sha256_fingerprint(cert),
            },
            "revocation": None,
        },
        published=published,
    )


@pytest.fixture
def events(seed: Any, certs: dict[str, x509.Certificate], now: dt.datetime) -> list[Event]:
    """Six events, one a minute, the newest 10 minutes ago."""
    start = now - 15 * MINUTE
    plan = [
        ("good", None),
        ("expired", ReasonCode.CERTIFICATE_EXPIRED),
        ("foreign", ReasonCode.UNKNOWN_CA),
        ("server-auth-only", ReasonCode.EKU_NOT_CLIENT_AUTH),
        ("good", None),
        ("foreign", ReasonCode.UNKNOWN_CA),
    ]
    seeded: list[Event] = seed(
        [
            verify_event(certs[name], reason, start + i * MINUTE)
            for i, (name, reason) in enumerate(plan)
        ]
    )
    return seeded


def dicts(events: list[Event]) -> list[dict[str, Any]]:
    return [e.to_dict() for e in events]


def links(response: httpx.Response) -> dict[str, str]:
    return {rel: link["url"] for rel, link in response.links.items()}


def problem(response: httpx.Response, reason: ReasonCode) -> str:
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert body["reason"] == reason.value and body["status"] == 400
    detail: str = body["detail"]
    return detail


def test_returns_the_events_oldest_first_in_their_json_shape(
    http: httpx.Client, events: list[Event]
) -> None:
    response = http.get("/api/v1/logs")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.headers["cache-control"] == "no-store"
    assert response.json() == dicts(events)


def test_filter_selects_events(
    http: httpx.Client, events: list[Event], certs: dict[str, x509.Certificate]
) -> None:
    def get(expr: str) -> list[dict[str, Any]]:
        response = http.get("/api/v1/logs", params={"filter": expr})
        assert response.status_code == 200, response.text
        return response.json()  # type: ignore[no-any-return]

    assert get('outcome.reason eq "UNKNOWN_CA"') == dicts([events[2], events[5]])
    assert get('outcome.result eq "SUCCESS"') == dicts([events[0], events[4]])
    serial = serial_hex(certs["expired"]).lower()
    assert get(f'deviceTrust.certificate.serialNumber eq "{serial}"') == dicts([events[1]])
    assert get(
        'eventType eq "device.trust.verify" and not (outcome.result eq "SUCCESS") '
        'and outcome.reason sw "CERT"'
    ) == dicts([events[1]])
    assert get('eventType eq "system.log.purge"') == []


def test_q_matches_words(http: httpx.Client, events: list[Event]) -> None:
    response = http.get("/api/v1/logs", params={"q": "server-auth-only EKU_NOT_CLIENT_AUTH"})
    assert response.json() == dicts([events[3]])


def test_bounded_paging_follows_next_links_to_the_end(
    http: httpx.Client, events: list[Event], now: dt.datetime
) -> None:
    params = {
        "since": format_rfc3339(now - 20 * MINUTE),
        "until": format_rfc3339(now),
        "limit": "4",
        "filter": 'eventType eq "device.trust.verify"',
    }
    first = http.get("/api/v1/logs", params=params)
    assert first.json() == dicts(events[:4])
    rels = links(first)
    assert rels["self"] == str(first.request.url)
    nxt = urlsplit(rels["next"])
    assert (nxt.scheme, nxt.netloc, nxt.path) == (
        "http",
        http.base_url.netloc.decode(),
        "/api/v1/logs",
    )
    query = parse_qs(nxt.query)
    assert {k: v[0] for k, v in query.items() if k != "after"} == params
    assert len(query["after"]) == 1
    second = http.get(rels["next"])
    assert second.json() == dicts(events[4:])
    assert set(links(second)) == {"self"}  # bounded: no next page once all is read


def test_descending_bounded_query(
    http: httpx.Client, events: list[Event], now: dt.datetime
) -> None:
    params = {"until": format_rfc3339(now), "sortOrder": "DESCENDING", "limit": "5"}
    first = http.get("/api/v1/logs", params=params)
    assert first.json() == dicts(events[::-1][:5])
    second = http.get(links(first)["next"])
    assert second.json() == dicts([events[0]])
    assert "next" not in links(second)


def test_polling_always_has_a_next_link_that_yields_new_events(
    http: httpx.Client,
    events: list[Event],
    seed: Any,
    certs: dict[str, x509.Certificate],
    clock: FixedClock,
) -> None:
    first = http.get("/api/v1/logs", params={"limit": "1000"})
    assert first.json() == dicts(events)
    empty = http.get(links(first)["next"])
    assert empty.status_code == 200 and empty.json() == []
    assert "next" in links(empty)  # polling: a next link even on an empty page
    later = seed([verify_event(certs["good"], None, clock.now() - MINUTE)])
    fresh = http.get(links(empty)["next"])
    assert fresh.json() == dicts(later)
    assert http.get(links(fresh)["next"]).json() == []


def test_limit_and_since(http: httpx.Client, events: list[Event]) -> None:
    assert http.get("/api/v1/logs", params={"limit": "2"}).json() == dicts(events[:2])
    since = format_rfc3339(events[3].published)  # type: ignore[arg-type]
    assert http.get("/api/v1/logs", params={"since": since}).json() == dicts(events[3:])


@pytest.mark.parametrize(
    ("params", "needle"),
    [
        ({"filter": 'nosuch eq "x"'}, "unknown attribute 'nosuch'"),
        ({"filter": 'eventtype eq "x"'}, "did you mean eventType"),
        ({"filter": 'eventType eq "x" and'}, "syntax error"),
        ({"filter": "eventType eq x"}, "character"),
        ({"filter": ""}, ""),
        ({"filter": "((((((((((((((((((((eventType pr))))))))))))))))))))"}, ""),
    ],
)
def test_bad_filters_are_400_invalid_filter(
    http: httpx.Client, events: list[Event], params: dict[str, str], needle: str
) -> None:
    detail = problem(http.get("/api/v1/logs", params=params), ReasonCode.INVALID_FILTER)
    assert needle in detail


@pytest.mark.parametrize(
    ("params", "needle"),
    [
        ({"limit": "5000"}, "limit"),
        ({"limit": "0"}, "limit"),
        ({"limit": "-1"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"limit": "99999999999999999999"}, "limit"),
        ({"since": "yesterday"}, "since"),
        ({"until": "2025-13-01T00:00:00Z"}, "until"),
        ({"since": "2025-01-02T00:00:00Z", "until": "2025-01-01T00:00:00Z"}, "later than since"),
        ({"after": "not-a-cursor"}, "after"),
        ({"sortOrder": "SIDEWAYS"}, "sortOrder"),
        ({"sortOrder": "DESCENDING"}, "until"),
        ({"fliter": 'eventType eq "x"'}, "unknown query parameter 'fliter'"),
        ({"q": "x" * 41}, "q"),
    ],
)
def test_bad_parameters_are_400_invalid_query(
    http: httpx.Client, events: list[Event], params: dict[str, str], needle: str
) -> None:
    detail = problem(http.get("/api/v1/logs", params=params), ReasonCode.INVALID_QUERY)
    assert needle in detail


def test_repeated_parameter_is_400(http: httpx.Client, events: list[Event]) -> None:
    response = http.get("/api/v1/logs?limit=1&limit=2")
    assert "more than once" in problem(response, ReasonCode.INVALID_QUERY)


def test_a_cursor_from_another_sort_order_is_refused(
    http: httpx.Client, events: list[Event], now: dt.datetime
) -> None:
    until = format_rfc3339(now)
    first = http.get("/api/v1/logs", params={"until": until, "limit": "1"})
    after = parse_qs(urlsplit(links(first)["next"]).query)["after"][0]
    response = http.get(
        "/api/v1/logs", params={"until": until, "after": after, "sortOrder": "DESCENDING"}
    )
    problem(response, ReasonCode.INVALID_QUERY)


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl(base_url: str, token: str, events: list[Event]) -> None:
    url = f"{base_url}/api/v1/logs?limit=2&filter=outcome.reason%20eq%20%22UNKNOWN_CA%22"
    result = subprocess.run(
        ["curl", "-s", "-i", "-H", f"Authorization: Bearer {token}", url],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    head, _, body = result.stdout.replace("\r\n", "\n").partition("\n\n")
    assert head.startswith("HTTP/1.1 200")
    assert 'rel="self"' in head and 'rel="next"' in head
    assert json.loads(body) == dicts([events[2], events[5]])
    denied = subprocess.run(
        ["curl", "-s", "-w", "\n%{http_code}", url],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    body, _, status = denied.stdout.rpartition("\n")
    assert status == "401"
    assert json.loads(body)["reason"] == "AUTHENTICATION_REQUIRED"


# ---- fuzzing: whatever arrives, the answer is never a server error -------------------------

_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=60)
_WORDS = st.sampled_from(
    [
        *ATTRIBUTES,
        "eq",
        "co",
        "sw",
        "ew",
        "pr",
        "gt",
        "ge",
        "lt",
        "le",
        "and",
        "or",
        "not",
        "(",
        ")",
        '"',
        '"x"',
        '"%_/"',
        "\\",
        "1",
        "true",
        "null",
        '"2025-01-01T00:00:00Z"',
        "'",
        ";",
        "--",
        "\x00",
        "é",
        " ",
    ]
)
_FILTERS = st.one_of(_TEXT, st.lists(_WORDS, max_size=12).map(" ".join))
_VALUES = st.one_of(
    _TEXT,
    st.integers(-(10**12), 10**12).map(str),
    st.sampled_from(
        [
            "ASCENDING",
            "DESCENDING",
            "2025-01-01T00:00:00Z",
            "2025-01-01",
            "",
            "0",
            "1000",
            "1001",
            "Zm9v",
            "AAAA",
            "\x00",
        ]
    ),
)
_PARAMS = st.dictionaries(
    st.sampled_from(["filter", "q", "since", "until", "limit", "after", "sortOrder", "x"]),
    _VALUES,
    max_size=5,
)


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(expr=_FILTERS, params=_PARAMS)
def test_fuzzed_requests_never_get_a_server_error(
    http: httpx.Client, events: list[Event], expr: str, params: dict[str, str]
) -> None:
    for query in ({"filter": expr}, params, {**params, "filter": expr}):
        response = http.get("/api/v1/logs", params=query)
        assert response.status_code < 500, (query, response.text)
        if response.status_code != 200:
            assert response.status_code == 400
            assert response.json()["reason"] in {"INVALID_FILTER", "INVALID_QUERY"}
