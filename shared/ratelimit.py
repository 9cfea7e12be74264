"""Failed attempts counted per key (a client address, an account) in a sliding window: after
`limit` failures within `window` the key is refused until the oldest of them leaves the window.

Kept in the process: each replica counts its own, so N replicas admit at most N x limit guesses
per window; that bounds guessing well enough for tokens of 32+ random characters and for argon2
passwords behind an account lock-out. Time comes from the caller (the service's clock)."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from math import ceil


@dataclass
class FailureLimiter:
    limit: int
    window: timedelta
    max_keys: int = 100_000  # a flood of distinct addresses cannot grow memory without bound
    _failures: dict[str, deque[datetime]] = field(default_factory=dict)

    def retry_after(self, key: str, now: datetime) -> int | None:
        """Seconds until `key` may try again, None when it may now."""
        times = self._recent(key, now)
        if times is None or len(times) < self.limit:
            return None
        return max(1, ceil((times[0] + self.window - now).total_seconds()))

    def failed(self, key: str, now: datetime) -> int | None:
        """Count a failure; the seconds to wait when this one reached the limit, else None."""
        times = self._recent(key, now)
        if times is None:
            if len(self._failures) >= self.max_keys:
                self._forget_oldest(now)
            times = self._failures.setdefault(key, deque())
        times.append(now)
        while len(times) > self.limit:
            times.popleft()
        return self.retry_after(key, now)

    def succeeded(self, key: str) -> None:
        """A success forgets the key's failures (a person who finally typed it right)."""
        self._failures.pop(key, None)

    def _recent(self, key: str, now: datetime) -> deque[datetime] | None:
        times = self._failures.get(key)
        if times is None:
            return None
        while times and times[0] <= now - self.window:
            times.popleft()
        if not times:
            del self._failures[key]
            return None
        return times

    def _forget_oldest(self, now: datetime) -> None:
        for key in [k for k, t in self._failures.items() if not t or t[-1] <= now - self.window]:
            del self._failures[key]
        while len(self._failures) >= self.max_keys:
            del self._failures[next(iter(self._failures))]


def client_address(scope_client: tuple[str, int] | None, forwarded_for: str | None, trust_proxy: bool) -> str:
    """The caller's address: the socket's, or the first X-Forwarded-For hop behind a trusted proxy."""
    if trust_proxy and forwarded_for:
        return forwarded_for.split(",")[0].strip() or "unknown"
    return scope_client[0] if scope_client else "unknown"
