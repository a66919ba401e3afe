"""LAN play on a real network with no handshake server anywhere: two machines behind one
home router (network namespaces), found by broadcast discovery, a whole headless Pong
match between bots, and nothing of it leaving the LAN."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from tests.netbed import ROOT, NetBed, Node, Router

pytestmark = [pytest.mark.netns, pytest.mark.timeout(180)]

COMMON = ["-m", "games.pong", "--lan", "--bot", "--headless", "--points", "3",
          "--timeout", "150"]

LIST_SCRIPT = """
import json, time
from framework import Config, Peer, events
with Peer(Config(post_events=False)) as p:
    seen = {}
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and len(seen) < int(__import__("sys").argv[1]):
        p.request_lan_server_list()
        end = time.monotonic() + 2
        while time.monotonic() < end:
            for e in p.tick():
                if e.type == events.RECEIVED_SERVER_LIST and e.lan:
                    for s in e.servers:
                        seen[s["name"]] = [s["address"][0], s["password_required"]]
            time.sleep(0.01)
    print(json.dumps(seen), flush=True)
"""


def one_lan(bed: NetBed) -> tuple[Router, Node, Node]:
    """A home router (10.0.0.0/24) with two machines; no handshake server exists."""
    router = bed.nat_router("r", public_ip="198.51.100.1")
    a = bed.host_behind(router, "a", "10.0.0.2")
    b = bed.host_behind(router, "b", "10.0.0.3")
    # Whatever leaves the LAN is counted: it must stay at zero.
    router.add_counter("udp_out", "-o", "wan", "-p", "udp", chain="FORWARD")
    router.add_counter("udp_own_out", "-o", "wan", "-p", "udp", chain="OUTPUT")
    return router, a, b


def assert_nothing_left_the_lan(router: Router) -> None:
    assert router.counter("udp_out", chain="FORWARD")[0] == 0
    assert router.counter("udp_own_out", chain="OUTPUT")[0] == 0


def test_pong_match_on_a_lan_with_no_handshake_server(netbed: NetBed, tmp_path: Path) -> None:
    router, a, b = one_lan(netbed)
    host_err = (tmp_path / "host.err").open("w")
    client_err = (tmp_path / "client.err").open("w")
    host = a.python([*COMMON, "--host", "lanpong", "--password", "pw", "--seed", "7"],
                    stdin=subprocess.DEVNULL, stderr=host_err, cwd=ROOT)
    deadline = time.monotonic() + 20
    while ("Waiting for a player" not in (tmp_path / "host.err").read_text()
           and time.monotonic() < deadline and host.poll() is None):
        time.sleep(0.1)
    client = b.python([*COMMON, "--join", "lanpong", "--as", "guest", "--password", "pw"],
                      stdin=subprocess.DEVNULL, stderr=client_err, cwd=ROOT)
    h_out, _ = host.communicate(timeout=170)
    c_out, _ = client.communicate(timeout=170)
    diag = (f"host: {h_out}\n{(tmp_path / 'host.err').read_text()}\n"
            f"client: {c_out}\n{(tmp_path / 'client.err').read_text()}")
    assert host.returncode == 0 and client.returncode == 0, diag
    h = json.loads(h_out.strip().splitlines()[-1])
    c = json.loads(c_out.strip().splitlines()[-1])
    assert h["score"] == c["score"] and max(h["score"]) == 3, diag
    assert {h["result"], c["result"]} == {"win", "loss"}, diag
    assert h["opponent"] == "guest" and c["opponent"] == "lanpong", diag
    assert "local network" in (tmp_path / "host.err").read_text(), diag
    assert_nothing_left_the_lan(router)


def test_two_games_on_one_machine_are_both_found(netbed: NetBed, tmp_path: Path) -> None:
    router, a, b = one_lan(netbed)
    hosts = [a.python([*COMMON, "--host", name, *extra], stdin=subprocess.DEVNULL,
                      stderr=(tmp_path / f"{name}.err").open("w"), cwd=ROOT)
             for name, extra in (("one", []), ("two", ["--password", "pw"]))]
    lister = b.python(["-c", LIST_SCRIPT, "2"], stdin=subprocess.DEVNULL,
                      stderr=(tmp_path / "list.err").open("w"), cwd=ROOT)
    out, _ = lister.communicate(timeout=60)
    for h in hosts:
        h.terminate()
        h.wait(timeout=10)
    diag = (f"{out}\n{(tmp_path / 'list.err').read_text()}\n"
            + "\n".join((tmp_path / f"{n}.err").read_text() for n in ("one", "two")))
    assert json.loads(out.strip().splitlines()[-1]) == {
        "one": ["10.0.0.2", False], "two": ["10.0.0.2", True]}, diag
    assert_nothing_left_the_lan(router)
