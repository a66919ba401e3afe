"""The I/O shell around the protocol core: one UDP socket, the clock, pygame events.

No threads, no blocking: ``tick()`` reads every waiting datagram, runs the core's
timers, sends what the core produced and returns the events.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import os
import socket
import time
from collections.abc import Sequence
from types import TracebackType
from typing import Any

import pygame

from . import events as pg_events
from .landiscovery import DiscoveryListener, broadcast_addresses
from .portmap import PortMapper
from .protocol import events as ev
from .protocol.addresses import Address
from .protocol.config import Config
from .protocol.constants import MAX_READS_PER_TICK, SOCKET_BUFFER
from .protocol.delivery import Delivery
from .protocol.portmap.common import MappingEstablished, MappingLost
from .protocol.session import Session
from .protocol.simulator import NetworkSimulator
from .protocol.stats import PeerStats
from .protocol.wire import HEADER, Kind

log = logging.getLogger(__name__)



def normalize_address(address: Sequence[Any], what: str = "address") -> Address:
    """Accept (host, port) tuples or [host, port] lists; check them."""
    if isinstance(address, str) or len(address) != 2:
        raise ValueError(f"{what} must be (host, port), not {address!r}")
    host, port = address[0], address[1]
    if not isinstance(host, str) or not isinstance(port, int) or isinstance(port, bool):
        raise ValueError(f"{what} must be (str host, int port), not {address!r}")
    if not 0 <= port <= 65535:
        raise ValueError(f"{what} port {port} is out of range")
    return (host, port)


def _resolve(address: Address) -> Address:
    host, port = address
    try:
        ipaddress.ip_address(host)
        return address
    except ValueError:
        pass
    # A name: resolved once, when the session starts (the only lookup the engine makes).
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    if not infos:
        raise ValueError(f"cannot resolve {host!r}")
    return (str(infos[0][4][0]), port)


class Peer:
    """One local player. See ``docs`` and the README for a complete example."""

    def __init__(self, config: Config | None = None) -> None:
        self.config = config if config is not None else Config()
        self._session = Session(self.config, os.urandom)
        self._sock: socket.socket | None = None
        self._bound: Address | None = None
        sim = self.config.simulation
        self._sim: NetworkSimulator[Address] | None = NetworkSimulator(sim) if sim.active else None
        self._mapper: PortMapper | None = None
        self._discovery: DiscoveryListener | None = None
        self._now = time.monotonic()
        self.datagrams_sent = 0
        self.datagrams_received = 0
        self.send_errors = 0

    # --- sessions ----------------------------------------------------------------------

    def init_server(self, handshake_address: Sequence[Any] | None,
                    local_address: Sequence[Any], server_name: str,
                    password: str | None = None, *, handshake_key: str | None = None
                    ) -> None:
        """Register with the handshake server under ``server_name`` and await players.

        ``handshake_key``: the fingerprint the handshake server prints at start; when
        given, a handshake server with another key is refused (without it, the first key seen is
        trusted for the session).

        ``handshake_address=None``: host on the local network only, with no handshake
        server: ``CONFIRMED_AS_SERVER`` (its ``handshake_address`` None) comes at once,
        and players of the LAN find the game with ``request_lan_server_list()``. A host
        with a handshake server answers on the LAN too (``Config.lan_discovery``).
        """
        local = normalize_address(local_address, "local_address")
        self._check_password(password)
        if handshake_address is None:
            if handshake_key is not None:
                raise ValueError("handshake_key needs a handshake_address")
            lan = self._bind(local, None)
            self._session.init_lan_server(lan, server_name, password or None, self._clock(),
                                          bound_host=local[0])
        else:
            hs = _resolve(normalize_address(handshake_address, "handshake_address"))
            lan = self._bind(local, hs)
            self._session.init_server(hs, lan, server_name, password or None, self._clock(),
                                      handshake_key, bound_host=local[0])
            self._start_port_mapping(lan)
        self._listen_for_discovery()
        self._flush()

    def init_client(self, handshake_address: Sequence[Any] | None,
                    local_address: Sequence[Any], user_name: str, server_name: str,
                    password: str | None = None, *, handshake_key: str | None = None,
                    host_address: Sequence[Any] | None = None) -> None:
        """Ask the handshake server for ``server_name`` and connect to that player.

        On the local network, with no handshake server: ``handshake_address=None`` and
        ``host_address`` the game's address (an entry of ``request_lan_server_list()``'s
        answer has it as ``"address"``); the host must be on a private, link-local or
        loopback address.
        """
        local = normalize_address(local_address, "local_address")
        self._check_password(password)
        if handshake_address is None:
            if host_address is None:
                raise ValueError("give handshake_address, or host_address to join a LAN "
                                 "game directly")
            if handshake_key is not None:
                raise ValueError("handshake_key needs a handshake_address")
            host = _resolve(normalize_address(host_address, "host_address"))
            lan = self._bind(local, host)
            self._session.init_lan_client(host, lan, user_name, server_name, password or None,
                                          self._clock())
            self._flush()
            return
        if host_address is not None:
            raise ValueError("give handshake_address or host_address, not both")
        hs = _resolve(normalize_address(handshake_address, "handshake_address"))
        lan = self._bind(local, hs)
        self._session.init_client(hs, lan, user_name, server_name, password or None,
                                  self._clock(), handshake_key)
        self._start_port_mapping(lan)
        self._flush()

    def request_lan_server_list(self) -> None:
        """Ask the local network for its games (broadcast on ``Config.lan_port``). The
        answer comes about a second later as RECEIVED_SERVER_LIST, whose entries also have
        ``address`` (pass it to ``init_client(None, ..., host_address=...)``) and
        ``lan: True``. Works with or without a session; IPv4 only."""
        if self._sock is None:
            self._bind(("0.0.0.0", 0), None)
        elif self._sock.family != socket.AF_INET:
            raise RuntimeError("LAN discovery is IPv4: this peer's socket is IPv6")
        hosts = self.config.lan_broadcast
        if hosts is None:
            hosts = tuple(broadcast_addresses())
        self._session.request_lan_list([(h, self.config.lan_port) for h in hosts],
                                       self._clock())
        self._flush()

    @staticmethod
    def _check_password(password: str | None) -> None:
        if password is not None and not isinstance(password, str):
            raise TypeError("password must be a str or None")

    def request_server_list(self, handshake_address: Sequence[Any], *,
                            handshake_key: str | None = None) -> None:
        """Ask for the registered servers; the answer comes as RECEIVED_SERVER_LIST."""
        hs = _resolve(normalize_address(handshake_address, "handshake_address"))
        if self._sock is None:
            self._bind(("0.0.0.0", 0) if ":" not in hs[0] else ("::", 0), hs)
        self._session.request_server_list(hs, self._clock(), handshake_key)
        self._flush()

    def _bind(self, local: Address, toward: Address | None) -> Address:
        """Bind the socket (once); return the LAN address to tell the handshake server."""
        if (self._sock is None or self._bound is None or local[0] != self._bound[0]
                or local[1] not in (0, self._sock.getsockname()[1])):
            if self._sock is not None:
                self._sock.close()
            family = socket.AF_INET6 if ":" in local[0] else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_DGRAM)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKET_BUFFER)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_BUFFER)
            except OSError:  # pragma: no cover - some systems refuse; defaults still work
                pass
            if family == socket.AF_INET:
                # LAN discovery queries go to broadcast addresses from this socket.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
            sock.setblocking(False)
            sock.bind(local)
            self._sock = sock
            self._bound = local
        host, port = self._sock.getsockname()[:2]
        if host in ("0.0.0.0", "::"):
            host = self._lan_ip(toward)
        return (host, port)

    def _listen_for_discovery(self) -> None:
        """Hosting on the LAN: open the shared discovery socket (once)."""
        if (self._discovery is not None or not self._session.lan.listening
                or self._sock is None or self._sock.family != socket.AF_INET):
            return
        try:
            self._discovery = DiscoveryListener(self.config.lan_port)
        except OSError as exc:
            # Another program holds the port without sharing it: players can still join
            # by address, they just do not see the game in their list.
            log.warning("cannot listen for LAN discovery on port %d: %s",
                        self.config.lan_port, exc)

    def _stop_discovery(self) -> None:
        if self._discovery is not None:
            self._discovery.close()
            self._discovery = None

    @staticmethod
    def _lan_ip(toward: Address | None) -> str:
        """The local address the system would use to reach ``toward`` (no packet is sent;
        None: the default route's)."""
        if toward is None:
            toward = ("192.0.2.1", 9)  # any address off the machine: connect sends nothing
        family = socket.AF_INET6 if ":" in toward[0] else socket.AF_INET
        probe = socket.socket(family, socket.SOCK_DGRAM)
        try:
            probe.connect(toward)
            return str(probe.getsockname()[0])
        except OSError:
            return "127.0.0.1" if family == socket.AF_INET else "::1"
        finally:
            probe.close()

    # --- messages ---------------------------------------------------------------------

    def send(self, peer_name: str, message: object,
             delivery: Delivery = Delivery.RELIABLE_ORDERED, channel: int = 0) -> int | None:
        """Send ``message`` to a peer of the session; returns the message_id when reliable."""
        return self._session.messaging.send(peer_name, message, delivery, channel)

    def send_reliable_message_to_peer(self, peer_name: str, message: object) -> int:
        """The Godot Holepunch API's reliable message: reliable-ordered on channel 0.
        Returns message_id."""
        message_id = self.send(peer_name, message, Delivery.RELIABLE_ORDERED, 0)
        assert message_id is not None
        return message_id

    def send_unreliable_message_to_peer(self, peer_name: str, message: object) -> None:
        """The Godot Holepunch API's unreliable message: sent once, on channel 0."""
        self.send(peer_name, message, Delivery.UNRELIABLE, 0)

    # --- session control --------------------------------------------------------------

    def drop_peer(self, peer_name: str) -> None:
        self._session.drop_peer(peer_name, self._clock())
        self._flush()

    def drop_connection_with_handshake_server(self) -> None:
        self._session.drop_connection_with_handshake_server(self._clock())
        self._flush()

    def quit_connection(self) -> None:
        """End the session; the other peers are told at once."""
        self._session.quit_connection(self._clock())
        self._flush(bypass_simulator=True)
        self._stop_discovery()

    def close(self) -> None:
        """Quit, remove the port mapping if one was made, and release the socket."""
        self.quit_connection()
        self._emit_pending()
        if self._mapper is not None:
            self._mapper.close(self._now)  # the deletions leave now; nothing waits for them
            self._mapper.shutdown()
            self._mapper = None
        self._stop_discovery()
        if self._sock is not None:
            self._sock.close()
            self._sock = None
            self._bound = None

    def __enter__(self) -> Peer:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # --- getters ----------------------------------------------------------------------

    def get_peer(self, peer_name: str) -> dict[str, Any] | None:
        return self._session.get_peer(peer_name)

    def get_peers(self) -> list[str]:
        return self._session.get_peers()

    def get_server_address(self) -> Address | None:
        return self._session.get_server_address()

    def get_server_name(self) -> str | None:
        return self._session.get_server_name()

    def get_user_name(self) -> str | None:
        return self._session.get_user_name()

    def i_am_server(self) -> bool | None:
        return self._session.i_am_server()

    def is_connected(self) -> bool:
        return self._session.is_connected()

    def get_stats(self, peer_name: str) -> PeerStats | None:
        """Round trip, loss, bandwidth and path of a directly connected peer."""
        conn = self._session.connection(peer_name)
        return conn.stats(self._now) if conn is not None else None

    @property
    def local_address(self) -> Address | None:
        """The address the socket is bound to (port filled in), or None before binding."""
        if self._sock is None:
            return None
        host, port = self._sock.getsockname()[:2]
        return (str(host), int(port))

    @property
    def handshake_fingerprint(self) -> str | None:
        """Fingerprint of the handshake server's key this session trusts (None before the
        server answered): show it, so players can compare it with the handshake server's."""
        return self._session.handshake_fingerprint

    @property
    def blocked_count(self) -> int:
        """Datagrams dropped as malformed, unexpected or hostile."""
        return self._session.blocked_count

    # --- the frame --------------------------------------------------------------------

    def tick(self, now: float | None = None) -> list[pygame.event.Event]:
        """Call once a frame. Returns the events produced; they are also posted to
        pygame's queue unless ``Config(post_events=False)``: read one or the other."""
        now = self._clock(now)
        session = self._session
        sock = self._sock
        if sock is not None:
            emit = self.config.emit_packet_events
            for _ in range(MAX_READS_PER_TICK):
                try:
                    data, addr = sock.recvfrom(2048)
                except (BlockingIOError, InterruptedError):
                    break
                except ConnectionResetError:
                    continue  # Windows reports ICMP port unreachable this way: harmless
                except OSError as exc:
                    log.debug("recvfrom failed: %s", exc)
                    break
                address = (addr[0], addr[1])
                self.datagrams_received += 1
                if emit:
                    session.add_event(ev.PacketReceived(_describe(data, address)))
                session.receive_datagram(data, address, now)
        if self._discovery is not None:
            if session.lan.listening:
                for data, address in self._discovery.read():
                    self.datagrams_received += 1
                    session.receive_datagram(data, address, now)
            else:
                self._stop_discovery()  # the hosted session is over
        if self._mapper is not None:
            self._tick_port_mapping(now)
        session.handle_timer(now)
        self._flush()
        return self._emit_pending()

    # --- port mapping (Config.port_mapping) -----------------------------------------------

    def _start_port_mapping(self, lan: Address) -> None:
        if not self.config.port_mapping:
            return
        if self._mapper is None or self._mapper.internal_port != lan[1]:
            if self._mapper is not None:
                self._mapper.close(self._now)
                self._mapper.shutdown()
            self._mapper = PortMapper(lan[1])
        elif self._mapper.external_address is not None:  # a new session, the same mapping
            self._session.set_mapped_address(self._mapper.external_address, self._now)

    def _tick_port_mapping(self, now: float) -> None:
        mapper = self._mapper
        assert mapper is not None
        mapper.tick(now)
        while (event := mapper.next_event()) is not None:
            if isinstance(event, MappingEstablished):
                self._session.set_mapped_address(event.external, now)
            elif isinstance(event, MappingLost):
                self._session.set_mapped_address(None, now)

    @property
    def mapped_address(self) -> Address | None:
        """The public address our router forwards to us (``Config(port_mapping=True)``)."""
        return self._mapper.external_address if self._mapper is not None else None

    def _clock(self, now: float | None = None) -> float:
        self._now = time.monotonic() if now is None else now
        return self._now

    def _flush(self, bypass_simulator: bool = False) -> None:
        out = self._session.take_datagrams()
        sim = self._sim
        if sim is not None and not bypass_simulator:
            for data, address in out:
                sim.send(data, address, self._now)
            out = sim.due(self._now)
        for data, address in out:
            self._sendto(data, address)

    def _sendto(self, data: bytes, address: Address) -> None:
        if self._sock is None:
            return
        try:
            self._sock.sendto(data, address)
            self.datagrams_sent += 1
        except BlockingIOError:
            self.send_errors += 1  # the kernel's buffer is full: as if lost on the way
        except OSError as exc:
            self.send_errors += 1
            if exc.errno not in (errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EPERM):
                log.debug("sendto %s failed: %s", address, exc)
            return
        if self.config.emit_packet_events:
            self._session.add_event(ev.PacketSent(_describe(data, address)))

    def _emit_pending(self) -> list[pygame.event.Event]:
        events = [pg_events.to_pygame(e) for e in self._session.events()]
        # The event queue lives in SDL's video subsystem.
        if events and self.config.post_events and pygame.display.get_init():
            for e in events:
                try:
                    pygame.event.post(e)
                except pygame.error:  # pragma: no cover - queue full: the list still has it
                    break
        return events


def _describe(data: bytes, address: Address) -> dict[str, Any]:
    kind = data[3] if len(data) >= HEADER.size else -1
    name = Kind(kind).name if kind in Kind._value2member_map_ else "UNKNOWN"
    return {"address": address, "size": len(data), "kind": name}
