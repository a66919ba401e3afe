"""Ask the local gateway to forward a public UDP port to the game's socket.

``PortMapper`` is the I/O shell around the sans-I/O clients of
``framework.protocol.portmap``: it owns two small UDP sockets (PCP/NAT-PMP to the gateway's
port 5351, SSDP search) and at most one non-blocking TCP connection (UPnP's HTTP/SOAP), and
it never blocks: call ``tick()`` once per frame.

    mapper = PortMapper(game_socket.getsockname()[1])
    ...every frame: mapper.tick()
    if mapper.external_address: tell the handshake server / peers about it
    ...at exit: mapper.close(); keep ticking a few frames if you can (the deletion is sent
    at once; its answer is only waited for while you tick)

Order: PCP first (RFC 6887), NAT-PMP if PCP gets no answer or the gateway speaks NAT-PMP
only; UPnP IGD in parallel from the start. The first mapping made wins; any other one made
later is deleted. Network trouble is logged and counted, never raised from ``tick``.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import select
import socket
import struct
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path

from .protocol.portmap.client import Drop
from .protocol.portmap.common import (
    Address,
    MappingDeleted,
    MappingEstablished,
    MappingEvent,
    MappingFailed,
    MappingLost,
    MappingState,
)
from .protocol.portmap.igd import HTTP_TIMEOUT, UpnpClient
from .protocol.portmap.natpmp import PORT as PMP_PORT
from .protocol.portmap.natpmp import NatPmpClient
from .protocol.portmap.pcp import PcpClient
from .protocol.portmap.upnp import SSDP_ADDR, HttpRequest, HttpResponse, HttpResponseParser

log = logging.getLogger(__name__)

PROTOCOLS = ("pcp", "natpmp", "upnp")
#: After every protocol failed (or a mapping was lost), try again this much later.
RETRY_AFTER = 300.0
MAX_DATAGRAM = 2048
Client = PcpClient | NatPmpClient | UpnpClient


def default_gateway(route_file: str = "/proc/net/route") -> str | None:
    """The IPv4 default route's gateway on Linux, None elsewhere or when there is none."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path(route_file).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[1] == "00000000" and int(fields[3], 16) & 2:  # RTF_GATEWAY
                return socket.inet_ntoa(struct.pack("<I", int(fields[2], 16)))
    return None


def local_ip_towards(gateway: str) -> str | None:
    """Our source address for packets to ``gateway`` (no packet is sent)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect((gateway, PMP_PORT))
            return str(probe.getsockname()[0])
    except OSError:
        return None


class _HttpFetch:
    """One HTTP exchange over a non-blocking TCP socket, advanced by ``step``."""

    def __init__(self, req: HttpRequest, now: float) -> None:
        self.deadline = now + HTTP_TIMEOUT
        self._out = req.data
        self._parser = HttpResponseParser()
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setblocking(False)
        self._connected = False
        err = self._sock.connect_ex((req.host, req.port))
        if err not in (0, errno.EINPROGRESS, errno.EWOULDBLOCK):
            self._sock.close()
            raise OSError(err, f"connect to {req.host}:{req.port}")

    def step(self, now: float) -> HttpResponse | None:
        """The response once complete; None while under way. Raises OSError, Drop or
        TimeoutError when it failed."""
        if now >= self.deadline:
            raise TimeoutError("HTTP exchange took too long")
        readable, writable, _ = select.select([self._sock], [self._sock], [], 0)
        if not self._connected:
            if not writable:
                return None
            err = self._sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                raise OSError(err, "connect failed")
            self._connected = True
        if self._out and writable:
            sent = self._sock.send(self._out)
            self._out = self._out[sent:]
        while readable:
            try:
                chunk = self._sock.recv(16384)
            except BlockingIOError:
                return None
            if not chunk:
                return self._parser.eof()
            done = self._parser.feed(chunk)
            if done is not None:
                return done
        return None

    def close(self) -> None:
        self._sock.close()


class PortMapper:
    """Keeps a public UDP port forwarded to ``internal_port`` on this host.

    ``gateway``: the router to ask (default: the default route's gateway; none found ->
    the mapper fails at once, quietly). ``protocols``: which to try, from
    ("pcp", "natpmp", "upnp"). ``lifetime``: seconds asked for each mapping (renewed at
    half). ``clock``: what ``tick()`` without an argument reads. ``gateway_port``: where
    PCP and NAT-PMP requests go (5351; other values are for tests).
    """

    def __init__(
        self, internal_port: int, *, gateway: str | None = None,
        protocols: Sequence[str] = PROTOCOLS, lifetime: int = 7200,
        clock: Callable[[], float] = time.monotonic, gateway_port: int = PMP_PORT,
    ) -> None:
        unknown = set(protocols) - set(PROTOCOLS)
        if unknown:
            raise ValueError(f"unknown port mapping protocols {sorted(unknown)}")
        self.internal_port = internal_port
        self.protocols = tuple(protocols)
        self.lifetime = lifetime
        self.gateway_port = gateway_port
        self.gateway = gateway or default_gateway()
        self.client_ip = local_ip_towards(self.gateway) if self.gateway else None
        #: Datagrams dropped (malformed, unexpected) and socket errors, for diagnostics.
        self.stats = {"dropped": 0, "socket_errors": 0}
        #: Why each protocol failed, for a person to read.
        self.failures: dict[str, str] = {}
        self._clock = clock
        self._clients: dict[str, Client] = {}
        self._chosen: Client | None = None
        self._events: deque[MappingEvent] = deque()
        self._udp: socket.socket | None = None
        self._ssdp: socket.socket | None = None
        self._fetch: _HttpFetch | None = None
        self._retry_at: float | None = None
        self._closing = False
        self._started = False

    # ---- what it reports

    @property
    def external_address(self) -> Address | None:
        """The public (ip, port) peers can send to, while a mapping holds."""
        return self._chosen.external if self._chosen else None

    @property
    def protocol(self) -> str | None:
        """"pcp", "natpmp" or "upnp": the one that made the current mapping."""
        return self._chosen.protocol if self._chosen and self._chosen.external else None

    @property
    def failed(self) -> bool:
        """True when no protocol could map (until the next retry, RETRY_AFTER later)."""
        return self._started and not self._closing and not self._active() \
            and self._chosen is None

    def next_event(self) -> MappingEvent | None:
        """MappingEstablished / MappingLost / MappingDeleted of the chosen mapping, and
        MappingFailed("all", ...) once every protocol failed."""
        return self._events.popleft() if self._events else None

    # ---- driving it

    def tick(self, now: float | None = None) -> None:
        """Send, receive and advance timers; never blocks, never raises on network errors."""
        now = self._clock() if now is None else now
        if not self._started:
            self._started = True
            self._begin(now)
        elif self._retry_at is not None and now >= self._retry_at and not self._closing:
            self._retry_at = None
            self._begin(now)
        self._receive(now)
        self._run_http(now)
        for client in list(self._clients.values()):
            client.handle_timer(now)
        self._flush(now)
        self._collect(now)
        self._flush(now)

    def close(self, now: float | None = None) -> None:
        """Delete every mapping made (PCP/NAT-PMP lifetime 0, UPnP DeletePortMapping).

        The deletion datagrams leave at once; ticking a little longer lets their answers in
        and runs UPnP's HTTP call. Idempotent; ``shutdown()`` frees the sockets."""
        now = self._clock() if now is None else now
        self._closing = True
        self._retry_at = None
        for client in self._clients.values():
            client.close(now)
        self._flush(now)
        self._run_http(now)
        self._collect(now)

    def done(self) -> bool:
        """After close(): True once nothing is left to send or wait for."""
        return self._closing and not self._active() and self._fetch is None

    def shutdown(self) -> None:
        """Free the sockets (call after close() and a few ticks, or at once)."""
        if self._fetch is not None:
            self._fetch.close()
            self._fetch = None
        for sock in (self._udp, self._ssdp):
            if sock is not None:
                sock.close()
        self._udp = self._ssdp = None

    # ---- internals

    def _active(self) -> bool:
        return any(c.state in (MappingState.REQUESTING, MappingState.DELETING, MappingState.IDLE)
                   for c in self._clients.values())

    def _begin(self, now: float) -> None:
        self._clients.clear()
        self._chosen = None
        if self.gateway is None or self.client_ip is None:
            self._give_up("no IPv4 default gateway")
            return
        try:
            self._open_sockets()
        except OSError as exc:
            self.stats["socket_errors"] += 1
            self._give_up(f"cannot open the port mapping sockets: {exc}")
            return
        server = (self.gateway, self.gateway_port)
        first = next((p for p in self.protocols if p != "upnp"), None)
        if first == "pcp":
            self._clients["pcp"] = PcpClient(server, self.internal_port, self.client_ip,
                                             lifetime=self.lifetime)
        elif first == "natpmp":
            self._clients["natpmp"] = NatPmpClient(server, self.internal_port,
                                                   lifetime=self.lifetime)
        if "upnp" in self.protocols:
            self._clients["upnp"] = UpnpClient(self.client_ip, self.internal_port,
                                               gateway=self.gateway, lifetime=self.lifetime)
        for client in self._clients.values():
            client.start(now)

    def _open_sockets(self) -> None:
        assert self.client_ip is not None
        if self._udp is None:
            self._udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self._udp.setblocking(False)
            self._udp.bind((self.client_ip, 0))
        if self._ssdp is None and "upnp" in self.protocols:
            ssdp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            ssdp.setblocking(False)
            ssdp.bind((self.client_ip, 0))
            # Only out of the interface towards our gateway, and no router further: the
            # IGD we want is that gateway, one link away.
            ssdp.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF,
                            socket.inet_aton(self.client_ip))
            ssdp.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
            ssdp.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 0)
            self._ssdp = ssdp

    def _give_up(self, reason: str) -> None:
        log.info("port mapping unavailable: %s", reason)
        self.failures["all"] = reason
        self._events.append(MappingFailed("all", reason))

    def _receive(self, now: float) -> None:
        for sock, names in ((self._udp, ("pcp", "natpmp")), (self._ssdp, ("upnp",))):
            for _ in range(64):  # bounded per tick
                if sock is None:
                    break
                try:
                    data, addr = sock.recvfrom(MAX_DATAGRAM)
                except BlockingIOError:
                    break
                except OSError as exc:  # e.g. ICMP port unreachable from a gateway
                    self.stats["socket_errors"] += 1
                    log.debug("port mapping socket: %s", exc)
                    continue
                # Version byte: 2 is PCP, 0 NAT-PMP (RFC 6887 §9); a NAT-PMP server's
                # "unsupported version" to our PCP request is version 0 and goes to PCP.
                name = names[0]
                if names[0] == "pcp":
                    name = "natpmp" if data[:1] == b"\0" and "natpmp" in self._clients else "pcp"
                client = self._clients.get(name)
                if client is None:
                    self.stats["dropped"] += 1
                    continue
                client.receive_datagram(data, (str(addr[0]), int(addr[1])), now)

    def _run_http(self, now: float) -> None:
        upnp = self._clients.get("upnp")
        if not isinstance(upnp, UpnpClient):
            return
        for _ in range(3):  # an answer may queue the next call: run it this tick too
            if self._fetch is None:
                req = upnp.http_request()
                if req is None:
                    return
                try:
                    self._fetch = _HttpFetch(req, now)
                except OSError as exc:
                    self.stats["socket_errors"] += 1
                    log.debug("upnp http: %s", exc)
                    upnp.http_response(None, now)
                    continue
            try:
                response = self._fetch.step(now)
            except (OSError, Drop) as exc:
                log.debug("upnp http failed: %s", exc)
                self._fetch.close()
                self._fetch = None
                upnp.http_response(None, now)
                continue
            if response is None:
                return
            self._fetch.close()
            self._fetch = None
            upnp.http_response(response, now)

    def _flush(self, now: float) -> None:
        for name, client in self._clients.items():
            for data in client.datagrams_to_send():
                sock, dest = (self._ssdp, SSDP_ADDR) if name == "upnp" else \
                    (self._udp, (self.gateway or "", self.gateway_port))
                if sock is None:
                    continue
                try:
                    sock.sendto(data, dest)
                except OSError as exc:
                    self.stats["socket_errors"] += 1
                    log.debug("port mapping send to %s: %s", dest, exc)

    def _collect(self, now: float) -> None:
        self.stats["dropped"] = sum(c.dropped for c in self._clients.values())
        for name, client in list(self._clients.items()):
            while (event := client.next_event()) is not None:
                self._on_event(name, client, event, now)
        if self._started and not self._closing and self._chosen is None \
                and self._clients and not self._active() and self._retry_at is None:
            self._give_up("; ".join(f"{k}: {v}" for k, v in self.failures.items()))
            self._retry_at = now + RETRY_AFTER

    def _on_event(self, name: str, client: Client, event: MappingEvent, now: float) -> None:
        if isinstance(event, MappingEstablished):
            if self._chosen is None and not self._closing:
                self._chosen = client
                log.info("port mapping by %s: %s:%d -> local port %d", name,
                         *event.external, self.internal_port)
                for other in self._clients.values():
                    if other is not client:
                        other.close(now)
            elif self._chosen is not client:
                client.close(now)  # a slower protocol also succeeded: undo it
                return
            self._events.append(event)
        elif isinstance(event, MappingFailed):
            self.failures[name] = event.reason
            if name == "pcp" and "natpmp" in self.protocols and not self._closing \
                    and self._chosen is None:
                assert self.gateway is not None
                nat = NatPmpClient((self.gateway, self.gateway_port), self.internal_port,
                                   lifetime=self.lifetime)
                self._clients["natpmp"] = nat
                nat.start(now)
        elif isinstance(event, MappingLost):
            self.failures[name] = event.reason
            if client is self._chosen:
                log.warning("port mapping by %s lost: %s", name, event.reason)
                self._chosen = None
                self._events.append(event)
                self._retry_at = now + 1.0
        elif isinstance(event, MappingDeleted) and client is self._chosen:
            self._events.append(event)
