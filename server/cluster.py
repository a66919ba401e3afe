"""Several handshake server processes (nodes) sharing one list of games through Redis.

``python -m server --redis redis://10.0.0.5:6379/0``: registrations, pending
introductions, rate-limit counters and relay assignments live in Redis, as hashes whose
TTL each REGISTER, REFRESH or relayed datagram renews; nothing relies on keyspace
notifications. Every node reads and writes the same keys, so a JOIN reaching any node
finds a host registered through any other, and a node may die (SIGKILL) without losing a
registration: the host's next REFRESH, wherever it lands, renews it.

A host's NAT lets in datagrams only from the address the host sends to, so the
INTRODUCE for a host (and a RELAY_READY for either player) leaves from the node that
player last talked to: the node that took the JOIN publishes the sealed datagram on that
node's Redis channel (``p2p:node:<id>``) and that node sends it. When no node listens
there any more (it died), the datagram is sent from here: right for nodes sharing one
address (SO_REUSEPORT), and otherwise the host's next REFRESH moves it to a live node.

Every node holds the same long-term key (``--key-file``); the cookie secret is derived
from it and cookie windows follow wall time, so a cookie made by one node passes on
another.

The Redis client is synchronous, on the server's one thread: each request costs one to
four round trips to Redis (about 50-100 µs each on a LAN; ``tools/bench_cluster.py``
measures it). Its timeouts are short, and after a failure Redis is left alone for a
second: requests that need shared state are dropped meanwhile (peers resend, as after a
lost datagram), COOKIE requests are still answered, relays this node knows keep
forwarding, rate limits fall back to this node's own buckets, and the error is logged
at most once a second. Nothing read from Redis is trusted: a record that does not parse
is treated as absent.

Keys (prefix ``p2p:``):

- ``reg:<name>`` hash, TTL = the registration's validity; ``look:<skeleton>`` -> name,
  same TTL; ``names`` (sorted set, by name, for LIST); ``regs`` and ``regpfx:<prefix>``
  (sorted sets scored by expiry, for the caps).
- ``intro:<msgpack [game, player]>`` hash, TTL = the introduction's validity;
  ``intros`` and ``intropfx:<prefix>`` for the caps.
- ``relay:<id>`` hash and ``relaypair:<msgpack ends>`` -> id, TTL = the idle timeout,
  renewed by traffic; ``relays`` and ``relaypfx:<prefix>`` for the caps.
- ``rate:<prefix>:<window>`` counters (fixed windows of burst/rate seconds), added to
  by each node every 0.1 s.
- ``node:<id>`` pub/sub channels.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import selectors
import socket
import struct
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import msgpack
import redis
from redis.client import PubSub

from framework.protocol.addresses import Address
from framework.protocol.constants import (
    INTERNAL_ERROR_LOG_INTERVAL,
    JOIN_TOKEN_SIZE,
    MAX_CANDIDATES,
    RELAY_ID_SIZE,
    RELAY_KEY_SIZE,
    TOKEN_SIZE,
)
from framework.protocol.crypto import PUBLIC_KEY_SIZE, KeyPair, lp, mac, verify
from framework.protocol.errors import ProtocolError
from framework.protocol.limits import Buckets, TokenBucket, prefix_of
from framework.protocol.wire import ErrorCode, Kind, decode_relay, peek_kind

from .candidates import Candidate
from .config import Reply, ServerConfig, ServerStats
from .introductions import Introduction
from .registry import Registration, looks_of
from .relays import Relay
from .relaytier import (
    PREFIX,
    RELAY_PAIR,
    RELAY_PFX,
    RELAYS,
    RelayDirectory,
    relay_key,
)
from .store import Router, StoreError, Stores

log = logging.getLogger("server")

#: Seconds Redis is left alone after a failure.
BACKOFF = 1.0
#: Seconds a Redis command may take before it counts as a failure.
TIMEOUT = 0.25
#: Largest datagram another node may ask this one to send (a sealed reply is smaller).
MAX_DELIVERED = 1400

_KEY_SIZE = 32
_PORT = struct.Struct("!H")
_EXPIRY = struct.Struct("!d")

#: Create a hash only if it does not exist: KEYS[1] the hash, KEYS[2..] keys set to
#: ARGV[2] with the same TTL; ARGV[1] the TTL in ms; ARGV[3..] field, value pairs.
_CLAIM = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
redis.call('PEXPIRE', KEYS[1], ARGV[1])
for i = 2, #KEYS do redis.call('SET', KEYS[i], ARGV[2], 'PX', ARGV[1]) end
return 1
"""
#: Update a hash only if it still exists (never leave a partial hash without a TTL):
#: ARGV[1] the new TTL in ms ('' keeps it), applied to every key; ARGV[2..] pairs.
_UPDATE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if #ARGV > 1 then redis.call('HSET', KEYS[1], unpack(ARGV, 2)) end
if ARGV[1] ~= '' then
  for i = 1, #KEYS do redis.call('PEXPIRE', KEYS[i], ARGV[1]) end
end
return 1
"""


def derived_secret(key: KeyPair, label: bytes) -> bytes:
    """A secret every node holding the deployment's long-term key derives alike."""
    return mac(key.private_bytes(), b"cluster " + label)


class Link:
    """The Redis connection, with a breaker: after a failure, StoreError at once for a
    second instead of a timeout per request."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.client: redis.Redis = redis.Redis.from_url(
            url, socket_timeout=TIMEOUT, socket_connect_timeout=TIMEOUT,
            health_check_interval=0, decode_responses=False)
        self._down_until = float("-inf")
        self.failures = 0

    # EVAL, not EVALSHA: redis-py's pipelines check SCRIPT EXISTS before every execute
    # that holds a registered script (a round trip more); the script's text is small,
    # and Redis keeps it compiled.
    @staticmethod
    def claim(pipe: Any, keys: list[bytes], args: list[Any]) -> None:
        pipe.eval(_CLAIM, len(keys), *keys, *args)

    @staticmethod
    def update(pipe: Any, keys: list[bytes], args: list[Any]) -> None:
        pipe.eval(_UPDATE, len(keys), *keys, *args)

    def run(self, commands: Callable[[Any], object]) -> list[Any]:
        """Queue ``commands`` on a pipeline and run it: one round trip."""
        now = time.monotonic()
        if now < self._down_until:
            raise StoreError("Redis unreachable, retrying shortly")
        try:
            with self.client.pipeline(transaction=False) as pipe:
                commands(pipe)
                result: list[Any] = pipe.execute(raise_on_error=True)
                return result
        except (redis.RedisError, OSError) as exc:
            self.failures += 1
            self._down_until = now + BACKOFF
            raise StoreError(f"Redis {type(exc).__name__}") from exc


# --- parsing what Redis holds: nothing there is trusted --------------------------------

def _address(host: bytes, port: bytes) -> Address:
    h, p = host.decode(), int(port)
    if not h or len(h) > 64 or not 0 < p < 65536:
        raise ValueError("bad address")
    return (h, p)


def _candidates(raw: bytes) -> list[Candidate]:
    value = msgpack.unpackb(raw)
    if not isinstance(value, list) or len(value) > MAX_CANDIDATES:
        raise ValueError("bad candidates")
    out: list[Candidate] = []
    for c in value:
        if (not isinstance(c, list) or len(c) != 3 or not isinstance(c[0], str)
                or type(c[1]) is not int or type(c[2]) is not int or len(c[0]) > 64
                or not 0 < c[1] < 65536):
            raise ValueError("bad candidate")
        out.append([c[0], c[1], c[2]])
    return out


def _sized(raw: bytes, size: int) -> bytes:
    if len(raw) != size:
        raise ValueError("bad size")
    return raw


def _remaining(pttl: object, now: float) -> float | None:
    """``now`` plus a key's TTL, or None for a key without one (or gone)."""
    if type(pttl) is not int or pttl <= 0:
        return None
    return now + pttl / 1000.0


def _call(command: str, *args: object) -> Callable[[Any], object]:
    """One command for ``Link.run``."""
    return lambda p: getattr(p, command)(*args)


def _each(command: str, calls: list[tuple[object, ...]]) -> Callable[[Any], object]:
    """The same command once per argument tuple, for ``Link.run``."""
    return lambda p: [getattr(p, command)(*args) for args in calls]


def _node(raw: object) -> str:
    """A node id read from Redis, or "" if it is not one."""
    if not isinstance(raw, bytes) or len(raw) > 64:
        return ""
    try:
        return raw.decode()
    except UnicodeDecodeError:
        return ""


def _pack(*parts: object) -> bytes:
    return msgpack.packb(list(parts))


# --- registrations ---------------------------------------------------------------------

class RedisRegistry:
    """``registry.Registry``'s methods over Redis."""

    by_name: Mapping[str, Registration] = {}  # nothing of its own in this process

    def __init__(self, link: Link, node: str, config: ServerConfig,
                 random_bytes: Callable[[int], bytes]) -> None:
        self._link = link
        self._node = node
        self._config = config
        self._random = random_bytes
        self._names = PREFIX + b"names"
        self._regs = PREFIX + b"regs"

    @staticmethod
    def _key(name: str) -> bytes:
        return PREFIX + b"reg:" + name.encode()

    @staticmethod
    def _look(look: str) -> bytes:
        return PREFIX + b"look:" + look.encode()

    @staticmethod
    def _pfx(prefix: str) -> bytes:
        return PREFIX + b"regpfx:" + prefix.encode()

    def _parse(self, name: str, h: object, pttl: object, now: float) -> Registration | None:
        expires = _remaining(pttl, now)
        if not isinstance(h, dict) or not h or expires is None:
            return None
        try:
            looks = msgpack.unpackb(h[b"l"])
            if not isinstance(looks, list) or not all(isinstance(x, str) for x in looks):
                return None
            return Registration(
                name, _address(h[b"h"], h[b"p"]), h[b"x"].decode(), tuple(looks),
                _candidates(h[b"c"]), _sized(h[b"t"], TOKEN_SIZE), h[b"w"] == b"1",
                _sized(h[b"s"], _KEY_SIZE), expires, float(h[b"v"]), int(h[b"g"]),
                h[b"n"].decode())
        except Exception:  # anything in Redis may be damaged or hostile: not a record
            log.debug("unreadable registration record for %r", name)
            return None

    def _fields(self, reg: Registration) -> list[bytes | str | int | float]:
        return [b"h", reg.public[0], b"p", reg.public[1], b"x", reg.prefix,
                b"l", _pack(*reg.looks), b"c", msgpack.packb(reg.candidates),
                b"t", reg.token, b"w", b"1" if reg.password_required else b"0",
                b"s", reg.share, b"v", repr(reg.valid), b"g", reg.generation,
                b"n", reg.node]

    def live(self, name: str, now: float) -> Registration | None:
        key = self._key(name)
        h, pttl = self._link.run(lambda p: (p.hgetall(key), p.pttl(key)))
        return self._parse(name, h, pttl, now)

    def register(self, name: str, source: Address, candidates: list[Candidate],
                 password_required: bool, secs: float, share: bytes, now: float,
                 generation: int = 0) -> tuple[Registration, bool] | ErrorCode:
        cfg = self._config
        valid = min(max(float(secs), cfg.min_reg_valid), cfg.max_reg_valid)
        reg = self.live(name, now)
        wall = time.time()
        if reg is not None:
            if reg.public != source:
                return ErrorCode.NAME_TAKEN
            if share != reg.share or generation >= reg.generation:
                reg.candidates = candidates
                reg.generation = generation
            reg.password_required = password_required
            reg.share = share
            reg.valid = valid
            reg.expires = now + valid
            reg.node = self._node
            self._renew(reg, wall, self._fields(reg))
            return reg, False
        key = self._key(name)
        looks = looks_of(name)
        prefix = prefix_of(source[0])
        pfx = self._pfx(prefix)

        def check(p: Any) -> None:
            p.mget([self._look(x) for x in looks])
            # Counted, not trimmed: expire() finds the names to take off the list here.
            p.zcount(self._regs, wall, "+inf")
            p.zremrangebyscore(pfx, "-inf", wall)
            p.zcard(pfx)
            p.exists(key)
        others, total, _, per_prefix, leftover = self._link.run(check)
        for other in others or []:
            if isinstance(other, bytes) and other != name.encode():
                other_key = PREFIX + b"reg:" + other
                [alive] = self._link.run(_call("exists", other_key))
                if alive:
                    return ErrorCode.LOOK_ALIKE
        if total >= cfg.max_registrations or per_prefix >= cfg.max_registrations_per_ip:
            return ErrorCode.TOO_MANY
        if leftover:  # a record that does not parse (or has no TTL): not a registration
            self._link.run(lambda p: p.delete(key))
        reg = Registration(name, source, prefix, looks, candidates, self._random(TOKEN_SIZE),
                           password_required, share, now + valid, valid, generation,
                           self._node)
        ms = int(valid * 1000)
        fields = self._fields(reg)

        def claim(p: Any) -> None:
            self._link.claim(p, [key, *(self._look(x) for x in looks)],
                             [ms, name, *fields])
            self._index(p, reg, wall)
        claimed, *_ = self._link.run(claim)
        if claimed != 1:
            return ErrorCode.NAME_TAKEN  # another node registered it meanwhile
        return reg, True

    @staticmethod
    def _members(name: str) -> tuple[bytes, bytes]:
        """The list's members for a name: the name, a NUL, its password flag (so LIST
        reads the flag without reading each record; NUL sorts before any character)."""
        raw = name.encode() + b"\x00"
        return raw + b"0", raw + b"1"

    def _index(self, p: Any, reg: Registration, wall: float, listed: bool = True) -> None:
        until = wall + reg.valid
        if listed:
            off, on = self._members(reg.name)
            if reg.password_required:
                off, on = on, off
            p.zrem(self._names, on)
            p.zadd(self._names, {off: 0})
        p.zadd(self._regs, {reg.name: until})
        pfx = self._pfx(reg.prefix)
        p.zadd(pfx, {reg.name: until})
        p.pexpire(pfx, int(self._config.max_reg_valid * 1000))

    def _renew(self, reg: Registration, wall: float,
               fields: list[bytes | str | int | float], listed: bool = True) -> None:
        keys = [self._key(reg.name), *(self._look(x) for x in reg.looks)]

        def renew(p: Any) -> None:
            self._link.update(p, keys, [int(reg.valid * 1000), *fields])
            self._index(p, reg, wall, listed)
        self._link.run(renew)

    def owned(self, name: str, token: bytes, source: Address, now: float
              ) -> Registration | None:
        reg = self.live(name, now)
        if reg is None or reg.public != source:
            return None
        return reg if verify(reg.token, token) else None

    def refresh(self, reg: Registration, share: bytes, now: float) -> None:
        reg.expires = now + reg.valid
        reg.share = share
        reg.node = self._node  # this node is the one the host talks to now
        self._renew(reg, time.time(), [b"s", share, b"n", self._node], listed=False)

    def drop(self, reg: Registration) -> None:
        def drop(p: Any) -> None:
            p.delete(self._key(reg.name), *(self._look(x) for x in reg.looks))
            p.zrem(self._names, *self._members(reg.name))
            p.zrem(self._regs, reg.name)
            p.zrem(self._pfx(reg.prefix), reg.name)
        self._link.run(drop)

    def after(self, name: str, now: float) -> Iterator[Registration]:
        """Two round trips a page: the names (with their password flags), then their
        expiries from ``regs``; a name whose registration is gone is skipped."""
        start = b"(" + name.encode() + b"\x00\xff"  # after every member of ``name``
        while True:
            page: list[Any] = self._link.run(
                _call("zrangebylex", self._names, start, b"+", 0, 64))[0]
            if not page:
                return
            entries: list[tuple[str, bool]] = []
            for raw in page:
                try:
                    reg_name, flag = raw.decode().rsplit("\x00", 1)
                except (AttributeError, UnicodeDecodeError, ValueError):
                    continue
                entries.append((reg_name, flag == "1"))
            wall = time.time()
            scores: list[Any] = self._link.run(
                _call("zmscore", self._regs, [n for n, _ in entries]))[0] if entries else []
            for (reg_name, flag), until in zip(entries, scores, strict=True):
                if until is not None and float(until) > wall:
                    yield Registration(reg_name, ("", 0), "", (), [], b"", flag, b"",
                                       now + float(until) - wall, 0.0)
            start = b"(" + page[-1]

    def expire(self, now: float) -> list[Registration]:
        """Names whose registration expired leave the list (Redis dropped the hashes)."""
        wall = time.time()
        [gone] = self._link.run(
            lambda p: p.zrangebyscore(self._regs, "-inf", wall, 0, 256))
        if gone:
            exists = self._link.run(lambda p: [p.exists(PREFIX + b"reg:" + n) for n in gone])
            dead = [n for n, e in zip(gone, exists, strict=True) if not e]

            def sweep(p: Any) -> None:
                for n in dead:
                    p.zrem(self._regs, n)
                    p.zrem(self._names, n + b"\x000", n + b"\x001")
            if dead:
                self._link.run(sweep)
        return []

    def count(self, now: float) -> int:
        [n] = self._link.run(lambda p: p.zcount(self._regs, time.time(), "+inf"))
        return int(n)


# --- introductions ---------------------------------------------------------------------

class RedisIntroductions:
    """``introductions.Introductions``'s methods over Redis."""

    def __init__(self, link: Link, node: str, config: ServerConfig, secret: bytes) -> None:
        self._link = link
        self._node = node
        self._config = config
        self._secret = secret
        self._all = PREFIX + b"intros"

    @staticmethod
    def _key(server: str, user: str) -> bytes:
        return PREFIX + b"intro:" + _pack(server, user)

    @staticmethod
    def _pfx(prefix: str) -> bytes:
        return PREFIX + b"intropfx:" + prefix.encode()

    def _token(self, server: str, user: str, client: Address, expires: float) -> bytes:
        return hashlib.blake2b(
            b"join token" + lp(server.encode(), user.encode(), client[0].encode(),
                               _PORT.pack(client[1]), _EXPIRY.pack(expires)),
            key=self._secret, digest_size=JOIN_TOKEN_SIZE).digest()

    def _load(self, server: str, user: str, now: float
              ) -> tuple[Introduction | None, float]:
        key = self._key(server, user)
        h, pttl = self._link.run(lambda p: (p.hgetall(key), p.pttl(key)))
        expires = _remaining(pttl, now)
        if not isinstance(h, dict) or not h or expires is None:
            return None, 0.0
        try:
            told = float(h[b"k"])
            return Introduction(server, user, _address(h[b"h"], h[b"p"]), h[b"x"].decode(),
                                _candidates(h[b"c"]), _sized(h[b"s"], _KEY_SIZE),
                                _sized(h[b"t"], JOIN_TOKEN_SIZE), expires, now,
                                h[b"n"].decode()), told
        except Exception:  # damaged or hostile: not a record
            log.debug("unreadable introduction record")
            return None, 0.0

    def live(self, server: str, user: str, now: float) -> Introduction | None:
        return self._load(server, user, now)[0]

    def join(self, server: str, user: str, client: Address, candidates: list[Candidate],
             share: bytes, now: float) -> tuple[Introduction, bool, bool] | ErrorCode:
        cfg = self._config
        key = self._key(server, user)
        intro, told = self._load(server, user, now)
        wall = time.time()
        if intro is not None:
            if intro.client != client:
                return ErrorCode.NAME_BUSY
            intro.candidates = candidates
            intro.share = share
            intro.node = self._node
            tell = wall - told >= cfg.intro_resend_interval
            fields: list[bytes | str | int | float] = [
                b"c", msgpack.packb(candidates), b"s", share, b"n", self._node]
            if tell:
                fields += [b"k", repr(wall)]
            self._link.run(lambda p: self._link.update(p, [key], ["", *fields]))
            return intro, False, tell
        prefix = prefix_of(client[0])
        pfx = self._pfx(prefix)

        def check(p: Any) -> None:
            p.zremrangebyscore(self._all, "-inf", wall)
            p.zcard(self._all)
            p.zremrangebyscore(pfx, "-inf", wall)
            p.zcard(pfx)
            p.exists(key)
        _, total, _, per_prefix, leftover = self._link.run(check)
        if total >= cfg.max_introductions or per_prefix >= cfg.max_introductions_per_ip:
            return ErrorCode.TOO_MANY
        if leftover:
            self._link.run(lambda p: p.delete(key))
        intro = Introduction(server, user, client, prefix, candidates, share,
                             self._token(server, user, client, wall + cfg.intro_valid),
                             now + cfg.intro_valid, now, self._node)
        member = _pack(server, user)

        def claim(p: Any) -> None:
            self._link.claim(p, [key], [
                int(cfg.intro_valid * 1000), b"", b"h", client[0], b"p", client[1],
                b"x", prefix, b"c", msgpack.packb(candidates), b"s", share,
                b"t", intro.token, b"k", repr(wall), b"n", self._node])
            p.zadd(self._all, {member: wall + cfg.intro_valid})
            p.zadd(pfx, {member: wall + cfg.intro_valid})
            p.pexpire(pfx, int(cfg.intro_valid * 1000))
        claimed, *_ = self._link.run(claim)
        if claimed != 1:
            return ErrorCode.NAME_BUSY  # another node took this JOIN meanwhile
        return intro, True, True

    def expire(self, now: float) -> None:
        """Nothing to do: Redis drops the hashes; the caps' sets are trimmed on use."""


# --- relays ----------------------------------------------------------------------------

class RedisRelays:
    """Relay assignments in Redis, forwarding from a local cache. Any node that gets a
    relayed datagram forwards it; the relay records which node each end talks to (the
    last node that got a datagram from it), and a datagram for an end that talks to
    another node is handed to that node, since that end's NAT admits only it."""

    #: Unknown relay ids remembered, so a flood of made-up ids costs Redis nothing.
    NEGATIVE = 4096
    #: Seconds between re-reads of which nodes the two ends talk to, while traffic flows.
    ENDS_RECHECK = 1.0

    def __init__(self, link: Link, node: str, config: ServerConfig, stats: ServerStats,
                 random_bytes: Callable[[int], bytes], router: Router | None = None
                 ) -> None:
        self._link = link
        self._node = node
        self._config = config
        self._stats = stats
        self._random = random_bytes
        self.router = router
        self.by_id: dict[bytes, Relay] = {}
        self._synced: dict[bytes, float] = {}
        self._unknown: dict[bytes, float] = {}
        #: Per relay: the nodes its server end and client end talk to, and when read.
        self._ends: dict[bytes, list[str]] = {}
        self._ends_read: dict[bytes, float] = {}
        self._all = RELAYS
        self.handed_off = 0
        self.directory = RelayDirectory(link)

    @staticmethod
    def _key(relay_id: bytes) -> bytes:
        return relay_key(relay_id)

    @staticmethod
    def _pair(server_end: Address, client_end: Address) -> bytes:
        return RELAY_PAIR + _pack(*server_end, *client_end)

    @staticmethod
    def _pfx(prefix: str) -> bytes:
        return RELAY_PFX + prefix.encode()

    def _cache(self, relay_id: bytes, server_end: Address, client_end: Address,
               prefix: str, age: float, now: float, nodes: tuple[str, str],
               tier: dict[bytes, Any] | None = None) -> Relay:
        rate = float(self._config.relay_bytes_per_sec)
        relay = Relay(relay_id, server_end, client_end, prefix, now - age, now,
                      TokenBucket(rate, 2 * rate, now))
        if tier:  # placed on a relay node (relaytier.py)
            relay.relay_node = _node(tier[b"rn"])
            relay.at = _address(tier[b"rh"], tier[b"rp"])
            relay.keys = (_sized(tier[b"ak"], RELAY_KEY_SIZE),
                          _sized(tier[b"bk"], RELAY_KEY_SIZE))
            relay.names = (tier[b"sn"].decode(), tier[b"cn"].decode())
            share = tier.get(b"cs", b"")
            relay.client_share = share if len(share) == PUBLIC_KEY_SIZE else b""
            relay.client_node = nodes[1]
            if not relay.relay_node:
                raise ValueError("bad relay node")
        self.by_id[relay_id] = relay
        self._synced[relay_id] = now
        self._ends[relay_id] = list(nodes)
        self._ends_read[relay_id] = now
        return relay

    def _load(self, relay_id: bytes, now: float) -> Relay | None:
        key = self._key(relay_id)
        [h] = self._link.run(lambda p: p.hgetall(key))
        if not isinstance(h, dict) or not h:
            return None
        try:
            age = max(0.0, time.time() - float(h[b"c"]))
            if age > self._config.relay_max_duration:
                return None
            return self._cache(relay_id, _address(h[b"ah"], h[b"ap"]),
                               _address(h[b"bh"], h[b"bp"]), h[b"x"].decode(), age, now,
                               (_node(h.get(b"an")), _node(h.get(b"bn"))),
                               h if b"rn" in h else None)
        except Exception:  # damaged or hostile: not a relay
            return None

    def open(self, server_end: Address, client_end: Address, client_prefix: str,
             now: float, nodes: tuple[str, str] = ("", ""),
             names: tuple[str, str] = ("", ""), client_share: bytes = b"") -> Relay | None:
        cfg = self._config
        pair = self._pair(server_end, client_end)
        [known] = self._link.run(lambda p: p.get(pair))
        if isinstance(known, bytes) and len(known) == RELAY_ID_SIZE:
            relay = self.by_id.get(known)
            if relay is None or relay.at is not None:  # a relay node's may have moved
                relay = self._load(known, now)
            if relay is not None:
                return self._on_live_node(relay, now)[0]
        wall = time.time()
        pfx = self._pfx(client_prefix)

        def check(p: Any) -> None:
            p.zremrangebyscore(self._all, "-inf", wall)
            p.zcard(self._all)
            p.zremrangebyscore(pfx, "-inf", wall)
            p.zcard(pfx)
        _, total, _, per_prefix = self._link.run(check)
        if total >= cfg.max_relays or per_prefix >= cfg.max_relays_per_ip:
            return None
        relay_id = self._random(RELAY_ID_SIZE)
        # Unused, it lapses soon; its first datagram renews it to the idle timeout.
        ms = int(cfg.relay_unused_timeout * 1000)
        until = wall + cfg.relay_unused_timeout

        # On the least loaded relay node, when the deployment has some; else here.
        placed = self.directory.place()
        tier: dict[bytes, Any] = {}
        if placed is not None:
            (node, at), random = placed, self._random
            tier = {b"rn": node.encode(), b"rh": at[0].encode(), b"rp": str(at[1]).encode(),
                    b"ak": random(RELAY_KEY_SIZE), b"bk": random(RELAY_KEY_SIZE),
                    b"sn": names[0].encode(), b"cn": names[1].encode(), b"cs": client_share,
                    b"pair": pair[len(RELAY_PAIR):]}

        def create(p: Any) -> None:
            p.set(pair, relay_id, px=ms, nx=True)
            p.hset(self._key(relay_id), mapping={
                b"ah": server_end[0], b"ap": server_end[1], b"bh": client_end[0],
                b"bp": client_end[1], b"x": client_prefix, b"c": repr(wall),
                b"an": nodes[0], b"bn": nodes[1], **tier})
            p.pexpire(self._key(relay_id), ms)
            p.zadd(self._all, {relay_id: until})
            p.zadd(pfx, {relay_id: until})
            p.pexpire(pfx, ms)
        created, *_ = self._link.run(create)
        if not created:  # another node made this pair's relay meanwhile: use that one
            self._link.run(lambda p: p.delete(self._key(relay_id)))
            [other] = self._link.run(lambda p: p.get(pair))
            return self._load(other, now) if isinstance(other, bytes) else None
        self._stats.relays_opened += 1
        log.debug("relay %s opened%s", relay_id.hex(),
                  f" on relay node {placed[0]}" if placed else "")
        return self._cache(relay_id, server_end, client_end, client_prefix, 0.0, now,
                           nodes, tier or None)

    def _on_live_node(self, relay: Relay, now: float) -> tuple[Relay, bool]:
        """The relay, moved to a live relay node first if its node is gone; whether
        this call moved it."""
        if relay.at is None or self.directory.alive(relay.relay_node):
            return relay, False
        placed = self.directory.place()
        if placed is None:
            return relay, False  # no live node: the players keep asking
        node, at = placed
        moved = self.directory.move(self._key(relay.relay_id), relay.relay_node, node, at)
        if moved:
            log.info("relay %s moved from lost relay node %s to %s", relay.relay_id.hex(),
                     relay.relay_node, node)
        return self._load(relay.relay_id, now) or relay, moved

    def relocate(self, relay_id: bytes, key: bytes, now: float
                 ) -> tuple[Relay, int, bool] | None:
        relay = self._load(relay_id, now)
        end = relay.end_of(key) if relay is not None else None
        if relay is None or end is None:
            return None
        relay, moved = self._on_live_node(relay, now)
        return relay, end, moved

    def forward(self, data: bytes, source: Address, now: float) -> list[Reply]:
        relay_id, _ = decode_relay(data)
        relay = self.by_id.get(relay_id)
        if relay is None:
            if self._unknown.get(relay_id, float("-inf")) > now:
                self._stats.relay_dropped += 1
                return []
            relay = self._load(relay_id, now)
            if relay is None:
                if len(self._unknown) >= self.NEGATIVE:
                    self._unknown.clear()
                self._unknown[relay_id] = now + 1.0
                self._stats.relay_dropped += 1
                return []
        to = relay.pass_on(data, source, now, self._stats)
        if to is None:
            return []
        if (relay.forwarded == 1
                or now - self._synced.get(relay_id, now) > self._config.relay_idle_timeout / 4):
            self._keep(relay, now)  # the first datagram here, then a few times a timeout
        sender = 0 if source == relay.server_end else 1
        ends = self._ends.get(relay_id)
        if (ends is not None and ends[sender] == self._node
                and now - self._ends_read[relay_id] < self.ENDS_RECHECK):
            other = ends[1 - sender]  # the common case: nothing to read or write
        else:
            other = self._ends_of(relay, sender, now)
        if other and other != self._node and self.router is not None \
                and self.router.deliver(other, (data, to)):
            self.handed_off += 1
            return []
        return [(data, to)]

    def _ends_of(self, relay: Relay, sender: int, now: float) -> str:
        """Records that the end ``sender`` (0 server, 1 client) talks to this node; the
        node the other end talks to. Redis failing here costs only the hand-over."""
        relay_id = relay.relay_id
        ends = self._ends.setdefault(relay_id, ["", ""])
        try:
            if now - self._ends_read.get(relay_id, float("-inf")) >= self.ENDS_RECHECK:
                self._ends_read[relay_id] = now
                [read] = self._link.run(_call("hmget", self._key(relay_id), b"an", b"bn"))
                if isinstance(read, list) and len(read) == 2:
                    ends[0], ends[1] = _node(read[0]), _node(read[1])
            if ends[sender] != self._node:
                ends[sender] = self._node
                self._link.run(lambda p: self._link.update(
                    p, [self._key(relay_id)], ["", b"an" if sender == 0 else b"bn",
                                               self._node]))
        except StoreError:
            pass
        return ends[1 - sender]

    def accepts(self, data: bytes, to: Address, now: float) -> bool:
        """Whether another node may hand us this relayed datagram for ``to``: a relay
        that Redis knows, ``to`` one of its ends, within the relay's byte rate."""
        try:
            relay_id, _ = decode_relay(data)
            relay = self.by_id.get(relay_id) or self._load(relay_id, now)
        except (ProtocolError, StoreError):
            return False
        if relay is None or to not in (relay.server_end, relay.client_end):
            return False
        if not relay.bucket.take(now, len(data)):
            return False
        relay.last_used = now
        return True

    def _keep(self, relay: Relay, now: float) -> None:
        """Traffic renews the relay's TTL in Redis (at most a few times per idle timeout);
        a failure here costs only this renewal, never the datagram."""
        self._synced[relay.relay_id] = now
        ms = int(self._config.relay_idle_timeout * 1000)
        until = time.time() + self._config.relay_idle_timeout
        with contextlib.suppress(StoreError):
            self._link.run(lambda p: (
                p.pexpire(self._key(relay.relay_id), ms),
                p.pexpire(self._pair(relay.server_end, relay.client_end), ms),
                p.zadd(self._all, {relay.relay_id: until}),
                p.zadd(self._pfx(relay.prefix), {relay.relay_id: until})))

    def expire(self, now: float) -> None:
        cfg = self._config
        for relay in [r for r in self.by_id.values()
                      if now - r.last_used > cfg.relay_idle_timeout
                      or now - r.created > cfg.relay_max_duration
                      or (r.forwarded == 0 and now - r.created > cfg.relay_unused_timeout)]:
            del self.by_id[relay.relay_id]
            self._synced.pop(relay.relay_id, None)
            self._ends.pop(relay.relay_id, None)
            self._ends_read.pop(relay.relay_id, None)
        self._unknown = {k: t for k, t in self._unknown.items() if t > now}


# --- rate limits -----------------------------------------------------------------------

class SharedRate:
    """Requests per prefix, counted across nodes. This node's own token bucket decides at
    once (a flood against one node costs Redis nothing); the counts of every node are
    summed in Redis in fixed windows of burst/rate seconds, every ``FLUSH`` seconds in
    one round trip for all the prefixes seen meanwhile, and a prefix over ``burst`` in
    the current window is refused by every node until the window ends. A prefix may
    overshoot by what one ``FLUSH`` lets through each node."""

    FLUSH = 0.1
    #: Prefixes counted per flush at most (the rest are limited by this node alone).
    MAX_PENDING = 8192

    def __init__(self, link: Link, config: ServerConfig) -> None:
        self._link = link
        self._local = Buckets(config.requests_per_sec_per_ip, config.request_burst,
                              config.max_tracked_sources)
        self._window = max(config.request_burst / max(config.requests_per_sec_per_ip, 1e-9),
                           0.001)
        self._limit = config.request_burst
        self._current = -1
        self._pending: dict[str, float] = {}
        self._blocked: set[str] = set()
        self._next_flush = float("-inf")

    def take(self, key: str, now: float, cost: float = 1.0) -> bool:
        if not self._local.take(key, now, cost):
            return False
        window = int(time.time() // self._window)
        if window != self._current:
            self._current = window
            self._blocked.clear()
        if key in self._blocked:
            return False
        if key in self._pending or len(self._pending) < self.MAX_PENDING:
            self._pending[key] = self._pending.get(key, 0.0) + cost
        if now >= self._next_flush:
            self._flush(now, window)
        return True

    def _flush(self, now: float, window: int) -> None:
        self._next_flush = now + self.FLUSH
        pending, self._pending = list(self._pending.items()), {}
        if not pending:
            return
        suffix = b":" + str(window).encode()
        ms = int(2000 * self._window) + 1

        def count(p: Any) -> None:
            for key, cost in pending:
                name = PREFIX + b"rate:" + key.encode() + suffix
                p.incrbyfloat(name, cost)
                p.pexpire(name, ms)
        try:
            totals = self._link.run(count)[::2]
        except StoreError:
            return  # Redis down: this node's own limits only
        for (key, _), total in zip(pending, totals, strict=True):
            try:
                if float(total) > self._limit:
                    self._blocked.add(key)
            except (TypeError, ValueError):
                continue

    def __len__(self) -> int:
        return len(self._local)


# --- the node --------------------------------------------------------------------------

class Cluster:
    """This node's part of a deployment: the stores over Redis, and its pub/sub channel
    on which other nodes hand it datagrams to send."""

    def __init__(self, url: str, key: KeyPair, node: str | None = None) -> None:
        self.link = Link(url)
        self.key = key
        self._node = node or os.urandom(6).hex()
        self.channel = PREFIX + b"node:" + self._node.encode()
        self._pubsub: PubSub | None = None
        self.relays: RedisRelays | None = None
        self._sock: socket.socket | None = None
        self._selector: selectors.BaseSelector | None = None
        self._retry_at = 0.0
        self._retry_delay = BACKOFF
        self._last_log = float("-inf")
        #: Datagrams other nodes hand us, per addressee (a damaged Redis cannot make a
        #: node a stream of datagrams at anyone).
        self._deliver_rate = Buckets(100.0, 200.0, 65_536)
        self.delivered = 0
        self.refused = 0
        self.handed_off = 0

    @property
    def node(self) -> str:
        return self._node

    def stores(self, config: ServerConfig, stats: ServerStats,
               random_bytes: Callable[[int], bytes]) -> Stores:
        """The core's stores (a ``core.StoresFactory``)."""
        self.relays = RedisRelays(self.link, self._node, config, stats, random_bytes, self)
        return Stores(RedisRegistry(self.link, self._node, config, random_bytes),
                      RedisIntroductions(self.link, self._node, config,
                                         derived_secret(self.key, b"join token")),
                      self.relays,
                      SharedRate(self.link, config),
                      derived_secret(self.key, b"cookie"), time.time, self)

    def deliver(self, node: str, reply: Reply) -> bool:
        data, (host, port) = reply
        try:
            [listeners] = self.link.run(lambda p: p.publish(
                PREFIX + b"node:" + node.encode(), _pack(data, host, port)))
        except StoreError:
            return False
        if isinstance(listeners, int) and listeners > 0:
            self.handed_off += 1
            return True
        return False

    # --- the channel, in the server's selector ---------------------------------------

    def attach(self, selector: selectors.BaseSelector) -> None:
        self._selector = selector
        self._subscribe(time.monotonic())

    def _subscribe(self, now: float) -> None:
        try:
            pubsub: PubSub = self.link.client.pubsub(  # type: ignore[no-untyped-call]
                ignore_subscribe_messages=True)
            pubsub.subscribe(self.channel)
            conn: Any = pubsub.connection  # typed None until subscribed
            sock = getattr(conn, "_sock", None) if conn is not None else None
            if not isinstance(sock, socket.socket):
                raise redis.ConnectionError("no socket")
        except (redis.RedisError, OSError) as exc:
            self._failed(now, exc)
            return
        self._pubsub, self._sock = pubsub, sock
        self._retry_delay = BACKOFF
        if self._selector is not None:
            self._selector.register(sock, selectors.EVENT_READ, self)
        log.info("cluster node %s: subscribed to its channel on %s", self._node,
                 _safe_url(self.link.url))

    def _failed(self, now: float, exc: BaseException) -> None:
        self._close()
        self._retry_at = now + self._retry_delay
        self._retry_delay = min(self._retry_delay * 2, 10.0)
        if now - self._last_log >= INTERNAL_ERROR_LOG_INTERVAL:
            self._last_log = now
            log.error("cluster node %s: Redis channel lost (%s); retrying in %.0f s",
                      self._node, type(exc).__name__, self._retry_at - now)

    def _close(self) -> None:
        if self._sock is not None and self._selector is not None:
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(self._sock)
        if self._pubsub is not None:
            with contextlib.suppress(redis.RedisError, OSError):
                self._pubsub.close()
        self._pubsub = self._sock = None

    def tick(self, now: float) -> None:
        """Called about once a second: resubscribe after a loss."""
        if self._pubsub is None:
            if now >= self._retry_at:
                self._subscribe(now)
        else:
            self._rebind(now)

    def _rebind(self, now: float) -> None:
        """redis-py may reconnect the channel by itself (and subscribe again) inside
        ``get_message``: the selector must then watch the new socket."""
        if self._pubsub is None:
            return
        conn: Any = self._pubsub.connection
        sock = getattr(conn, "_sock", None) if conn is not None else None
        if sock is self._sock:
            return
        if self._selector is not None and self._sock is not None:
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(self._sock)
        self._sock = None
        if not isinstance(sock, socket.socket):
            self._failed(now, redis.ConnectionError("channel without a socket"))
            return
        self._sock = sock
        if self._selector is not None:
            self._selector.register(sock, selectors.EVENT_READ, self)
        log.info("cluster node %s: its channel reconnected", self._node)

    def readable(self, now: float) -> list[Reply]:
        """Datagrams other nodes handed us, to send from our socket."""
        out: list[Reply] = []
        pubsub = self._pubsub
        if pubsub is None:
            return out
        try:
            for _ in range(1024):
                message = pubsub.get_message(ignore_subscribe_messages=True, timeout=0.0)
                if message is None:
                    break
                reply = self._parse(message.get("data"), now)
                if reply is not None:
                    out.append(reply)
        except (redis.RedisError, OSError, ValueError) as exc:
            self._failed(now, exc)
        else:
            self._rebind(now)
        return out

    def _parse(self, raw: object, now: float) -> Reply | None:
        try:
            if not isinstance(raw, bytes):
                raise ValueError("not bytes")
            data, host, port = msgpack.unpackb(raw)
            if not isinstance(data, bytes) or len(data) > MAX_DELIVERED:
                raise ValueError("not a datagram")
            kind = peek_kind(data)
            to = _address(host.encode(), str(port).encode())
        except Exception:  # a damaged (or hostile) message: dropped
            self.refused += 1
            return None
        if kind is Kind.RELAY:
            # Relayed traffic: only to an end of a relay Redis knows, at its own rate.
            if self.relays is None or not self.relays.accepts(data, to, now):
                self.refused += 1
                return None
            self.delivered += 1
            return (data, to)
        if kind is not Kind.SEALED_REPLY or not self._deliver_rate.take(
                f"{to[0]}|{to[1]}", now):
            self.refused += 1
            return None
        self.delivered += 1
        return (data, to)

    def close(self) -> None:
        self._close()
        with contextlib.suppress(redis.RedisError, OSError):
            self.link.client.close()


def _safe_url(url: str) -> str:
    """The URL without its password, for logs."""
    if "@" in url:
        scheme, _, rest = url.partition("://")
        return f"{scheme}://***@{rest.rpartition('@')[2]}"
    return url

