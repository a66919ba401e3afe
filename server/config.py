"""The handshake server's limits and timings, and its counters."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from framework.protocol.addresses import Address
from framework.protocol.wire import ErrorCode, HsKind

#: A datagram to send, and where to.
Reply = tuple[bytes, Address]


@dataclass(frozen=True)
class ServerConfig:
    """Limits and timings of the handshake server.

    Every "per IP" limit applies to a network *prefix* (``limits.prefix_of``): an IPv4
    address, or an IPv6 /64, since one IPv6 host may rotate through its /64 at will.
    """

    #: Registrations held at once; new names are refused beyond this.
    max_registrations: int = 100_000
    #: Registrations from one prefix (a household behind one NAT has a few players).
    max_registrations_per_ip: int = 16
    #: Shortest and longest registration validity a peer may ask for, in seconds.
    min_reg_valid: float = 10.0
    max_reg_valid: float = 300.0
    #: Seconds an introduction stays valid (a repeated JOIN gets the same token).
    intro_valid: float = 30.0
    #: A repeated JOIN re-sends the introduction to the server player at most this often,
    #: so a client cannot turn the handshake server into a stream of datagrams aimed at a host.
    intro_resend_interval: float = 0.25
    #: Pending introductions held at once, and per joining client's prefix.
    max_introductions: int = 100_000
    max_introductions_per_ip: int = 32
    #: Requests per second one prefix may make (token bucket), and the burst allowed.
    requests_per_sec_per_ip: float = 20.0
    request_burst: float = 40.0
    #: Prefixes whose rate is tracked at once (least recently seen forgotten first).
    max_tracked_sources: int = 65_536
    #: Peers' channel keys cached (an X25519 exchange each; least recently used go).
    max_channels: int = 65_536
    #: Seconds of one cookie window; a cookie is accepted in its window and the next.
    cookie_window: float = 30.0
    #: Relay traffic between introduced players whose hole punching failed.
    relay: bool = True
    #: Relays at once, in total and per *joining client's* prefix: a client cannot use
    #: up the relays of the host it joins, whatever it does.
    max_relays: int = 1000
    max_relays_per_ip: int = 8
    #: Bytes per second one relay forwards (both directions together); twice that may
    #: pass in a burst. 64 KiB/s carries any game this engine is meant for.
    relay_bytes_per_sec: int = 64 * 1024
    #: Seconds a relay may live, and may stay unused, before it is closed.
    relay_max_duration: float = 4 * 3600.0
    relay_idle_timeout: float = 60.0
    #: Seconds a relay that never forwarded a datagram lives. Players ask for a relay as
    #: soon as they are introduced (relay first); when punching wins, the relay carries
    #: nothing and is closed after this, not after the idle timeout, so the relays of
    #: joins that went direct come back four times sooner.
    relay_unused_timeout: float = 15.0


@dataclass
class ServerStats:
    """Counts since start, for logs and benchmarks."""

    received: int = 0
    replies: int = 0
    #: Malformed, unknown, undecryptable or otherwise refused datagrams.
    dropped: int = 0
    #: Bugs: exceptions other than ProtocolError that the core caught and survived.
    internal_errors: int = 0
    registrations: int = 0
    introductions: int = 0
    expired: int = 0
    relays_opened: int = 0
    relayed_packets: int = 0
    relayed_bytes: int = 0
    relay_dropped: int = 0
    rate_limited: int = 0
    cookies_sent: int = 0
    #: Replies not sent because they were larger than the datagram they answered.
    amplification_refused: int = 0
    #: Requests dropped because the shared store (Redis) could not answer.
    store_errors: int = 0
    by_kind: Counter[HsKind] = field(default_factory=Counter)
    errors: Counter[ErrorCode] = field(default_factory=Counter)

    def summary(self) -> dict[str, int]:
        """The plain counters (for one JSON log line)."""
        return {k: v for k, v in vars(self).items() if type(v) is int}
