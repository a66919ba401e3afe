"""The peer engine's state machine: one owner of the session's state, and its parts.

Pure and sans-I/O (in the manner of h11 and aioquic): no socket, no clock, no pygame.
The shell feeds it ``receive_datagram(data, address, now)`` and ``handle_timer(now)``,
sends what ``take_datagrams()`` returns and hands ``events()`` to the game. Datagrams are
built by the calls that cause them (``handle_timer`` builds everything that is due).

Roles: a *server player* (the host) registers its game's name with the handshake server
and accepts clients; a *client* asks the handshake server for a host by name. The session
moves through the phases below, and only along the arrows of ``TRANSITIONS`` (every
move is logged "from X to Y"); each remote player has its own smaller machine
(``peers.RemoteState``). The work is done by parts that share only a ``Context``:

- ``Rendezvous`` (rendezvous.py): the handshake server: registration, join, lists, relays;
- ``Punching`` (punching.py): introductions, admission, hole punching, the relay;
- ``Handshakes`` (handshake.py): the key exchange and the password's proof;
- ``Paths`` (paths.py): validating and moving to a peer's new address;
- ``Messaging`` (messaging.py): connected peers' traffic.
"""

from __future__ import annotations

import enum
import logging
from typing import Any

from . import events as ev
from .addresses import Address, is_local_address
from .config import Config
from .connection import Connection
from .context import Context
from .crypto import RandomBytes, normalize_fingerprint
from .delivery import Delivery
from .errors import NotConnected, ProtocolError
from .handshake import Handshakes
from .lan import Lan
from .messaging import Messaging
from .names import normalize_name
from .paths import Paths
from .peers import Departures, Known, PathKind, Remote, RemoteState, Role, Route
from .punching import Punching
from .relaying import Relaying
from .rendezvous import Rendezvous
from .wire import LAN_KINDS, Kind, peek_kind

log = logging.getLogger(__name__)

__all__ = ["Phase", "Role", "Session"]


class Phase(enum.Enum):
    IDLE = "idle"
    REGISTERING = "registering"  # server player: waiting for the handshake server
    HOSTING = "hosting"  # server player: registered; clients may join
    JOINING = "joining"  # client: introduced or waiting to be; punching; handshaking
    CONNECTED = "connected"  # client: in the server player's session


TRANSITIONS: dict[Phase, frozenset[Phase]] = {
    Phase.IDLE: frozenset({Phase.REGISTERING, Phase.JOINING}),
    Phase.REGISTERING: frozenset({Phase.HOSTING, Phase.IDLE}),
    Phase.HOSTING: frozenset({Phase.IDLE}),
    Phase.JOINING: frozenset({Phase.CONNECTED, Phase.IDLE}),
    Phase.CONNECTED: frozenset({Phase.IDLE}),
}


def _pin(handshake_key: str | None) -> str | None:
    """The fingerprint a player pinned, normalised; ValueError if it is malformed."""
    return normalize_fingerprint(handshake_key) if handshake_key is not None else None


class Session:
    """One local player's protocol state. See the module docstring."""

    def __init__(self, config: Config | None = None,
                 random_bytes: RandomBytes | None = None) -> None:
        if random_bytes is None:
            raise ValueError("Session needs a random_bytes source (os.urandom in production)")
        self.config = config if config is not None else Config()
        self.ctx = Context(self.config, random_bytes)
        self.phase = Phase.IDLE
        self.rendezvous = Rendezvous(self.ctx, self)
        self.punching = Punching(self.ctx, self)
        self.handshakes = Handshakes(self.ctx, self)
        self.paths = Paths(self.ctx, self)
        self.relaying = Relaying(self.ctx, self)
        self.messaging = Messaging(self.ctx, self)
        self.lan = Lan(self.ctx, self)
        self._clear()

    def _clear(self) -> None:
        self.role = Role.NONE
        self.name: str | None = None
        self.server_name: str | None = None
        self.password: str | None = None
        self.remotes: dict[str, Remote] = {}
        self.by_route: dict[Route, Remote] = {}
        self.known: dict[str, Known] = {}
        self._departed = Departures()
        self._peer_names: list[str] = []

    def _set_phase(self, phase: Phase) -> None:
        if phase not in TRANSITIONS[self.phase]:
            raise AssertionError(f"no move from {self.phase.value} to {phase.value}")
        log.info("session: from %s to %s", self.phase.value, phase.value)
        self.phase = phase

    # --- starting ------------------------------------------------------------------

    def init_server(self, handshake: Address, lan: Address, server_name: str,
                    password: str | None, now: float, handshake_key: str | None = None,
                    bound_host: str | None = None) -> None:
        name = self._start_check(server_name, handshake_key)
        self.role = Role.SERVER
        self.name = self.server_name = name
        self.password = password or None
        self.rendezvous.begin(handshake, _pin(handshake_key), lan)
        self._set_phase(Phase.REGISTERING)
        self.rendezvous.register(name, self.rendezvous.candidates, self.password is not None,
                                 now)
        if self.config.lan_discovery:
            self.lan.host(lan[0] if bound_host is None else bound_host)

    def init_client(self, handshake: Address, lan: Address, user_name: str, server_name: str,
                    password: str | None, now: float, handshake_key: str | None = None
                    ) -> None:
        name = self._start_check(user_name, handshake_key)
        try:
            server = normalize_name(server_name)
        except ValueError as exc:
            raise ValueError(f"invalid server name {server_name!r}: {exc}") from None
        if name == server:
            raise ValueError("the user name must differ from the server name")
        self.role = Role.CLIENT
        self.name, self.server_name = name, server
        self.password = password or None
        self.rendezvous.begin(handshake, _pin(handshake_key), lan)
        self._set_phase(Phase.JOINING)
        self.rendezvous.join(server, name, self.rendezvous.candidates, now)

    def init_lan_server(self, lan: Address, server_name: str, password: str | None,
                        now: float, bound_host: str | None = None) -> None:
        """Host with no handshake server: found and joined on the local network only
        (lan.py). ``lan``: our LAN address; ``bound_host``: the host the game's socket is
        bound to (a loopback one answers loopback players only)."""
        name = self._start_check(server_name, None)
        self.role = Role.SERVER
        self.name = self.server_name = name
        self.password = password or None
        self.ctx.now = now
        self.rendezvous.lan = lan
        self.lan.host(lan[0] if bound_host is None else bound_host)
        self._set_phase(Phase.REGISTERING)
        self._set_phase(Phase.HOSTING)
        self.ctx.emit(ev.ConfirmedAsServer(None))

    def init_lan_client(self, host: Address, lan: Address, user_name: str, server_name: str,
                        password: str | None, now: float) -> None:
        """Join the game ``server_name`` hosted at ``host`` on the local network, with no
        handshake server: the host hands us a join token (lan.py), then the usual
        handshake runs."""
        name = self._start_check(user_name, None)
        try:
            server = normalize_name(server_name)
        except ValueError as exc:
            raise ValueError(f"invalid server name {server_name!r}: {exc}") from None
        if name == server:
            raise ValueError("the user name must differ from the server name")
        if not is_local_address(host[0]):
            raise ValueError(f"{host[0]} is not a local network address: LAN games are "
                             "joined on private, link-local or loopback addresses only")
        self.role = Role.CLIENT
        self.name, self.server_name = name, server
        self.password = password or None
        self.rendezvous.lan = lan
        self._set_phase(Phase.JOINING)
        self.lan.join(host, now)

    def request_lan_list(self, targets: list[Address], now: float) -> None:
        """List the games of the local network: a query to each of ``targets`` (the
        broadcast addresses, discovery port); the answer is RECEIVED_SERVER_LIST."""
        self.ctx.now = now
        self.lan.request_list(targets, now)

    def set_mapped_address(self, address: Address | None, now: float) -> None:
        """A port mapping of our router (or its loss): offered to the players we meet."""
        if address == self.rendezvous.mapped:
            return
        log.info("port mapping: %s", address)
        self.rendezvous.mapped = address
        self.rendezvous.update_candidates(now)

    def _start_check(self, name: str, handshake_key: str | None) -> str:
        if self.phase is not Phase.IDLE:
            raise RuntimeError("a session is already on: call quit_connection() first")
        try:
            norm = normalize_name(name)
        except ValueError as exc:
            raise ValueError(f"invalid name {name!r}: {exc}") from None
        _pin(handshake_key)  # ValueError now, at the call, if malformed
        return norm

    def request_server_list(self, handshake: Address, now: float,
                            handshake_key: str | None = None) -> None:
        self.rendezvous.request_list(handshake, _pin(handshake_key), now)

    # --- what the parts report ---------------------------------------------------------

    def on_registered(self) -> None:
        self._set_phase(Phase.HOSTING)
        assert self.rendezvous.address is not None
        self.ctx.emit(ev.ConfirmedAsServer(self.rendezvous.address))

    def on_welcomed(self, remote: Remote) -> None:
        self._set_phase(Phase.CONNECTED)
        self.rendezvous.joined()
        self.ctx.emit(ev.ConfirmedAsClient(remote.shown_address))
        self.peers_changed()

    def fail(self, message: str, reason: str | None = None, report: bool = True,
             unless_playing: bool = False) -> None:
        """Something went wrong: tell the game (``ERROR``) and end the session, unless
        ``unless_playing`` and players are connected (then the game goes on)."""
        if report:
            self.ctx.error(message)
        if unless_playing and self.any_connected():
            return
        self._terminate(reason or message)

    def _terminate(self, reason: str) -> None:
        if self.phase is Phase.IDLE:
            return
        log.info("session ended: %s", reason)
        for remote in self.remotes.values():
            if remote.connection is not None:
                remote.connection.close()
        self._set_phase(Phase.IDLE)
        self._clear()
        self.rendezvous.reset()
        self.lan.reset()
        self.messaging.reset()
        self.ctx.emit(ev.SessionTerminated(reason))

    def any_connected(self) -> bool:
        return any(r.state is RemoteState.CONNECTED for r in self.remotes.values())

    def recently_departed(self, route: Route, now: float) -> bool:
        return self._departed.recent(route, now)

    def remove(self, remote: Remote, quiet: bool = False) -> None:
        self.remotes.pop(remote.name, None)
        routes = [r for r, who in self.by_route.items() if who is remote]
        for r in routes:
            del self.by_route[r]
        if remote.connection is not None:
            remote.connection.close()
        if remote.state is RemoteState.CONNECTED:
            self._departed.remember(routes, self.ctx.now)
            if not quiet:
                self.peers_changed()

    def peers_changed(self) -> None:
        """Recompute the peer list; tell the game, and (server player) the clients."""
        connected = [n for n, r in self.remotes.items() if r.state is RemoteState.CONNECTED]
        if self.role is Role.SERVER:
            self.messaging.share_peer_list()
            names = connected
        else:
            names = connected + [n for n in self.known if n not in connected]
        if names != self._peer_names:
            self._peer_names = names
            self.ctx.emit(ev.PeerListUpdated(list(names)))

    # --- the game's calls ------------------------------------------------------------

    def send(self, peer_name: str, message: object, delivery: Delivery, channel: int
             ) -> int | None:
        """Queue a message (it leaves at the next ``handle_timer``); returns its
        message_id for reliable deliveries."""
        return self.messaging.send(peer_name, message, delivery, channel)

    def drop_peer(self, peer_name: str, now: float) -> None:
        self.ctx.now = now
        if self.role is not Role.SERVER:
            raise RuntimeError("only the server player can drop peers")
        remote = self.remotes.get(peer_name)
        if remote is None:
            raise NotConnected(f"no peer named {peer_name!r} in this session")
        self.messaging.send_disconnect(remote, "dropped by the server player", now)
        self.remove(remote)

    def drop_connection_with_handshake_server(self, now: float) -> None:
        if self.phase is Phase.IDLE or self.rendezvous.dropped:
            return
        self.rendezvous.unregister(self.name or "", now)
        self.rendezvous.drop()

    def quit_connection(self, now: float) -> None:
        self.ctx.now = now
        if self.phase is Phase.IDLE:
            return
        for remote in list(self.remotes.values()):
            if remote.state is RemoteState.CONNECTED:
                self.messaging.send_disconnect(remote, "quit", now)
        if self.role is Role.SERVER:
            self.rendezvous.unregister(self.name or "", now)
        self._terminate("quit")

    # --- getters ---------------------------------------------------------------------

    def get_peer(self, peer_name: str) -> dict[str, Any] | None:
        remote = self.remotes.get(peer_name)
        if remote is not None and remote.state is RemoteState.CONNECTED:
            return {"name": peer_name, "address": remote.shown_address}
        known = self.known.get(peer_name)
        if known is not None:
            return {"name": peer_name, "address": known.address}
        return None

    def get_peers(self) -> list[str]:
        return list(self._peer_names)

    def get_server_address(self) -> Address | None:
        if self.role is Role.SERVER:
            return self.rendezvous.public or (self.rendezvous.lan if self.lan.listening
                                              and self.rendezvous.address is None else None)
        host = self.remotes.get(self.server_name or "")
        if host is not None and host.state is RemoteState.CONNECTED:
            return host.shown_address
        return None

    def get_server_name(self) -> str | None:
        return self.server_name if self.role is not Role.NONE else None

    def get_user_name(self) -> str | None:
        return self.name if self.role is not Role.NONE else None

    def i_am_server(self) -> bool | None:
        return None if self.role is Role.NONE else self.role is Role.SERVER

    def is_connected(self) -> bool:
        return self.phase in (Phase.HOSTING, Phase.CONNECTED)

    def connection(self, peer_name: str) -> Connection | None:
        remote = self.remotes.get(peer_name)
        return remote.connection if remote is not None else None

    @property
    def handshake_fingerprint(self) -> str | None:
        """The fingerprint of the handshake server's key this session trusts."""
        return self.rendezvous.fingerprint

    @property
    def blocked_count(self) -> int:
        return self.ctx.blocked

    @property
    def internal_errors(self) -> int:
        return self.ctx.internal_errors

    # --- I/O ---------------------------------------------------------------------------

    def take_datagrams(self) -> list[tuple[bytes, Address]]:
        """Drain the datagrams the calls since the last take built (it builds none)."""
        return self.ctx.take_datagrams()

    def add_event(self, event: ev.EngineEvent) -> None:
        """Queue an event the shell observed itself (datagrams sent and received)."""
        self.ctx.emit(event)

    def events(self) -> list[ev.EngineEvent]:
        return self.ctx.take_events()

    def next_timer(self, now: float) -> float | None:
        times = []
        first = self.rendezvous.next_timer()
        if first is not None:
            times.append(first)
        lan = self.lan.next_timer()
        if lan is not None:
            times.append(lan)
        for r in self.remotes.values():
            bind = self.relaying.next_timer(r)
            if bind is not None:
                times.append(bind)
            if r.connection is not None:
                times.append(r.connection.next_timer(now))
                if r.path is PathKind.RELAY:
                    times.append(r.next_direct_try)
            else:
                times.append(self.punching.next_timer(r))
        return min(times) if times else None

    def receive_datagram(self, data: bytes, address: Address, now: float) -> None:
        """Take one datagram from the network. Never raises, whatever the datagram."""
        self.ctx.now = now
        try:
            self._receive(data, address, now)
        except ProtocolError as exc:
            log.debug("dropped datagram from %s: %s", address, exc)
            self.ctx.block(address, now)
        except Exception:  # a bug, met through hostile input: count it and go on
            self.ctx.internal_error(address, now)

    def _receive(self, data: bytes, address: Address, now: float) -> None:
        kind = peek_kind(data)
        route = Route(address)
        if kind is Kind.RELAY:
            unwrapped = self.rendezvous.unwrap(data, address, now)
            if unwrapped is None:
                return
            kind, data, route = unwrapped
        if kind is Kind.DATA:
            self.messaging.on_data(data, route, now)
        elif kind is Kind.RELAY_BOUND:
            self.relaying.on_bound(data, address, now)
        elif kind < Kind.PUNCH:
            self.rendezvous.receive(kind, data, address, now)
        elif kind is Kind.PUNCH or kind is Kind.PUNCH_ACK:
            self.punching.on_packet(kind, data, route, now)
        elif kind in LAN_KINDS:
            self.lan.on_packet(kind, data, route, now)
        else:
            self.handshakes.on_packet(kind, data, route, now)

    def handle_timer(self, now: float) -> None:
        """Run everything that is due: resends, refreshes, punches, peer traffic."""
        self.ctx.now = now
        self.rendezvous.run(now)
        self.lan.run(now)
        for remote in list(self.remotes.values()):
            if remote.name not in self.remotes:
                continue  # removed by an earlier one's consequences
            self.relaying.service(remote, now)
            if remote.state is RemoteState.CONNECTED:
                self.messaging.service(remote, now)
            else:
                self.punching.service(remote, now)
