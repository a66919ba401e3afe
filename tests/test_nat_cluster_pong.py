"""A relayed Pong match between two symmetric NATs, served by a cluster: two handshake
nodes on one address (SO_REUSEPORT) sharing one Redis, all in the "internet" namespace.
The node that the relay's server-player end talks to is killed (SIGKILL) mid-match; the
match plays on to the end through the other node, which learns the relay from Redis."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.netbed import ROOT, NetBed
from tests.redisbed import require_redis
from tests.test_nat_engine import HS, HS_PORT, bed, two_nats  # noqa: F401

pytestmark = [pytest.mark.netns, pytest.mark.timeout(240)]

REDIS_PORT = 6379
URL = f"redis://127.0.0.1:{REDIS_PORT}/0"

#: Run inside the handshake server's namespace: the node each live relay's ends talk to.
RELAY_NODES = (
    "import redis, sys\n"
    "r = redis.Redis.from_url(sys.argv[1])\n"
    "for key in r.scan_iter(match=b'p2p:relay:*'):\n"
    "    ends = r.hmget(key, [b'an', b'bn'])\n"
    "    print(' '.join((e or b'?').decode() for e in ends))\n"
)


def test_a_relayed_match_survives_the_kill_of_its_relay_node(
        bed: NetBed, tmp_path: Path) -> None:  # noqa: F811 - fixture
    redis_server = require_redis()
    hs, a, b = two_nats(bed, sym_a=True, sym_b=True)
    hs.popen([redis_server, "--port", str(REDIS_PORT), "--bind", "127.0.0.1", "--save", "",
              "--appendonly", "no", "--dir", str(tmp_path)],
             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ping = [sys.executable, "-c", "import redis, sys; redis.Redis.from_url(sys.argv[1]).ping()",
            URL]
    deadline = time.monotonic() + 15
    while hs.run(ping, check=False).returncode != 0:
        assert time.monotonic() < deadline, "redis-server did not start"
        time.sleep(0.1)

    key, logs = tmp_path / "hs.key", tmp_path / "nodes.log"
    log = logs.open("w")
    nodes: dict[str, subprocess.Popen[str]] = {}
    for i, name in enumerate(("n1", "n2")):  # one after the other: the first makes the key
        nodes[name] = hs.python(
            ["-m", "server", "--host", "0.0.0.0", "--port", str(HS_PORT), "--key-file",
             str(key), "--redis", URL, "--reuse-port", "--node-id", name],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        deadline = time.monotonic() + 15
        while len(hs.run(["ss", "-Hunl", f"sport = :{HS_PORT}"],
                         check=False).stdout.strip().splitlines()) < i + 1:
            assert time.monotonic() < deadline, "a node did not start\n" + logs.read_text()
            time.sleep(0.05)

    common = ["-m", "games.pong", "--handshake", HS, "--bot", "--headless", "--points", "3",
              "--timeout", "150"]
    host_err, client_err = tmp_path / "host.err", tmp_path / "client.err"
    host = a.python([*common, "--host", "clusterpong", "--seed", "3"],
                    stdin=subprocess.DEVNULL, stderr=host_err.open("w"), cwd=ROOT)
    deadline = time.monotonic() + 20
    while "Registered as" not in host_err.read_text() and time.monotonic() < deadline:
        time.sleep(0.1)
    client = b.python([*common, "--join", "clusterpong", "--as", "guest"],
                      stdin=subprocess.DEVNULL, stderr=client_err.open("w"), cwd=ROOT)

    def diag() -> str:
        return (f"host:\n{host_err.read_text()}\nclient:\n{client_err.read_text()}\n"
                f"nodes:\n{logs.read_text()}")

    # The players' NATs defeat punching: the match goes through a relay. Find the node
    # its server-player end talks to, let the match run a little, and kill that node.
    ends: list[str] = []
    deadline = time.monotonic() + 30
    while not ends and time.monotonic() < deadline:
        out = hs.run([sys.executable, "-c", RELAY_NODES, URL], check=False).stdout.split()
        ends = [e for e in out if e in nodes]
        time.sleep(0.2)
    assert ends, "no relay in Redis\n" + diag()
    time.sleep(2.0)
    assert host.poll() is None and client.poll() is None, "the match ended early\n" + diag()
    victim = ends[0]
    nodes[victim].send_signal(signal.SIGKILL)
    nodes[victim].wait(timeout=10)

    h_out, _ = host.communicate(timeout=170)
    c_out, _ = client.communicate(timeout=170)
    assert host.returncode == 0 and client.returncode == 0, diag()
    h = json.loads(h_out.strip().splitlines()[-1])
    c = json.loads(c_out.strip().splitlines()[-1])
    assert h["score"] == c["score"] and max(h["score"]) == 3, diag()
    assert {h["result"], c["result"]} == {"win", "loss"}, diag()
    assert h.get("path") == "relay" and c.get("path") == "relay", f"{h}\n{c}\n{diag()}"
    survivor = next(n for n in nodes if n != victim)
    assert nodes[survivor].poll() is None, diag()
