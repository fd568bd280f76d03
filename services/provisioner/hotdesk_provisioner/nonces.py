"""Digest nonce counts: a request's ``nc`` must be higher than any seen for its nonce.

RFC 7616 §3.4 (and §5.12): the server keeps the nonce count so that a captured
request replayed with the same nonce and ``nc`` is refused. Phones send their
requests one after another and count up, so "strictly higher than the last seen" is
the rule; a request that loses a race is simply challenged again.
"""

from __future__ import annotations

from typing import Protocol


class NonceCounts(Protocol):
    """Where nonce counts live: this process, or a bucket every replica shares."""

    async def admit(self, nonce: str, nc: int, now: float) -> bool:
        """Record ``nc`` for ``nonce``; ``False`` when it is not above the last one seen."""
        ...


class LocalNonceCounts:
    """Nonce counts of one process. Pure: ``now`` is passed in.

    Entries older than ``horizon`` seconds are forgotten when the table grows: by then
    the nonce itself is stale and refused before its count is looked at.
    """

    def __init__(self, horizon: float = 900.0, max_entries: int = 100_000) -> None:
        self._horizon = horizon
        self._max_entries = max_entries
        self._seen: dict[str, tuple[int, float]] = {}

    async def admit(self, nonce: str, nc: int, now: float) -> bool:
        """Record ``nc`` for ``nonce``; ``False`` when it is not above the last one seen."""
        last = self._seen.get(nonce)
        if last is not None and nc <= last[0]:
            return False
        if len(self._seen) >= self._max_entries:
            self._seen = {
                n: seen for n, seen in self._seen.items() if now - seen[1] <= self._horizon
            }
        first_seen = last[1] if last is not None else now
        self._seen[nonce] = (nc, first_seen)
        return True


def parse_nc(value: str) -> int | None:
    """The ``nc`` parameter: 8 hex digits (RFC 7616 §3.4); ``None`` when malformed."""
    if not value or len(value) > 8:
        return None
    try:
        return int(value, 16)
    except ValueError:
        return None
