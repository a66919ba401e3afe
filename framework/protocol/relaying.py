"""Relays on relay nodes: binding our end, and following a relay that moved.

A deployment with ``--relay-only`` nodes places each relay on the least loaded of them;
the handshake server answers RELAY_AT (the node's address and this end's key) instead of
RELAY_READY. The relay node never saw us, and behind a NAT that maps each destination
apart it could not guess our address from the handshake server's, so each end *binds*:
a RELAY_BIND carries a counter and a MAC under the end's key, and the node takes the
address of the newest authenticated bind as the end's address (WireGuard's roaming
rule: a replayed bind has an old counter and moves nothing). The node answers each
accepted bind with a RELAY_BOUND of the same size.

When a relay node dies the session goes quiet. When a datagram we sent has had no
answer for ``RELAY_SILENCE``, or a peer that streamed has been silent for that long
(and four of its usual gaps), each end asks the handshake server where its relay is now
(RELAY_MOVE, proving the end with its key); a server that finds the node gone places
the relay on another one and answers RELAY_AT with the new address. The session then
binds there and carries on (PATH_CHANGED, path "relay"): no handshake, no message lost.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from . import events as ev
from .addresses import Address
from .connection import Connection
from .constants import (
    RELAY_BIND_INTERVAL,
    RELAY_MOVE_INTERVAL,
    RELAY_REBIND_INTERVAL,
    RELAY_SILENCE,
)
from .context import Context
from .crypto import mac, verify
from .errors import ProtocolError
from .peers import Candidate, PathKind, Remote, Role, Route
from .wire import Kind, decode_relay_bind, encode_relay_bind

if TYPE_CHECKING:
    from .session import Session

log = logging.getLogger(__name__)


def bind_tag(key: bytes, kind: Kind, relay_id: bytes, end: int, counter: int) -> bytes:
    """The MAC of a RELAY_BIND (player to relay node) or RELAY_BOUND (the answer)."""
    label = b"relay-bind" if kind is Kind.RELAY_BIND else b"relay-bound"
    return mac(key, label, relay_id, bytes([end]), counter.to_bytes(8, "big"))


def _silent_after(conn: Connection) -> float:
    """When the session counts as cut off: ``RELAY_SILENCE`` after the first of our
    datagrams that asked for an answer and got none, or after the peer's last datagram
    when that is four of its usual gaps (a stream that stopped), whichever is first."""
    heard = conn.last_received + max(RELAY_SILENCE, 4 * conn.receive_gap)
    if conn.unanswered_since is None:
        return heard
    return min(heard, conn.unanswered_since + RELAY_SILENCE)


class Relaying:
    """Our end of the relays that run on relay nodes."""

    def __init__(self, ctx: Context, session: Session) -> None:
        self._ctx = ctx
        self._session = session

    def _end(self) -> int:
        return 0 if self._session.role is Role.SERVER else 1

    def start(self, remote: Remote, route: Route, key: bytes, now: float) -> None:
        """The handshake server placed our relay to ``remote`` at ``route.address``."""
        remote.relay_key = key
        remote.relay_route = route
        self.bind(remote, now)

    def bind(self, remote: Remote, now: float) -> None:
        route = remote.relay_route
        if route is None:
            return
        remote.relay_counter += 1
        end = self._end()
        tag = bind_tag(remote.relay_key, Kind.RELAY_BIND, route.relay_id, end,
                       remote.relay_counter)
        self._ctx.send(encode_relay_bind(Kind.RELAY_BIND, route.relay_id, end,
                                         remote.relay_counter, tag), route.address)
        remote.next_bind = now + (RELAY_REBIND_INTERVAL if remote.relay_bound
                                  else RELAY_BIND_INTERVAL)

    def on_bound(self, data: bytes, address: Address, now: float) -> None:
        relay_id, end, counter, tag = decode_relay_bind(data)
        remote = next((r for r in self._session.remotes.values()
                       if r.relay_route is not None and r.relay_route.relay_id == relay_id),
                      None)
        if (remote is None or remote.relay_route is None
                or remote.relay_route.address != address or end != self._end()
                or counter > remote.relay_counter
                or not verify(bind_tag(remote.relay_key, Kind.RELAY_BOUND, relay_id, end,
                                       counter), tag)):
            raise ProtocolError("RELAY_BOUND for no bind of ours")
        if not remote.relay_bound:
            log.debug("relay to %s bound at %s", remote.name, address)
            remote.relay_bound = True
            remote.next_bind = now + RELAY_REBIND_INTERVAL

    def moved(self, remote: Remote, route: Route, now: float) -> None:
        """The relay to ``remote`` now runs at ``route.address`` (its node was lost)."""
        old = remote.relay_route
        if old is None or old == route:
            return
        session = self._session
        remote.candidates = [c for c in remote.candidates if c.route != old]
        remote.candidates.append(Candidate(route, PathKind.RELAY))
        if session.by_route.get(old) is remote:
            del session.by_route[old]
        if remote.connection is not None:
            session.by_route[route] = remote
        remote.relay_route = route
        remote.relay_bound = False
        self.bind(remote, now)
        if remote.route == old:
            remote.route = route
            log.info("relay to %s moved to %s", remote.name, route.address)
            if remote.connection is not None:
                self._ctx.emit(ev.PathChanged(remote.name, PathKind.RELAY.value))

    def service(self, remote: Remote, now: float) -> None:
        if remote.relay_route is None:
            return
        on_relay = remote.path is PathKind.RELAY or not remote.relay_bound
        if on_relay and now >= remote.next_bind:
            self.bind(remote, now)
        conn = remote.connection
        if (conn is not None and remote.path is PathKind.RELAY
                and now >= remote.next_relay_move and now >= _silent_after(conn)):
            # We talk and hear nothing, or a peer that streamed went silent: our NAT may
            # have moved us (bind again), or the relay node is gone (ask the handshake
            # server where the relay is now). A quiet session asks nothing.
            remote.next_relay_move = now + RELAY_MOVE_INTERVAL
            self.bind(remote, now)
            rendezvous = self._session.rendezvous
            if rendezvous.address is not None:
                rendezvous.request_relay_move(remote.relay_id, remote.relay_key, now)

    def next_timer(self, remote: Remote) -> float | None:
        if remote.relay_route is None:
            return None
        times = []
        if remote.path is PathKind.RELAY or not remote.relay_bound:
            times.append(remote.next_bind)
        conn = remote.connection
        if conn is not None and remote.path is PathKind.RELAY:
            times.append(max(_silent_after(conn), remote.next_relay_move))
        return min(times) if times else None
