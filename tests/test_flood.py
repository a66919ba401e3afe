"""Load: real players succeed while another process floods the server process."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from framework import Delivery, Peer, events
from tests.helpers import ROOT, Recorder, server_process

LOCAL = ("127.0.0.1", 0)


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_players_succeed_under_a_flood() -> None:
    with server_process() as (proc, hs):
        time.sleep(0.2)
        rss_before = rss_kib(proc.pid)
        flooder = subprocess.Popen(
            [sys.executable, "-m", "tools.flood", "--target", f"{hs[0]}:{hs[1]}",
             "--seconds", "6", "--sources", "64"], cwd=ROOT, stdout=subprocess.PIPE, text=True)
        try:
            time.sleep(0.5)  # the flood is on
            host, alice, bob = Peer(), Peer(), Peer()
            rec = Recorder(host, alice, bob)
            host.init_server(hs, LOCAL, "under-fire", password="pw")
            assert rec.run(lambda: rec.has(host, events.CONFIRMED_AS_SERVER), timeout=20)
            alice.init_client(hs, LOCAL, "alice", "under-fire", password="pw")
            bob.init_client(hs, LOCAL, "bob", "under-fire", password="pw")
            assert rec.run(lambda: alice.is_connected() and bob.is_connected()
                           and len(host.get_peers()) == 2, timeout=30)
            for i in range(50):
                alice.send("under-fire", i, Delivery.RELIABLE_ORDERED)
                bob.send("alice", i, Delivery.RELIABLE_ORDERED)
            assert rec.run(lambda: len(rec.of(host, events.RECEIVED_RELIABLE_MESSAGE_FROM_PEER))
                           == 50 and len(rec.of(alice,
                                                events.RECEIVED_RELIABLE_MESSAGE_FROM_PEER))
                           == 50, timeout=20)
            rss_during = rss_kib(proc.pid)
            out, _ = flooder.communicate(timeout=30)
            sent = json.loads(out.strip().splitlines()[-1])["sent"]
            assert sent > 10_000
            # the server stays small: every store it keeps is bounded
            assert rss_during - rss_before < 50 * 1024
            assert proc.poll() is None
            for p in (host, alice, bob):
                p.close()
        finally:
            if flooder.poll() is None:
                flooder.kill()
                flooder.wait()
