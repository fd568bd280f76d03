"""The provisioning rate limiter: per-source counts in fixed memory."""

from __future__ import annotations

import ipaddress

from hypothesis import given, settings
from hypothesis import strategies as st

from hotdesk_provisioner.ratelimit import RateLimiter, source_key


def test_a_source_over_its_limit_is_refused_until_the_next_minute() -> None:
    limiter = RateLimiter(per_minute=2)
    assert [limiter.allow("192.0.2.1", 60.0 + i) for i in range(3)] == [True, True, False]
    assert limiter.allow("192.0.2.2", 62.0)
    assert limiter.allow("192.0.2.1", 120.0)


def test_a_hundred_thousand_sources_keep_the_bucket_count_at_its_bound() -> None:
    limiter = RateLimiter(per_minute=5, max_sources=1_000)
    for n in range(100_000):
        limiter.allow(str(ipaddress.IPv4Address(0x0A000000 + n)), 30.0)
        assert len(limiter) <= 1_000
    assert len(limiter) == 1_000


@settings(max_examples=50)
@given(
    sources=st.lists(st.ip_addresses().map(str), min_size=1, max_size=300),
    bound=st.integers(min_value=1, max_value=40),
)
def test_bucket_count_never_exceeds_its_bound(sources: list[str], bound: int) -> None:
    limiter = RateLimiter(per_minute=3, max_sources=bound)
    for i, source in enumerate(sources):
        limiter.allow(source, float(i))
        assert len(limiter) <= bound


def test_a_busy_source_keeps_its_count_while_new_sources_stream_past() -> None:
    limiter = RateLimiter(per_minute=3, max_sources=10)
    for n in range(50):
        limiter.allow("192.0.2.1", 1.0)
        limiter.allow(f"198.51.100.{n}", 1.0)
    assert not limiter.allow("192.0.2.1", 2.0)


def test_ipv6_addresses_in_one_64_share_a_bucket() -> None:
    limiter = RateLimiter(per_minute=2)
    assert limiter.allow("2001:db8:1:2::1", 0.0)
    assert limiter.allow("2001:db8:1:2:aaaa::7", 0.0)
    assert not limiter.allow("2001:db8:1:2:ffff:ffff:ffff:ffff", 0.0)
    assert limiter.allow("2001:db8:1:3::1", 0.0)
    assert len(limiter) == 2


def test_source_keys() -> None:
    assert source_key("2001:db8::1") == "2001:db8::/64"
    assert source_key("::ffff:192.0.2.9") == "192.0.2.9"
    assert source_key("192.0.2.9") == "192.0.2.9"
    assert source_key("not-an-address") == "not-an-address"
