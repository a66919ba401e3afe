"""The peer engine's state machine: registration, join, punch, handshake, session.

Pure and sans-I/O (in the manner of h11 and aioquic): no socket, no clock, no pygame.
The shell feeds it ``receive_datagram(data, address, now)`` and ``handle_timer(now)``,
sends what ``datagrams_to_send()`` returns and hands ``events()`` to the game.

Roles: a *server player* registers its name with the handshake server and accepts
clients; a *client* asks the handshake server for a server player by name. The
handshake server introduces the two (each learns the other's public and LAN address
and a shared secret); both punch holes towards both addresses at once; the first path
that answers wins; the client then proves the password with a challenge-response and
the session's reliable connection starts.
"""

from __future__ import annotations

import logging
from typing import Any

from . import crypto
from . import events as ev
from .connection import Connection
from .constants import (
    HS_SERVER_NAME,
    SYSTEM_CHANNEL,
    USER_CHANNELS,
)
from .delivery import Delivery
from .errors import NotConnected, ProtocolError
from .messaging import Messaging
from .peers import (
    SYS_PEERS,
    Address,
    ListQuery,
    PeerState,
    Remote,
    Role,
    relay_address,
)
from .punching import Punching
from .rendezvous import Rendezvous
from .values import encode_value
from .wire import (
    Kind,
    peek_kind,
    valid_name,
)

log = logging.getLogger(__name__)

__all__ = ["Role", "Session", "relay_address"]


class Session(Rendezvous, Punching, Messaging):
    """One local player's protocol state. See the module docstring."""

    def init_server(self, handshake: Address, lan: Address, server_name: str,
                    password: str | None, now: float) -> None:
        self._check_new_session(server_name)
        self.role = Role.SERVER
        self._name = self._server_name = server_name
        self._hs = handshake
        self._lan = lan
        self._password_required = bool(password)
        self._key = crypto.password_key(password, server_name) if password else None
        self._register(now)

    def init_client(self, handshake: Address, lan: Address, user_name: str, server_name: str,
                    password: str | None, now: float) -> None:
        self._check_new_session(user_name)
        if not valid_name(server_name) or server_name == HS_SERVER_NAME:
            raise ValueError(f"invalid server name {server_name!r}")
        if user_name == server_name:
            raise ValueError("the user name must differ from the server name")
        self.role = Role.CLIENT
        self._name = user_name
        self._server_name = server_name
        self._hs = handshake
        self._lan = lan
        self._key = crypto.password_key(password, server_name) if password else None
        self._join_req = self._request(
            Kind.JOIN, [server_name, user_name, lan[0], lan[1]], handshake, now)

    def _check_new_session(self, name: str) -> None:
        if self.role is not Role.NONE:
            raise RuntimeError("a session is already on: call quit_connection() first")
        if not valid_name(name):
            raise ValueError(f"invalid name {name!r}: 1-32 printable characters")
        if name == HS_SERVER_NAME:
            raise ValueError(f"{HS_SERVER_NAME!r} is reserved for the handshake server")

    def request_server_list(self, handshake: Address, now: float) -> None:
        rid = self._request(Kind.LIST, [0], handshake, now)
        self._lists[rid] = ListQuery(handshake)

    def send(self, peer_name: str, message: object, delivery: Delivery, channel: int,
             now: float) -> int | None:
        """Queue a message; returns its message_id for reliable deliveries."""
        if not isinstance(delivery, Delivery):
            raise TypeError("delivery must be a framework.Delivery member")
        if type(channel) is not int or not 0 <= channel < USER_CHANNELS:
            raise ValueError(f"channel must be an int from 0 to {USER_CHANNELS - 1}")
        payload = self._encoder.encode(message)  # TypeError here, at the call
        if not self._connected:
            raise NotConnected("no session: messages can be sent once connected")
        if peer_name == self._name:
            raise ValueError("cannot send a message to yourself")
        message_id: int | None = None
        if delivery.reliable:
            message_id = self._next_message_id
        remote = self._remotes.get(peer_name)
        if remote is not None and remote.connection is not None:
            remote.connection.send(delivery, channel, payload, message_id or 0, message)
        elif self.role is Role.CLIENT and peer_name in self._known:
            self._forward(peer_name, message, payload, delivery, channel, message_id)
        else:
            raise NotConnected(f"no peer named {peer_name!r} in this session")
        if message_id is not None:
            self._next_message_id += 1
        return message_id

    def drop_peer(self, peer_name: str, now: float) -> None:
        self._now = now
        if self.role is not Role.SERVER:
            raise RuntimeError("only the server player can drop peers")
        remote = self._remotes.get(peer_name)
        if remote is None:
            raise NotConnected(f"no peer named {peer_name!r} in this session")
        self._send_disconnect(remote, "dropped by the server player")
        self._remove(remote)

    def drop_connection_with_handshake_server(self, now: float) -> None:
        if self.role is Role.NONE or self._hs_dropped:
            return
        self._unregister()
        self._hs_dropped = True
        hs = self._hs
        self._tracker.drop(lambda q: q.address == hs)

    def quit_connection(self, now: float) -> None:
        self._now = now
        if self.role is Role.NONE:
            return
        for remote in list(self._remotes.values()):
            if remote.state is PeerState.CONNECTED:
                self._send_disconnect(remote, "quit")
        self._unregister()
        self._terminate("quit")

    def get_peer(self, peer_name: str) -> dict[str, Any] | None:
        remote = self._remotes.get(peer_name)
        if remote is not None and remote.state is PeerState.CONNECTED and remote.address:
            address = remote.address
            if remote.path == "relay":  # the peer's own public address, not the stand-in
                address = next(a for a, p in remote.candidates if p == "direct")
            return {"name": peer_name, "address": address}
        known = self._known.get(peer_name)
        if known is not None:
            return {"name": peer_name, "address": known.address}
        return None

    def get_peers(self) -> list[str]:
        return list(self._peer_names)

    def get_server_address(self) -> Address | None:
        if self.role is Role.SERVER:
            return self._public
        if self.role is Role.CLIENT:
            host = self._remotes.get(self._server_name or "")
            if host is not None and host.state is PeerState.CONNECTED:
                return host.address
        return None

    def get_server_name(self) -> str | None:
        return self._server_name if self.role is not Role.NONE else None

    def get_user_name(self) -> str | None:
        return self._name if self.role is not Role.NONE else None

    def i_am_server(self) -> bool | None:
        if self.role is Role.NONE:
            return None
        return self.role is Role.SERVER

    def is_connected(self) -> bool:
        return self._connected

    def connection(self, peer_name: str) -> Connection | None:
        remote = self._remotes.get(peer_name)
        return remote.connection if remote is not None else None

    @property
    def blocked_count(self) -> int:
        return self._blocked_count

    def datagrams_to_send(self) -> list[tuple[bytes, Address]]:
        out, self._out = self._out, []
        return out

    def add_event(self, event: ev.EngineEvent) -> None:
        """Queue an event the shell observed itself (datagrams sent and received)."""
        self._events.append(event)

    def events(self) -> list[ev.EngineEvent]:
        out, self._events = self._events, []
        return out

    def next_timer(self, now: float) -> float | None:
        first = self._tracker.next_time()
        times = [first] if first is not None else []
        if self._registered and not self._hs_dropped:
            times.append(self._next_refresh)
        for r in self._remotes.values():
            if r.connection is not None:
                times.append(r.connection.next_timer(now))
            else:
                times.append(min(r.next_punch if r.state is PeerState.PUNCHING else r.next_resend,
                                 r.deadline))
        return min(times) if times else None

    def receive_datagram(self, data: bytes, address: Address, now: float) -> None:
        """Take one datagram from the network. Never raises for bad input."""
        self._now = now
        try:
            kind = peek_kind(data)
            if kind is Kind.DATA:
                self._on_data(data, address, now)
            elif kind is Kind.RELAY:
                self._on_relay(data, address, now)
            elif kind < Kind.PUNCH:
                self._on_hs_packet(kind, data, address, now)
            else:
                self._on_peer_packet(kind, data, address, now)
        except ProtocolError as exc:
            log.debug("dropped datagram from %s: %s", address, exc)
            self._block(address, now)

    def handle_timer(self, now: float) -> None:
        """Run everything that is due: resends, refreshes, punches, peer traffic."""
        self._now = now
        self._run_requests(now)
        if (self.role is Role.SERVER and self._registered and not self._hs_dropped
                and now >= self._next_refresh):
            self._refresh(now)
        for remote in list(self._remotes.values()):
            if remote.state is PeerState.CONNECTED:
                self._service_connection(remote, now)
            else:
                self._service_handshake(remote, now)

    def _remove(self, remote: Remote, quiet: bool = False) -> None:
        self._remotes.pop(remote.name, None)
        aliases = [a for a, r in self._by_addr.items() if r is remote]
        for a in aliases:
            del self._by_addr[a]
        if remote.relay_id is not None:
            self._relay_remotes.pop(remote.relay_id, None)
            self._relay_ids.pop(relay_address(remote.relay_id), None)
            aliases.append(relay_address(remote.relay_id))
        if remote.connection is not None:
            remote.connection.close()
        if remote.state is PeerState.CONNECTED:
            if len(self._departed) > 256:
                self._departed.clear()
            for a in aliases:
                self._departed[a] = self._now + 2.0
        if not quiet and remote.state is PeerState.CONNECTED:
            self._peers_changed()

    def _peers_changed(self) -> None:
        """Recompute the peer list; tell the game, and (server player) the clients."""
        if self.role is Role.SERVER:
            clients = [r for r in self._remotes.values() if r.state is PeerState.CONNECTED]
            names = [r.name for r in clients]
            for r in clients:
                assert r.connection is not None and r.address is not None
                others = [[o.name, o.address[0], o.address[1]] for o in clients
                          if o is not r and o.address is not None]
                r.connection.send(Delivery.RELIABLE_ORDERED, SYSTEM_CHANNEL,
                                  encode_value([SYS_PEERS, others]), 0, None)
        else:
            names = [n for n in self._remotes if self._remotes[n].state is PeerState.CONNECTED]
            names += [n for n in self._known if n not in names]
        if names != self._peer_names:
            self._peer_names = names
            self._emit(ev.PeerListUpdated(list(names)))
