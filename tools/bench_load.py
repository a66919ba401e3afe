"""Load generator for the handshake server benchmark.

    python -m tools.bench_load --target HOST:PORT --seconds 5

64 sockets (on 127.0.0.x, so many source addresses) fetch a cookie and register a name
each, then keep 4 requests each in flight: a mix of sealed REFRESH (with the token),
LIST, JOIN and REGISTER again (same name, same address). Each request is sealed once
beforehand and sent again and again: the server opens and answers every one, so the
figure includes its cryptography. Prints {"answered_per_sec": ...}.
"""

from __future__ import annotations

import argparse
import json
import random
import selectors
import socket
import sys
import time

from framework.protocol.errors import ProtocolError
from framework.protocol.wire import CandidateKind, HsKind

from .hsclient import channels, seal


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.bench_load")
    p.add_argument("--target", required=True)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--sockets", type=int, default=64)
    p.add_argument("--window", type=int, default=4)
    a = p.parse_args(argv)
    host, _, port = a.target.rpartition(":")
    target = (host, int(port))
    rng = random.Random(1)
    sel = selectors.DefaultSelector()
    socks = []
    for i in range(a.sockets):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((f"127.0.{1 + i // 250}.{2 + i % 250}", 0))
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ, i)
        socks.append(s)
    ready = channels(socks, target)
    if len(ready) < len(socks):
        raise SystemExit(f"only {len(ready)} of {len(socks)} sockets got a cookie")
    tokens: dict[int, bytes] = {}
    lan = [["10.0.0.1", 1, int(CandidateKind.LAN)]]

    # set-up: each socket registers its name
    deadline = time.monotonic() + 10
    while len(tokens) < len(ready) and time.monotonic() < deadline:
        for i, ch in ready.items():
            if i not in tokens:
                socks[i].sendto(seal(ch, HsKind.REGISTER, rng.randrange(1, 1 << 31),
                                     [f"load{i}", lan, False, 300.0, 0]), target)
        end = time.monotonic() + 0.2
        while time.monotonic() < end:
            for key, _ in sel.select(0.05):
                i = key.data
                try:
                    kind, _, f = ready[i].open(socks[i].recv(2048))
                except (BlockingIOError, ProtocolError, KeyError):
                    continue
                if kind is HsKind.REGISTERED:
                    tokens[i] = f[0]

    # Every request is made once, beforehand: the generator must not be the bottleneck.
    mix: list[list[bytes]] = []
    for i, ch in sorted(ready.items()):
        refresh = seal(ch, HsKind.REFRESH, 7, [f"load{i}", tokens.get(i, bytes(16))])
        listing = seal(ch, HsKind.LIST, 8, [""])
        join = seal(ch, HsKind.JOIN, 9, [f"load{(i + 1) % len(socks)}", f"u{i}", lan])
        register = seal(ch, HsKind.REGISTER, 10, [f"load{i}", lan, False, 300.0, 0])
        mix.append([refresh, refresh, listing, join, register])
    choice = rng.choice

    def request(i: int) -> None:
        socks[i].sendto(choice(mix[i]), target)

    for i in range(len(socks)):
        for _ in range(a.window):
            request(i)
    answered = 0
    start = time.monotonic()
    end = start + a.seconds
    last_answer = [start] * len(socks)
    while (now := time.monotonic()) < end:
        for key, _ in sel.select(0.01):
            i = key.data
            while True:
                try:
                    socks[i].recv(2048)
                except BlockingIOError:
                    break
                answered += 1
                last_answer[i] = now
                request(i)
        for i in range(len(socks)):  # a lost request must not stall its socket
            if now - last_answer[i] > 0.2:
                last_answer[i] = now
                request(i)
    elapsed = time.monotonic() - start
    print(json.dumps({"answered": answered, "seconds": round(elapsed, 2),
                      "answered_per_sec": round(answered / elapsed), "registered": len(tokens)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
