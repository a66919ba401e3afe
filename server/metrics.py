"""``--metrics HOST:PORT``: the server's counters over HTTP, in Prometheus text format.

Served from the server's own selector loop (no thread): a non-blocking listening socket,
a few connections at a time, each allowed a small request and a few seconds. Whatever
the request says, the answer is the exposition (or 404 for a path other than /metrics).
"""

from __future__ import annotations

import contextlib
import logging
import selectors
import socket
from collections.abc import Callable
from dataclasses import dataclass, field

from framework.protocol.addresses import Address

from .config import ServerStats

log = logging.getLogger("server")

#: Connections served at once, bytes of a request, seconds a connection may take.
MAX_CONNECTIONS = 16
MAX_REQUEST = 4096
CONNECTION_TIMEOUT = 5.0


def exposition(stats: ServerStats, registered: int | None, relays: int,
               extra: dict[str, int] | None = None) -> str:
    """The counters as Prometheus text (version 0.0.4)."""
    out: list[str] = []

    def metric(name: str, kind: str, helptext: str,
               samples: list[tuple[str, float]]) -> None:
        out.append(f"# HELP {name} {helptext}")
        out.append(f"# TYPE {name} {kind}")
        out.extend(f"{name}{labels} {value:g}" for labels, value in samples)

    metric("p2p_datagrams_received_total", "counter", "Datagrams received.",
           [("", stats.received)])
    metric("p2p_replies_total", "counter", "Datagrams sent in reply.", [("", stats.replies)])
    metric("p2p_requests_total", "counter", "Sealed requests handled, by kind.",
           [(f'{{kind="{k.name}"}}', v) for k, v in sorted(stats.by_kind.items())])
    metric("p2p_cookies_sent_total", "counter", "COOKIE replies sent.",
           [("", stats.cookies_sent)])
    metric("p2p_dropped_total", "counter", "Datagrams dropped, by reason.", [
        ('{reason="malformed"}', stats.dropped),
        ('{reason="rate_limited"}', stats.rate_limited),
        ('{reason="amplification"}', stats.amplification_refused),
        ('{reason="store_unavailable"}', stats.store_errors),
        ('{reason="relay"}', stats.relay_dropped),
        ('{reason="internal_error"}', stats.internal_errors)])
    metric("p2p_request_errors_total", "counter", "Error replies, by code.",
           [(f'{{code="{c.name}"}}', v) for c, v in sorted(stats.errors.items())])
    metric("p2p_registrations_total", "counter", "New registrations.",
           [("", stats.registrations)])
    metric("p2p_introductions_total", "counter", "New introductions.",
           [("", stats.introductions)])
    if registered is not None:
        metric("p2p_registrations", "gauge", "Games registered now.", [("", registered)])
    metric("p2p_relays", "gauge", "Relays this process forwards for now.", [("", relays)])
    metric("p2p_relays_opened_total", "counter", "Relays opened.",
           [("", stats.relays_opened)])
    metric("p2p_relayed_datagrams_total", "counter", "Datagrams relayed.",
           [("", stats.relayed_packets)])
    metric("p2p_relayed_bytes_total", "counter", "Bytes relayed.",
           [("", stats.relayed_bytes)])
    for name, value in sorted((extra or {}).items()):
        metric(f"p2p_{name}_total", "counter", name.replace("_", " ").capitalize() + ".",
               [("", value)])
    return "\n".join(out) + "\n"


@dataclass
class _Connection:
    sock: socket.socket
    opened: float
    inbox: bytearray = field(default_factory=bytearray)
    outbox: bytes = b""


class MetricsEndpoint:
    """The HTTP side, driven by the server's selector (``key.data`` is this object)."""

    def __init__(self, address: Address, render: Callable[[], str]) -> None:
        self._render = render
        family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self._listener = socket.socket(family, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(address)
        self._listener.listen(16)
        self._listener.setblocking(False)
        self._selector: selectors.BaseSelector | None = None
        self._conns: dict[int, _Connection] = {}
        self.served = 0

    @property
    def address(self) -> Address:
        host, port = self._listener.getsockname()[:2]
        return (str(host), int(port))

    def attach(self, selector: selectors.BaseSelector) -> None:
        self._selector = selector
        selector.register(self._listener, selectors.EVENT_READ, self)
        log.info("metrics on http://%s:%d/metrics", *self.address)

    def ready(self, sock: object, mask: int, now: float) -> None:
        if sock is self._listener:
            self._accept(now)
            return
        if not isinstance(sock, socket.socket):
            return
        conn = self._conns.get(sock.fileno())
        if conn is None:
            return
        try:
            if mask & selectors.EVENT_READ and not conn.outbox:
                self._read(conn)
            if conn.outbox and mask & selectors.EVENT_WRITE:
                self._write(conn)
        except OSError:
            self._drop(conn)

    def _accept(self, now: float) -> None:
        for _ in range(MAX_CONNECTIONS):
            try:
                sock, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            if len(self._conns) >= MAX_CONNECTIONS or self._selector is None:
                sock.close()
                continue
            sock.setblocking(False)
            conn = _Connection(sock, now)
            self._conns[sock.fileno()] = conn
            self._selector.register(sock, selectors.EVENT_READ, self)

    def _read(self, conn: _Connection) -> None:
        chunk = conn.sock.recv(MAX_REQUEST)
        if not chunk:
            self._drop(conn)
            return
        conn.inbox += chunk
        if b"\r\n\r\n" not in conn.inbox and len(conn.inbox) < MAX_REQUEST:
            return
        line = bytes(conn.inbox.split(b"\r\n", 1)[0])
        parts = line.split()
        path = parts[1].split(b"?", 1)[0] if len(parts) >= 2 else b""
        if path in (b"/metrics", b"/"):
            try:
                body = self._render().encode()
                status = b"200 OK"
            except Exception:  # the counters must never take the server down
                log.exception("metrics failed")
                body, status = b"error\n", b"500 Internal Server Error"
            ctype = b"text/plain; version=0.0.4; charset=utf-8"
        else:
            body, status, ctype = b"not found\n", b"404 Not Found", b"text/plain"
        conn.outbox = (b"HTTP/1.1 " + status + b"\r\nContent-Type: " + ctype
                       + b"\r\nContent-Length: " + str(len(body)).encode()
                       + b"\r\nConnection: close\r\n\r\n" + body)
        self.served += 1
        if self._selector is not None:
            self._selector.modify(conn.sock, selectors.EVENT_WRITE, self)
        self._write(conn)

    def _write(self, conn: _Connection) -> None:
        try:
            sent = conn.sock.send(conn.outbox)
        except (BlockingIOError, InterruptedError):
            return
        conn.outbox = conn.outbox[sent:]
        if not conn.outbox:
            self._drop(conn)

    def _drop(self, conn: _Connection) -> None:
        self._conns.pop(conn.sock.fileno(), None)
        if self._selector is not None:
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(conn.sock)
        conn.sock.close()

    def tick(self, now: float) -> None:
        """Close connections that took too long."""
        for conn in [c for c in self._conns.values() if now - c.opened > CONNECTION_TIMEOUT]:
            self._drop(conn)

    def close(self) -> None:
        for conn in list(self._conns.values()):
            self._drop(conn)
        self._listener.close()
