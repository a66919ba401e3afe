"""The handshake server's logic, pure: datagrams and a clock in, replies out.

It keeps who is registered under which name, introduces a client to the server player
it asks for (each side gets the other's public address as seen here and LAN address as
reported, plus a fresh shared secret), and answers server-list queries. Everything is
bounded: registrations in total and per source address, pending introductions, the
size of every reply.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from framework.protocol.constants import HS_SERVER_NAME, NONCE_SIZE, SERVER_LIST_PAGE, TOKEN_SIZE
from framework.protocol.errors import ProtocolError
from framework.protocol.wire import (
    COOKIE_KINDS,
    ErrorCode,
    Kind,
    decode_control,
    decode_relay,
    encode_control,
    peek_kind,
)

log = logging.getLogger("server")

Address = tuple[str, int]
Reply = tuple[bytes, Address]


@dataclass(frozen=True)
class ServerConfig:
    """Limits and timings of the handshake server."""

    #: Registrations held at once; new names are refused beyond this.
    max_registrations: int = 100_000
    #: Registrations from one IP address (a household behind one NAT has a few players).
    max_registrations_per_ip: int = 16
    #: Shortest and longest registration validity a peer may ask for, in seconds.
    min_reg_valid: float = 10.0
    max_reg_valid: float = 300.0
    #: Seconds an introduction stays valid (a repeated JOIN gets the same secret).
    intro_valid: float = 30.0
    #: Pending introductions held at once, and per source IP address.
    max_introductions: int = 100_000
    max_introductions_per_ip: int = 32
    #: Requests per second one IP address may make (token bucket), and the burst allowed.
    requests_per_sec_per_ip: float = 20.0
    request_burst: float = 40.0
    #: Source addresses whose rate is tracked at once (least recently seen forgotten first).
    max_tracked_sources: int = 65_536
    #: Seconds a cookie stays valid (it is valid for the window it was made in and the next).
    cookie_window: float = 30.0
    #: Relay traffic between introduced players whose hole punching failed.
    relay: bool = True
    #: Relays at once, in total and per source IP address.
    max_relays: int = 1000
    max_relays_per_ip: int = 8
    #: Bytes per second one relay forwards (both directions together); twice that may
    #: pass in a burst. 64 KiB/s carries any game this engine is meant for.
    relay_bytes_per_sec: int = 64 * 1024
    #: Seconds a relay may live, and may stay unused, before it is closed.
    relay_max_duration: float = 4 * 3600.0
    relay_idle_timeout: float = 60.0


_REQUESTS = frozenset({Kind.REGISTER, Kind.REFRESH, Kind.UNREGISTER, Kind.JOIN, Kind.LIST,
                       Kind.RELAY_REQUEST})


@dataclass(slots=True)
class Registration:
    name: str
    public: Address
    lan: Address
    token: bytes
    password_required: bool
    expires: float
    valid: float  # seconds granted, renewed by each refresh


@dataclass(slots=True)
class Introduction:
    nonce: bytes
    expires: float


@dataclass(slots=True)
class Relay:
    """Traffic forwarding between one server player and one client."""

    relay_id: bytes
    server_end: Address
    client_end: Address
    created: float
    last_used: float
    tokens: float
    stamp: float
    forwarded: int = 0
    dropped: int = 0


@dataclass
class ServerStats:
    """Counts since start, for logs and benchmarks."""

    received: int = 0
    replies: int = 0
    dropped: int = 0
    registrations: int = 0
    introductions: int = 0
    expired: int = 0
    relayed_packets: int = 0
    relayed_bytes: int = 0
    relay_dropped: int = 0
    rate_limited: int = 0
    cookies_sent: int = 0
    amplification_refused: int = 0
    by_kind: Counter[Kind] = field(default_factory=Counter)


class HandshakeCore:
    """Registrations, introductions and the server list."""

    def __init__(self, config: ServerConfig | None = None,
                 random_bytes: Callable[[int], bytes] | None = None) -> None:
        if random_bytes is None:
            raise ValueError("HandshakeCore needs a random_bytes source (os.urandom)")
        self.config = config if config is not None else ServerConfig()
        self._random = random_bytes
        self.registrations: dict[str, Registration] = {}
        self._per_ip: Counter[str] = Counter()
        self._intros: dict[tuple[str, str, Address], Introduction] = {}
        self._intro_clients: dict[tuple[str, str], Address] = {}  # newest client address
        self._intros_per_ip: Counter[str] = Counter()
        self._cookie_secret = random_bytes(32)
        self._buckets: dict[str, list[float]] = {}  # ip -> [tokens, stamp], in LRU order
        self.relays: dict[bytes, Relay] = {}
        self._relay_of_pair: dict[tuple[Address, Address], bytes] = {}
        self._relays_per_ip: Counter[str] = Counter()
        self._sorted_names: list[str] | None = None
        self.stats = ServerStats()

    # --- the boundary ---------------------------------------------------------------

    def receive(self, data: bytes, source: Address, now: float) -> list[Reply]:
        """Handle one datagram; returns the replies. Never raises for bad input."""
        self.stats.received += 1
        try:
            kind = peek_kind(data)
            if kind is Kind.RELAY:
                return self._relay(data, source, now)
            if kind not in _REQUESTS:
                raise ProtocolError(f"{kind.name} is not a request")
            if not self._allow(source[0], now):
                self.stats.rate_limited += 1
                return []
            fields = decode_control(kind, data)
        except ProtocolError as exc:
            self.stats.dropped += 1
            log.debug("dropped datagram from %s: %s", source, exc)
            return []
        self.stats.by_kind[kind] += 1
        if kind in COOKIE_KINDS and not self._cookie_ok(fields[-2], source, now):
            # Return routability: nothing is kept for an address until it shows it can
            # receive at that address, by echoing this cookie.
            self.stats.cookies_sent += 1
            replies = [(encode_control(Kind.COOKIE, [fields[0], self._cookie(source, now)]),
                        source)]
        else:
            replies = self._handle(kind, fields, source, now)
        out = []
        for reply, to in replies:
            if to == source and len(reply) > len(data):
                # Never answer with more than was asked with: no amplification.
                self.stats.amplification_refused += 1
                continue
            out.append((reply, to))
        self.stats.replies += len(out)
        return out

    def _allow(self, ip: str, now: float) -> bool:
        """Token bucket per source IP; the table forgets the least recently seen."""
        cfg = self.config
        bucket = self._buckets.pop(ip, None)
        if bucket is None:
            bucket = [cfg.request_burst, now]
            if len(self._buckets) >= cfg.max_tracked_sources:
                del self._buckets[next(iter(self._buckets))]
        else:
            bucket[0] = min(cfg.request_burst,
                            bucket[0] + (now - bucket[1]) * cfg.requests_per_sec_per_ip)
            bucket[1] = now
        self._buckets[ip] = bucket
        if bucket[0] < 1.0:
            return False
        bucket[0] -= 1.0
        return True

    def _cookie(self, source: Address, now: float, back: int = 0) -> bytes:
        window = int(now // self.config.cookie_window) - back
        h = hashlib.blake2b(key=self._cookie_secret, digest_size=16)
        h.update(f"{source[0]}|{source[1]}|{window}".encode())
        return h.digest()

    def _cookie_ok(self, cookie: object, source: Address, now: float) -> bool:
        if not isinstance(cookie, bytes) or len(cookie) != 16:
            return False
        return any(hmac.compare_digest(cookie, self._cookie(source, now, back))
                   for back in (0, 1))

    def _handle(self, kind: Kind, f: list[object], source: Address, now: float) -> list[Reply]:
        rid = f[0]
        assert isinstance(rid, int)
        if kind is Kind.REGISTER:
            return self._register(rid, f, source, now)
        if kind is Kind.REFRESH:
            return self._refresh(rid, f, source, now)
        if kind is Kind.UNREGISTER:
            return self._unregister(rid, f, source)
        if kind is Kind.JOIN:
            return self._join(rid, f, source, now)
        if kind is Kind.LIST:
            return self._list(rid, f, source)
        if kind is Kind.RELAY_REQUEST:
            return self._relay_request(rid, f, source, now)
        return []  # pragma: no cover - receive() admits requests only

    @staticmethod
    def _error(rid: int, code: ErrorCode, message: str, to: Address) -> list[Reply]:
        # Errors go back to the datagram's own source, never to an address it names.
        return [(encode_control(Kind.HS_ERROR, [rid, int(code), message]), to)]

    # --- requests -------------------------------------------------------------------

    def _register(self, rid: int, f: list[object], source: Address, now: float) -> list[Reply]:
        _, name, lan_host, lan_port, password_required, secs = f[:6]
        assert isinstance(name, str) and isinstance(lan_host, str) and isinstance(lan_port, int)
        assert isinstance(password_required, bool) and isinstance(secs, (int, float))
        if name == HS_SERVER_NAME:
            return self._error(rid, ErrorCode.BAD_NAME, f"{name!r} is reserved", source)
        valid = min(max(float(secs), self.config.min_reg_valid), self.config.max_reg_valid)
        reg = self.registrations.get(name)
        if reg is not None and reg.expires > now:
            if reg.public != source:
                return self._error(rid, ErrorCode.NAME_TAKEN, f"the name {name!r} is taken",
                                   source)
            # The same player again (our earlier answer was lost): same token, fresh expiry.
            reg.lan = (lan_host, lan_port)
            reg.password_required = password_required
            reg.valid = valid
            reg.expires = now + valid
        else:
            if reg is not None:
                self._drop(reg)
            if len(self.registrations) >= self.config.max_registrations:
                return self._error(rid, ErrorCode.TOO_MANY, "the server is full", source)
            if self._per_ip[source[0]] >= self.config.max_registrations_per_ip:
                return self._error(rid, ErrorCode.TOO_MANY, "too many registrations from "
                                   "your address", source)
            reg = Registration(name, source, (lan_host, lan_port), self._random(TOKEN_SIZE),
                               password_required, now + valid, valid)
            self.registrations[name] = reg
            self._per_ip[source[0]] += 1
            self._sorted_names = None
            self.stats.registrations += 1
            log.info("registered %r at %s:%d (LAN %s:%d)", name, *source, lan_host, lan_port)
        return [(encode_control(Kind.REGISTERED, [rid, reg.token, source[0], source[1], valid]),
                 source)]

    def _owned(self, name: object, token: object, source: Address, now: float
               ) -> Registration | None:
        reg = self.registrations.get(name) if isinstance(name, str) else None
        if reg is None or reg.expires <= now or reg.public != source:
            return None
        if not isinstance(token, bytes) or not hmac.compare_digest(reg.token, token):
            return None
        return reg

    def _refresh(self, rid: int, f: list[object], source: Address, now: float) -> list[Reply]:
        _, name, token = f[:3]
        reg = self._owned(name, token, source, now)
        if reg is None:
            return self._error(rid, ErrorCode.NOT_REGISTERED, f"{name!r} is not registered "
                               "to you", source)
        reg.expires = now + reg.valid
        return [(encode_control(Kind.REFRESHED, [rid, reg.valid]), source)]

    def _unregister(self, rid: int, f: list[object], source: Address) -> list[Reply]:
        _, name, token = f[:3]
        reg = self._owned(name, token, source, float("-inf"))
        if reg is None:
            return []
        self._drop(reg)
        log.info("unregistered %r", reg.name)
        return [(encode_control(Kind.UNREGISTERED, [rid]), source)] if rid else []

    def _drop(self, reg: Registration) -> None:
        if self.registrations.get(reg.name) is reg:
            del self.registrations[reg.name]
            self._sorted_names = None
            self._per_ip[reg.public[0]] -= 1
            if self._per_ip[reg.public[0]] <= 0:
                del self._per_ip[reg.public[0]]

    def _join(self, rid: int, f: list[object], source: Address, now: float) -> list[Reply]:
        _, server, user, lan_host, lan_port = f[:5]
        assert isinstance(server, str) and isinstance(user, str)
        assert isinstance(lan_host, str) and isinstance(lan_port, int)
        reg = self.registrations.get(server)
        if reg is None or reg.expires <= now:
            return self._error(rid, ErrorCode.NO_SUCH_SERVER, f"no server named {server!r}",
                               source)
        if user in (server, HS_SERVER_NAME):
            return self._error(rid, ErrorCode.BAD_NAME, f"the name {user!r} cannot join",
                               source)
        key = (server, user, source)
        intro = self._intros.get(key)
        if intro is None or intro.expires <= now:
            if (len(self._intros) >= self.config.max_introductions
                    or self._intros_per_ip[source[0]] >= self.config.max_introductions_per_ip):
                return self._error(rid, ErrorCode.TOO_MANY, "the server is busy", source)
            if intro is None:
                self._intros_per_ip[source[0]] += 1
            intro = Introduction(self._random(NONCE_SIZE), now + self.config.intro_valid)
            self._intros[key] = intro
            self._intro_clients[(server, user)] = source
            self.stats.introductions += 1
            log.info("introducing %r (%s:%d) to %r", user, *source, server)
        to_client = encode_control(Kind.INTRODUCE, [
            rid, server, reg.public[0], reg.public[1], reg.lan[0], reg.lan[1],
            reg.password_required, intro.nonce])
        to_server = encode_control(Kind.INTRODUCE, [
            0, user, source[0], source[1], lan_host, lan_port, reg.password_required,
            intro.nonce])
        return [(to_client, source), (to_server, reg.public)]

    def _list(self, rid: int, f: list[object], source: Address) -> list[Reply]:
        page = f[1]
        assert isinstance(page, int)
        if self._sorted_names is None:
            self._sorted_names = sorted(self.registrations)
        names = self._sorted_names
        pages = max(1, -(-len(names) // SERVER_LIST_PAGE))
        chunk = names[page * SERVER_LIST_PAGE:(page + 1) * SERVER_LIST_PAGE]
        entries = [[n, self.registrations[n].password_required] for n in chunk
                   if n in self.registrations]
        return [(encode_control(Kind.LIST_REPLY, [rid, page, pages, entries]), source)]

    # --- relay ------------------------------------------------------------------------

    def _relay_request(self, rid: int, f: list[object], source: Address, now: float
                       ) -> list[Reply]:
        _, server, client = f[:3]
        assert isinstance(server, str) and isinstance(client, str)
        if not self.config.relay:
            return self._error(rid, ErrorCode.RELAY_DISABLED, "this server does not relay",
                               source)
        reg = self.registrations.get(server)
        client_end = self._intro_clients.get((server, client))
        intro = self._intros.get((server, client, client_end)) if client_end else None
        if (reg is None or client_end is None or intro is None or intro.expires <= now
                or source not in (reg.public, client_end)):
            # Only the two players of a live introduction may ask, each from its own address.
            return self._error(rid, ErrorCode.NOT_INTRODUCED, "no introduction to relay",
                               source)
        pair = (reg.public, client_end)
        relay_id = self._relay_of_pair.get(pair)
        if relay_id is None or relay_id not in self.relays:
            ips = {reg.public[0], client_end[0]}
            if (len(self.relays) >= self.config.max_relays
                    or any(self._relays_per_ip[ip] >= self.config.max_relays_per_ip
                           for ip in ips)):
                return self._error(rid, ErrorCode.TOO_MANY, "no relay free", source)
            relay_id = self._random(8)
            self.relays[relay_id] = Relay(relay_id, reg.public, client_end, now, now,
                                          float(self.config.relay_bytes_per_sec), now)
            self._relay_of_pair[pair] = relay_id
            for ip in ips:
                self._relays_per_ip[ip] += 1
            log.info("relaying between %r (%s:%d) and %r (%s:%d)", server, *reg.public,
                     client, *client_end)
        if source == reg.public:
            mine, other, other_end = client, server, client_end
        else:
            mine, other, other_end = server, client, reg.public
        return [(encode_control(Kind.RELAY_READY, [rid, relay_id, mine]), source),
                (encode_control(Kind.RELAY_READY, [0, relay_id, other]), other_end)]

    def _relay(self, data: bytes, source: Address, now: float) -> list[Reply]:
        try:
            relay_id, _ = decode_relay(data)
        except ProtocolError:
            self.stats.dropped += 1
            return []
        relay = self.relays.get(relay_id)
        if relay is None:
            self.stats.relay_dropped += 1
            return []
        if source == relay.server_end:
            to = relay.client_end
        elif source == relay.client_end:
            to = relay.server_end
        else:
            # Not one of the two players: no one can inject into a relay they are not in.
            self.stats.relay_dropped += 1
            return []
        rate = float(self.config.relay_bytes_per_sec)
        relay.tokens = min(2 * rate, relay.tokens + (now - relay.stamp) * rate)
        relay.stamp = now
        if relay.tokens < len(data):
            relay.dropped += 1
            self.stats.relay_dropped += 1
            return []
        relay.tokens -= len(data)
        relay.last_used = now
        relay.forwarded += 1
        self.stats.relayed_packets += 1
        self.stats.relayed_bytes += len(data)
        return [(data, to)]  # forwarded as it is: the same size, so no amplification

    def _drop_relay(self, relay: Relay) -> None:
        del self.relays[relay.relay_id]
        self._relay_of_pair.pop((relay.server_end, relay.client_end), None)
        for ip in {relay.server_end[0], relay.client_end[0]}:
            self._relays_per_ip[ip] -= 1
            if self._relays_per_ip[ip] <= 0:
                del self._relays_per_ip[ip]

    # --- time -----------------------------------------------------------------------

    def expire(self, now: float) -> None:
        """Forget registrations and introductions whose time is up."""
        for reg in [r for r in self.registrations.values() if r.expires <= now]:
            self._drop(reg)
            self.stats.expired += 1
            log.info("registration of %r expired", reg.name)
        for key in [k for k, i in self._intros.items() if i.expires <= now]:
            del self._intros[key]
            ip = key[2][0]
            self._intros_per_ip[ip] -= 1
            if self._intros_per_ip[ip] <= 0:
                del self._intros_per_ip[ip]
            if self._intro_clients.get(key[:2]) == key[2]:
                del self._intro_clients[key[:2]]
        cfg = self.config
        for relay in [r for r in self.relays.values()
                      if now - r.last_used > cfg.relay_idle_timeout
                      or now - r.created > cfg.relay_max_duration]:
            log.info("relay %s closed after %d datagrams", relay.relay_id.hex(), relay.forwarded)
            self._drop_relay(relay)
