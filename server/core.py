"""The handshake server's logic, pure: datagrams and a clock in, replies out.

This module is the boundary every datagram crosses, in order of cost, cheapest first:

1. ``wire.peek_kind``: size, protocol id, version, kind. Relayed datagrams go to their
   relay; anything but a cookie request or a sealed request is dropped.
2. A token bucket per source *prefix* (IPv4 address, IPv6 /64), before any key work.
3. A COOKIE_REQUEST (padded to ``wire.COOKIE_REQUEST_SIZE``) gets a stateless cookie
   and the handshake server's public key. A sealed request's cookie is checked in clear; a bad or
   stale one gets a fresh COOKIE, so no X25519 work is done for a spoofed source.
4. Only then the request is opened (X25519 against the handshake server's static key, cached per
   peer key) and its fields checked against the schema.

No reply to the source is larger than the datagram it answers (no amplification), and
``receive`` never raises: a malformed datagram is dropped and counted, and any other
exception (a bug) is counted, logged at most once a second, and survived.
"""

from __future__ import annotations

import functools
import logging
import traceback
from collections.abc import Callable, Mapping

from framework.protocol.addresses import Address
from framework.protocol.constants import INTERNAL_ERROR_LOG_INTERVAL
from framework.protocol.crypto import KeyPair
from framework.protocol.errors import ProtocolError
from framework.protocol.limits import Buckets, prefix_of
from framework.protocol.wire import (
    Kind,
    decode_cookie_request,
    encode_cookie,
    peek_kind,
    split_sealed_request,
)

from .channels import CompactServerKeys
from .config import Reply, ServerConfig, ServerStats
from .cookies import Cookies
from .handlers import Requests
from .introductions import Introductions
from .registry import Registration, Registry
from .relays import Relay, Relays
from .store import RateStore, StoreError, Stores

#: Makes a core's stores: ``(config, stats, random_bytes) -> Stores``.
StoresFactory = Callable[[ServerConfig, ServerStats, Callable[[int], bytes]], Stores]

__all__ = ["HandshakeCore", "ServerConfig", "ServerStats", "StoresFactory", "memory_stores"]

log = logging.getLogger("server")

#: ``prefix_of`` parses the address (microseconds a datagram); the same sources come back
#: again and again. A pure function, so one bounded cache serves every core.
_prefix = functools.lru_cache(maxsize=4096)(prefix_of)


def memory_stores(config: ServerConfig, stats: ServerStats,
                  random_bytes: Callable[[int], bytes]) -> Stores:
    """Everything in this process's memory: the default, and a single server's."""
    cookie_secret = random_bytes(32)
    rate = Buckets(config.requests_per_sec_per_ip, config.request_burst,
                   config.max_tracked_sources)
    return Stores(Registry(config, random_bytes), Introductions(config, random_bytes(32)),
                  Relays(config, stats, random_bytes), rate, cookie_secret)


class HandshakeCore:
    """Registrations, introductions, relays and the game list, behind the boundary.

    ``stores`` makes where they are kept (``server.store``): in memory by default, in
    Redis for several nodes sharing one list of games (``server.cluster``)."""

    def __init__(self, config: ServerConfig | None, random_bytes: Callable[[int], bytes],
                 static_key: KeyPair, stores: StoresFactory | None = None) -> None:
        self.config = config if config is not None else ServerConfig()
        cfg = self.config
        self.stats = ServerStats()
        self.keys = CompactServerKeys(static_key, random_bytes, cfg.max_channels)
        made = (stores or memory_stores)(cfg, self.stats, random_bytes)
        self.stores = made
        self._cookies = Cookies(made.cookie_secret, cfg.cookie_window, made.cookie_clock)
        self._rate: RateStore = made.rate
        self._requests = Requests(cfg, self.stats, self.keys, made.registry, made.intros,
                                  made.relays, made.router)
        self._last_error_log = float("-inf")
        self._errors_unlogged = 0
        self._last_store_log = float("-inf")
        #: Also told of each internal error (fuzzing, tests).
        self.on_internal_error: Callable[[Exception, float], None] | None = None

    @property
    def fingerprint(self) -> str:
        return self.keys.fingerprint

    @property
    def registrations(self) -> Mapping[str, Registration]:
        """The registrations this process holds (none of its own with shared stores)."""
        return self._requests.registry.by_name

    @property
    def relays(self) -> Mapping[bytes, Relay]:
        return self._requests.relays.by_id

    def registered(self, now: float) -> int:
        """Registrations held, wherever they are kept."""
        return self._requests.registry.count(now)

    @property
    def tracked_sources(self) -> int:
        """Prefixes in the rate table (bounded by ``max_tracked_sources``)."""
        return len(self._rate)

    # --- the boundary ---------------------------------------------------------------

    def receive(self, data: bytes, source: Address, now: float) -> list[Reply]:
        """Handle one datagram; returns the replies. Never raises."""
        self.stats.received += 1
        try:
            replies = self._receive(data, source, now)
        except ProtocolError:
            self.stats.dropped += 1
            return []
        except StoreError as exc:
            self._store_error(exc, now)
            return []
        except Exception as exc:  # a bug must not stop the handshake server
            self._internal_error(exc, now)
            return []
        out = []
        for reply, to in replies:
            if to == source and len(reply) > len(data):
                # Never answer with more than was asked with: no amplification.
                self.stats.amplification_refused += 1
                continue
            out.append((reply, to))
        self.stats.replies += len(out)
        return out

    def _receive(self, data: bytes, source: Address, now: float) -> list[Reply]:
        kind = peek_kind(data)
        if kind is Kind.RELAY:
            return self._requests.relays.forward(data, source, now)
        if kind is not Kind.SEALED_REQUEST and kind is not Kind.COOKIE_REQUEST:
            raise ProtocolError("not a request")
        if not self._rate.take(_prefix(source[0]), now):
            self.stats.rate_limited += 1
            return []
        if kind is Kind.COOKIE_REQUEST:
            return [self._cookie(decode_cookie_request(data), source, now)]
        req_id, cookie, *_ = split_sealed_request(data)
        if not self._cookies.check(cookie, source, now):
            # Return routability first: the peer learns a fresh cookie and resends.
            return [self._cookie(req_id, source, now)]
        kind_, rid, fields, share = self.keys.decrypt_request(data)
        return self._requests.handle(kind_, rid, fields, source, share, len(data), now)

    def _cookie(self, req_id: int, source: Address, now: float) -> Reply:
        self.stats.cookies_sent += 1
        return (encode_cookie(req_id, self._cookies.make(source, now), self.keys.static.public),
                source)

    def _store_error(self, exc: StoreError, now: float) -> None:
        # The shared store is down or slow: the request is dropped (the peer resends as
        # after a lost datagram), counted, and logged at most once a second.
        self.stats.store_errors += 1
        if now - self._last_store_log >= INTERNAL_ERROR_LOG_INTERVAL:
            self._last_store_log = now
            log.error("shared state unavailable (%s): requests dropped, %d so far",
                      exc, self.stats.store_errors)

    def _internal_error(self, exc: Exception, now: float) -> None:
        self.stats.internal_errors += 1
        if self.on_internal_error is not None:
            self.on_internal_error(exc, now)
        self._errors_unlogged += 1
        if now - self._last_error_log < INTERNAL_ERROR_LOG_INTERVAL:
            return
        # The type and where it happened, never the message: it may hold network bytes.
        frames = traceback.extract_tb(exc.__traceback__)
        where = f"{frames[-1].filename}:{frames[-1].lineno}" if frames else "?"
        log.error("internal error %s at %s (%d since the last report)",
                  type(exc).__name__, where, self._errors_unlogged)
        self._last_error_log = now
        self._errors_unlogged = 0

    # --- time -----------------------------------------------------------------------

    def expire(self, now: float) -> None:
        """Forget registrations, introductions and relays whose time is up."""
        try:
            self._requests.expire(now)
        except StoreError as exc:
            self._store_error(exc, now)
