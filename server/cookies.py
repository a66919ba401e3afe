"""Stateless cookies: proof that a peer receives datagrams at its source address.

Nothing is kept for an address, and no key work is done for it, until it echoes a cookie
that only that address was sent (return routability, as DTLS's HelloVerifyRequest and
WireGuard's cookie reply): a spoofed source never sees it.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable

from framework.protocol.addresses import Address
from framework.protocol.crypto import mac, verify

_WINDOW = struct.Struct("!q")
_PORT = struct.Struct("!H")


class Cookies:
    """cookie = MAC(secret, "cookie", ip, port, window); window = floor(now / seconds).
    A cookie is accepted in the window it was made in and the next."""

    def __init__(self, secret: bytes, seconds: float,
                 clock: Callable[[], float] | None = None) -> None:
        self._secret = secret
        self._seconds = seconds
        #: Several nodes behind one address must agree on the window: they use wall
        #: time then, instead of each process's own clock.
        self._clock = clock

    def _make(self, source: Address, window: int) -> bytes:
        return mac(self._secret, b"cookie", source[0].encode(), _PORT.pack(source[1]),
                   _WINDOW.pack(window))

    def _window(self, now: float) -> int:
        if self._clock is not None:
            now = self._clock()
        return math.floor(now / self._seconds)

    def make(self, source: Address, now: float) -> bytes:
        return self._make(source, self._window(now))

    def check(self, cookie: bytes, source: Address, now: float) -> bool:
        window = self._window(now)
        return verify(self._make(source, window), cookie) or verify(
            self._make(source, window - 1), cookie)
