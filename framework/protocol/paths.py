"""Path validation: a session moves to a new address only after it answers from there.

As QUIC does (RFC 9000 section 9): an authenticated datagram from an address the peer was
not using (its NAT rebound the port, or a direct path opened for a relayed session) is
taken, but nothing goes to that address except an encrypted PATH_CHALLENGE, and the
session moves only when the PATH_RESPONSE comes back *from that address*. A replayed or
redirected datagram therefore moves nothing. Until then, no address is sent more bytes
than it sent us (anti-amplification at 1x, stricter than QUIC's 3x).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from . import events as ev
from .constants import DIRECT_RETRY_INTERVAL, MAX_PROBED, PATH_TOKEN_SIZE, PUNCH_INTERVAL
from .context import Context
from .crypto import verify
from .peers import PathKind, Remote, Route
from .values import encode_value
from .wire import SYS_PATH_CHALLENGE, SYS_PATH_RESPONSE

if TYPE_CHECKING:
    from .session import Session

log = logging.getLogger(__name__)



class Paths:
    """Validation of new addresses of connected peers, and the move to them."""

    def __init__(self, ctx: Context, session: Session) -> None:
        self._ctx = ctx
        self._session = session

    def consider(self, remote: Remote, route: Route, size: int, now: float) -> None:
        """``size`` authenticated bytes came from ``route``, which is not the peer's
        path: challenge it, within what it sent us."""
        conn = remote.connection
        if route.relayed or route == remote.route:
            return
        if route not in remote.credit and len(remote.credit) >= MAX_PROBED:
            oldest = next(iter(remote.credit))
            del remote.credit[oldest]
            remote.challenges.pop(oldest, None)
        remote.credit[route] = remote.credit.get(route, 0) + size
        if conn is None:
            return  # the handshake (through the relay) is not done: kept for resume()
        token = remote.challenges.get(route)
        if token is None:
            token = remote.challenges[route] = self._ctx.random(PATH_TOKEN_SIZE)
        probe = conn.probe(encode_value([SYS_PATH_CHALLENGE, token]), now)
        if remote.credit[route] >= len(probe):
            remote.credit[route] -= len(probe)
            self._ctx.send_on(probe, route)

    def resume(self, remote: Remote, now: float) -> None:
        """Just connected: challenge the direct routes that answered during the handshake
        (when it went through the relay)."""
        if remote.path is not PathKind.RELAY:
            remote.credit.clear()
            return
        for route in list(remote.credit):
            self.consider(remote, route, 0, now)

    def on_challenge(self, remote: Remote, token: object, route: Route, now: float) -> None:
        """Echo a challenge to where it came from: the same size as the challenge."""
        conn = remote.connection
        if conn is None or type(token) is not bytes or len(token) != PATH_TOKEN_SIZE:
            return
        self._ctx.send_on(conn.probe(encode_value([SYS_PATH_RESPONSE, token]), now), route)

    def on_response(self, remote: Remote, token: object, route: Route) -> None:
        expected = remote.challenges.get(route)
        if (expected is None or type(token) is not bytes or not verify(expected, token)
                or remote.connection is None):
            return
        old = remote.path
        remote.route = route
        remote.path = remote.kind_of(route)
        remote.connection.path = remote.path
        remote.challenges.clear()
        remote.credit.clear()
        self._session.by_route[route] = remote
        log.info("%s moved to %s (%s, was %s)", remote.name, route.address,
                 remote.path.value, old.value)
        self._ctx.emit(ev.PathChanged(remote.name, remote.path.value))

    def service(self, remote: Remote, now: float) -> None:
        """A relayed session keeps looking for a direct path: at the punching pace for
        the first seconds (a path often opens a round trip or two after the relay), then
        every DIRECT_RETRY_INTERVAL."""
        if remote.path is PathKind.RELAY and now >= remote.next_direct_try:
            early = now < remote.punch_started + self._ctx.config.handshake_timeout
            remote.next_direct_try = now + (PUNCH_INTERVAL if early else DIRECT_RETRY_INTERVAL)
            self._session.punching.punch(remote, now)
