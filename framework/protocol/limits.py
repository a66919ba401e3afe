"""Rate limits: one token bucket, and a bounded table of them keyed by network prefix.

A key is a *prefix*, not an address: an IPv4 address is one household (or a whole
carrier-grade NAT), while an IPv6 host may rotate through its /64 at will, so a limit per
IPv6 address would be no limit at all.
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict


def prefix_of(host: str) -> str:
    """The network a limit applies to: the IPv4 address, or the IPv6 /64."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host  # not an address (a relay's stand-in): itself
    if ip.version == 6:
        mapped = ip.ipv4_mapped
        if mapped is not None:
            return str(mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved up; starts full."""

    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.stamp = now

    def refill(self, now: float) -> float:
        if now > self.stamp:
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
        return self.tokens

    def take(self, now: float, cost: float = 1.0) -> bool:
        """Spend ``cost`` tokens if there are that many."""
        if self.refill(now) < cost:
            return False
        self.tokens -= cost
        return True

    def give_back(self, cost: float = 1.0) -> None:
        self.tokens = min(self.burst, self.tokens + cost)

    def wait_for(self, now: float, cost: float = 1.0) -> float:
        """Seconds until ``cost`` tokens are there (0 if they are now)."""
        missing = cost - self.refill(now)
        return 0.0 if missing <= 0 else missing / self.rate


class Buckets:
    """Token buckets by key, at most ``capacity`` of them (least recently used go)."""

    def __init__(self, rate: float, burst: float, capacity: int) -> None:
        self.rate = rate
        self.burst = burst
        self.capacity = capacity
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def get(self, key: str, now: float) -> TokenBucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(self.rate, self.burst, now)
            if len(self._buckets) > self.capacity:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
        return bucket

    def take(self, key: str, now: float, cost: float = 1.0) -> bool:
        return self.get(key, now).take(now, cost)

    def __len__(self) -> int:
        return len(self._buckets)
