"""Traffic of connected peers: user messages, engine messages on the system channel,
leaving. Messages between clients through the server player are in forwarding.py.

Every value here came out of an authenticated datagram, and is still checked before it
is used: a peer holding valid keys may send any plaintext at all.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Final

from . import events as ev
from .constants import DISCONNECT_COPIES, MAX_REASON, SYSTEM_CHANNEL, USER_CHANNELS
from .context import Context
from .delivery import Delivery
from .errors import NotConnected, ProtocolError
from .forwarding import Forwarding, packet_data
from .names import is_valid_name
from .peers import Known, Remote, RemoteState, Role, Route
from .records import Delivered, Group
from .values import encode_value
from .wire import (
    SYS_BYE,
    SYS_FORWARD,
    SYS_FORWARD_FAILED,
    SYS_FORWARDED,
    SYS_PATH_CHALLENGE,
    SYS_PATH_RESPONSE,
    SYS_PEERS,
    SYS_PING,
    is_literal_ip,
)

if TYPE_CHECKING:
    from .session import Session

log = logging.getLogger(__name__)

_MODES: Final = Delivery._value2member_map_
_FIRST_RELIABLE: Final = Delivery.RELIABLE_UNORDERED


class Messaging:
    """Connected peers: their datagrams, engine messages, forwarding between clients."""

    def __init__(self, ctx: Context, session: Session) -> None:
        self._ctx = ctx
        self._session = session
        self._encode = ctx.encoder.encode
        self.forwarding = Forwarding(ctx, session)
        self.reset()

    def reset(self) -> None:
        self.next_message_id = 1
        self.forwarding.reset()

    # --- sending ---------------------------------------------------------------------

    def send(self, peer_name: str, message: object, delivery: Delivery, channel: int
             ) -> int | None:
        """Queue a message; returns its message_id for reliable deliveries."""
        if type(delivery) is not Delivery:
            raise TypeError("delivery must be a framework.Delivery member")
        if type(channel) is not int or not 0 <= channel < USER_CHANNELS:
            raise ValueError(f"channel must be an int from 0 to {USER_CHANNELS - 1}")
        payload = self._encode(message)  # TypeError here, at the call
        reliable = delivery >= _FIRST_RELIABLE
        remote = self._session.remotes.get(peer_name)
        conn = remote.connection if remote is not None else None
        if conn is not None:  # the hot path: a peer we are connected to directly
            if not reliable:
                conn.send(delivery, channel, payload, 0, message)
                return None
            message_id = self.next_message_id
            conn.send(delivery, channel, payload, message_id, message)
            self.next_message_id = message_id + 1
            return message_id
        return self._send_otherwise(peer_name, message, payload, delivery, channel, reliable)

    def _send_otherwise(self, peer_name: str, message: object, payload: bytes,
                        delivery: Delivery, channel: int, reliable: bool) -> int | None:
        """A message for another client (through the server player), or a clear error."""
        session = self._session
        if not session.is_connected():
            raise NotConnected("no session: messages can be sent once connected")
        if peer_name == session.name:
            raise ValueError("cannot send a message to yourself")
        if session.role is not Role.CLIENT or peer_name not in session.known:
            raise NotConnected(f"no peer named {peer_name!r} in this session")
        message_id = self.next_message_id if reliable else None
        self.forwarding.send(peer_name, message, payload, delivery, channel, message_id)
        if message_id is not None:
            self.next_message_id += 1
        return message_id

    def send_disconnect(self, remote: Remote, reason: str, now: float) -> None:
        """Tell a peer we are leaving: a few encrypted copies, sent at once."""
        conn = remote.connection
        if remote.route is None or conn is None:
            return
        bye = encode_value([SYS_BYE, reason])
        for _ in range(DISCONNECT_COPIES):
            conn.send(Delivery.UNRELIABLE, SYSTEM_CHANNEL, bye)
            for data in conn.poll(now):
                self._ctx.send_on(data, remote.route)

    def share_peer_list(self) -> None:
        """Server player: tell every client who the others are."""
        clients = [r for r in self._session.remotes.values()
                   if r.state is RemoteState.CONNECTED]
        for r in clients:
            assert r.connection is not None
            others = [[o.name, *addr] for o in clients
                      if o is not r and (addr := o.public_address) is not None]
            r.connection.send(Delivery.RELIABLE_ORDERED, SYSTEM_CHANNEL,
                              encode_value([SYS_PEERS, others]), 0, None)

    # --- receiving -------------------------------------------------------------------

    def on_data(self, data: bytes, route: Route, now: float) -> None:
        session = self._session
        remote = session.by_route.get(route)
        if remote is None or remote.connection is None:
            self._from_new_address(data, route, now)
            return
        delivered = remote.connection.receive(data, now)
        if route != remote.route and not route.relayed:
            session.paths.consider(remote, route, len(data), now)
        self._dispatch(remote, delivered, route, now)

    def _from_new_address(self, data: bytes, route: Route, now: float) -> None:
        """DATA from an address no peer uses. It may be a peer whose NAT gave it a new
        port, or a relayed peer's direct path: try the peers it could be (same IP as one
        of their addresses) and validate the path of the one it authenticates as."""
        session = self._session
        if not route.relayed:
            ip = route.address[0]
            for remote in list(session.remotes.values()):
                conn = remote.connection
                if conn is None or not any(c.route.address[0] == ip
                                           for c in remote.candidates):
                    continue
                try:
                    delivered = conn.receive(data, now)
                except ProtocolError:
                    continue
                session.paths.consider(remote, route, len(data), now)
                self._dispatch(remote, delivered, route, now)
                return
        if session.recently_departed(route, now):
            return
        raise ProtocolError("DATA from an address not in the session")

    def _dispatch(self, remote: Remote, delivered: list[Delivered], route: Route,
                  now: float) -> None:
        # The hot path of every game: one event per message, built inline.
        sender, me, events = remote.name, self._session.name or "", self._ctx.event_list
        reliable, unreliable = ev.ReceivedReliableMessageFromPeer, \
            ev.ReceivedUnreliableMessageFromPeer
        for d in delivered:
            channel = d.channel
            if channel == SYSTEM_CHANNEL:
                try:
                    self._on_system(remote, d, route, now)
                except ProtocolError as exc:
                    # The datagram was accepted (and will be acked): drop this one message
                    # only, never the ones after it.
                    log.debug("dropped an engine message from %s: %s", sender, exc)
                    self._ctx.block(route.address, now)
                    continue
                if remote.connection is None:
                    return  # the message ended this peer's session
            elif d.mode >= Delivery.RELIABLE_UNORDERED:
                events.append(reliable({"from": sender, "to": me, "message": d.value,
                                        "message_id": d.message_id, "channel": channel,
                                        "delivery": d.mode}))
            else:
                events.append(unreliable({"from": sender, "to": me, "message": d.value,
                                          "channel": channel, "delivery": d.mode}))

    def _on_system(self, remote: Remote, d: Delivered, route: Route, now: float) -> None:
        msg = d.value
        if type(msg) is not list or not msg or type(msg[0]) is not int:
            raise ProtocolError("malformed system message")
        kind, n = msg[0], len(msg)
        role = self._session.role
        if kind == SYS_PING:
            return
        if kind == SYS_PEERS and role is Role.CLIENT and n == 2:
            self._on_peer_list(msg[1])
        elif kind == SYS_FORWARD and role is Role.SERVER and n == 6:
            self.forwarding.on_forward(remote, msg)
        elif kind == SYS_FORWARDED and role is Role.CLIENT and n == 6:
            self.forwarding.on_forwarded(msg)
        elif kind == SYS_BYE and n == 2:
            self._on_bye(remote, msg[1])
        elif kind == SYS_FORWARD_FAILED and role is Role.CLIENT and n == 3:
            self.forwarding.on_failed(msg[1], msg[2])
        elif kind == SYS_PATH_CHALLENGE and n == 2:
            self._session.paths.on_challenge(remote, msg[1], route, now)
        elif kind == SYS_PATH_RESPONSE and n == 2:
            self._session.paths.on_response(remote, msg[1], route)
        else:
            log.debug("ignored system message %d from %s", kind, remote.name)

    def _on_bye(self, remote: Remote, reason: object) -> None:
        # Only a short string is passed on; nothing else from the network is formatted.
        text = reason if type(reason) is str and len(reason) <= MAX_REASON else ""
        log.info("%s left: %r", remote.name, text)
        session = self._session
        if session.role is Role.CLIENT:
            session.fail(f"the server player left ({text})" if text
                         else "the server player left", report=False)
        else:
            session.remove(remote)

    def _on_peer_list(self, entries: Any) -> None:
        if type(entries) is not list or len(entries) > 256:
            raise ProtocolError("malformed peer list")
        session = self._session
        known: dict[str, Known] = {}
        for e in entries:
            if (type(e) is list and len(e) == 3 and is_valid_name(e[0])
                    and is_literal_ip(e[1]) and type(e[2]) is int and 0 <= e[2] < 65536
                    and e[0] != session.name):
                known[e[0]] = Known(e[0], (e[1], e[2]))
        session.known = known
        session.peers_changed()

    # --- time ------------------------------------------------------------------------

    def service(self, remote: Remote, now: float) -> None:
        conn = remote.connection
        assert conn is not None and remote.route is not None
        session = self._session
        if conn.timed_out(now):
            log.info("%s timed out", remote.name)
            self._ctx.emit(ev.PeerTimeout(remote.name))
            if session.role is Role.CLIENT:
                session.fail(f"lost the server player {remote.name!r} (timeout)",
                             report=False)
            else:
                session.remove(remote)
            return
        session.paths.service(remote, now)
        for data in conn.poll(now):
            self._ctx.send_on(data, remote.route)
        if conn.expired:
            for group in conn.take_expired():
                self._on_expired(remote, group)

    def _on_expired(self, remote: Remote, group: Group) -> None:
        ctx = group.message
        me = self._session.name or ""
        if group.channel != SYSTEM_CHANNEL:
            self._ctx.emit(ev.ReliableMessageTimeout(packet_data(
                me, remote.name, group.message, group.message_id)))
        elif isinstance(ctx, tuple) and ctx[0] == "user":
            # A message we sent to another client through the server player.
            _, to, message, message_id = ctx
            self._ctx.emit(ev.ReliableMessageTimeout(packet_data(me, to, message,
                                                                  message_id)))
        elif isinstance(ctx, tuple) and ctx[0] == "forward":
            # We are the server player and could not pass a client's message on.
            _, origin, message_id, to = ctx
            self.forwarding.failed(origin, message_id, to)
