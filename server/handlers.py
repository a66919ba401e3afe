"""What each sealed request does, once the boundary (``core.py``) has admitted it.

Every handler gets a request whose fields the wire's schema checked, from a source that
proved return routability, on a channel that only that peer and this handshake server can read.
Replies are sealed: to the asker under the request's channel, to the other player under
the channel it last used. An error is a code only: no value from the network is ever
formatted into a reply. Per-request log lines are DEBUG (an attacker must not be able to
fill the disk); names in them are validated and escaped (%r).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from framework.protocol.addresses import Address
from framework.protocol.constants import MAX_LIST_ENTRIES
from framework.protocol.hschannel import ServerKeys
from framework.protocol.wire import SEALED_REPLY_OVERHEAD, ErrorCode, HsKind, encode_hs_body

from .candidates import candidates_of
from .config import Reply, ServerConfig, ServerStats
from .relays import Relay
from .store import IntroductionStore, RegistryStore, RelayStore, Router

log = logging.getLogger("server")



class Requests:
    """The state (registrations, introductions, relays) and the handlers that change it."""

    def __init__(self, config: ServerConfig, stats: ServerStats, keys: ServerKeys,
                 registry: RegistryStore, intros: IntroductionStore, relays: RelayStore,
                 router: Router | None = None) -> None:
        self.config = config
        self.stats = stats
        self.keys = keys
        self.registry = registry
        self.intros = intros
        self.relays = relays
        self.router = router
        self._handlers: dict[HsKind, Callable[[int, list[Any], Address, bytes, int, float],
                                              list[Reply]]] = {
            HsKind.REGISTER: self._register,
            HsKind.REFRESH: self._refresh,
            HsKind.UNREGISTER: self._unregister,
            HsKind.JOIN: self._join,
            HsKind.LIST: self._list,
            HsKind.RELAY_REQUEST: self._relay_request,
            HsKind.RELAY_MOVE: self._relay_move,
        }

    def handle(self, kind: HsKind, rid: int, fields: list[Any], source: Address,
               share: bytes, size: int, now: float) -> list[Reply]:
        """Replies to one request; ``size`` is the request datagram's length."""
        handler = self._handlers.get(kind)
        if handler is None:
            self.stats.dropped += 1  # a reply kind sent to us: nothing to do
            return []
        self.stats.by_kind[kind] += 1
        return handler(rid, fields, source, share, size, now)

    def _seal(self, share: bytes, kind: HsKind, rid: int, fields: list[Any], to: Address
              ) -> Reply:
        return self.keys.seal_reply(share, kind, rid, fields), to

    def _via(self, reply: Reply, node: str) -> list[Reply]:
        """A datagram to a player another node talks to leaves from that node."""
        router = self.router
        if router is None or not node or node == router.node:
            return [reply]
        return [] if router.deliver(node, reply) else [reply]

    def _error(self, share: bytes, rid: int, code: ErrorCode, to: Address) -> list[Reply]:
        # Errors go back to the datagram's own source, never to an address it names.
        self.stats.errors[code] += 1
        return [self._seal(share, HsKind.HS_ERROR, rid, [int(code)], to)]

    # --- registrations -------------------------------------------------------------

    def _register(self, rid: int, f: list[Any], source: Address, share: bytes, size: int,
                  now: float) -> list[Reply]:
        name, reported, password_required, secs, generation, _pad = f
        result = self.registry.register(name, source, candidates_of(source, reported),
                                        password_required, secs, share, now, generation)
        if isinstance(result, ErrorCode):
            return self._error(share, rid, result, source)
        reg, new = result
        if new:
            self.stats.registrations += 1
            log.debug("registered %r", name)
        return [self._seal(share, HsKind.REGISTERED, rid,
                           [reg.token, source[0], source[1], reg.valid], source)]

    def _refresh(self, rid: int, f: list[Any], source: Address, share: bytes, size: int,
                 now: float) -> list[Reply]:
        name, token, _pad = f
        reg = self.registry.owned(name, token, source, now)
        if reg is None:
            return self._error(share, rid, ErrorCode.NOT_REGISTERED, source)
        self.registry.refresh(reg, share, now)
        return [self._seal(share, HsKind.REFRESHED, rid, [reg.valid], source)]

    def _unregister(self, rid: int, f: list[Any], source: Address, share: bytes, size: int,
                    now: float) -> list[Reply]:
        name, token, _pad = f
        reg = self.registry.owned(name, token, source, now)
        if reg is None:
            return []
        self.registry.drop(reg)
        log.debug("unregistered %r", reg.name)
        return [self._seal(share, HsKind.UNREGISTERED, rid, [], source)] if rid else []

    # --- joining ----------------------------------------------------------------------

    def _join(self, rid: int, f: list[Any], source: Address, share: bytes, size: int,
              now: float) -> list[Reply]:
        server, user, reported, _pad = f
        reg = self.registry.live(server, now)
        if reg is None:
            return self._error(share, rid, ErrorCode.NO_SUCH_SERVER, source)
        if user == server:
            return self._error(share, rid, ErrorCode.BAD_NAME, source)
        result = self.intros.join(server, user, source, candidates_of(source, reported),
                                  share, now)
        if isinstance(result, ErrorCode):
            return self._error(share, rid, result, source)
        intro, new, tell_host = result
        if new:
            self.stats.introductions += 1
        valid_for = intro.expires - now
        replies = [self._seal(share, HsKind.INTRODUCE, rid, [
            server, reg.candidates, reg.password_required, intro.token, valid_for], source)]
        if tell_host:
            replies += self._via(self._seal(reg.share, HsKind.INTRODUCE, 0, [
                user, intro.candidates, reg.password_required, intro.token, valid_for],
                reg.public), reg.node)
        return replies

    # --- the list -----------------------------------------------------------------------

    def _list(self, rid: int, f: list[Any], source: Address, share: bytes, size: int,
              now: float) -> list[Reply]:
        after, _pad = f
        entries, more = list_page(self.registry, after, rid, size, now)
        return [self._seal(share, HsKind.LIST_REPLY, rid, [entries, more], source)]

    # --- relays -------------------------------------------------------------------------

    def _relay_request(self, rid: int, f: list[Any], source: Address, share: bytes,
                       size: int, now: float) -> list[Reply]:
        server, client, _pad = f
        if not self.config.relay:
            return self._error(share, rid, ErrorCode.RELAY_DISABLED, source)
        reg = self.registry.live(server, now)
        intro = self.intros.live(server, client, now)
        if reg is None or intro is None or source not in (reg.public, intro.client):
            # Only the two players of a live introduction may ask, each from its address.
            return self._error(share, rid, ErrorCode.NOT_INTRODUCED, source)
        relay = self.relays.open(reg.public, intro.client, intro.prefix, now,
                                 (reg.node, intro.node), (server, client), intro.share)
        if relay is None:
            return self._error(share, rid, ErrorCode.TOO_MANY, source)
        # Each end is told the name of the player at the relay's other end.
        if source == reg.public:
            asker_end, asker_peer, other_peer = 0, client, server
            other_end, other_share, other_node = intro.client, intro.share, intro.node
        else:
            asker_end, asker_peer, other_peer = 1, server, client
            other_end, other_share, other_node = reg.public, reg.share, reg.node
        kind, fields = _offer(relay, asker_end, asker_peer)
        other_kind, other_fields = _offer(relay, 1 - asker_end, other_peer)
        return [self._seal(share, kind, rid, fields, source),
                *self._via(self._seal(other_share, other_kind, 0, other_fields, other_end),
                           other_node)]

    def _relay_move(self, rid: int, f: list[Any], source: Address, share: bytes,
                    size: int, now: float) -> list[Reply]:
        """An end of a relay on a relay node asks where it runs now (placing it on
        another node if its node is gone). The key proves which end asks."""
        relay_id, key, _pad = f
        found = self.relays.relocate(relay_id, key, now)
        if found is None:
            return self._error(share, rid, ErrorCode.NOT_INTRODUCED, source)
        relay, end, moved = found
        kind, fields = _offer(relay, end, relay.names[1 - end])
        replies = [self._seal(share, kind, rid, fields, source)]
        if moved:
            # The other end may not have noticed yet (a quiet session): tell it too, as
            # an introduction is told, where its channel and NAT let us.
            replies += self._tell_other_end(relay, 1 - end, now)
        return replies

    def _tell_other_end(self, relay: Relay, end: int, now: float) -> list[Reply]:
        kind, fields = _offer(relay, end, relay.names[1 - end])
        if end == 0:
            reg = self.registry.live(relay.names[0], now)
            if reg is None:
                return []
            return self._via(self._seal(reg.share, kind, 0, fields, reg.public), reg.node)
        if not relay.client_share:
            return []
        return self._via(self._seal(relay.client_share, kind, 0, fields, relay.client_end),
                         relay.client_node)

    def expire(self, now: float) -> None:
        for reg in self.registry.expire(now):
            self.stats.expired += 1
            log.debug("registration of %r expired", reg.name)
        self.intros.expire(now)
        self.relays.expire(now)


def _offer(relay: Relay, end: int, peer: str) -> tuple[HsKind, list[Any]]:
    """What tells the player at ``end`` (0 server, 1 client) about ``relay``, whose other
    end is ``peer``: RELAY_READY for a relay on this server, RELAY_AT (with the end's
    bind key) for one on a relay node."""
    if relay.at is None:
        return HsKind.RELAY_READY, [relay.relay_id, peer]
    return HsKind.RELAY_AT, [relay.relay_id, peer, relay.at[0], relay.at[1],
                             relay.keys[end]]


def list_page(registry: RegistryStore, after: str, rid: int, size: int, now: float
              ) -> tuple[list[list[Any]], bool]:
    """Entries of the names after ``after``, as many as fit in a sealed LIST_REPLY of at
    most ``size`` bytes (64 at most, the schema's bound), and whether more remain."""
    budget = size - SEALED_REPLY_OVERHEAD
    entries: list[list[Any]] = []
    used = len(encode_hs_body(HsKind.LIST_REPLY, rid, [[], True]))
    for reg in registry.after(after, now):
        entry = [reg.name, reg.password_required]
        # 1 byte of msgpack's bool and fixarray header, plus the name as a str; the
        # entries' array header grows by 2 bytes at 16 entries (fixarray -> array16).
        cost = 2 + _str_size(reg.name) + (2 if len(entries) == 15 else 0)
        if len(entries) == MAX_LIST_ENTRIES or used + cost > budget:
            return entries, True
        entries.append(entry)
        used += cost
    return entries, False


def _str_size(text: str) -> int:
    """Bytes of ``text`` as a msgpack str: its UTF-8 and a 1 to 3 byte header."""
    n = len(text.encode())
    return n + (1 if n < 32 else 2 if n < 256 else 3)
