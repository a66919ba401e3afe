"""A relay node's I/O (``python -m server --relay-only``): one thread, ``selectors``, one
non-blocking UDP socket, the metrics endpoint if asked for. The logic is
``relaytier.RelayNodeCore``."""

from __future__ import annotations

import contextlib
import json
import logging
import selectors
import socket
import threading
import time

from framework.protocol.addresses import Address
from framework.protocol.constants import SERVER_BATCH, SERVER_MAX_PER_WAKEUP, SERVER_STATS_INTERVAL

from .metrics import MetricsEndpoint, exposition
from .relaytier import REPORT_INTERVAL, RelayNodeCore

log = logging.getLogger("server")


class RelayNodeServer:
    """``RelayNodeServer(core, host, port).serve_forever()``, or ``start()`` / ``stop()``."""

    def __init__(self, core: RelayNodeCore, host: str = "0.0.0.0", port: int = 5170, *,
                 metrics: Address | None = None) -> None:
        self.core = core
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._sock = socket.socket(family, socket.SOCK_DGRAM)
        with contextlib.suppress(OSError):
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self._sock.setblocking(False)
        self._sock.bind((host, port))
        self.metrics = MetricsEndpoint(metrics, self.render_metrics) if metrics else None
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.send_errors = 0

    @property
    def address(self) -> Address:
        host, port = self._sock.getsockname()[:2]
        return (str(host), int(port))

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("already started")
        self._thread = threading.Thread(target=self.serve_forever, name="relay-node",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
            self._thread = None

    def render_metrics(self) -> str:
        return exposition(self.core.stats, None, self.core.load,
                          {"send_errors": self.send_errors,
                           "relay_binds": self.core.binds_accepted,
                           "relay_capacity": self.core.capacity})

    def serve_forever(self) -> None:
        core = self.core
        log.info("relay node %s listening on %s:%d, players reach it at %s:%d",
                 core.node, *self.address, *core.public)
        sel = selectors.DefaultSelector()
        sel.register(self._sock, selectors.EVENT_READ)
        sel.register(self._wake_r, selectors.EVENT_READ)
        if self.metrics is not None:
            self.metrics.attach(sel)
        core.tick(time.monotonic())  # in the directory at once
        next_tick = time.monotonic() + REPORT_INTERVAL
        next_stats = time.monotonic() + SERVER_STATS_INTERVAL
        try:
            while not self._stopping.is_set():
                for key, mask in sel.select(max(0.0, next_tick - time.monotonic())):
                    if key.fileobj is self._sock:
                        self._drain()
                    elif key.data is self.metrics and self.metrics is not None:
                        self.metrics.ready(key.fileobj, mask, time.monotonic())
                now = time.monotonic()
                if now >= next_tick:
                    try:
                        core.tick(now)
                        if self.metrics is not None:
                            self.metrics.tick(now)
                    except Exception:  # a bug must not stop the relay node
                        log.exception("tick failed")
                    next_tick = now + REPORT_INTERVAL
                if now >= next_stats:
                    log.info("%d relays; since start: %s", core.load,
                             json.dumps(core.stats.summary()))
                    next_stats = now + SERVER_STATS_INTERVAL
        finally:
            core.leave()
            sel.close()
            self._sock.close()
            self._wake_r.close()
            self._wake_w.close()
            if self.metrics is not None:
                self.metrics.close()
            log.info("relay node stopped: %s", json.dumps(core.stats.summary()))

    def _drain(self) -> None:
        sock, core = self._sock, self.core
        for _ in range(SERVER_MAX_PER_WAKEUP // SERVER_BATCH):
            now = time.monotonic()
            for _ in range(SERVER_BATCH):
                try:
                    data, addr = sock.recvfrom(2048)
                except (BlockingIOError, InterruptedError):
                    return
                except OSError:
                    continue
                for reply, to in core.receive(data, (addr[0], addr[1]), now):
                    try:
                        sock.sendto(reply, to)
                    except OSError:
                        self.send_errors += 1
