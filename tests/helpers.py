"""Helpers for tests with real sockets: a handshake server process, a frame loop."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")

from framework import Peer, events
from framework.protocol.addresses import Address

ROOT = Path(__file__).resolve().parent.parent


def key_fingerprint(key_file: Path) -> str:
    """The fingerprint of a handshake server key file (made if missing), as
    ``python -m server --print-fingerprint`` tells it."""
    out = subprocess.run([sys.executable, "-m", "server", "--key-file", str(key_file),
                          "--print-fingerprint"], cwd=ROOT, capture_output=True, text=True,
                         timeout=60, check=True)
    return out.stdout.strip().split()[-1]


@contextmanager
def server_process(*extra: str, key_file: Path | None = None
                   ) -> Iterator[tuple[subprocess.Popen[str], Address]]:
    """Run ``python -m server`` on a free loopback port; yield it and its address. Its
    key lives in a file of the test's (a temporary one unless given)."""
    with tempfile.TemporaryDirectory() as tmp:
        key = key_file if key_file is not None else Path(tmp) / "server.key"
        with _server(key, extra) as running:
            yield running


@contextmanager
def _server(key: Path, extra: tuple[str, ...]
            ) -> Iterator[tuple[subprocess.Popen[str], Address]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "server", "--host", "127.0.0.1", "--port", "0",
         "--key-file", str(key), *extra],
        cwd=ROOT, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    try:
        assert proc.stderr is not None
        deadline = time.monotonic() + 30
        address: Address | None = None
        while address is None and time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line:
                break
            m = re.search(r"listening on ([\d.]+):(\d+)", line)
            if m:
                address = (m.group(1), int(m.group(2)))
        assert address is not None, "the handshake server did not start"
        yield proc, address
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover
            proc.kill()


class Recorder:
    """Ticks peers and keeps every event each one produced, by peer."""

    def __init__(self, *peers: Peer) -> None:
        self.peers = list(peers)
        self.log: dict[int, list[Any]] = {id(p): [] for p in peers}

    def add(self, peer: Peer) -> None:
        self.peers.append(peer)
        self.log[id(peer)] = []

    def tick(self, skip: Iterable[Peer] = ()) -> None:
        skipped = {id(p) for p in skip}
        for p in self.peers:
            if id(p) not in skipped:
                self.log[id(p)].extend(p.tick())

    def run(self, until: Callable[[], bool], timeout: float = 10.0,
            skip: Iterable[Peer] = ()) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.tick(skip)
            if until():
                return True
            time.sleep(0.002)
        return until()

    def of(self, peer: Peer, etype: int) -> list[Any]:
        return [e for e in self.log[id(peer)] if e.type == etype]

    def has(self, peer: Peer, etype: int) -> bool:
        return bool(self.of(peer, etype))

    def names(self, peer: Peer) -> list[str]:
        return [events.NAMES[e.type] for e in self.log[id(peer)]]

    def clear(self) -> None:
        for k in self.log:
            self.log[k] = []
