"""Traffic of connected peers: user messages, engine messages on the system channel,
messages between clients through the server player, leaving."""

from __future__ import annotations

import logging
from typing import Any

from . import events as ev
from .connection import Connection
from .constants import (
    DISCONNECT_COPIES,
    SYSTEM_CHANNEL,
    USER_CHANNELS,
)
from .delivery import Delivery
from .errors import MessageTooLarge, NotConnected, ProtocolError
from .peers import (
    DIRECT_RETRY_INTERVAL,
    SYS_BYE,
    SYS_FORWARD,
    SYS_FORWARD_FAILED,
    SYS_FORWARDED,
    SYS_PEERS,
    SYS_PING,
    Address,
    Known,
    Remote,
    Role,
)
from .records import Delivered, Group
from .state import SessionState
from .values import decode_value, encode_value
from .wire import (
    valid_name,
)

log = logging.getLogger(__name__)

#: Messages sent to other clients remembered for a failure notice (the newest ones).
FORWARD_MEMORY = 1024


class Messaging(SessionState):
    """Connected peers: their datagrams, engine messages, forwarding between clients."""

    def _forward(self, to: str, message: object, payload: bytes, delivery: Delivery,
                 channel: int, message_id: int | None) -> None:
        host = self._host_connection()
        if message_id is None:  # sequenced: a counter lets the receiver drop stale ones
            key = (to, channel)
            message_id = self._seq_counters.get(key, 0)
            self._seq_counters[key] = message_id + 1
        body = encode_value([SYS_FORWARD, to, int(delivery), channel, message_id, payload])
        mode = Delivery.RELIABLE_ORDERED if delivery.reliable else Delivery.UNRELIABLE
        if delivery.reliable:
            host.send(mode, SYSTEM_CHANNEL, body, message_id, ("user", to, message, message_id),
                      expires=True)
            # Kept (a bounded while) so that a failure notice can name the message itself.
            self._forwarded[message_id] = message
            if len(self._forwarded) > FORWARD_MEMORY:
                del self._forwarded[next(iter(self._forwarded))]
        else:
            host.send(mode, SYSTEM_CHANNEL, body)

    def _host_connection(self) -> Connection:
        host = self._remotes.get(self._server_name or "")
        if host is None or host.connection is None:
            raise NotConnected("not connected to the server player")
        return host.connection

    def _on_bye(self, remote: Remote, reason: object) -> None:
        text = str(reason)[:200]
        log.info("%s left: %s", remote.name, text)
        if self.role is Role.CLIENT:
            self._terminate(f"the server player left ({text})")
        else:
            self._remove(remote)

    def _send_disconnect(self, remote: Remote, reason: str) -> None:
        """Tell a peer we are leaving: a few authenticated copies, sent at once."""
        conn = remote.connection
        if remote.address is None or conn is None:
            return
        bye = encode_value([SYS_BYE, reason])
        for _ in range(DISCONNECT_COPIES):
            conn.send(Delivery.UNRELIABLE, SYSTEM_CHANNEL, bye)
            for data in conn.poll(self._now):
                self._send(data, remote.address)

    def _on_expired(self, remote: Remote, group: Group) -> None:
        ctx = group.message
        if group.channel != SYSTEM_CHANNEL:
            self._emit(ev.ReliableMessageTimeout(self._packet_data(
                self._name or "", remote.name, group.message, group.message_id)))
        elif isinstance(ctx, tuple) and ctx[0] == "user":
            # A message we sent to another client through the server player.
            _, to, message, message_id = ctx
            self._emit(ev.ReliableMessageTimeout(self._packet_data(
                self._name or "", to, message, message_id)))
        elif isinstance(ctx, tuple) and ctx[0] == "forward":
            # We are the server player and could not pass a client's message on.
            _, origin, message_id, to = ctx
            self._forward_failed(origin, message_id, to)

    def _forward_failed(self, origin: str, message_id: int, to: str) -> None:
        remote = self._remotes.get(origin)
        if remote is not None and remote.connection is not None:
            remote.connection.send(Delivery.RELIABLE_ORDERED, SYSTEM_CHANNEL,
                                   encode_value([SYS_FORWARD_FAILED, message_id, to]), 0, None)

    def _on_data(self, data: bytes, address: Address, now: float) -> None:
        remote = self._by_addr.get(address)
        if remote is None:
            remote = self._migrating(address)
        if remote is None or remote.connection is None:
            if self._recently_departed(address, now):
                return
            raise ProtocolError("DATA from an address not in the session")
        delivered = remote.connection.receive(data, now)
        if remote.path == "relay" and address != remote.address:
            self._switch_path(remote, address)  # authenticated: the direct path works
        # The hot path of every game: one event per message, built inline.
        sender, me, events = remote.name, self._name or "", self._events
        reliable, unreliable = ev.ReceivedReliableMessageFromPeer, \
            ev.ReceivedUnreliableMessageFromPeer
        for d in delivered:
            channel = d.channel
            if channel == SYSTEM_CHANNEL:
                self._on_system(remote, d, now)
            elif d.mode >= Delivery.RELIABLE_UNORDERED:
                events.append(reliable({"from": sender, "to": me, "message": d.value,
                                        "message_id": d.message_id, "channel": channel,
                                        "delivery": d.mode}))
            else:
                events.append(unreliable({"from": sender, "to": me, "message": d.value,
                                          "channel": channel, "delivery": d.mode}))

    def _migrating(self, address: Address) -> Remote | None:
        """A relayed peer whose direct path just opened may send from a known candidate."""
        for r in self._relay_remotes.values():
            if r.path == "relay" and any(a == address for a, _ in r.candidates):
                return r
        return None

    def _deliver_user(self, sender: str, value: object, message_id: int | None, channel: int,
                      mode: Delivery) -> None:
        data = self._packet_data(sender, self._name or "", value,
                                 message_id if mode.reliable else None, channel, mode)
        if mode.reliable:
            self._emit(ev.ReceivedReliableMessageFromPeer(data))
        else:
            self._emit(ev.ReceivedUnreliableMessageFromPeer(data))

    def _on_system(self, remote: Remote, d: Delivered, now: float) -> None:
        msg = d.value
        if type(msg) is not list or not msg or type(msg[0]) is not int:
            raise ProtocolError("malformed system message")
        kind = msg[0]
        if kind == SYS_PING:
            return
        if kind == SYS_PEERS and self.role is Role.CLIENT and len(msg) == 2:
            self._on_peer_list(msg[1])
        elif kind == SYS_FORWARD and self.role is Role.SERVER and len(msg) == 6:
            self._on_forward(remote, msg)
        elif kind == SYS_FORWARDED and self.role is Role.CLIENT and len(msg) == 6:
            self._on_forwarded(msg)
        elif kind == SYS_BYE and len(msg) == 2:
            self._on_bye(remote, msg[1])
        elif kind == SYS_FORWARD_FAILED and self.role is Role.CLIENT and len(msg) == 3:
            _, message_id, to = msg
            message = self._forwarded.pop(message_id, None) if type(message_id) is int else None
            self._emit(ev.ReliableMessageTimeout(self._packet_data(
                self._name or "", str(to), message, message_id)))
        else:
            log.debug("ignored system message %r from %s", kind, remote.name)

    def _on_peer_list(self, entries: Any) -> None:
        if type(entries) is not list:
            return
        known: dict[str, Known] = {}
        for e in entries:
            if (type(e) is list and len(e) == 3 and valid_name(e[0]) and type(e[1]) is str
                    and type(e[2]) is int and e[0] != self._name):
                known[e[0]] = Known(e[0], (e[1], e[2]))
        self._known = known
        self._peers_changed()

    def _on_forward(self, remote: Remote, msg: list[Any]) -> None:
        _, to, mode, channel, message_id, payload = msg
        if (type(mode) is not int or mode not in Delivery._value2member_map_
                or type(channel) is not int or not 0 <= channel < USER_CHANNELS
                or type(message_id) is not int or type(payload) is not bytes):
            raise ProtocolError("malformed forward")
        delivery = Delivery(mode)
        if to == self._name:
            value = decode_value(payload)
            self._deliver_user(remote.name, value, message_id, channel, delivery)
            return
        target = self._remotes.get(to) if isinstance(to, str) else None
        if target is None or target.connection is None:
            if delivery.reliable:
                self._forward_failed(remote.name, message_id, str(to))
            return
        body = encode_value([SYS_FORWARDED, remote.name, mode, channel, message_id, payload])
        try:
            if delivery.reliable:
                target.connection.send(Delivery.RELIABLE_ORDERED, SYSTEM_CHANNEL, body, 0,
                                       ("forward", remote.name, message_id, to), expires=True)
            else:
                target.connection.send(Delivery.UNRELIABLE, SYSTEM_CHANNEL, body)
        except MessageTooLarge:
            if delivery.reliable:
                self._forward_failed(remote.name, message_id, str(to))

    def _on_forwarded(self, msg: list[Any]) -> None:
        _, sender, mode, channel, message_id, payload = msg
        if (type(sender) is not str or type(mode) is not int
                or mode not in Delivery._value2member_map_ or type(channel) is not int
                or not 0 <= channel < USER_CHANNELS or type(message_id) is not int
                or type(payload) is not bytes):
            raise ProtocolError("malformed forwarded message")
        delivery = Delivery(mode)
        if delivery is Delivery.UNRELIABLE_SEQUENCED:
            key = (sender, channel)
            latest = self._latest_forwarded.get(key)
            if latest is not None and message_id <= latest:
                return
            self._latest_forwarded[key] = message_id
        self._deliver_user(sender, decode_value(payload), message_id, channel, delivery)

    def _service_connection(self, remote: Remote, now: float) -> None:
        conn = remote.connection
        assert conn is not None and remote.address is not None
        if conn.timed_out(now):
            log.info("%s timed out", remote.name)
            self._emit(ev.PeerTimeout(remote.name))
            if self.role is Role.CLIENT:
                self._terminate(f"lost the server player {remote.name!r} (timeout)")
            else:
                self._remove(remote)
            return
        if remote.path == "relay" and now >= remote.next_direct_try:
            remote.next_direct_try = now + DIRECT_RETRY_INTERVAL
            self._punch(remote, now)
        for data in conn.poll(now):
            self._send(data, remote.address)
        if conn.expired:
            groups, conn.expired = conn.expired, []
            for group in groups:
                self._on_expired(remote, group)
