"""The handshake server's I/O: one thread, ``selectors``, one non-blocking UDP socket."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import selectors
import socket
import threading
import time
from typing import TYPE_CHECKING

from framework.protocol.addresses import Address
from framework.protocol.constants import (
    SERVER_BATCH,
    SERVER_EXPIRY_INTERVAL,
    SERVER_MAX_PER_WAKEUP,
    SERVER_STATS_INTERVAL,
)
from framework.protocol.crypto import KeyPair

from .core import HandshakeCore, ServerConfig
from .metrics import MetricsEndpoint, exposition
from .store import StoreError

if TYPE_CHECKING:
    from .cluster import Cluster

log = logging.getLogger("server")



class HandshakeServer:
    """``HandshakeServer(host, port).serve_forever()``, or ``start()`` / ``stop()``.

    ``key`` is the handshake server's long-term key (``server.keys.load_or_create``); without one a
    fresh key is made in memory, which suits tests and a handshake server embedded in a game.

    ``cluster`` (``server.cluster.Cluster``) keeps the state in Redis, shared with the other
    nodes of a deployment; ``reuse_port`` lets several processes bind the same port
    (SO_REUSEPORT: the kernel spreads sources across them); ``metrics`` serves the counters
    over HTTP (``server.metrics``)."""

    def __init__(self, host: str = "0.0.0.0", port: int = 5160,
                 config: ServerConfig | None = None, key: KeyPair | None = None, *,
                 cluster: Cluster | None = None, reuse_port: bool = False,
                 metrics: Address | None = None) -> None:
        key = key if key is not None else KeyPair.generate(os.urandom)
        self.cluster = cluster
        self.core = HandshakeCore(config, os.urandom, key,
                                  cluster.stores if cluster is not None else None)
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
    def fingerprint(self) -> str:
        """The fingerprint of the handshake server's key, which players may pin."""
        return self.core.fingerprint

    @property
    def address(self) -> Address:
        host, port = self._sock.getsockname()[:2]
        return (str(host), int(port))

    def start(self) -> None:
        """Serve in a background thread (for tests and embedding)."""
        if self._thread is not None:
            raise RuntimeError("already started")
        self._thread = threading.Thread(target=self.serve_forever, name="handshake-server",
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

    def serve_forever(self) -> None:
        """Serve in this thread until stop() (or Ctrl-C in the caller)."""
        log.info("handshake server listening on %s:%d", *self.address)
        log.info("key fingerprint: %s", self.fingerprint)
        sel = selectors.DefaultSelector()
        sel.register(self._sock, selectors.EVENT_READ)
        sel.register(self._wake_r, selectors.EVENT_READ)
        cluster, metrics = self.cluster, self.metrics
        if cluster is not None:
            log.info("cluster node %s, state in Redis", cluster.node)
            cluster.attach(sel)
        if metrics is not None:
            metrics.attach(sel)
        next_expiry = time.monotonic() + SERVER_EXPIRY_INTERVAL
        next_stats = time.monotonic() + SERVER_STATS_INTERVAL
        try:
            while not self._stopping.is_set():
                timeout = max(0.0, next_expiry - time.monotonic())
                for key, mask in sel.select(timeout):
                    if key.fileobj is self._sock:
                        self._drain()
                    elif key.data is not None:
                        self._other(key.data, key.fileobj, mask)
                now = time.monotonic()
                if now >= next_expiry:
                    try:
                        self.core.expire(now)
                        if cluster is not None:
                            cluster.tick(now)
                        if metrics is not None:
                            metrics.tick(now)
                    except Exception:  # a bug must not stop the handshake server
                        log.exception("expiry failed")
                    next_expiry = now + SERVER_EXPIRY_INTERVAL
                if now >= next_stats:
                    log.info("%s registered, %d relays; since start: %s",
                             self._registered(now), len(self.core.relays),
                             json.dumps(self.core.stats.summary()))
                    next_stats = now + SERVER_STATS_INTERVAL
        finally:
            sel.close()
            self._sock.close()
            self._wake_r.close()
            self._wake_w.close()
            if cluster is not None:
                cluster.close()
            if metrics is not None:
                metrics.close()
            log.info("handshake server stopped: %s", json.dumps(self.core.stats.summary()))

    def _other(self, data: object, fileobj: object, mask: int) -> None:
        """The pub/sub channel of a cluster node, or the metrics endpoint."""
        now = time.monotonic()
        try:
            if data is self.cluster and self.cluster is not None:
                for reply, to in self.cluster.readable(now):
                    try:
                        self._sock.sendto(reply, to)
                    except OSError:
                        self.send_errors += 1
            elif data is self.metrics and self.metrics is not None:
                self.metrics.ready(fileobj, mask, now)
        except Exception:  # a bug must not stop the handshake server
            self.loop_errors += 1
            log.exception("event handling failed")

    def _registered(self, now: float) -> int | None:
        try:
            return self.core.registered(now)
        except StoreError:
            return None

    def render_metrics(self) -> str:
        now = time.monotonic()
        extra = {"send_errors": self.send_errors}
        if self.cluster is not None:
            extra.update(cluster_handed_off=self.cluster.handed_off,
                         cluster_delivered=self.cluster.delivered,
                         cluster_refused=self.cluster.refused,
                         redis_failures=self.cluster.link.failures)
        return exposition(self.core.stats, self._registered(now), len(self.core.relays),
                          extra)

    def _drain(self) -> None:
        sock = self._sock
        core = self.core
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
                    replies = core.receive(data, (addr[0], addr[1]), now)
                except Exception:  # receive() never raises; if it did, go on
                    self.loop_errors += 1
                    continue
                for reply, to in replies:
                    try:
                        sock.sendto(reply, to)
                    except OSError:
                        self.send_errors += 1
