"""Relays as their own tier: ``python -m server --relay-only --redis URL``.

A relay node answers no request; it forwards RELAY datagrams for relays that the
handshake nodes placed on it. The two halves meet in Redis:

- **The directory** (``RelayDirectory``, used by handshake nodes). Each relay node keeps
  ``relaynode:<id>`` (a hash: its public address, capacity and load) alive with a TTL of
  ``NODE_TTL`` seconds, renewed every second, and its load (relays / capacity) in the
  sorted set ``relaynodes``. A new relay goes to the least loaded node whose hash still
  exists (the placement adds to that node's score at once, so placements between two of
  its reports spread out); nodes whose hash lapsed are removed from the set.
- **The relay record** ``relay:<id>`` (``cluster.RedisRelays``) names the node (``rn``,
  ``rh``, ``rp``) and holds the two ends' bind keys (``ak``, ``bk``, 16 random bytes
  each) and the players' names. The players get their own end's key sealed in RELAY_AT.
- **Binding** (``RelayNodeCore``). The node learns an end's address from a RELAY_BIND:
  relay id, end, a counter and a MAC under that end's key. It takes the newest counter
  (a replayed bind moves nothing; a player behind a NAT that rebinds its port moves with
  its next bind), answers each accepted bind with a RELAY_BOUND of the same size, and
  forwards RELAY datagrams only between the two bound addresses, unchanged, within the
  relay's byte rate. The last datagram for an end not bound yet is held and given to it
  when it binds.
- **Losing a node.** A killed node's hash lapses after ``NODE_TTL``. Its sessions go
  quiet; each player asks a handshake node where its relay is now (RELAY_MOVE, with its
  key), which finds the node gone, moves the relay to the least loaded live node
  (compare-and-set on ``rn``, so two players asking two nodes at once agree) and
  answers RELAY_AT; the players bind there and carry on.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from framework.protocol.addresses import Address
from framework.protocol.constants import INTERNAL_ERROR_LOG_INTERVAL, RELAY_KEY_SIZE
from framework.protocol.crypto import verify
from framework.protocol.errors import ProtocolError
from framework.protocol.limits import Buckets, TokenBucket, prefix_of
from framework.protocol.relaying import bind_tag
from framework.protocol.wire import (
    Kind,
    decode_relay,
    decode_relay_bind,
    encode_relay_bind,
    peek_kind,
)

from .config import Reply, ServerConfig, ServerStats
from .store import StoreError

log = logging.getLogger("server")

PREFIX = b"p2p:"
#: Seconds a relay node's directory entry lives without a renewal (the node reports
#: at each tick of its loop, once a second).
NODE_TTL = 3.0
#: Candidates read from the directory per placement.
PLACEMENT_CANDIDATES = 8

#: Move a relay to another node only if it is still on the dead one: KEYS[1] the
#: relay, ARGV[1] the dead node, ARGV[2..4] the new node, host and port.
_MOVE = """
if redis.call('HGET', KEYS[1], 'rn') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'rn', ARGV[2], 'rh', ARGV[3], 'rp', ARGV[4])
return 1
"""


#: Keys shared with ``cluster.RedisRelays`` (which imports them: it needs this module).
RELAYS = PREFIX + b"relays"
RELAY_PAIR = PREFIX + b"relaypair:"
RELAY_PFX = PREFIX + b"relaypfx:"
NODE = PREFIX + b"relaynode:"
DIRECTORY = PREFIX + b"relaynodes"


def relay_key(relay_id: bytes) -> bytes:
    return PREFIX + b"relay:" + relay_id


def node_key(node: str) -> bytes:
    return NODE + node.encode()


class RelayDirectory:
    """The handshake nodes' view of the relay nodes: placement and liveness."""

    def __init__(self, link: Any) -> None:
        self._link = link

    def place(self) -> tuple[str, Address] | None:
        """The least loaded live relay node with room: (id, address); None if none."""
        [ranked] = self._link.run(lambda p: p.zrange(DIRECTORY, 0, PLACEMENT_CANDIDATES - 1,
                                                     withscores=True))
        if not ranked:
            return None
        ids = [m for m, score in ranked if isinstance(m, bytes) and score < 1.0]
        if not ids:
            return None
        read = self._link.run(lambda p: [p.hmget(NODE + m,
                                                 b"h", b"p", b"cap") for m in ids])
        dead: list[bytes] = []
        chosen: tuple[str, Address, int] | None = None
        for member, fields in zip(ids, read, strict=True):
            parsed = _node_entry(fields)
            name = _text(member)
            if parsed is None or name is None:
                dead.append(member)
            elif chosen is None:
                chosen = (name, parsed[0], parsed[1])
        node = chosen
        with contextlib.suppress(StoreError):
            self._link.run(lambda p: (
                [p.zrem(DIRECTORY, m) for m in dead],
                p.zincrby(DIRECTORY, 1.0 / node[2], node[0]) if node else None))
        return None if node is None else (node[0], node[1])

    def alive(self, node: str) -> bool:
        [n] = self._link.run(lambda p: p.exists(node_key(node)))
        return bool(n)

    def move(self, relay_key: bytes, dead: str, node: str, at: Address) -> bool:
        """Put a relay on ``node`` if it is still on ``dead``; False if someone else
        moved it first."""
        [moved] = self._link.run(lambda p: p.eval(_MOVE, 1, relay_key, dead, node, at[0],
                                                  at[1]))
        return bool(moved)


def _text(raw: bytes) -> str | None:
    try:
        text = raw.decode()
    except UnicodeDecodeError:
        return None
    return text if 0 < len(text) <= 64 else None


def _node_entry(fields: object) -> tuple[Address, int] | None:
    """(address, capacity) of a directory entry read from Redis, or None (gone or
    damaged: nothing read from Redis is trusted)."""
    if not isinstance(fields, list) or len(fields) != 3 or None in fields:
        return None
    try:
        host, port, cap = fields[0].decode(), int(fields[1]), int(fields[2])
    except (ValueError, AttributeError, UnicodeDecodeError):
        return None
    if not host or len(host) > 64 or not 0 < port < 65536 or cap <= 0:
        return None
    return (host, port), cap


# --- the relay node ----------------------------------------------------------------------

@dataclass(slots=True)
class NodeRelay:
    """A relay this node carries: its ends' keys, and what the binds taught it."""

    relay_id: bytes
    keys: tuple[bytes, bytes]
    bucket: TokenBucket
    created: float
    last_used: float
    #: Redis keys renewed while traffic flows (the relay, its pair, its cap entries).
    renew: tuple[bytes, ...]
    ends: list[Address | None] = field(default_factory=lambda: [None, None])
    counters: list[int] = field(default_factory=lambda: [0, 0])
    #: The last datagram for an end that has not bound yet.
    held: list[bytes | None] = field(default_factory=lambda: [None, None])
    renewed: float = 0.0
    forwarded: int = 0
    #: When an end last bound (binds keep the relay cached, but only data renews it:
    #: a relay that never carried a datagram lapses after ``relay_unused_timeout``).
    last_bind: float = 0.0
    #: When this node loaded it (a relay moved here may be old, and still in use).
    loaded: float = 0.0


class RelayNodeCore:
    """A relay node's logic: datagrams and a clock in, datagrams out; its Redis calls
    are synchronous, like a handshake node's (``cluster.Link``)."""

    #: Unknown relay ids remembered, so made-up ids cost Redis nothing.
    NEGATIVE = 4096

    def __init__(self, link: Any, node: str, public: Address, config: ServerConfig,
                 capacity: int) -> None:
        if capacity <= 0:
            raise ValueError("a relay node's capacity must be positive")
        self._link = link
        self.node = node
        self.public = public
        self.config = config
        self.capacity = capacity
        self.stats = ServerStats()
        self.by_id: dict[bytes, NodeRelay] = {}
        self._unknown: dict[bytes, float] = {}
        # Binds cost a MAC each: 20 a second per source prefix is plenty for players.
        self._binds = Buckets(20.0, 40.0, 65_536)
        self._last_error_log = float("-inf")
        self.binds_accepted = 0

    # --- datagrams ---------------------------------------------------------------------

    def receive(self, data: bytes, source: Address, now: float) -> list[Reply]:
        """Never raises: anything refused is dropped and counted."""
        self.stats.received += 1
        try:
            kind = peek_kind(data)
            if kind is Kind.RELAY:
                return self._forward(data, source, now)
            if kind is Kind.RELAY_BIND:
                return self._bind(data, source, now)
            raise ProtocolError(f"a relay node does not take {kind.name}")
        except (ProtocolError, StoreError):
            self.stats.dropped += 1
        except Exception:  # a bug met through hostile input: count it, log it, go on
            self.stats.internal_errors += 1
            if now - self._last_error_log >= INTERNAL_ERROR_LOG_INTERVAL:
                self._last_error_log = now
                log.exception("internal error on a datagram from %s", source)
        return []

    def _relay(self, relay_id: bytes, now: float) -> NodeRelay | None:
        relay = self.by_id.get(relay_id)
        if relay is not None:
            return relay
        if self._unknown.get(relay_id, float("-inf")) > now:
            return None
        relay = self._load(relay_id, now)
        if relay is None:
            if len(self._unknown) >= self.NEGATIVE:
                self._unknown.clear()
            self._unknown[relay_id] = now + 1.0
        return relay

    def _load(self, relay_id: bytes, now: float) -> NodeRelay | None:
        """The relay as Redis has it, if it is placed on this node."""
        key = relay_key(relay_id)
        [h] = self._link.run(lambda p: p.hgetall(key))
        if not isinstance(h, dict) or h.get(b"rn") != self.node.encode():
            return None
        try:
            age = max(0.0, time.time() - float(h[b"c"]))
            keys = (h[b"ak"], h[b"bk"])
            prefix = h[b"x"]
            pair = h[b"pair"]
        except (KeyError, ValueError):
            return None
        if (age > self.config.relay_max_duration or not all(
                isinstance(k, bytes) and len(k) == RELAY_KEY_SIZE for k in keys)
                or not isinstance(pair, bytes) or not isinstance(prefix, bytes)):
            return None
        rate = float(self.config.relay_bytes_per_sec)
        relay = NodeRelay(relay_id, keys, TokenBucket(rate, 2 * rate, now), now - age, now,
                          (key, RELAY_PAIR + pair, RELAY_PFX + prefix), renewed=now,
                          loaded=now)
        self.by_id[relay_id] = relay
        return relay

    def _bind(self, data: bytes, source: Address, now: float) -> list[Reply]:
        relay_id, end, counter, tag = decode_relay_bind(data)
        if not self._binds.take(prefix_of(source[0]), now):
            self.stats.rate_limited += 1
            return []
        relay = self._relay(relay_id, now)
        if relay is None:
            raise ProtocolError("RELAY_BIND for no relay of this node")
        if not verify(bind_tag(relay.keys[end], Kind.RELAY_BIND, relay_id, end, counter),
                      tag):
            raise ProtocolError("RELAY_BIND with a bad tag")
        if counter <= relay.counters[end]:
            raise ProtocolError("RELAY_BIND replayed")
        relay.counters[end] = counter
        if relay.ends[end] != source:
            log.debug("relay %s end %d bound at %s", relay_id.hex(), end, source)
        relay.ends[end] = source
        relay.last_bind = now
        self.binds_accepted += 1
        bound = encode_relay_bind(Kind.RELAY_BOUND, relay_id, end, counter, bind_tag(
            relay.keys[end], Kind.RELAY_BOUND, relay_id, end, counter))
        out: list[Reply] = [(bound, source)]
        held, relay.held[end] = relay.held[end], None
        if held is not None:
            out.append((held, source))
        return out

    def _forward(self, data: bytes, source: Address, now: float) -> list[Reply]:
        relay_id, _ = decode_relay(data)
        relay = self._relay(relay_id, now)
        if relay is None:
            raise ProtocolError("RELAY of no relay of this node")
        if source == relay.ends[0]:
            other = 1
        elif source == relay.ends[1]:
            other = 0
        else:
            # Not a bound end: no one injects into a relay without its key.
            raise ProtocolError("RELAY from an address that did not bind")
        if not relay.bucket.take(now, len(data)):
            self.stats.relay_dropped += 1
            return []
        relay.last_used = now
        to = relay.ends[other]
        if to is None:
            relay.held[other] = data  # given to that end when it binds
            return []
        relay.forwarded += 1
        self.stats.relayed_packets += 1
        self.stats.relayed_bytes += len(data)
        return [(data, to)]  # unchanged: the same size

    # --- time --------------------------------------------------------------------------

    @property
    def load(self) -> int:
        return len(self.by_id)

    def tick(self, now: float) -> None:
        """Once a second: drop idle relays, renew the TTLs of those with traffic, and
        report this node (address, capacity, load) to the directory."""
        cfg = self.config
        for relay in [r for r in self.by_id.values()
                      if now - max(r.last_used, r.last_bind) > cfg.relay_idle_timeout
                      or now - r.created > cfg.relay_max_duration
                      or (r.forwarded == 0 and now - r.loaded > cfg.relay_unused_timeout)]:
            del self.by_id[relay.relay_id]
        self._unknown = {k: t for k, t in self._unknown.items() if t > now}
        ms = int(cfg.relay_idle_timeout * 1000)
        until = time.time() + cfg.relay_idle_timeout
        active = [r for r in self.by_id.values() if r.last_used > r.renewed]
        me = node_key(self.node)

        def report(p: Any) -> None:
            p.hset(me, mapping={b"h": self.public[0], b"p": self.public[1],
                                b"cap": self.capacity, b"load": self.load})
            p.pexpire(me, int(NODE_TTL * 1000))
            p.zadd(DIRECTORY, {self.node: self.load / self.capacity})
            for r in active:
                for k in r.renew:
                    p.pexpire(k, ms)
                p.zadd(RELAYS, {r.relay_id: until})
                p.zadd(r.renew[2], {r.relay_id: until})
        try:
            self._link.run(report)
        except StoreError:
            return  # Redis away: the players' binds and traffic still work here
        for r in active:
            r.renewed = now

    def leave(self) -> None:
        """On a clean stop: out of the directory at once."""
        with contextlib.suppress(StoreError):
            self._link.run(lambda p: (p.delete(node_key(self.node)),
                                      p.zrem(DIRECTORY, self.node)))
