"""The messaging guarantees over real loopback sockets with the engine's simulator on."""

from __future__ import annotations

import numpy as np

from framework import Config, Delivery, Peer, events
from server import HandshakeServer
from tests.helpers import Recorder

LOCAL = ("127.0.0.1", 0)


def test_ordered_fragmented_and_sequenced_over_a_simulated_bad_network() -> None:
    srv = HandshakeServer("127.0.0.1", 0)
    srv.start()
    bad = dict(sim_loss=0.1, sim_latency=0.02, sim_jitter=0.01, sim_duplicate=0.05,
               sim_reorder=0.05, attempts_before_expiration=50)
    host = Peer(Config(**bad, sim_seed=1))  # type: ignore[arg-type]
    alice = Peer(Config(**bad, sim_seed=2))  # type: ignore[arg-type]
    rec = Recorder(host, alice)
    try:
        host.init_server(srv.address, LOCAL, "simhost")
        assert rec.run(lambda: rec.has(host, events.CONFIRMED_AS_SERVER), timeout=20)
        alice.init_client(srv.address, LOCAL, "alice", "simhost")
        assert rec.run(lambda: alice.is_connected() and host.get_peers() == ["alice"],
                       timeout=30)
        blob = np.random.default_rng(0).integers(0, 255, 300_000, dtype=np.uint8)
        for i in range(300):
            alice.send("simhost", i, Delivery.RELIABLE_ORDERED, channel=0)
            if i == 150:
                alice.send("simhost", blob, Delivery.RELIABLE_ORDERED, channel=1)
            alice.send("simhost", i, Delivery.UNRELIABLE_SEQUENCED, channel=2)
            rec.tick()

        def reliable() -> list[dict[str, object]]:
            return [e.packet_data for e in rec.of(host, events.RECEIVED_RELIABLE_MESSAGE_FROM_PEER)]

        assert rec.run(lambda: len(reliable()) >= 301, timeout=60)
        rec.run(lambda: False, timeout=0.5)
        ch0 = [d["message"] for d in reliable() if d["channel"] == 0]
        ch1 = [d["message"] for d in reliable() if d["channel"] == 1]
        assert ch0 == list(range(300))
        assert len(ch1) == 1
        np.testing.assert_array_equal(ch1[0], blob)
        seq = [e.packet_data["message"] for e in
               rec.of(host, events.RECEIVED_UNRELIABLE_MESSAGE_FROM_PEER)]
        # never stale (strictly increasing); jitter makes later datagrams overtake earlier ones
        assert seq == sorted(set(seq)) and 0 < len(seq) < 300
        stats = alice.get_stats("simhost")
        assert stats is not None and stats.rtt > 0.04 and stats.messages_resent > 0
        assert not rec.has(alice, events.RELIABLE_MESSAGE_TIMEOUT)
    finally:
        host.close()
        alice.close()
        srv.stop()
