"""A game socket behind a NAT that asks the gateway for a port mapping, and a probe.

    python tests/portmap_agent.py serve --port 4000 --protocols pcp [--lifetime 600]
    python tests/portmap_agent.py probe --target 100.63.0.1:4000 [--tries 10]

``serve`` binds the "game" UDP socket, ticks a ``PortMapper`` for it at ~100 Hz and answers
every datagram on the game socket with ``{"echo": <payload>, "from": [ip, port]}``. It
prints JSON lines: ``{"mapped": [ip, port], "protocol": ...}`` once mapped (or
``{"failed": ...}``). Stdin commands: ``map`` (with ``--defer``: start mapping only now),
``close`` (close the mapper, tick until done, then print ``{"closed": ..., "events":
[...]}``), ``quit``.

``probe`` sends ``--tries`` datagrams 0.2 s apart to the target and prints
``{"answered": bool, "from": [ip, port] | null}``: whether the game socket answered, and
from which address the answer came.
"""

from __future__ import annotations

import argparse
import json
import logging
import select
import socket
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from framework.portmap import PortMapper


def emit(**fields: object) -> None:
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


def serve(args: argparse.Namespace) -> int:
    game = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    game.bind(("0.0.0.0", args.port))
    game.setblocking(False)
    mapper = PortMapper(args.port, protocols=args.protocols.split(","),
                        lifetime=args.lifetime)
    reported = False
    events: list[str] = []
    closing_until: float | None = None
    mapping = not args.defer
    emit(ready=True)
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        if mapping:
            mapper.tick()
        while (event := mapper.next_event()) is not None:
            events.append(type(event).__name__)
        if not reported and mapper.external_address is not None:
            reported = True
            emit(mapped=list(mapper.external_address), protocol=mapper.protocol)
        elif not reported and mapper.failed:
            reported = True
            emit(failed=mapper.failures)
        if closing_until is not None and (mapper.done() or time.monotonic() > closing_until):
            emit(closed=mapper.done(), events=events, stats=mapper.stats)
            mapper.shutdown()
            closing_until = None
        ready, _, _ = select.select([game, sys.stdin], [], [], 0.01)
        if game in ready:
            while True:
                try:
                    data, addr = game.recvfrom(2048)
                except BlockingIOError:
                    break
                game.sendto(json.dumps({"echo": data.decode(errors="replace"),
                                        "from": list(addr)}).encode(), addr)
        if sys.stdin in ready:
            line = sys.stdin.readline().strip()
            if line == "map":
                mapping = True
            elif line == "close":
                mapper.close()
                closing_until = time.monotonic() + 5.0
            elif line in ("quit", ""):
                return 0
    return 1


def probe(args: argparse.Namespace) -> int:
    host, _, port = args.target.rpartition(":")
    target = (host, int(port))
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("0.0.0.0", 0))
    for i in range(args.tries):
        sock.sendto(f"probe {i}".encode(), target)
        ready, _, _ = select.select([sock], [], [], 0.2)
        if ready:
            data, addr = sock.recvfrom(2048)
            emit(answered=True, reply=json.loads(data), **{"from": list(addr)})
            return 0
    emit(answered=False, **{"from": None})
    return 0


def main() -> int:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("serve")
    p.add_argument("--port", type=int, default=4000)
    p.add_argument("--protocols", default="pcp,natpmp,upnp")
    p.add_argument("--lifetime", type=int, default=600)
    p.add_argument("--timeout", type=float, default=60.0)
    p.add_argument("--defer", action="store_true", help="map only after a `map` command")
    p = sub.add_parser("probe")
    p.add_argument("--target", required=True)
    p.add_argument("--tries", type=int, default=10)
    args = parser.parse_args()
    logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)
    return serve(args) if args.cmd == "serve" else probe(args)


if __name__ == "__main__":
    sys.exit(main())
