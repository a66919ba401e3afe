"""A cluster deployment inside the NAT test bed, and a relayed Pong match through it:
redis-server and handshake nodes (sharing one address with SO_REUSEPORT) on the
"internet" host, the two players behind their NATs. Used by the namespace tests that
kill parts of the deployment mid-match (test_nat_cluster_pong, test_nat_relay_tier)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from tests.netbed import ROOT, Node
from tests.redisbed import require_redis
from tests.test_nat_engine import HS, HS_PORT

REDIS_PORT = 6379


def start_redis(hs: Node, bind: str, tmp_path: Path) -> str:
    """redis-server on ``hs`` at ``bind`` (no persistence), running; its URL."""
    hs.popen([require_redis(), "--port", str(REDIS_PORT), "--bind", bind, "--protected-mode",
              "no", "--save", "", "--appendonly", "no", "--dir", str(tmp_path)],
             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://{bind}:{REDIS_PORT}/0"
    ping = [sys.executable, "-c", "import redis, sys; redis.Redis.from_url(sys.argv[1]).ping()",
            url]
    deadline = time.monotonic() + 15
    while hs.run(ping, check=False).returncode != 0:
        assert time.monotonic() < deadline, "redis-server did not start"
        time.sleep(0.1)
    return url


def query(hs: Node, script: str, url: str) -> list[str]:
    """The words a Python ``script`` (given the Redis URL as argv[1]) prints on ``hs``."""
    return hs.run([sys.executable, "-c", script, url], check=False).stdout.split()


def start_handshake_nodes(hs: Node, url: str, key: Path, log: IO[str],
                          names: tuple[str, ...] = ("n1", "n2")
                          ) -> dict[str, subprocess.Popen[str]]:
    """Handshake nodes on ``hs``'s port, one after the other (the first makes the key)."""
    nodes: dict[str, subprocess.Popen[str]] = {}
    for i, name in enumerate(names):
        nodes[name] = hs.python(
            ["-m", "server", "--host", "0.0.0.0", "--port", str(HS_PORT), "--key-file",
             str(key), "--redis", url, "--reuse-port", "--node-id", name],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        deadline = time.monotonic() + 15
        while len(hs.run(["ss", "-Hunl", f"sport = :{HS_PORT}"],
                         check=False).stdout.strip().splitlines()) < i + 1:
            assert time.monotonic() < deadline, f"node {name} did not start"
            time.sleep(0.05)
    return nodes


@dataclass
class Match:
    """A Pong bot match: the host on one player's machine, the guest on the other's."""

    host: subprocess.Popen[str]
    client: subprocess.Popen[str]
    host_err: Path
    client_err: Path

    @classmethod
    def start(cls, a: Node, b: Node, game: str, seed: int, tmp_path: Path,
              *extra: str) -> Match:
        common = ["-m", "games.pong", "--handshake", HS, "--bot", "--headless", "--points",
                  "3", "--timeout", "150", *extra]
        host_err, client_err = tmp_path / "host.err", tmp_path / "client.err"
        host = a.python([*common, "--host", game, "--seed", str(seed)],
                        stdin=subprocess.DEVNULL, stderr=host_err.open("w"), cwd=ROOT)
        deadline = time.monotonic() + 20
        while "Registered as" not in host_err.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        client = b.python([*common, "--join", game, "--as", "guest"],
                          stdin=subprocess.DEVNULL, stderr=client_err.open("w"), cwd=ROOT)
        return cls(host, client, host_err, client_err)

    def logs(self) -> str:
        return f"host:\n{self.host_err.read_text()}\nclient:\n{self.client_err.read_text()}\n"

    def running(self) -> bool:
        return self.host.poll() is None and self.client.poll() is None

    def finish_relayed(self, diag: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """Wait for the end; check it was a whole match, on the relay to the end."""
        h_out, _ = self.host.communicate(timeout=170)
        c_out, _ = self.client.communicate(timeout=170)
        diag = self.logs() + diag
        assert self.host.returncode == 0 and self.client.returncode == 0, diag
        h = json.loads(h_out.strip().splitlines()[-1])
        c = json.loads(c_out.strip().splitlines()[-1])
        assert h["score"] == c["score"] and max(h["score"]) == 3, diag
        assert {h["result"], c["result"]} == {"win", "loss"}, diag
        assert h.get("path") == "relay" and c.get("path") == "relay", f"{h}\n{c}\n{diag}"
        return h, c
