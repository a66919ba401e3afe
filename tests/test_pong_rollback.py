"""Pong on rollback: whole matches between two `Match` objects over a seeded lossy fake
link, on a fake clock; and the 100,000-frame sync test."""

from __future__ import annotations

import math

from games.pong.match import SILENCE_TIMEOUT, Status
from games.pong.synctest import run_sync_test
from tests.pong_pair import FRAME, Message, Pair


def finish(pair: Pair, limit: float = 600.0) -> None:
    frames = 0
    while not all(m.status == Status.OVER for m in pair.matches):
        assert frames < limit / FRAME, "the match must end"
        assert all(m.status != Status.LOST for m in pair.matches)
        pair.step()
        frames += 1


def test_100000_frames_of_pong_resimulate_identically() -> None:
    result = run_sync_test(100_000)
    session = result.session
    assert session.frame == 100_000
    assert session.stats.frames_rolled_back == 2 * (100_000 - 2)
    assert session.mismatches == 0
    assert session.events() == []
    # Serves, hits, points, game overs and rematches were all replayed.
    assert result.sim.state.game >= 5
    assert result.hits > 300 and result.points > 25


def test_at_150ms_and_5_percent_loss_both_sides_agree_and_the_hit_is_fair() -> None:
    rates = []
    tries = [[0, 0], [0, 0]]  # per side: hits, attempts
    for seed in range(1, 5):
        pair = Pair(latency=0.075, loss=0.05, seed=seed, points=7)
        finish(pair)
        host, guest = pair.matches
        assert host.final_score == guest.final_score and max(host.final_score) == 7
        assert host.winner == guest.winner
        assert not host.desyncs and not guest.desyncs
        # Each side's count of the other's hits is the other's own count.
        assert host.confirmed.right_hits == guest.my_hits
        assert guest.confirmed.left_hits == host.my_hits
        for m in pair.matches:
            st = m.session.stats  # type: ignore[union-attr]
            assert st.rollbacks > 50 and 3 <= st.max_rollback_frames <= 8
            assert st.dropped_messages == 0
        rates.append([m.my_hits / (m.my_hits + m.my_misses) for m in pair.matches])
        for side, m in zip(tries, pair.matches, strict=True):
            side[0] += m.my_hits
            side[1] += m.my_hits + m.my_misses
    (host_hits, host_n), (guest_hits, guest_n) = tries
    host_rate, guest_rate = host_hits / host_n, guest_hits / guest_n
    # Equal bots: the client returns the ball as often as the host (it no longer sees
    # the ball a round trip late), within three standard errors of the difference.
    pooled = (host_hits + guest_hits) / (host_n + guest_n)
    noise = 3 * math.sqrt(pooled * (1 - pooled) * (1 / host_n + 1 / guest_n))
    assert abs(host_rate - guest_rate) < noise, rates


def test_inputs_are_a_few_hundred_bytes_a_second() -> None:
    pair = Pair(latency=0.075, loss=0.05, seed=3, points=3)
    pair.run(30.0)
    for wire in pair.wires:
        assert wire.bytes / 30.0 < 800  # msgpack payload, before the engine's headers


def test_the_client_waits_for_the_hosts_start() -> None:
    pair = Pair(latency=0.05, seed=2)
    assert pair.guest.status == Status.WAITING
    assert pair.host.status == Status.PLAYING
    pair.run(0.2)
    assert pair.guest.status == Status.PLAYING
    assert pair.guest.rules.points_to_win == 3


def test_a_rematch_needs_both_and_starts_game_two_on_both_sides() -> None:
    pair = Pair(latency=0.03, loss=0.02, seed=5, points=1)
    finish(pair)
    pair.host.request_rematch()
    pair.run(1.0)
    assert all(m.status == Status.OVER for m in pair.matches)
    assert pair.guest.they_want_rematch
    pair.guest.request_rematch()
    pair.run(1.0)
    for m in pair.matches:
        assert m.status == Status.PLAYING and m.game == 1 and m.winner is None
    finish(pair)
    assert pair.host.final_score == pair.guest.final_score


def test_both_sides_learn_that_the_other_saw_the_end() -> None:
    pair = Pair(latency=0.075, loss=0.05, seed=6, points=1)
    finish(pair)
    pair.run(1.0)
    assert pair.host.over_seen_by_opponent == 0 and pair.guest.over_seen_by_opponent == 0


def test_a_player_who_says_bye_is_gone_for_the_other() -> None:
    pair = Pair(latency=0.02, seed=7)
    pair.run(1.0)
    pair.guest.leave()
    pair.run(0.5)
    assert pair.host.status == Status.LOST
    assert "left" in pair.host.lost_reason


def test_silence_means_the_opponent_is_gone() -> None:
    pair = Pair(latency=0.02, seed=8)
    pair.run(1.0)
    pair.wires[1].cut = True
    pair.run(SILENCE_TIMEOUT + 0.5)
    assert pair.host.status == Status.LOST
    assert "timed out" in pair.host.lost_reason


def test_garbage_from_the_opponent_is_dropped_not_fatal() -> None:
    pair = Pair(latency=0.02, seed=9)
    pair.run(1.0)
    for junk in (["start", "x"], ["nope"], 42, [101, "bad"], [101, 0, 0, 0, 0, 0, 0, b"\x00"]):
        rest = pair.host.handle_events([Message("guest", junk)], pair.now)
        if rest:
            pair.host.on_event(junk, pair.now)
    assert pair.host.session is not None and pair.host.session.stats.dropped_messages == 2
    finish(pair)
    assert pair.host.final_score == pair.guest.final_score
