"""The real server process under a flood (tools.flood): a v2 client is still served,
the process stays alive and small. No framework.Peer here: the client is a bare socket
with the peer's end of the sealed channel."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from framework.protocol.addresses import Address
from framework.protocol.crypto import fingerprint
from framework.protocol.errors import ProtocolError
from framework.protocol.hschannel import ServerChannel
from framework.protocol.wire import (
    CandidateKind,
    HsKind,
    Kind,
    decode_cookie,
    encode_cookie_request,
    peek_kind,
    request_size,
)
from server.keys import load_or_create
from tests.hspeer import seeded_bytes

ROOT = Path(__file__).resolve().parent.parent


@contextmanager
def server_process(key_file: Path, *extra: str
                   ) -> Iterator[tuple[subprocess.Popen[str], Address, str]]:
    """``python -m server`` on a free loopback port: the process, its address and the
    fingerprint it logged."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "server", "--host", "127.0.0.1", "--port", "0",
         "--key-file", str(key_file), *extra],
        cwd=ROOT, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    try:
        assert proc.stderr is not None
        address: Address | None = None
        fp: str | None = None
        deadline = time.monotonic() + 30
        while (address is None or fp is None) and time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line:
                break
            if m := re.search(r"listening on ([\d.]+):(\d+)", line):
                address = (m.group(1), int(m.group(2)))
            if m := re.search(r"key fingerprint: ([0-9a-f-]+)", line):
                fp = m.group(1)
        assert address is not None and fp is not None, "the handshake server did not start"
        yield proc, address, fp
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover
            proc.kill()


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


class Client:
    """A peer's requests over a real socket, each resent until answered (UDP under a
    flood loses datagrams)."""

    def __init__(self, server: Address, pinned: str) -> None:
        self.server = server
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.channel = ServerChannel(seeded_bytes(9), pinned)
        self.rid = 0

    def _exchange(self, data: bytes, want: Kind) -> bytes:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            self.sock.sendto(data, self.server)
            try:
                reply = self.sock.recv(2048)
                if peek_kind(reply) is want:
                    return reply
            except (TimeoutError, ProtocolError):
                continue
        raise AssertionError(f"no {want.name} in 15 s")

    def ask(self, kind: HsKind, fields: list[Any]) -> tuple[HsKind, list[Any]]:
        if not self.channel.ready:
            _, cookie, public = decode_cookie(self._exchange(encode_cookie_request(0),
                                                             Kind.COOKIE))
            self.channel.learn(cookie, public)
        self.rid += 1
        request = self.channel.seal(kind, self.rid, fields, request_size(kind))
        got, rid, f = self.channel.open(self._exchange(request, Kind.SEALED_REPLY))
        assert rid == self.rid
        return got, f


def test_a_sealed_client_is_served_while_the_server_is_flooded(tmp_path: Path) -> None:
    key_file = tmp_path / "hs.key"
    with server_process(key_file) as (proc, hs, fp):
        assert fp == fingerprint(load_or_create(key_file).public)
        time.sleep(0.2)
        rss_before = rss_kib(proc.pid)
        flooder = subprocess.Popen(
            [sys.executable, "-m", "tools.flood", "--target", f"{hs[0]}:{hs[1]}",
             "--seconds", "5", "--sources", "64"], cwd=ROOT, stdout=subprocess.PIPE,
            text=True)
        try:
            time.sleep(1.0)  # the flood is on
            client = Client(hs, pinned=fp)
            lan = [["192.168.1.2", 5000, int(CandidateKind.LAN)]]
            kind, f = client.ask(HsKind.REGISTER, ["under-fire", lan, True, 60.0, 0])
            assert kind is HsKind.REGISTERED
            kind, f = client.ask(HsKind.LIST, [""])
            assert kind is HsKind.LIST_REPLY and ["under-fire", True] in f[0]
            rss_during = rss_kib(proc.pid)
            out, _ = flooder.communicate(timeout=60)
            result = json.loads(out.strip().splitlines()[-1])
            assert result["sent"] > 10_000 and result["with_cookie"] > 0
            # the server stays small: every store it keeps is bounded
            assert rss_during - rss_before < 50 * 1024
            assert proc.poll() is None
        finally:
            if flooder.poll() is None:
                flooder.kill()
                flooder.wait()
