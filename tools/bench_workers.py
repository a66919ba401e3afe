"""Benchmark worker processes: one receiver and one sender per contender.

    python -m tools.bench_workers recv CONTENDER --count N [--hs HOST:PORT]
    python -m tools.bench_workers send CONTENDER --port P --count N [--rate R] [--hs HOST:PORT]

Contenders: engine (reliable-ordered), engine-unreliable, enet (reliable, channel 0),
podsixnet (TCP), raw (a bare UDP loop: the limit). Every payload is 64 bytes, starting
with the sender's time.monotonic() (a system-wide clock on Linux, so one-way latency is
measured across processes). The receiver prints {"ready": ..., "port": ...}, then one
JSON line of results; the sender runs until killed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import struct
import sys
import time
from collections.abc import Callable

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")

STAMP = struct.Struct("!d")
PAYLOAD = 64
PAD = b"x" * (PAYLOAD - STAMP.size)
QUIET = 1.0  # the receiver stops after this long without a message (once one arrived)
LIMIT = 60.0


def payload() -> bytes:
    return STAMP.pack(time.monotonic()) + PAD


class Tally:
    """What a receiver saw: count, first/last arrival, one-way latencies."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.n = 0
        self.started = 0.0  # when the first message was sent (its stamp)
        self.first = 0.0
        self.last = 0.0
        self.lat: list[float] = []

    def add(self, data: bytes) -> None:
        self.add_stamp(STAMP.unpack_from(data)[0])

    def add_stamp(self, stamp: float) -> None:
        now = time.monotonic()
        if self.n == 0:
            self.first = now
            self.started = stamp
        self.n += 1
        self.last = now
        self.lat.append(now - stamp)

    def done(self) -> bool:
        now = time.monotonic()
        return self.n >= self.count or (self.n > 0 and now - self.last > QUIET)

    def report(self) -> dict[str, float]:
        lat = sorted(self.lat)
        # From the first send to the last arrival: the whole pipeline, both ends' work.
        span = max(self.last - self.started, 1e-9)
        return {
            "received": self.n,
            "per_sec": self.n / span if self.n else 0.0,
            "lat_p50": lat[len(lat) // 2] if lat else 0.0,
            "lat_p99": lat[int(len(lat) * 0.99)] if lat else 0.0,
        }


def emit(obj: object) -> None:
    print(json.dumps(obj), flush=True)


def run_until(step: Callable[[], object], done: Callable[[], bool]) -> None:
    end = time.monotonic() + LIMIT
    while not done() and time.monotonic() < end:
        step()


def send_loop(send: Callable[[], object], service: Callable[[], object], count: int,
              rate: float) -> None:
    """Send ``count`` messages (paced at ``rate`` per second, or as fast as possible), then
    keep servicing the connection until killed."""
    sent = 0
    start = time.monotonic()
    end = start + LIMIT
    while time.monotonic() < end:
        if sent < count:
            if rate:
                due = int((time.monotonic() - start) * rate) + 1
                while sent < min(due, count):
                    send()
                    sent += 1
            else:
                for _ in range(min(64, count - sent)):
                    send()
                    sent += 1
        service()


# --- this engine ------------------------------------------------------------------------


def engine_recv(count: int, hs: tuple[str, int], reliable: bool) -> None:
    from framework import Config, Peer, events  # noqa: PLC0415

    peer = Peer(Config(secs_between_peer_checks=60))
    peer.init_server(hs, ("127.0.0.1", 0), "bench")
    run_until(peer.tick, peer.is_connected)
    emit({"ready": True, "port": 0})
    tally = Tally(count)
    kinds = {events.RECEIVED_RELIABLE_MESSAGE_FROM_PEER,
             events.RECEIVED_UNRELIABLE_MESSAGE_FROM_PEER}

    def step() -> None:
        for e in peer.tick():
            if e.type in kinds:
                tally.add(e.packet_data["message"])

    run_until(step, tally.done)
    emit(tally.report())
    peer.close()


def engine_send(count: int, hs: tuple[str, int], reliable: bool, rate: float) -> None:
    from framework import Config, Delivery, Peer  # noqa: PLC0415

    peer = Peer(Config(secs_between_peer_checks=60))
    # A name of its own: the server holds a (game, user) introduction for 30 s, and the
    # sender before this one was killed, not closed.
    peer.init_client(hs, ("127.0.0.1", 0), f"sender{os.getpid()}", "bench")
    run_until(peer.tick, peer.is_connected)
    mode = Delivery.RELIABLE_ORDERED if reliable else Delivery.UNRELIABLE
    send_loop(lambda: peer.send("bench", payload(), mode, 0), peer.tick, count, rate)


# --- ENet through pyenet ------------------------------------------------------------------


def enet_recv(count: int) -> None:
    import enet  # noqa: PLC0415

    host = enet.Host(enet.Address(b"127.0.0.1", 0), 4, 1, 0, 0)
    emit({"ready": True, "port": host.address.port})
    tally = Tally(count)

    def step() -> None:
        event = host.service(0)
        while event is not None and event.type != enet.EVENT_TYPE_NONE:
            if event.type == enet.EVENT_TYPE_RECEIVE:
                tally.add(event.packet.data)
            event = host.check_events()

    run_until(step, tally.done)
    emit(tally.report())


def enet_send(count: int, port: int, rate: float) -> None:
    import enet  # noqa: PLC0415

    host = enet.Host(None, 1, 1, 0, 0)
    peer = host.connect(enet.Address(b"127.0.0.1", port), 1)
    connected = [False]

    def service() -> None:
        event = host.service(0)
        while event is not None and event.type != enet.EVENT_TYPE_NONE:
            if event.type == enet.EVENT_TYPE_CONNECT:
                connected[0] = True
            event = host.check_events()

    run_until(service, lambda: connected[0])
    send_loop(lambda: peer.send(0, enet.Packet(payload(), enet.PACKET_FLAG_RELIABLE)),
              service, count, rate)


# --- PodSixNet (TCP) ------------------------------------------------------------------------


def podsixnet_recv(count: int) -> None:
    from PodSixNet.Channel import Channel  # noqa: PLC0415
    from PodSixNet.Server import Server  # noqa: PLC0415

    tally = Tally(count)

    class In(Channel):  # type: ignore[misc]
        def Network_m(self, data: dict[str, object]) -> None:
            stamp = data["t"]
            assert isinstance(stamp, float)
            tally.add_stamp(stamp)

    class Srv(Server):  # type: ignore[misc]
        channelClass = In

        def Connected(self, channel: object, addr: object) -> None:
            pass

    srv = Srv(localaddr=("127.0.0.1", 0))
    emit({"ready": True, "port": srv.socket.getsockname()[1]})
    run_until(srv.Pump, tally.done)
    emit(tally.report())


def podsixnet_send(count: int, port: int, rate: float) -> None:
    from PodSixNet.Connection import ConnectionListener, connection  # noqa: PLC0415

    class Out(ConnectionListener):  # type: ignore[misc]
        def Network(self, data: object) -> None:
            pass

    out = Out()
    out.Connect(("127.0.0.1", port))

    def service() -> None:
        connection.Pump()
        out.Pump()

    # rencode carries text, not bytes: the same 64 bytes as a float and 56 characters
    pad = "x" * (PAYLOAD - STAMP.size)
    send_loop(lambda: connection.Send({"action": "m", "t": time.monotonic(), "p": pad}),
              service, count, rate)


# --- raw UDP: the limit ---------------------------------------------------------------------


def raw_recv(count: int) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    emit({"ready": True, "port": sock.getsockname()[1]})
    tally = Tally(count)

    def step() -> None:
        for _ in range(256):
            try:
                data = sock.recv(2048)
            except BlockingIOError:
                return
            tally.add(data)

    run_until(step, tally.done)
    emit(tally.report())


def raw_send(count: int, port: int, rate: float) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    target = ("127.0.0.1", port)

    def send() -> None:
        with contextlib.suppress(BlockingIOError):
            sock.sendto(payload(), target)

    send_loop(send, lambda: None, count, rate)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.bench_workers")
    p.add_argument("role", choices=["recv", "send"])
    p.add_argument("contender", choices=["engine", "engine-unreliable", "enet", "podsixnet",
                                         "raw"])
    p.add_argument("--count", type=int, default=10_000)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--rate", type=float, default=0.0, help="messages/s (0: as fast as possible)")
    p.add_argument("--hs", default="127.0.0.1:5160")
    a = p.parse_args(argv)
    host, _, port = a.hs.rpartition(":")
    hs = (host, int(port))
    c = a.contender
    if a.role == "recv":
        if c.startswith("engine"):
            engine_recv(a.count, hs, c == "engine")
        elif c == "enet":
            enet_recv(a.count)
        elif c == "podsixnet":
            podsixnet_recv(a.count)
        else:
            raw_recv(a.count)
    elif c.startswith("engine"):
        engine_send(a.count, hs, c == "engine", a.rate)
    elif c == "enet":
        enet_send(a.count, a.port, a.rate)
    elif c == "podsixnet":
        podsixnet_send(a.count, a.port, a.rate)
    else:
        raw_send(a.count, a.port, a.rate)
    return 0


if __name__ == "__main__":
    sys.exit(main())
