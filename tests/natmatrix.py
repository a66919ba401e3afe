"""The NAT behaviour matrix of the test bed, and building blocks for playing across it.

    from tests.natmatrix import ALL_BEHAVIORS, two_players
    with NetBed() as bed:
        p = two_players(bed, NatBehavior("endpoint", "address-port"),
                        NatBehavior("address-port", "endpoint"), delay_ms=40, loss=0.02)
        p.hs, p.a, p.b  # handshake server host (203.0.113.10), the two players (10.0.0.2)

``ALL_BEHAVIORS``: the 9 mapping x filtering combinations without hairpinning, then the
same 9 with it (18). Each router is a userspace NAT
(``tests/usernat.py``); ``nat_router(symmetric=...)`` still gives the kernel's own two.

Run as a script it is the probe client the matrix test drives (``client``), and a one-shot
sender (``send``) for the outside hosts.
"""

from __future__ import annotations

import argparse
import json
import select
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.netbed import LineReader, NetBed, Node, Router
from tests.usernat import KINDS, NatBehavior

ALL_BEHAVIORS = [NatBehavior(m, f, hairpin=h) for h in (False, True) for m in KINDS
                 for f in KINDS]
HS_IP = "203.0.113.10"


def behavior_pairs(*, hairpin: bool = False) -> list[tuple[NatBehavior, NatBehavior]]:
    """Every unordered pair of the 9 mapping x filtering behaviours (45 pairs)."""
    kinds = [b for b in ALL_BEHAVIORS if b.hairpin == hairpin]
    return [(x, y) for i, x in enumerate(kinds) for y in kinds[i:]]
SCRIPT = str(Path(__file__).resolve())


@dataclass
class Players:
    """Two players behind their own NATs and a public host for the handshake server."""

    hs: Node
    ra: Router
    rb: Router
    a: Node
    b: Node


def two_players(
    bed: NetBed, nat_a: NatBehavior | None, nat_b: NatBehavior | None, *,
    delay_ms: float = 0.0, loss: float = 0.0, jitter_ms: float = 0.0, seed: int = 1,
) -> Players:
    """hs (203.0.113.10) on the internet; a and b (both 10.0.0.2) behind NATs with the given
    behaviours (None: the kernel's MASQUERADE, endpoint-independent mapping with
    address-and-port-dependent filtering). ``delay_ms``/``loss`` impair each router's WAN
    egress (so a->b sees twice the delay, one way)."""
    hs = bed.public_host("hs", HS_IP)
    ra = bed.nat_router("ra", public_ip="198.51.100.1", lan="10.0.0.0/24", behavior=nat_a,
                        seed=seed)
    rb = bed.nat_router("rb", public_ip="192.0.2.1", lan="10.0.0.0/24", behavior=nat_b,
                        seed=seed + 1)
    if delay_ms or loss or jitter_ms:
        for i, r in enumerate((ra, rb)):
            r.impair("wan", delay_ms=delay_ms, loss=loss, jitter_ms=jitter_ms, seed=seed + i)
    return Players(hs, ra, rb, bed.host_behind(ra, "a", "10.0.0.2"),
                   bed.host_behind(rb, "b", "10.0.0.2"))


class ProbeClient:
    """Drives ``natmatrix.py client`` on a node: one UDP socket, commands over stdin."""

    def __init__(self, node: Node, port: int = 4000) -> None:
        self.node = node
        self.proc = node.python([SCRIPT, "client", "--port", str(port)])
        self.out = LineReader(self.proc)
        self._n = 0
        if not self.out.wait_for(lambda r: "ready" in r, 10.0):
            raise RuntimeError(f"probe client on {node.name} did not start: {self.out.text()}")

    def _cmd(self, *words: object, timeout: float = 10.0) -> dict[str, Any]:
        self._n += 1
        n = self._n
        assert self.proc.stdin is not None
        self.proc.stdin.write(" ".join(str(w) for w in (n, *words)) + "\n")
        rec = self.out.wait_for(lambda r: r.get("n") == n, timeout)
        if rec is None:
            raise RuntimeError(f"no answer to {words} on {self.node.name}: {self.out.text()}")
        return rec

    def mapped(self, server: tuple[str, int]) -> tuple[str, int] | None:
        """Our public address as the echo server at ``server`` sees it."""
        seen = self._cmd("ask", *server)["seen"]
        return None if seen is None else (seen[0], int(seen[1]))

    def send(self, target: tuple[str, int], text: str) -> None:
        self._cmd("send", *target, text)

    def received(self, seconds: float) -> list[tuple[str, int, str]]:
        """Datagrams (src ip, src port, text) that arrived, waiting ``seconds`` more."""
        got = self._cmd("recv", seconds, timeout=seconds + 10.0)["got"]
        return [(g[0], int(g[1]), g[2]) for g in got]


def send_from(node: Node, port: int, target: tuple[str, int], text: str) -> None:
    """Send ``text`` three times (50 ms apart) from ``node``'s UDP ``port`` to ``target``."""
    node.run([sys.executable, SCRIPT, "send", "--port", str(port), "--to",
              f"{target[0]}:{target[1]}", "--text", text])


# --------------------------------------------------------------------------- script mode


def _emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def tool_client(args: argparse.Namespace) -> int:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("0.0.0.0", args.port))
    inbox: list[list[Any]] = []

    def pump(timeout: float) -> None:
        ready, _, _ = select.select([sock], [], [], timeout)
        while ready:
            data, addr = sock.recvfrom(2048)
            inbox.append([addr[0], addr[1], data.decode(errors="replace")])
            ready, _, _ = select.select([sock], [], [], 0)

    _emit({"ready": True})
    for line in sys.stdin:
        words = line.split()
        if len(words) < 2:
            continue
        n, cmd, rest = int(words[0]), words[1], words[2:]
        if cmd == "ask":
            server = (rest[0], int(rest[1]))
            seen = None
            deadline = time.monotonic() + 3.0
            while seen is None and time.monotonic() < deadline:
                sock.sendto(json.dumps({"seq": n}).encode(), server)
                end = time.monotonic() + 0.3
                while seen is None and time.monotonic() < end:
                    pump(max(0.0, end - time.monotonic()))
                    for item in list(inbox):
                        if (item[0], item[1]) == server and f'"seq": {n}' in item[2]:
                            seen = json.loads(item[2])["addr"]
                            inbox.remove(item)
            _emit({"n": n, "seen": seen})
        elif cmd == "send":
            sock.sendto(" ".join(rest[2:]).encode(), (rest[0], int(rest[1])))
            _emit({"n": n})
        elif cmd == "recv":
            end = time.monotonic() + float(rest[0])
            while time.monotonic() < end:
                pump(max(0.0, end - time.monotonic()))
            got, inbox[:] = list(inbox), []
            _emit({"n": n, "got": got})
    return 0


def tool_send(args: argparse.Namespace) -> int:
    host, _, port = args.to.rpartition(":")
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("0.0.0.0", args.port))
    for _ in range(3):
        sock.sendto(args.text.encode(), (host, int(port)))
        time.sleep(0.05)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="tool", required=True)
    p = sub.add_parser("client")
    p.add_argument("--port", type=int, default=4000)
    p = sub.add_parser("send")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--to", required=True)
    p.add_argument("--text", required=True)
    args = parser.parse_args()
    return tool_client(args) if args.tool == "client" else tool_send(args)


if __name__ == "__main__":
    sys.exit(main())
