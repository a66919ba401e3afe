"""Flood a handshake server with junk and spoofed-looking requests, for a bounded time.

    python -m tools.flood --target 127.0.0.1:5160 --seconds 5

Only for servers of your own on loopback or in your own test namespaces. It sends from
many source addresses at once (sockets bound to 127.0.0.x, which Linux allows on the
loopback interface) so that per-address limits are tested too. Prints one JSON line:
what it sent.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import random
import socket
import sys
import time

from framework.protocol.requests import encode_request
from framework.protocol.wire import Kind


def payloads(rng: random.Random) -> list[bytes]:
    out = [rng.randbytes(n) for n in (0, 3, 40, 200, 1200)]
    for i in range(50):
        out.append(encode_request(Kind.REGISTER, i, [f"squat{i}", "10.0.0.1", 1, False, 60.0]))
        out.append(encode_request(Kind.JOIN, i, [f"squat{i}", "x", "10.0.0.1", 1]))
        out.append(encode_request(Kind.LIST, i, [0]))
        out.append(encode_request(Kind.REFRESH, i, [f"squat{i}", rng.randbytes(16)]))
        out.append(encode_request(Kind.RELAY_REQUEST, i, [f"squat{i}", "x"]))
        out.append(b"P2\x01\x0e" + rng.randbytes(8) + rng.randbytes(40))  # RELAY junk
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
    data = payloads(rng)
    sent = errors = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for s in socks:
            for _ in range(8):
                try:
                    s.sendto(rng.choice(data), target)
                    sent += 1
                except OSError:
                    errors += 1
    for s in socks:
        s.close()
    return {"sent": sent, "send_errors": errors, "seconds": seconds, "sources": sources,
            "per_sec": round(sent / seconds)}


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
