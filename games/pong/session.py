"""A match over a real peer: starting it, feeding it, measuring it.

Shared by the window (scenes) and the headless runner.
"""

from __future__ import annotations

import random
from typing import Any

import pygame

from games.pong.bot import Bot
from games.pong.control import bot_controller
from games.pong.link import MatchRouter, PeerLike
from games.pong.lobby import ConnectRequest, Role
from games.pong.match import Controller, Match, Status
from games.pong.sim import LEFT, RIGHT, Rules


def new_seed() -> int:
    return random.SystemRandom().randrange(1 << 32)


class MatchSession:
    """One match, the peer it runs over, who controls our paddle, and traffic totals."""

    def __init__(self, peer: PeerLike, match: Match, controller: Controller, now: float) -> None:
        self.peer = peer
        self.match = match
        self.controller = controller
        self.router = MatchRouter(match, peer)
        self.seed = 0
        self.game_started = now
        self._sent = self._received = self._packets_out = self._packets_in = 0
        self._was_over = False
        self._restart_meter(now)

    @classmethod
    def start(
        cls,
        peer: PeerLike,
        request: ConnectRequest,
        opponent: str,
        now: float,
        *,
        seed: int,
        points: int,
        controller: Controller | None,
    ) -> MatchSession:
        """The session for a fresh connection; `controller` None: a bot plays."""
        side = LEFT if request.role == Role.HOST else RIGHT
        # The host's seed and target score decide the game; the client learns them
        # from the host's START message.
        match = Match(peer, request.user_name, opponent, side, now, seed=seed,
                      rules=Rules(points_to_win=points))
        if controller is None:
            bot = Bot(match.my_side, match.rules, seed + 7919 * match.my_side)
            controller = bot_controller(bot)
        session = cls(peer, match, controller, now)
        session.seed = seed
        return session

    def route(self, event: pygame.event.Event, now: float) -> None:
        self.router.route(event, now)

    def update(self, now: float) -> None:
        self.match.update(now, self.controller)
        over = self.match.status == Status.OVER
        if self._was_over and self.match.status == Status.PLAYING:
            self._restart_meter(now)  # a rematch began
        self._was_over = over

    def leave(self) -> None:
        self.match.leave()

    def stats(self) -> Any:
        return self.peer.get_stats(self.match.opponent)

    def _restart_meter(self, now: float) -> None:
        stats = self.stats()
        self.game_started = now
        self._sent = int(getattr(stats, "bytes_sent", 0))
        self._received = int(getattr(stats, "bytes_received", 0))
        self._packets_out = int(getattr(stats, "packets_sent", 0))
        self._packets_in = int(getattr(stats, "packets_received", 0))

    def traffic(self, now: float) -> dict[str, Any]:
        """Average UDP payload bytes and datagrams per second each way since the game
        began, and the link's state."""
        stats = self.stats()
        if stats is None:
            return {}
        span = max(now - self.game_started, 1e-6)
        return {
            "bytes_out_per_sec": round((stats.bytes_sent - self._sent) / span, 1),
            "bytes_in_per_sec": round((stats.bytes_received - self._received) / span, 1),
            "packets_out_per_sec": round((stats.packets_sent - self._packets_out) / span, 1),
            "packets_in_per_sec": round((stats.packets_received - self._packets_in) / span, 1),
            "rtt_ms": round(stats.rtt * 1000, 1),
            "loss_pct": round(stats.packet_loss, 2),
            "path": stats.path,
        }

    def result(self, now: float) -> dict[str, Any]:
        """The headless result line's content."""
        m = self.match
        result: dict[str, Any] = {
            "result": "win" if m.i_won else "loss",
            "score": list(m.final_score),
            "opponent": m.opponent,
            "role": "host" if m.my_side == LEFT else "client",
            "seed": self.seed,
            "duration": round(now - self.game_started, 2),
            "hits": m.my_hits,
            "misses": m.my_misses,
            "desyncs": len(m.desyncs),
        }
        if m.session is not None:
            st = m.session.stats
            result.update(
                rollbacks=st.rollbacks,
                max_rollback_frames=st.max_rollback_frames,
                frames_rolled_back=st.frames_rolled_back,
                prediction_misses=st.prediction_misses,
                frames=st.frame,
                stalls=st.stalls,
                dropped_messages=st.dropped_messages,
            )
        result.update(self.traffic(now))
        return result

    def overlay_lines(self, fps: float) -> list[str]:
        """The network statistics overlay's text."""
        lines = [f"vs {self.match.opponent}    {fps:4.0f} fps"]
        stats = self.stats()
        if stats is None:
            return [*lines, "no statistics (no connection)"]
        lines += [
            f"RTT {stats.rtt * 1000:5.1f} ms  (+/- {stats.rtt_var * 1000:.1f})",
            f"loss {stats.packet_loss:4.1f} %",
            f"in  {stats.bytes_in_per_sec / 1000:5.2f} KB/s",
            f"out {stats.bytes_out_per_sec / 1000:5.2f} KB/s",
            f"path {stats.path}",
        ]
        session = self.match.session
        if session is not None:
            st = session.stats
            lines += [
                f"frame {st.frame}  delay {session.frame_delay}  ahead {st.frame_advantage}",
                f"rollbacks {st.rollbacks}  longest {st.max_rollback_frames} frames",
                f"rolled back {st.frames_rolled_back} frames",
                f"prediction misses {st.prediction_misses}",
                f"desyncs {st.desyncs}  stalls {st.stalls}",
            ]
        return lines
