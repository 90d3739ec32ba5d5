"""The login lockout: 5 failures per username within a minute, then locked until the oldest
is a minute old; counted per username typed (case and spaces aside), existing or not; a
success clears the count; memory stays bounded."""

from __future__ import annotations

import datetime as dt

import pytest

from certbound.clock import FixedClock
from certbound.oauth.login_throttle import LoginThrottle

START = dt.datetime(2026, 11, 29, 12, 0, tzinfo=dt.UTC)


def test_five_failures_in_a_minute_lock_the_username() -> None:
    clock = FixedClock(START)
    throttle = LoginThrottle(clock)
    for _ in range(4):
        throttle.failed("Alice ")
        clock.advance(dt.timedelta(seconds=1))
    assert throttle.locked_for("alice") is None
    throttle.failed("ALICE")
    assert throttle.locked_for("alice") == pytest.approx(56.0)
    assert throttle.locked_for("bob") is None  # another username is not affected
    clock.advance(dt.timedelta(seconds=56))
    assert throttle.locked_for("alice") is None  # the oldest failure is a minute old


def test_failures_spread_over_more_than_a_minute_do_not_lock() -> None:
    clock = FixedClock(START)
    throttle = LoginThrottle(clock)
    for _ in range(10):
        throttle.failed("alice")
        clock.advance(dt.timedelta(seconds=15))
    assert throttle.locked_for("alice") is None


def test_a_success_clears_the_count() -> None:
    clock = FixedClock(START)
    throttle = LoginThrottle(clock)
    for _ in range(4):
        throttle.failed("alice")
    throttle.succeeded("alice")
    throttle.failed("alice")
    assert throttle.locked_for("alice") is None


def test_memory_is_bounded() -> None:
    clock = FixedClock(START)
    throttle = LoginThrottle(clock, max_tracked=10)
    for number in range(100):
        throttle.failed(f"user-{number}")
    assert len(throttle._failures) <= 10
    for _ in range(5):
        throttle.failed("user-99")
    assert throttle.locked_for("user-99") is not None


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="limit"):
        LoginThrottle(FixedClock(START), limit=0)
