"""Messages between two clients, through the server player (the session is a star).

The sender's ``message_id`` travels with the message (no collisions across senders), the
first hop's ack comes from the server player, and when the second hop fails the server
player says so (FORWARD_FAILED), so the sender gets a true ``RELIABLE_MESSAGE_TIMEOUT``
for exactly that message, never a false one. Every field is checked: a client may send
any plaintext.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from . import events as ev
from .connection import Connection
from .constants import FORWARD_MEMORY, SYSTEM_CHANNEL, USER_CHANNELS
from .context import Context
from .delivery import Delivery
from .errors import MessageTooLarge, NotConnected, ProtocolError
from .names import is_valid_name
from .peers import Remote
from .values import decode_value, encode_value
from .wire import SYS_FORWARD, SYS_FORWARD_FAILED, SYS_FORWARDED

if TYPE_CHECKING:
    from .session import Session

_MODES: Final = Delivery._value2member_map_


def packet_data(sender: str, to: str, message: object, message_id: int | None,
                channel: int | None = None, delivery: Delivery | None = None
                ) -> dict[str, Any]:
    """The ``packet_data`` of a message event, as the Godot Holepunch API names it."""
    data: dict[str, Any] = {"from": sender, "to": to, "message": message}
    if message_id is not None:
        data["message_id"] = message_id
    if channel is not None:
        data["channel"] = channel
    if delivery is not None:
        data["delivery"] = delivery
    return data


class Forwarding:
    """Both ends of client-to-client messages: the clients' and the server player's."""

    def __init__(self, ctx: Context, session: Session) -> None:
        self._ctx = ctx
        self._session = session
        self.reset()

    def reset(self) -> None:
        self._seq_counters: dict[tuple[str, int], int] = {}
        self._latest: dict[tuple[str, int], int] = {}
        self._sent: dict[int, object] = {}  # message_id -> message, for a failure notice

    # --- a client sending -----------------------------------------------------------

    def send(self, to: str, message: object, payload: bytes, delivery: Delivery,
             channel: int, message_id: int | None) -> None:
        host = self._host_connection()
        if message_id is None:  # sequenced: a counter lets the receiver drop stale ones
            key = (to, channel)
            message_id = self._seq_counters.get(key, 0)
            self._seq_counters[key] = message_id + 1
        body = encode_value([SYS_FORWARD, to, int(delivery), channel, message_id, payload])
        if delivery.reliable:
            host.send(Delivery.RELIABLE_ORDERED, SYSTEM_CHANNEL, body, message_id,
                      ("user", to, message, message_id), expires=True)
            # Kept (a bounded while) so that a failure notice can name the message itself.
            self._sent[message_id] = message
            if len(self._sent) > FORWARD_MEMORY:
                del self._sent[next(iter(self._sent))]
        else:
            host.send(Delivery.UNRELIABLE, SYSTEM_CHANNEL, body)

    def _host_connection(self) -> Connection:
        host = self._session.remotes.get(self._session.server_name or "")
        if host is None or host.connection is None:
            raise NotConnected("not connected to the server player")
        return host.connection

    # --- the server player passing messages on ------------------------------------------

    def on_forward(self, remote: Remote, msg: list[Any]) -> None:
        _, to, mode, channel, message_id, payload = msg
        if (type(mode) is not int or mode not in _MODES or not is_valid_name(to)
                or type(channel) is not int or not 0 <= channel < USER_CHANNELS
                or type(message_id) is not int or type(payload) is not bytes):
            raise ProtocolError("malformed forward")
        delivery = Delivery(mode)
        session = self._session
        if to == session.name:
            self.deliver(remote.name, decode_value(payload), message_id, channel, delivery)
            return
        target = session.remotes.get(to)
        if target is None or target.connection is None:
            if delivery.reliable:
                self.failed(remote.name, message_id, to)
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
                self.failed(remote.name, message_id, to)

    def failed(self, origin: str, message_id: int, to: str) -> None:
        """Tell ``origin`` its message to ``to`` could not be passed on."""
        remote = self._session.remotes.get(origin)
        if remote is not None and remote.connection is not None:
            remote.connection.send(Delivery.RELIABLE_ORDERED, SYSTEM_CHANNEL,
                                   encode_value([SYS_FORWARD_FAILED, message_id, to]), 0, None)

    # --- a client receiving -------------------------------------------------------------

    def on_forwarded(self, msg: list[Any]) -> None:
        _, sender, mode, channel, message_id, payload = msg
        if (not is_valid_name(sender) or type(mode) is not int or mode not in _MODES
                or type(channel) is not int or not 0 <= channel < USER_CHANNELS
                or type(message_id) is not int or type(payload) is not bytes):
            raise ProtocolError("malformed forwarded message")
        delivery = Delivery(mode)
        if delivery is Delivery.UNRELIABLE_SEQUENCED:
            key = (sender, channel)
            latest = self._latest.get(key)
            if latest is not None and message_id <= latest:
                return
            self._latest[key] = message_id
        self.deliver(sender, decode_value(payload), message_id, channel, delivery)

    def on_failed(self, message_id: object, to: object) -> None:
        if type(message_id) is not int or not is_valid_name(to):
            raise ProtocolError("malformed forward failure")
        assert isinstance(to, str)
        message = self._sent.pop(message_id, None)
        self._ctx.emit(ev.ReliableMessageTimeout(packet_data(
            self._session.name or "", to, message, message_id)))

    def deliver(self, sender: str, value: object, message_id: int | None, channel: int,
                mode: Delivery) -> None:
        data = packet_data(sender, self._session.name or "", value,
                           message_id if mode.reliable else None, channel, mode)
        if mode.reliable:
            self._ctx.emit(ev.ReceivedReliableMessageFromPeer(data))
        else:
            self._ctx.emit(ev.ReceivedUnreliableMessageFromPeer(data))
