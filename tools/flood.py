"""Flood a handshake server with junk and spoofed-looking requests, for a bounded time.

    python -m tools.flood --target 127.0.0.1:5160 --seconds 5

Only for servers of your own on loopback or in your own test namespaces. It sends from
many source addresses at once (sockets bound to 127.0.0.x, which Linux allows on the
loopback interface) so that per-address limits are tested too: random bytes, cookie
requests, sealed requests with a wrong cookie (what a spoofed source can send), and, from
each socket that fetched a real cookie, sealed requests that make the server do its key
work (squatting names, joining, listing, refreshing with guessed tokens, asking for
relays). Prints one JSON line: what it sent.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import random
import socket
import sys
import time

from framework.protocol.hschannel import ServerChannel
from framework.protocol.wire import (
    COOKIE_SIZE,
    CandidateKind,
    HsKind,
    Kind,
    encode_cookie_request,
    encode_relay,
    header,
)

from .hsclient import channels, seal


def junk(rng: random.Random) -> list[bytes]:
    """What any source can send without a cookie."""
    out = [rng.randbytes(n) for n in (0, 3, 40, 200, 1200)]
    wrong = ServerChannel(rng.randbytes)  # a made-up server key: the cookie is wrong too
    wrong.learn(bytes(COOKIE_SIZE), ServerChannel(rng.randbytes).share)
    for i in range(20):
        out.append(encode_cookie_request(i))
        out.append(seal(wrong, HsKind.REGISTER, i, [f"squat{i}", [], False, 60.0, 0]))
        out.append(encode_relay(rng.randbytes(8), header(Kind.DATA) + rng.randbytes(40)))
    return out


def sealed(ch: ServerChannel, rng: random.Random) -> list[bytes]:
    """Requests from a socket that has a real cookie: each makes the server open a seal."""
    lan = [["10.0.0.1", 1, int(CandidateKind.LAN)]]
    out = []
    for i in range(10):
        out.append(seal(ch, HsKind.REGISTER, i, [f"squat{i}", lan, False, 60.0, 0]))
        out.append(seal(ch, HsKind.JOIN, i, [f"squat{i}", "x", lan]))
        out.append(seal(ch, HsKind.LIST, i, [""]))
        out.append(seal(ch, HsKind.REFRESH, i, [f"squat{i}", rng.randbytes(16)]))
        out.append(seal(ch, HsKind.RELAY_REQUEST, i, [f"squat{i}", "x"]))
    return out


def flood(target: tuple[str, int], seconds: float, sources: int, seed: int) -> dict[str, object]:
    if not ipaddress.ip_address(target[0]).is_loopback:
        raise SystemExit("tools.flood only targets loopback addresses")
    rng = random.Random(seed)
    socks = []
    for i in range(sources):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setblocking(False)
        s.bind((f"127.0.{i // 250}.{2 + i % 250}", 0))
        socks.append(s)
    common = junk(rng)
    ready = channels(socks, target)
    data = [common + (sealed(ready[i], rng) if i in ready else []) for i in range(len(socks))]
    sent = errors = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for i, s in enumerate(socks):
            for _ in range(8):
                try:
                    s.sendto(rng.choice(data[i]), target)
                    sent += 1
                except OSError:
                    errors += 1
    for s in socks:
        s.close()
    return {"sent": sent, "send_errors": errors, "seconds": seconds, "sources": sources,
            "with_cookie": len(ready), "per_sec": round(sent / seconds)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.flood", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--target", required=True, help="HOST:PORT (loopback only)")
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--sources", type=int, default=64)
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args(argv)
    host, _, port = args.target.rpartition(":")
    result = flood((host, int(port)), min(args.seconds, 60.0), args.sources, args.seed)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
