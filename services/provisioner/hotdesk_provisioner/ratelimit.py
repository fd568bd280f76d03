"""Requests per minute per source address: a fixed one-minute window, pure."""

from __future__ import annotations

import ipaddress
from collections import OrderedDict


def source_key(address: str) -> str:
    """The bucket an address counts against: IPv6 sources by their /64.

    One IPv6 host usually holds a whole /64 (RFC 4291 §2.5.4, SLAAC privacy addresses,
    RFC 8981), so counting single addresses would let it rotate past any limit.
    """
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


class RateLimiter:
    """Allow ``per_minute`` requests per source in each minute window.

    Memory is bounded by ``max_sources`` buckets, kept in least-recently-used order:
    a new source beyond that evicts the one idle longest, so each request costs O(1)
    however many sources there are.
    """

    def __init__(self, per_minute: int, max_sources: int = 100_000) -> None:
        if max_sources < 1:
            raise ValueError(f"max_sources must be at least 1, not {max_sources}")
        self.per_minute = per_minute
        self.max_sources = max_sources
        self._windows: OrderedDict[str, tuple[int, int]] = OrderedDict()

    def __len__(self) -> int:
        """How many source buckets are held."""
        return len(self._windows)

    def allow(self, source: str, now: float) -> bool:
        """Count one request from ``source``; ``False`` when it is over the limit."""
        if self.per_minute <= 0:
            return True
        key = source_key(source)
        window = int(now // 60)
        start, count = self._windows.pop(key, (window, 0))
        if start != window:
            start, count = window, 0
        count += 1
        self._windows[key] = (start, count)
        while len(self._windows) > self.max_sources:
            self._windows.popitem(last=False)
        return count <= self.per_minute

    def retry_after(self, now: float) -> int:
        """Seconds until the current window ends."""
        return 60 - int(now % 60)
