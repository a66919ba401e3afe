"""A relayed Pong match between two symmetric NATs, on a deployment with a relay tier:
two handshake nodes on one address (SO_REUSEPORT), two relay nodes on addresses of
their own (``--relay-only``), one Redis, all on the "internet". Mid-match a handshake
node is killed, then the relay node carrying the match (SIGKILL both): the relay moves
to the other relay node within seconds, both players follow it (PATH_CHANGED, path
"relay"), and the match plays on to the end."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.netbed import ROOT, NetBed, Node
from tests.redisbed import require_redis
from tests.test_nat_engine import HS, HS_IP, HS_PORT, bed, report, two_nats  # noqa: F401

pytestmark = [pytest.mark.netns, pytest.mark.timeout(240)]

REDIS_PORT = 6379
URL = f"redis://{HS_IP}:{REDIS_PORT}/0"
RELAY_IPS = {"r1": "203.0.113.21", "r2": "203.0.113.22"}
RELAY_PORT = 5170

#: Run in the handshake server's namespace: ``<relay node> <node of server end>`` per relay.
RELAYS = (
    "import redis, sys\n"
    "r = redis.Redis.from_url(sys.argv[1])\n"
    "for key in r.scan_iter(match=b'p2p:relay:*'):\n"
    "    rn, an = r.hmget(key, [b'rn', b'an'])\n"
    "    print((rn or b'-').decode(), (an or b'-').decode())\n"
)
DIRECTORY = (
    "import redis, sys\n"
    "r = redis.Redis.from_url(sys.argv[1])\n"
    "print(' '.join(m.decode() for m in r.zrange(b'p2p:relaynodes', 0, -1)))\n"
)


def query(hs: Node, script: str) -> list[str]:
    return hs.run([sys.executable, "-c", script, URL], check=False).stdout.split()


def test_a_match_on_a_relay_node_moves_when_that_node_dies(
        bed: NetBed, tmp_path: Path) -> None:  # noqa: F811 - fixture
    redis_server = require_redis()
    hs, a, b = two_nats(bed, sym_a=True, sym_b=True)
    relay_hosts = {name: bed.public_host(name, ip) for name, ip in RELAY_IPS.items()}
    hs.popen([redis_server, "--port", str(REDIS_PORT), "--bind", HS_IP, "--protected-mode",
              "no", "--save", "", "--appendonly", "no", "--dir", str(tmp_path)],
             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ping = [sys.executable, "-c", "import redis, sys; redis.Redis.from_url(sys.argv[1]).ping()",
            URL]
    deadline = time.monotonic() + 15
    while hs.run(ping, check=False).returncode != 0:
        assert time.monotonic() < deadline, "redis-server did not start"
        time.sleep(0.1)

    key, logs = tmp_path / "hs.key", tmp_path / "nodes.log"
    log = logs.open("w")
    procs: dict[str, subprocess.Popen[str]] = {}
    for i, name in enumerate(("n1", "n2")):  # one after the other: the first makes the key
        procs[name] = hs.python(
            ["-m", "server", "--host", "0.0.0.0", "--port", str(HS_PORT), "--key-file",
             str(key), "--redis", URL, "--reuse-port", "--node-id", name],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        deadline = time.monotonic() + 15
        while len(hs.run(["ss", "-Hunl", f"sport = :{HS_PORT}"],
                         check=False).stdout.strip().splitlines()) < i + 1:
            assert time.monotonic() < deadline, "a node did not start\n" + logs.read_text()
            time.sleep(0.05)
    for name, node in relay_hosts.items():
        procs[name] = node.python(
            ["-m", "server", "--relay-only", "--host", RELAY_IPS[name], "--port",
             str(RELAY_PORT), "--redis", URL, "--node-id", name],  # no key file
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    deadline = time.monotonic() + 15
    while sorted(query(hs, DIRECTORY)) != ["r1", "r2"]:
        assert time.monotonic() < deadline, "relay nodes not listed\n" + logs.read_text()
        time.sleep(0.1)

    common = ["-m", "games.pong", "--handshake", HS, "--bot", "--headless", "--points", "3",
              "--timeout", "150", "-v"]
    host_err, client_err = tmp_path / "host.err", tmp_path / "client.err"
    host = a.python([*common, "--host", "tierpong", "--seed", "5"],
                    stdin=subprocess.DEVNULL, stderr=host_err.open("w"), cwd=ROOT)
    deadline = time.monotonic() + 20
    while "Registered as" not in host_err.read_text() and time.monotonic() < deadline:
        time.sleep(0.1)
    client = b.python([*common, "--join", "tierpong", "--as", "guest"],
                      stdin=subprocess.DEVNULL, stderr=client_err.open("w"), cwd=ROOT)

    def diag() -> str:
        return (f"host:\n{host_err.read_text()}\nclient:\n{client_err.read_text()}\n"
                f"nodes:\n{logs.read_text()}")

    # Punching cannot work between these NATs: the match is relayed, on a relay node.
    placed: list[str] = []
    deadline = time.monotonic() + 30
    while not placed and time.monotonic() < deadline:
        placed = query(hs, RELAYS)
        time.sleep(0.2)
    assert len(placed) == 2 and placed[0] in RELAY_IPS, f"{placed}\n{diag()}"
    first, hs_node = placed
    time.sleep(2.0)
    assert host.poll() is None and client.poll() is None, "the match ended early\n" + diag()

    # A handshake node goes: relayed traffic never touched it.
    procs["n1"].send_signal(signal.SIGKILL)
    procs["n1"].wait(timeout=10)
    time.sleep(2.0)
    # The relay node goes: the relay must move to the other one.
    procs[first].send_signal(signal.SIGKILL)
    procs[first].wait(timeout=10)
    killed = time.monotonic()
    now_on = first
    while now_on == first:
        assert time.monotonic() - killed < 20, "the relay did not move\n" + diag()
        relays = query(hs, RELAYS)
        now_on = relays[0] if relays else first
        time.sleep(0.1)
    moved_s = time.monotonic() - killed
    assert now_on in RELAY_IPS and now_on != first, diag()

    h_out, _ = host.communicate(timeout=170)
    c_out, _ = client.communicate(timeout=170)
    assert host.returncode == 0 and client.returncode == 0, diag()
    h = json.loads(h_out.strip().splitlines()[-1])
    c = json.loads(c_out.strip().splitlines()[-1])
    assert h["score"] == c["score"] and max(h["score"]) == 3, diag()
    assert {h["result"], c["result"]} == {"win", "loss"}, diag()
    assert h.get("path") == "relay" and c.get("path") == "relay", f"{h}\n{c}\n{diag()}"
    survivor = RELAY_IPS[now_on]
    for err in (host_err, client_err):
        text = err.read_text()
        # Each player followed the relay (PATH_CHANGED) rather than timing out.
        assert re.search(rf"relay to \S+ moved to \('{re.escape(survivor)}', {RELAY_PORT}\)",
                         text), diag()
        assert "timed out" not in text.lower(), diag()
    assert procs["n2"].poll() is None and procs[now_on].poll() is None, diag()
    report("relay tier", first=first, moved_to=now_on, moved_s=round(moved_s, 1),
           handshake_node_killed="n1", server_end_node=hs_node)
