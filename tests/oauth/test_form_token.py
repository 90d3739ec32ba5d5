"""The login form's CSRF token: valid for exactly the parameters and browser it was issued
for, for 10 minutes, under the server secret; anything altered is refused."""

from __future__ import annotations

import datetime as dt

import pytest

from certbound.clock import FixedClock
from certbound.oauth.authorization_code import PARAMETERS
from certbound.oauth.form_token import FormTokens

START = dt.datetime(2026, 11, 29, 12, 0, tzinfo=dt.UTC)
PARAMS = {"client_id": "web", "scope": "read", "state": "s", "code_challenge": "c" * 43}


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(START)


@pytest.fixture
def tokens(clock: FixedClock) -> FormTokens:
    return FormTokens(b"s" * 32, clock, PARAMETERS)


def test_a_token_is_valid_for_its_form_and_browser(tokens: FormTokens) -> None:
    token = tokens.issue(PARAMS, "browser-1")
    assert tokens.valid(token, PARAMS, "browser-1")
    assert tokens.valid(token, dict(reversed(PARAMS.items())), "browser-1")  # order is irrelevant


@pytest.mark.parametrize(
    "change",
    [
        {"scope": "read write"},
        {"state": "other"},
        {"nonce": "added"},
        {"client_id": "web2"},
    ],
)
def test_a_changed_parameter_is_refused(tokens: FormTokens, change: dict[str, str]) -> None:
    token = tokens.issue(PARAMS, "browser-1")
    assert not tokens.valid(token, {**PARAMS, **change}, "browser-1")


def test_a_removed_parameter_is_refused(tokens: FormTokens) -> None:
    token = tokens.issue(PARAMS, "browser-1")
    assert not tokens.valid(token, {k: v for k, v in PARAMS.items() if k != "state"}, "browser-1")


def test_another_browser_or_none_is_refused(tokens: FormTokens) -> None:
    token = tokens.issue(PARAMS, "browser-1")
    assert not tokens.valid(token, PARAMS, "browser-2")
    assert not tokens.valid(token, PARAMS, None)


def test_the_token_expires_after_ten_minutes(tokens: FormTokens, clock: FixedClock) -> None:
    token = tokens.issue(PARAMS, "b")
    clock.advance(dt.timedelta(seconds=599))
    assert tokens.valid(token, PARAMS, "b")
    clock.advance(dt.timedelta(seconds=1))
    assert not tokens.valid(token, PARAMS, "b")


@pytest.mark.parametrize("token", ["", "abc", "123", "123.", ".abc", "9" * 40 + ".x", "x.y"])
def test_malformed_tokens_are_refused(tokens: FormTokens, token: str) -> None:
    assert not tokens.valid(token, PARAMS, "b")


def test_a_forged_expiry_or_another_secret_is_refused(
    tokens: FormTokens, clock: FixedClock
) -> None:
    token = tokens.issue(PARAMS, "b")
    expiry, _, mac = token.partition(".")
    assert not tokens.valid(f"{int(expiry) + 3600}.{mac}", PARAMS, "b")
    other = FormTokens(b"t" * 32, clock, PARAMETERS)
    assert not other.valid(token, PARAMS, "b")
