"""The I/O shell shared by the handshake server and relay nodes: one thread,
``selectors``, one non-blocking UDP socket, the metrics endpoint if asked for, and a
once-a-second tick. Subclasses say what a datagram does (``_receive``) and what the
tick does (``_tick``)."""

from __future__ import annotations

import contextlib
import logging
import selectors
import socket
import threading
import time
from collections.abc import Callable

from framework.protocol.addresses import Address
from framework.protocol.constants import (
    SERVER_BATCH,
    SERVER_EXPIRY_INTERVAL,
    SERVER_MAX_PER_WAKEUP,
    SERVER_STATS_INTERVAL,
)

from .config import Reply
from .metrics import MetricsEndpoint

log = logging.getLogger("server")


class UdpServer:
    """``serve_forever()``, or ``start()`` / ``stop()`` (a background thread)."""

    #: The background thread's name.
    thread_name = "udp-server"
    #: What one datagram gets back: the subclass sets its core's ``receive``, which
    #: never raises (an attribute, not a method: no extra call per datagram).
    _receive: Callable[[bytes, Address, float], list[Reply]]

    def __init__(self, host: str, port: int, *, reuse_port: bool = False,
                 metrics: Address | None = None) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._sock = socket.socket(family, socket.SOCK_DGRAM)
        with contextlib.suppress(OSError):  # some systems refuse; the default still works
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        if reuse_port:
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        self._sock.setblocking(False)
        self._sock.bind((host, port))
        self.metrics = MetricsEndpoint(metrics, self.render_metrics) if metrics else None
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.send_errors = 0
        self.loop_errors = 0

    @property
    def address(self) -> Address:
        host, port = self._sock.getsockname()[:2]
        return (str(host), int(port))

    def start(self) -> None:
        """Serve in a background thread (for tests and embedding)."""
        if self._thread is not None:
            raise RuntimeError("already started")
        self._thread = threading.Thread(target=self.serve_forever, name=self.thread_name,
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._stopping.set()
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
            self._thread = None

    # --- what subclasses say -------------------------------------------------------------

    def render_metrics(self) -> str:
        raise NotImplementedError

    def _tick(self, now: float) -> None:
        """Once a second (a failure is logged and survived)."""

    def _log_stats(self, now: float) -> None:
        """Every SERVER_STATS_INTERVAL."""

    def _attach(self, sel: selectors.BaseSelector) -> None:
        """Register more of the loop's sources (their ``key.data`` goes to ``_other``)."""

    def _other(self, data: object, fileobj: object, mask: int) -> None:
        """Another of the loop's sources is ready."""

    def _closed(self) -> None:
        """The loop ended."""

    # --- the loop ----------------------------------------------------------------------

    def serve_forever(self) -> None:
        """Serve in this thread until stop() (or Ctrl-C in the caller)."""
        sel = selectors.DefaultSelector()
        sel.register(self._sock, selectors.EVENT_READ)
        sel.register(self._wake_r, selectors.EVENT_READ)
        metrics = self.metrics
        if metrics is not None:
            metrics.attach(sel)
        self._attach(sel)
        next_tick = time.monotonic() + SERVER_EXPIRY_INTERVAL
        next_stats = time.monotonic() + SERVER_STATS_INTERVAL
        try:
            while not self._stopping.is_set():
                for key, mask in sel.select(max(0.0, next_tick - time.monotonic())):
                    if key.fileobj is self._sock:
                        self._drain()
                    elif key.data is not None and key.data is metrics:
                        metrics.ready(key.fileobj, mask, time.monotonic())
                    elif key.data is not None:
                        self._other(key.data, key.fileobj, mask)
                now = time.monotonic()
                if now >= next_tick:
                    try:
                        self._tick(now)
                        if metrics is not None:
                            metrics.tick(now)
                    except Exception:  # a bug must not stop the server
                        log.exception("tick failed")
                    next_tick = now + SERVER_EXPIRY_INTERVAL
                if now >= next_stats:
                    self._log_stats(now)
                    next_stats = now + SERVER_STATS_INTERVAL
        finally:
            sel.close()
            self._sock.close()
            self._wake_r.close()
            self._wake_w.close()
            if metrics is not None:
                metrics.close()
            self._closed()

    def _send(self, replies: list[Reply]) -> None:
        for reply, to in replies:
            try:
                self._sock.sendto(reply, to)
            except OSError:
                self.send_errors += 1

    def _drain(self) -> None:
        sock = self._sock
        for _ in range(SERVER_MAX_PER_WAKEUP // SERVER_BATCH):
            now = time.monotonic()
            for _ in range(SERVER_BATCH):
                try:
                    data, addr = sock.recvfrom(2048)
                except (BlockingIOError, InterruptedError):
                    return
                except OSError:  # e.g. ConnectionResetError on Windows after ICMP
                    continue
                try:
                    replies = self._receive(data, (addr[0], addr[1]), now)
                except Exception:  # the cores never raise; if one did, go on
                    self.loop_errors += 1
                    continue
                self._send(replies)
