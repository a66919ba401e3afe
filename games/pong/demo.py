"""The local demo: an in-process handshake server and a bot opponent in its own process."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

from games.pong.cli import format_address
from server import HandshakeServer

log = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parents[2]
BOT_NAME = "Bot"
BOT_TIMEOUT = 4 * 3600.0  # s; the bot also leaves 5 s after its opponent goes silent


def bot_command(server_name: str, handshake: tuple[str, int]) -> list[str]:
    """The command line of a headless bot joining `server_name` (and staying for rematches)."""
    name = BOT_NAME if server_name != BOT_NAME else f"{BOT_NAME}-2"
    return [
        sys.executable,
        "-m",
        "games.pong",
        "--join",
        server_name,
        "--as",
        name,
        "--bot",
        "--headless",
        "--rematch",
        "--handshake",
        format_address(handshake),
        "--local-address",
        "127.0.0.1:0",
        "--timeout",
        f"{BOT_TIMEOUT:.0f}",
    ]


class LocalDemo:
    """Owns the local handshake server and the bot process; `stop()` ends both."""

    def __init__(self) -> None:
        self._server = HandshakeServer(host="127.0.0.1", port=0)
        self._server.start()
        self._bot: subprocess.Popen[bytes] | None = None
        log.info("demo handshake server on %s", format_address(self.handshake))

    @property
    def handshake(self) -> tuple[str, int]:
        host, port = self._server.address[:2]
        return (str(host), int(port))

    def spawn_bot(self, server_name: str) -> None:
        env = dict(os.environ, SDL_VIDEODRIVER="dummy", SDL_AUDIODRIVER="dummy")
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH", "")) if p
        )
        self._bot = subprocess.Popen(
            bot_command(server_name, self.handshake),
            cwd=PROJECT_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
        )
        log.info("bot process %d started", self._bot.pid)

    def bot_failed(self) -> str | None:
        if self._bot is None:
            return None
        code = self._bot.poll()
        if code is None:
            return None
        return f"The bot process ended (exit status {code})."

    def stop(self) -> None:
        bot, self._bot = self._bot, None
        if bot is not None and bot.poll() is None:
            bot.terminate()
            try:
                bot.wait(timeout=3)
            except subprocess.TimeoutExpired:
                bot.kill()
                bot.wait()
        self._server.stop()
