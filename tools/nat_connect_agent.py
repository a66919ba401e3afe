"""One player of the NAT matrix benchmark (``tools/bench_nat.py``), run inside a namespace.

It imports the engine of the tree given by ``--root`` (this project, or the v1 baseline
tree), so both engines are measured by the same driver in one run. Output: JSON lines.

    host:   registers ``--name`` and serves until stdin closes; prints {"ready": true}.
    client: ``--rounds`` batches of ``--parallel`` fresh players (a new socket each, so a new
            NAT mapping), each joining ``--server``; per player one line
            {"ok", "connect", "after_intro", "path", "final", "moved"}; then {"done": true}.

Connect time is init_client to CONFIRMED_AS_CLIENT, measured in this process;
``after_intro`` is the part after the handshake server's introduction arrived (the
engine's "introduced to" log line). ``path`` is the path at that moment and ``final`` the
path ``--settle`` seconds later (a session that starts on the relay may move).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import select
import sys
import time
from typing import Any

TIMEOUT = 20.0  # a join that takes longer counts as failed


def emit(**obj: Any) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


class Intros(logging.Handler):
    """Counts the engine's "introduced to" log lines: which player's tick wrote them tells
    whose introduction it was, since players are ticked one after another."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if str(record.msg).startswith("introduced to"):
            self.count += 1


def parse_addr(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


def stdin_closed() -> bool:
    ready, _, _ = select.select([sys.stdin], [], [], 0)
    return bool(ready) and not sys.stdin.readline()


def path_of(peer: Any, name: str) -> str | None:
    try:
        stats = peer.get_stats(name)
    except Exception:
        return None
    return None if stats is None else str(stats.path)


def run_host(args: argparse.Namespace, framework: Any) -> int:
    config = framework.Config(port_mapping=True) if args.port_mapping else framework.Config()
    peer = framework.Peer(config)
    peer.init_server(parse_addr(args.hs), ("0.0.0.0", 0), args.name)
    events = framework.events
    ready = False
    while not stdin_closed():
        for e in peer.tick():
            if e.type == events.CONFIRMED_AS_SERVER and not ready:
                ready = True
                emit(ready=True)
            elif e.type == events.SESSION_TERMINATED:
                emit(error=str(e.reason))
                return 1
        time.sleep(0.002)
    peer.close()
    return 0


class Joiner:
    def __init__(self, framework: Any, args: argparse.Namespace, name: str,
                 intros: Intros) -> None:
        self.peer = framework.Peer(framework.Config())
        self.events = framework.events
        self.server = args.server
        self.intros = intros
        self.t0 = time.monotonic()
        self.peer.init_client(parse_addr(args.hs), ("0.0.0.0", 0), name, args.server)
        self.intro_at: float | None = None
        self.connected_at: float | None = None
        self.path: str | None = None
        self.moved: float | None = None
        self.failed = False

    def tick(self) -> None:
        before = self.intros.count
        evs = self.peer.tick()
        now = time.monotonic()
        if self.intros.count > before and self.intro_at is None:
            self.intro_at = now
        for e in evs:
            if e.type == self.events.CONFIRMED_AS_CLIENT and self.connected_at is None:
                self.connected_at = now
                self.path = path_of(self.peer, self.server)
                emit(connected=True)
            elif (getattr(self.events, "PATH_CHANGED", None) == e.type
                  and self.connected_at is not None and self.moved is None):
                self.moved = now - self.connected_at
            elif e.type == self.events.SESSION_TERMINATED and self.connected_at is None:
                self.failed = True

    def result(self) -> dict[str, Any]:
        if self.connected_at is None:
            return {"ok": False}
        intro = self.intro_at if self.intro_at is not None else self.t0
        return {"ok": True, "connect": round(self.connected_at - self.t0, 4),
                "after_intro": round(self.connected_at - intro, 4), "path": self.path,
                "final": path_of(self.peer, self.server), "moved": self.moved,
                "alive": bool(self.peer.is_connected())}


def run_client(args: argparse.Namespace, framework: Any, intros: Intros) -> int:
    for batch in range(args.rounds):
        joiners = [Joiner(framework, args, f"p{batch}x{k}", intros)
                   for k in range(args.parallel)]
        start = time.monotonic()
        while time.monotonic() - start < TIMEOUT + args.settle:
            for j in joiners:
                j.tick()
            now = time.monotonic()
            if all(j.failed or (j.connected_at is not None
                                and now - j.connected_at >= args.settle) for j in joiners):
                break
            time.sleep(0.002)
        for j in joiners:
            emit(**j.result())
            j.peer.close()
        time.sleep(0.3)  # the host hears the BYEs before the next batch
    emit(done=True)
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("role", choices=("host", "client"))
    p.add_argument("--root", required=True, help="the tree whose engine to import")
    p.add_argument("--hs", required=True, help="handshake server HOST:PORT")
    p.add_argument("--name", default="game")
    p.add_argument("--server", default="game")
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--parallel", type=int, default=1)
    p.add_argument("--settle", type=float, default=0.0)
    p.add_argument("--port-mapping", action="store_true", help="host: Config(port_mapping)")
    p.add_argument("--log", help="write the engine's log (INFO) to this file")
    args = p.parse_args()
    sys.path.insert(0, os.path.abspath(args.root))
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
    import framework  # noqa: PLC0415 - the engine of --root, after the path is set

    if args.log:
        logging.basicConfig(filename=args.log, level=logging.INFO,
                            format="%(relativeCreated)8.0f %(name)s: %(message)s")
    intros = Intros()
    logging.getLogger("framework").addHandler(intros)
    logging.getLogger("framework").setLevel(logging.INFO)
    if args.role == "host":
        return run_host(args, framework)
    return run_client(args, framework, intros)


if __name__ == "__main__":
    sys.exit(main())
