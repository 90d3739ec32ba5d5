"""Sign-in throttling on the login page: 5 failures per username per minute, then a lockout.

Counted per username as typed (case-insensitive, spaces trimmed), whether or not the user
exists, so the lockout tells nothing about which usernames exist. A username with ``limit``
failures within the last ``window`` seconds is locked until the oldest of them is ``window``
seconds old; a successful sign-in clears its count. The counts live in this process's
memory only: they are lost on a restart and not shared between processes behind one load
balancer (each process allows ``limit`` failures). At most ``max_tracked`` usernames are
tracked; past that the entries with no recent failure are dropped, then the oldest ones.
"""

from __future__ import annotations

import collections
import datetime as dt
import threading

from certbound.clock import Clock

LIMIT = 5
WINDOW_SECONDS = 60.0


def _key(username: str) -> str:
    return username.strip().lower()


class LoginThrottle:
    """Failed sign-ins per username, in memory (see the module docstring)."""

    def __init__(
        self,
        clock: Clock,
        *,
        limit: int = LIMIT,
        window: float = WINDOW_SECONDS,
        max_tracked: int = 10_000,
    ) -> None:
        if limit < 1 or window <= 0:
            raise ValueError("limit must be at least 1 and window positive")
        self._clock = clock
        self._limit = limit
        self._window = dt.timedelta(seconds=window)
        self._max = max_tracked
        self._failures: dict[str, collections.deque[dt.datetime]] = {}
        self._lock = threading.Lock()

    def locked_for(self, username: str) -> float | None:
        """Seconds until ``username`` may try again, None when it is not locked."""
        now = self._clock.now()
        with self._lock:
            recent = self._recent(_key(username), now)
            if len(recent) < self._limit:
                return None
            return max((recent[0] + self._window - now).total_seconds(), 0.0)

    def failed(self, username: str) -> None:
        now = self._clock.now()
        key = _key(username)
        with self._lock:
            if key not in self._failures and len(self._failures) >= self._max:
                self._evict(now)
            recent = self._recent(key, now)
            recent.append(now)
            while len(recent) > self._limit:
                recent.popleft()
            self._failures[key] = recent

    def succeeded(self, username: str) -> None:
        with self._lock:
            self._failures.pop(_key(username), None)

    def _recent(self, key: str, now: dt.datetime) -> collections.deque[dt.datetime]:
        recent = self._failures.get(key, collections.deque())
        while recent and recent[0] + self._window <= now:
            recent.popleft()
        return recent

    def _evict(self, now: dt.datetime) -> None:
        stale = [
            k for k, times in self._failures.items() if not times or times[-1] + self._window <= now
        ]
        for key in stale:
            del self._failures[key]
        while len(self._failures) >= self._max:
            del self._failures[next(iter(self._failures))]
