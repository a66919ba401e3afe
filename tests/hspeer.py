"""Real peers played against a pure ``HandshakeCore``: no sockets, a fake clock.

Each ``HsPeer`` has its own ``ServerChannel`` (the peer's end of the sealed channel, the
same code a ``Peer`` uses): it fetches a cookie, seals requests padded as a peer pads
them, and opens what the core sends back. Replies the core addresses to *another* peer
of the same ``HsNet`` (an introduction to a host, a relay offer) land in that peer's
inbox, opened with that peer's channel.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from framework.protocol.addresses import Address
from framework.protocol.crypto import KeyPair
from framework.protocol.hschannel import ServerChannel
from framework.protocol.wire import (
    HsKind,
    Kind,
    decode_cookie,
    encode_cookie_request,
    peek_kind,
    request_size,
)
from server import HandshakeCore, ServerConfig


def seeded_bytes(seed: int) -> Callable[[int], bytes]:
    return random.Random(seed).randbytes


@dataclass(frozen=True)
class Opened:
    """A sealed reply, opened: what it says and where it went."""

    kind: HsKind
    rid: int
    fields: list[Any]
    to: Address
    size: int


class HsNet:
    """A core and the peers that talk to it."""

    def __init__(self, config: ServerConfig | None = None, seed: int = 1,
                 key: KeyPair | None = None) -> None:
        self.key = key if key is not None else KeyPair.generate(seeded_bytes(seed + 500))
        self.core = HandshakeCore(config, seeded_bytes(seed), self.key)
        self.peers: dict[Address, HsPeer] = {}
        self._seed = seed * 1000

    def peer(self, address: Address, pinned: str | None = None) -> HsPeer:
        self._seed += 1
        p = HsPeer(self, address, ServerChannel(seeded_bytes(self._seed), pinned))
        self.peers[address] = p
        return p


class HsPeer:
    def __init__(self, net: HsNet, address: Address, channel: ServerChannel) -> None:
        self.net = net
        self.address = address
        self.channel = channel
        self.inbox: list[Opened] = []
        #: (request size, reply size) of every reply this peer got to a datagram it sent.
        self.exchanges: list[tuple[int, int]] = []
        self._rid = 0

    def send(self, data: bytes, now: float = 0.0) -> list[tuple[bytes, Address]]:
        """Send raw bytes from this peer's address; replies to other peers are delivered
        to them, replies to this peer returned raw."""
        mine = []
        for reply, to in self.net.core.receive(data, self.address, now):
            if to == self.address:
                self.exchanges.append((len(data), len(reply)))
                mine.append((reply, to))
            elif to in self.net.peers:
                other = self.net.peers[to]
                if peek_kind(reply) is Kind.SEALED_REPLY:
                    other.inbox.append(other._open(reply, to))
            else:
                mine.append((reply, to))
        return mine

    def get_cookie(self, now: float = 0.0) -> None:
        [(data, _)] = self.send(encode_cookie_request(0), now)
        _, cookie, public = decode_cookie(data)
        self.channel.learn(cookie, public)

    def _open(self, data: bytes, to: Address) -> Opened:
        kind, rid, fields = self.channel.open(data)
        return Opened(kind, rid, fields, to, len(data))

    def seal(self, kind: HsKind, fields: list[Any], size: int | None = None,
             rid: int | None = None) -> bytes:
        if rid is None:
            self._rid += 1
            rid = self._rid
        return self.channel.seal(kind, rid, fields, request_size(kind) if size is None
                                 else size)

    def ask(self, kind: HsKind, fields: list[Any], now: float = 0.0,
            size: int | None = None, rid: int | None = None) -> list[Opened]:
        """A request as a peer makes it: a cookie first if it has none, padded, and
        again with the new cookie if the core says it is stale. The replies, opened."""
        if not self.channel.ready:
            self.get_cookie(now)
        request = self.seal(kind, fields, size, rid)
        replies = self.send(request, now)
        if len(replies) == 1 and peek_kind(replies[0][0]) is Kind.COOKIE:
            _, cookie, public = decode_cookie(replies[0][0])
            self.channel.learn(cookie, public)
            request = self.seal(kind, fields, size, rid)
            replies = self.send(request, now)
        return [self._open(data, to) for data, to in replies]

    def ask_one(self, kind: HsKind, fields: list[Any], now: float = 0.0,
                size: int | None = None) -> Opened:
        [reply] = self.ask(kind, fields, now, size)
        return reply
