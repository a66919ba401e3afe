"""Pending introductions: a client that asked to join a host, and the token they share.

One pending introduction per (game, player name). While it lives, only the address that
asked first may ask again (it repeats JOIN while it punches, and gets the same token);
a JOIN with that name from anywhere else is refused NAME_BUSY, so nobody can replace a
player who is joining. The token is bound to the game, the player's name, the client's
address and the expiry by a keyed hash under the handshake server's secret; it reaches
the two players only inside sealed replies.
"""

from __future__ import annotations

import hashlib
import struct
from collections import Counter
from dataclasses import dataclass

from framework.protocol.addresses import Address
from framework.protocol.constants import JOIN_TOKEN_SIZE
from framework.protocol.crypto import lp
from framework.protocol.limits import prefix_of
from framework.protocol.wire import ErrorCode

from .candidates import Candidate
from .config import ServerConfig

_EXPIRY = struct.Struct("!d")
_PORT = struct.Struct("!H")


@dataclass(slots=True)
class Introduction:
    server: str
    user: str
    client: Address
    prefix: str
    #: What the host is told: the client's PUBLIC address (as seen here), LAN, MAPPED.
    candidates: list[Candidate]
    #: The client's channel: a RELAY_READY for it is sealed to this.
    share: bytes
    token: bytes
    expires: float
    #: When the host was last sent this introduction.
    host_told: float
    #: The node the client talks to (a deployment of several); empty for one process.
    node: str = ""


class Introductions:
    """Pending introductions by (game, player name), capped in total and per prefix."""

    def __init__(self, config: ServerConfig, secret: bytes) -> None:
        self._config = config
        self._secret = secret
        self.pending: dict[tuple[str, str], Introduction] = {}
        self._per_prefix: Counter[str] = Counter()

    def live(self, server: str, user: str, now: float) -> Introduction | None:
        intro = self.pending.get((server, user))
        return intro if intro is not None and intro.expires > now else None

    def _token(self, server: str, user: str, client: Address, expires: float) -> bytes:
        return hashlib.blake2b(
            b"join token" + lp(server.encode(), user.encode(), client[0].encode(),
                               _PORT.pack(client[1]), _EXPIRY.pack(expires)),
            key=self._secret, digest_size=JOIN_TOKEN_SIZE).digest()

    def join(self, server: str, user: str, client: Address, candidates: list[Candidate],
             share: bytes, now: float) -> tuple[Introduction, bool, bool] | ErrorCode:
        """The introduction for this JOIN, whether it is new, and whether to (re)send it
        to the host now; or why not."""
        cfg = self._config
        intro = self.pending.get((server, user))
        if intro is not None and intro.expires > now:
            if intro.client != client:
                return ErrorCode.NAME_BUSY
            # The same client repeating JOIN: same token; a new channel key if it has one.
            intro.candidates = candidates
            intro.share = share
            tell = now - intro.host_told >= cfg.intro_resend_interval
            if tell:
                intro.host_told = now
            return intro, False, tell
        if intro is not None:
            self._drop(intro)
        prefix = prefix_of(client[0])
        if (len(self.pending) >= cfg.max_introductions
                or self._per_prefix[prefix] >= cfg.max_introductions_per_ip):
            return ErrorCode.TOO_MANY
        expires = now + cfg.intro_valid
        intro = Introduction(server, user, client, prefix, candidates, share,
                             self._token(server, user, client, expires), expires, now)
        self.pending[(server, user)] = intro
        self._per_prefix[prefix] += 1
        return intro, True, True

    def _drop(self, intro: Introduction) -> None:
        del self.pending[(intro.server, intro.user)]
        self._per_prefix[intro.prefix] -= 1
        if self._per_prefix[intro.prefix] <= 0:
            del self._per_prefix[intro.prefix]

    def expire(self, now: float) -> None:
        for intro in [i for i in self.pending.values() if i.expires <= now]:
            self._drop(intro)
