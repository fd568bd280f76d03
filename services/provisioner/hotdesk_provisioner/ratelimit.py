"""Requests per minute per source address: a fixed one-minute window, pure."""

from __future__ import annotations


class RateLimiter:
    """Allow ``per_minute`` requests per source in each minute window.

    Memory is bounded: when more than ``max_sources`` sources are tracked, windows that
    have ended are dropped.
    """

    def __init__(self, per_minute: int, max_sources: int = 100_000) -> None:
        self.per_minute = per_minute
        self.max_sources = max_sources
        self._windows: dict[str, tuple[int, int]] = {}

    def allow(self, source: str, now: float) -> bool:
        """Count one request from ``source``; ``False`` when it is over the limit."""
        if self.per_minute <= 0:
            return True
        window = int(now // 60)
        start, count = self._windows.get(source, (window, 0))
        if start != window:
            start, count = window, 0
        count += 1
        self._windows[source] = (start, count)
        if len(self._windows) > self.max_sources:
            self._windows = {s: w for s, w in self._windows.items() if w[0] == window}
        return count <= self.per_minute

    def retry_after(self, now: float) -> int:
        """Seconds until the current window ends."""
        return 60 - int(now % 60)
