"""Fuzz the two network-facing boundaries: the handshake server and a connected Peer core.

    python -m tools.fuzz --datagrams 1000000            # coverage-guided (atheris)
    python -m tools.fuzz --engine mutate --datagrams N  # seeded mutation, no atheris

Inputs are real datagrams of every kind, captured from a session on the fake network,
then mutated (bit flips, byte changes, cuts, splices, insertions) or, with atheris,
mutated under coverage guidance. Every input goes to a HandshakeCore and to the server
player's Session of a live session, both from a stranger's address and from the
client's own. The rule checked: nothing ever raises, and the live session survives.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from framework.protocol.addresses import Address
from framework.protocol.config import Config
from framework.protocol.crypto import KeyPair
from framework.protocol.delivery import Delivery
from framework.protocol.session import Session
from server.core import HandshakeCore, ServerConfig
from tests.fakenet import HS, FakeNet, seeded_bytes

STRANGER: Address = ("192.0.2.250", 9999)


@dataclass
class Target:
    """A live session (server player and client) plus a handshake server to throw at."""

    net: FakeNet
    host: Session
    client: Session
    hs: HandshakeCore
    corpus: list[bytes] = field(default_factory=list)
    inputs: int = 0

    def feed(self, data: bytes) -> None:
        """One input to every boundary. Any exception escaping is a finding."""
        self.inputs += 1
        now = self.net.now
        self.hs.receive(data, STRANGER, now)
        self.hs.receive(data, self.net.addr(self.client), now)
        self.host.receive_datagram(data, STRANGER, now)
        self.host.receive_datagram(data, self.net.addr(self.client), now)
        self.client.receive_datagram(data, self.net.addr(self.host), now)
        if self.inputs % 512 == 0:
            self.host.events()
            self.client.events()
            self.host.take_datagrams()
            self.client.take_datagrams()
            self.hs.expire(now)

    def alive(self) -> bool:
        """The fuzzed session is still on, on both sides."""
        return self.host.get_peers() == ["client"] and self.client.is_connected()


def build_target(seed: int = 1) -> Target:
    """A server player and a client in session, and a corpus of their real datagrams."""
    net = FakeNet(seed=seed)
    corpus: list[bytes] = []

    def keep(data: bytes, src: Address, dst: Address) -> bool:
        corpus.append(data)
        return True

    net.filter = keep
    host = net.add(Config(secs_between_peer_checks=1e6))
    net.call(host, "init_server", HS, net.addr(host), "host", "pw")
    net.run(5, host.is_connected)
    client = net.add(Config(secs_between_peer_checks=1e6))
    net.call(client, "init_client", HS, net.addr(client), "client", "host", "pw")
    net.run(10, lambda: client.is_connected() and host.get_peers() == ["client"])
    asker = net.add()
    net.call(asker, "request_server_list", HS)
    for i in range(20):
        client.send("host", {"i": i, "blob": b"x" * (i * 90 % 900)}, Delivery(i % 4), i % 3)
        host.send("client", [i, "y" * (i * 200)], Delivery.RELIABLE_ORDERED, 1)
    net.run(2)
    net.filter = None
    if not (client.is_connected() and host.get_peers() == ["client"]):
        raise RuntimeError("could not set up the session to fuzz")
    hs = HandshakeCore(ServerConfig(requests_per_sec_per_ip=1e9, request_burst=1e9),
                       seeded_bytes(seed + 7), KeyPair.generate(seeded_bytes(seed + 8)))
    return Target(net, host, client, hs, corpus)


def mutate(rng: random.Random, corpus: list[bytes]) -> bytes:
    data = bytearray(rng.choice(corpus))
    for _ in range(rng.choice((1, 1, 2, 3, 8))):
        op = rng.randrange(7)
        if op == 0 and data:
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        elif op == 1 and data:
            data[rng.randrange(len(data))] = rng.choice((0, 0xFF, 0x7F, 0x80, 0xC0, 0xDC,
                                                         rng.randrange(256)))
        elif op == 2 and data:
            del data[rng.randrange(len(data)):]
        elif op == 3:
            i = rng.randrange(len(data) + 1)
            data[i:i] = rng.randbytes(rng.randint(1, 16))
        elif op == 4:
            other = rng.choice(corpus)
            i = rng.randrange(len(other) + 1)
            data += other[i:]
        elif op == 5 and len(data) > 4:
            i = rng.randrange(4, len(data))
            j = rng.randrange(i, min(len(data), i + 32) + 1)
            del data[i:j]
        else:
            data[4:4] = bytes([rng.choice((0xDD, 0xDF, 0xC6, 0xDB, 0xC7))]) + bytes(4) + b"\xff"
    return bytes(data[:1400])


def run_mutate(target: Target, count: int, seed: int, report: Callable[[str], None]) -> None:
    rng = random.Random(seed)
    corpus = target.corpus
    start = time.monotonic()
    for n in range(count):
        data = rng.randbytes(rng.randint(0, 1300)) if rng.random() < 0.05 else mutate(rng, corpus)
        target.feed(data)
        if n % 100_000 == 99_999:
            report(f"{n + 1} inputs, {time.monotonic() - start:.0f} s")


def run_atheris(target: Target, count: int, done: Callable[[], None]
                ) -> None:  # pragma: no cover - tool path
    import atheris  # noqa: PLC0415 - optional, only for this mode

    def one(data: bytes) -> None:
        target.feed(data)
        if target.inputs == count:
            done()  # libFuzzer leaves through C's exit(): say what happened first

    corpus_dir = "/tmp/p2p-fuzz-corpus"
    import os  # noqa: PLC0415

    os.makedirs(corpus_dir, exist_ok=True)
    for i, d in enumerate(target.corpus):
        with open(os.path.join(corpus_dir, f"seed{i}"), "wb") as f:
            f.write(d)
    atheris.instrument_all()
    atheris.Setup([sys.argv[0], f"-runs={count}", "-max_len=1400", "-print_final_stats=1",
                   corpus_dir], one)
    atheris.Fuzz()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.fuzz", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datagrams", type=int, default=1_000_000)
    parser.add_argument("--engine", choices=["atheris", "mutate"], default="atheris")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    target = build_target(args.seed)
    start = time.monotonic()

    def summary() -> dict[str, object]:
        elapsed = time.monotonic() - start
        return {
            "engine": args.engine, "inputs": target.inputs, "seconds": round(elapsed, 1),
            "inputs_per_sec": round(target.inputs / max(elapsed, 1e-9)), "crashes": 0,
            "host_blocked": target.host.blocked_count, "session_alive": target.alive(),
            "server_registrations": len(target.hs.registrations),
        }

    # A crash ends the process with its traceback before this is printed, so
    # "crashes": 0 is only ever printed when there were none.
    def done() -> None:
        print(json.dumps(summary()), flush=True)
    if args.engine == "atheris":
        try:
            import atheris  # noqa: F401, PLC0415
        except ImportError:
            print("atheris is not installed (pip install atheris): using --engine mutate",
                  file=sys.stderr)
            args.engine = "mutate"
    if args.engine == "atheris":
        run_atheris(target, args.datagrams, done)
    else:
        run_mutate(target, args.datagrams, args.seed, lambda s: print(s, file=sys.stderr))
        done()
    return 0 if target.alive() else 1


if __name__ == "__main__":
    sys.exit(main())
