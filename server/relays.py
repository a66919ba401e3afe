"""Relays: forwarding between an introduced pair whose hole punching failed.

A relay joins exactly two addresses, the host's and the client's of one introduction;
its datagrams pass unchanged (the same size: no amplification) and only between those
two. Relays are counted against the *client's* prefix: the client is the one who asks
to join, so a stranger joining a host again and again spends its own quota, never the
host's. Each relay has a byte rate (a token bucket), an idle timeout and a lifetime.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from framework.protocol.addresses import Address
from framework.protocol.constants import RELAY_ID_SIZE
from framework.protocol.crypto import verify
from framework.protocol.limits import TokenBucket
from framework.protocol.wire import decode_relay

from .config import Reply, ServerConfig, ServerStats

log = logging.getLogger("server")



@dataclass(slots=True)
class Relay:
    """Traffic forwarding between one host and one client."""

    relay_id: bytes
    server_end: Address
    client_end: Address
    #: The client's prefix, which this relay is counted against.
    prefix: str
    created: float
    last_used: float
    bucket: TokenBucket
    forwarded: int = 0
    dropped: int = 0
    #: On a relay node (``--relay-only``): its address, the two ends' bind keys (server
    #: end, client end) and the players' names; None when this server relays itself.
    at: Address | None = None
    relay_node: str = ""
    keys: tuple[bytes, bytes] = (b"", b"")
    names: tuple[str, str] = ("", "")
    #: The client's channel key share and node, to tell it when its relay moves.
    client_share: bytes = b""
    client_node: str = ""


    def end_of(self, key: bytes) -> int | None:
        """Which end (0 server, 1 client) holds ``key``, on a relay node's relay."""
        if self.at is None:
            return None
        for end in (0, 1):
            if verify(self.keys[end], key):
                return end
        return None

    def pass_on(self, data: bytes, source: Address, now: float, stats: ServerStats
                ) -> Address | None:
        """Where a datagram from ``source`` goes: the other end, within the byte rate;
        None (counted) when ``source`` is not an end or the rate is spent."""
        if source == self.server_end:
            to = self.client_end
        elif source == self.client_end:
            to = self.server_end
        else:
            # Not one of the two players: no one can inject into a relay they are not in.
            stats.relay_dropped += 1
            return None
        if not self.bucket.take(now, len(data)):
            self.dropped += 1
            stats.relay_dropped += 1
            return None
        self.last_used = now
        self.forwarded += 1
        stats.relayed_packets += 1
        stats.relayed_bytes += len(data)
        return to


class Relays:
    def __init__(self, config: ServerConfig, stats: ServerStats,
                 random_bytes: Callable[[int], bytes]) -> None:
        self._config = config
        self._stats = stats
        self._random = random_bytes
        self.by_id: dict[bytes, Relay] = {}
        self._of_pair: dict[tuple[Address, Address], bytes] = {}
        self._per_prefix: Counter[str] = Counter()

    def open(self, server_end: Address, client_end: Address, client_prefix: str,
             now: float, nodes: tuple[str, str] = ("", ""),
             names: tuple[str, str] = ("", ""), client_share: bytes = b"") -> Relay | None:
        """The pair's relay (one per pair), or None when no relay is free. ``nodes``:
        the nodes the two ends talk to, ``names`` the two players', ``client_share`` the
        client's channel key share, for stores with relay nodes (unused here)."""
        relay = self.by_id.get(self._of_pair.get((server_end, client_end), b""))
        if relay is not None:
            return relay
        cfg = self._config
        if (len(self.by_id) >= cfg.max_relays
                or self._per_prefix[client_prefix] >= cfg.max_relays_per_ip):
            return None
        rate = float(cfg.relay_bytes_per_sec)
        relay = Relay(self._random(RELAY_ID_SIZE), server_end, client_end, client_prefix,
                      now, now, TokenBucket(rate, 2 * rate, now))
        self.by_id[relay.relay_id] = relay
        self._of_pair[(server_end, client_end)] = relay.relay_id
        self._per_prefix[client_prefix] += 1
        self._stats.relays_opened += 1
        log.debug("relay %s opened", relay.relay_id.hex())
        return relay

    def relocate(self, relay_id: bytes, key: bytes, now: float
                 ) -> tuple[Relay, int, bool] | None:
        """Where a relay on a relay node runs now, for the end whose key is ``key``:
        (relay, end, whether it was just moved). A single server has no relay nodes."""
        return None

    def forward(self, data: bytes, source: Address, now: float) -> list[Reply]:
        relay_id, _ = decode_relay(data)
        relay = self.by_id.get(relay_id)
        if relay is None:
            self._stats.relay_dropped += 1
            return []
        to = relay.pass_on(data, source, now, self._stats)
        if to is None:
            return []
        return [(data, to)]  # forwarded as it is: the same size

    def _close(self, relay: Relay) -> None:
        del self.by_id[relay.relay_id]
        self._of_pair.pop((relay.server_end, relay.client_end), None)
        self._per_prefix[relay.prefix] -= 1
        if self._per_prefix[relay.prefix] <= 0:
            del self._per_prefix[relay.prefix]

    def expire(self, now: float) -> None:
        cfg = self._config
        for relay in [r for r in self.by_id.values()
                      if now - r.last_used > cfg.relay_idle_timeout
                      or now - r.created > cfg.relay_max_duration
                      or (r.forwarded == 0 and now - r.created > cfg.relay_unused_timeout)]:
            log.debug("relay %s closed after %d datagrams", relay.relay_id.hex(),
                     relay.forwarded)
            self._close(relay)
