"""A whole headless bot match of Pong across two real NATs (network namespaces)."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.netbed import ROOT, NetBed, Node
from tests.test_nat_engine import HS, Game, bed, game_factory, two_nats  # noqa: F401

pytestmark = [pytest.mark.netns, pytest.mark.timeout(180)]


def test_pong_match_across_two_nats(bed: NetBed, game_factory: Callable[[Node], Game],  # noqa: F811
                                    tmp_path: Path) -> None:
    hs, a, b = two_nats(bed)
    game = game_factory(hs)
    game.start_server()
    common = ["-m", "games.pong", "--handshake", HS, "--bot", "--headless", "--points", "3",
              "--timeout", "150"]
    host_err = (tmp_path / "host.err").open("w")
    client_err = (tmp_path / "client.err").open("w")
    host = a.python([*common, "--host", "natpong", "--seed", "7"], stdin=subprocess.DEVNULL,
                    stderr=host_err, cwd=ROOT)
    assert host.stdout is not None
    # the client may only ask once the host has registered; the host says so on stderr
    deadline = time.monotonic() + 20
    while ("Registered as" not in (tmp_path / "host.err").read_text()
           and time.monotonic() < deadline):
        time.sleep(0.1)
    client = b.python([*common, "--join", "natpong", "--as", "guest"],
                      stdin=subprocess.DEVNULL, stderr=client_err, cwd=ROOT)
    assert client.stdout is not None
    h_out, _ = host.communicate(timeout=170)
    c_out, _ = client.communicate(timeout=170)
    diag = (f"host: {h_out}\n{(tmp_path / 'host.err').read_text()}\n"
            f"client: {c_out}\n{(tmp_path / 'client.err').read_text()}\n{game.diag()}")
    assert host.returncode == 0 and client.returncode == 0, diag
    h = json.loads(h_out.strip().splitlines()[-1])
    c = json.loads(c_out.strip().splitlines()[-1])
    assert h["score"] == c["score"] and max(h["score"]) == 3, diag
    assert {h["result"], c["result"]} == {"win", "loss"}, diag
    assert h["opponent"] == "guest" and c["opponent"] == "natpong", diag
    assert h.get("path", "direct") == "direct" and c.get("path", "direct") == "direct", diag
