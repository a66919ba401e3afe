"""A game without a window: connect, play (usually as a bot), print one JSON line."""

from __future__ import annotations

import json
import logging
import signal
import sys
import time
from typing import TextIO

from games.pong.cli import (
    EXIT_CANNOT_CONNECT,
    EXIT_OK,
    EXIT_OPPONENT_LOST,
    EXIT_TIMEOUT,
    Options,
)
from games.pong.control import idle_controller
from games.pong.link import PeerLike, make_peer
from games.pong.lobby import Connector, ConnectRequest, Stage
from games.pong.match import Status
from games.pong.session import MatchSession, new_seed

log = logging.getLogger(__name__)

FRAME = 1.0 / 60
OVER_LINGER = 3.0  # s a side waits for the other to confirm the end
FLUSH_TIME = 1.0  # s to let the last reliable messages go out before quitting
EXIT_INTERRUPTED = 130  # the shell's convention for a run stopped by a signal


def run(opts: Options, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """The whole headless run; returns the exit status."""
    seed = opts.seed if opts.seed is not None else new_seed()
    peer = make_peer(opts)
    runner = HeadlessRun(peer, opts, seed, out, err)
    # SIGTERM (the demo stopping its bot) ends the run like Ctrl-C: with a goodbye.
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        return runner.run()
    except KeyboardInterrupt:
        runner.say("interrupted")
        return EXIT_INTERRUPTED
    finally:
        signal.signal(signal.SIGTERM, previous)
        _shut_down(peer, runner.session)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


class HeadlessRun:
    """The frame loop: engine events -> connector or match -> update -> sleep."""

    def __init__(self, peer: PeerLike, opts: Options, seed: int, out: TextIO, err: TextIO) -> None:
        self.peer = peer
        self.opts = opts
        self.seed = seed
        self.out = out
        self.err = err
        self.request = ConnectRequest.from_options(opts)
        self.session: MatchSession | None = None
        self.printed = 0
        self.over_at: float | None = None
        self.engine_seconds = 0.0  # time spent inside peer.tick() during the match
        self.frames = 0

    def say(self, message: str) -> None:
        print(f"pong: {message}", file=self.err, flush=True)

    def run(self) -> int:
        start = time.monotonic()
        deadline = start + self.opts.timeout if self.opts.timeout else None
        connector = Connector(self.peer, self.request, start)
        connector.start()
        announced = False
        next_frame = start
        while True:
            now = time.monotonic()
            events = self.peer.tick(now)
            if self.session is not None:
                self.engine_seconds += time.monotonic() - now
                self.frames += 1
            for event in events:
                if self.session is not None:
                    self.session.route(event, now)
                    continue
                connector.handle(event)
                if connector.connected and connector.opponent is not None:
                    self._start(connector.opponent, now)
            if self.session is None:
                connector.update(now)
                if connector.failed:
                    self.say(connector.error)
                    return EXIT_CANNOT_CONNECT
                if not announced and connector.stage == Stage.WAITING:
                    announced = True
                    self.say(connector.status())
            else:
                status = self._play(now)
                if status is not None:
                    return status
            if deadline is not None and now > deadline:
                if self.printed:
                    return EXIT_OK
                self.say(f"timed out after {self.opts.timeout:g} s")
                return EXIT_TIMEOUT
            next_frame = max(next_frame + FRAME, now)
            time.sleep(max(0.0, next_frame - time.monotonic()))

    def _start(self, opponent: str, now: float) -> None:
        controller = None if self.opts.bot else idle_controller
        self.session = MatchSession.start(
            self.peer,
            self.request,
            opponent,
            now,
            seed=self.seed,
            points=self.opts.points,
            controller=controller,
        )
        self.say(f"playing against {opponent}")

    def _play(self, now: float) -> int | None:
        """One frame of the match; an exit status once the run is over."""
        session = self.session
        assert session is not None
        match = session.match
        session.update(now)
        if match.status == Status.OVER and self.over_at is None:
            self.over_at = now
            result = session.result(now)
            if self.frames:
                result["engine_us_per_frame"] = round(1e6 * self.engine_seconds / self.frames, 1)
            print(json.dumps(result), file=self.out, flush=True)
            self.printed += 1
            if self.opts.rematch:
                match.request_rematch()
        elif match.status == Status.PLAYING:
            self.over_at = None
        if match.status == Status.LOST:
            if self.printed:
                return EXIT_OK
            self.say(match.lost_reason)
            return EXIT_OPPONENT_LOST
        if self.over_at is not None and not self.opts.rematch:
            # Each side plays on until the other confirmed the end too: until then our
            # inputs may be what it still needs to confirm it.
            since = now - self.over_at
            if match.over_seen_by_opponent >= match.game or since > OVER_LINGER:
                return EXIT_OK
        return None


def _shut_down(peer: PeerLike, session: MatchSession | None) -> None:
    """Say goodbye, give the reliable messages a moment, quit, close."""
    try:
        if session is not None:
            if session.match.status != Status.LOST:
                session.leave()
            until = time.monotonic() + FLUSH_TIME
            while time.monotonic() < until:
                peer.tick(time.monotonic())
                stats = session.stats()
                if stats is None or stats.messages_in_flight == 0:
                    break
                time.sleep(FRAME)
        peer.quit_connection()
        peer.tick(time.monotonic())
    except Exception:  # a failing goodbye must not hide the result
        log.exception("shutting down the peer")
    finally:
        peer.close()
