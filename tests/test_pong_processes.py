"""Headless Pong processes playing each other through a real handshake server, on loopback.

These run real time (a game to 3 takes about half a minute), so they are marked slow.
Every child process is killed in a `finally`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from server import HandshakeServer

ROOT = Path(__file__).resolve().parents[1]
LIMIT = 120.0  # s for a whole match, generously

pytestmark = pytest.mark.slow


@pytest.fixture
def handshake() -> Iterator[str]:
    srv = HandshakeServer(host="127.0.0.1", port=0)
    srv.start()
    try:
        host, port = srv.address[:2]
        yield f"{host}:{port}"
    finally:
        srv.stop()


class Pong:
    """One `python -m games.pong` child process, its stderr collected as it comes."""

    def __init__(self, *args: str) -> None:
        env = dict(os.environ, SDL_VIDEODRIVER="dummy", SDL_AUDIODRIVER="dummy")
        env["PYTHONPATH"] = str(ROOT)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "games.pong", *args],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.err_lines: list[str] = []
        self._reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._reader.start()

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.err_lines.append(line)

    @property
    def stderr(self) -> str:
        return "".join(self.err_lines)

    def wait_for(self, text: str, timeout: float) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if text in self.stderr:
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"never said {text!r}; stderr:\n{self.stderr}")

    def finish(self, timeout: float) -> tuple[int, str]:
        """Exit status and stdout."""
        # stdout is one short line at most: it cannot fill the pipe while we wait.
        self.proc.wait(timeout=timeout)
        assert self.proc.stdout is not None
        out = self.proc.stdout.read()
        self._reader.join(timeout=5)
        return self.proc.returncode, out

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
        self._reader.join(timeout=5)
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()


def common(handshake: str, *extra: str) -> list[str]:
    return [
        "--handshake",
        handshake,
        "--local-address",
        "127.0.0.1:0",
        "--timeout",
        str(LIMIT),
        *extra,
    ]


def play_match(
    handshake: str, *extra: str, points: int = 3
) -> tuple[dict[str, Any], dict[str, Any]]:
    host = Pong(
        "--host",
        "alice",
        "--headless",
        "--bot",
        "--points",
        str(points),
        "--seed",
        "11",
        *common(handshake, *extra),
    )
    client: Pong | None = None
    try:
        host.wait_for("Waiting for a player", timeout=20)
        client = Pong(
            "--join",
            "alice",
            "--as",
            "bob",
            "--headless",
            "--bot",
            "--seed",
            "12",
            *common(handshake, *extra),
        )
        client_status, client_out = client.finish(timeout=LIMIT + 20)
        host_status, host_out = host.finish(timeout=30)
        assert host_status == 0, host.stderr
        assert client_status == 0, client.stderr
        host_lines = host_out.strip().splitlines()
        client_lines = client_out.strip().splitlines()
        assert len(host_lines) == len(client_lines) == 1, (host_out, client_out)
        return json.loads(host_lines[0]), json.loads(client_lines[0])
    finally:
        host.kill()
        if client is not None:
            client.kill()


def check_results(host: dict[str, Any], client: dict[str, Any], points: int = 3) -> None:
    assert host["score"] == client["score"]
    assert max(host["score"]) == points
    assert {host["result"], client["result"]} == {"win", "loss"}
    assert (host["result"] == "win") == (host["score"][0] > host["score"][1])
    assert host["opponent"] == "bob" and client["opponent"] == "alice"
    # Both ran the same simulation: each one's misses are the other's points.
    assert host["misses"] == host["score"][1] and client["misses"] == client["score"][0]
    for side in (host, client):
        assert side["desyncs"] == 0, side
        assert side["dropped_messages"] == 0, side
        assert side["max_rollback_frames"] <= 8, side
        # The bandwidth target: under 1.5 KB/s each way, engine headers included.
        assert side["bytes_out_per_sec"] < 1500, side
        assert side["bytes_in_per_sec"] < 1500, side


def test_two_processes_play_a_match_to_the_end(handshake: str) -> None:
    host, client = play_match(handshake)
    check_results(host, client)
    assert host["path"] in ("direct", "lan")


def hit_rate(side: dict[str, Any]) -> float:
    return float(side["hits"]) / (side["hits"] + side["misses"])


def test_a_match_at_150ms_round_trips_and_5_percent_loss_is_fair(handshake: str) -> None:
    # 75 ms and 5% loss on what each process sends: 150 ms round trips, 5% each way.
    host, client = play_match(handshake, "--sim-latency", "0.075", "--sim-loss", "0.05",
                              points=5)
    check_results(host, client, points=5)
    assert host["rtt_ms"] >= 140 and client["rtt_ms"] >= 140
    for side in (host, client):
        assert side["rollbacks"] > 50, side  # inputs were guessed, wrongly, and repaired
        assert side["max_rollback_frames"] >= 3, side
    # Equal bots: the client returns the ball as often as the host, within the noise
    # of a short match (three standard errors of the difference of two rates).
    h, c = hit_rate(host), hit_rate(client)
    n_h, n_c = host["hits"] + host["misses"], client["hits"] + client["misses"]
    p = (host["hits"] + client["hits"]) / (n_h + n_c)
    noise = 3 * (p * (1 - p) * (1 / n_h + 1 / n_c)) ** 0.5
    assert abs(h - c) <= max(noise, 0.1), (host, client)


def test_joining_a_game_that_does_not_exist_fails_clearly(handshake: str) -> None:
    client = Pong("--join", "nobody", "--as", "bob", "--headless", *common(handshake))
    try:
        status, out = client.finish(timeout=30)
        assert status == 1
        assert out == ""
        assert "No game called 'nobody'" in client.stderr
    finally:
        client.kill()


def test_a_wrong_password_is_refused_clearly(handshake: str) -> None:
    host = Pong("--host", "alice", "--password", "right", "--headless", "--bot", *common(handshake))
    try:
        host.wait_for("Waiting for a player", timeout=20)
        client = Pong(
            "--join",
            "alice",
            "--as",
            "bob",
            "--password",
            "wrong",
            "--headless",
            *common(handshake),
        )
        try:
            status, _ = client.finish(timeout=30)
            assert status == 1
            assert "password" in client.stderr.lower()
        finally:
            client.kill()
    finally:
        host.kill()


def test_the_host_notices_when_the_client_vanishes(handshake: str) -> None:
    host = Pong("--host", "alice", "--headless", "--bot", *common(handshake))
    client: Pong | None = None
    try:
        host.wait_for("Waiting for a player", timeout=20)
        client = Pong("--join", "alice", "--as", "bob", "--headless", "--bot", *common(handshake))
        host.wait_for("playing against bob", timeout=30)
        time.sleep(1.0)
        os.kill(client.proc.pid, signal.SIGKILL)  # no goodbye at all
        status, out = host.finish(timeout=30)
        assert status == 3, host.stderr
        assert out == ""
        assert "bob" in host.stderr
    finally:
        host.kill()
        if client is not None:
            client.kill()


def _processes_joining(name: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            args = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"games.pong" in args and b"--join" in args and name.encode() in args:
            found.append(int(entry.name))
    return found


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc to look for leftovers")
def test_the_demo_plays_a_bot_process_and_cleans_up(handshake: str) -> None:
    # The window is SDL's dummy one and a bot plays it; --timeout closes it.
    demo = Pong("--demo", "--bot", "--timeout", "8", "--points", "2")
    try:
        status, _ = demo.finish(timeout=60)
        assert status == 0, demo.stderr
        name = f"player-{demo.proc.pid % 10000:04d}"
        assert f"playing against {name}" in demo.stderr  # the bot process said so
        time.sleep(0.5)
        assert _processes_joining(name) == []
    finally:
        demo.kill()
