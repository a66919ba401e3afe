"""The command line (the contract in API.md) turned into an `Options` value."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from dataclasses import dataclass

from framework.protocol.addresses import Address as Address  # noqa: PLC0414 - re-exported
from framework.protocol.crypto import normalize_fingerprint

DEFAULT_HANDSHAKE = ("127.0.0.1", 5160)
DEFAULT_LOCAL = ("0.0.0.0", 0)
DEFAULT_POINTS = 11
DEFAULT_HEADLESS_TIMEOUT = 900.0  # s; a headless run must end even if nobody comes


EXIT_OK = 0
EXIT_CANNOT_CONNECT = 1
EXIT_USAGE = 2  # argparse's own
EXIT_OPPONENT_LOST = 3
EXIT_TIMEOUT = 4


def parse_address(text: str) -> Address:
    """'host:port' or '[v6]:port' -> (host, port); raises ValueError."""
    host, sep, port_text = text.strip().rpartition(":")
    if not sep or not host:
        raise ValueError(f"{text!r} is not HOST:PORT")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError(f"{port_text!r} is not a port number") from None
    if not 0 <= port <= 65535:
        raise ValueError(f"port {port} is out of range")
    return host, port


def parse_handshake(text: str) -> tuple[Address, str | None]:
    """'host:port' or 'host:port#FINGERPRINT' -> (address, fingerprint or None): the
    handshake server, and the key fingerprint to pin it to. Raises ValueError."""
    address, sep, key = text.strip().partition("#")
    return parse_address(address), normalize_fingerprint(key) if sep else None


def format_address(address: Address) -> str:
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass(frozen=True)
class Options:
    mode: str  # "menu", "demo", "host" or "join"
    server_name: str | None = None  # the game to host or join
    player_name: str | None = None  # --as
    handshake: Address = DEFAULT_HANDSHAKE
    #: Fingerprint of the handshake server's key to insist on (None: trust the first seen).
    handshake_key: str | None = None
    password: str | None = None
    local_address: Address = DEFAULT_LOCAL
    #: No handshake server: host on the local network, or find the game there and join.
    lan: bool = False
    bot: bool = False
    headless: bool = False
    points: int = DEFAULT_POINTS
    seed: int | None = None
    timeout: float | None = None
    rematch: bool = False
    sim_latency: float = 0.0
    sim_jitter: float = 0.0
    sim_loss: float = 0.0
    verbose: int = 0

    @property
    def user_name(self) -> str:
        """This player's name in the session."""
        if self.mode == "host" and self.server_name:
            return self.server_name
        return self.player_name or default_player_name()


def default_player_name() -> str:
    return f"player-{os.getpid() % 10000:04d}"


def _address_arg(text: str) -> Address:
    try:
        return parse_address(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _handshake_arg(text: str) -> tuple[Address, str | None]:
    try:
        return parse_handshake(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _key_arg(text: str) -> str:
    try:
        return normalize_fingerprint(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError("must be between 0 and 1")
    return value


def _seconds(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must not be negative")
    return value


def _points(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 99:
        raise argparse.ArgumentTypeError("must be between 1 and 99")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m games.pong",
        description="Networked Pong over the pygame-p2p engine. Without options: the menu.",
        epilog=(
            "Headless runs print one JSON line when the game ends, e.g. "
            '{"result": "win", "score": [11, 7], "opponent": "bob"}, and exit 0. '
            "Exit codes: 1 could not connect, 2 bad usage, 3 opponent lost, 4 timed out."
        ),
    )
    what = p.add_mutually_exclusive_group()
    what.add_argument(
        "--demo",
        action="store_true",
        help="start a local handshake server and a bot opponent process, and play",
    )
    what.add_argument("--host", metavar="NAME", help="host a game under this name")
    what.add_argument("--join", metavar="NAME", help="join the game hosted under this name")
    p.add_argument("--as", dest="player", metavar="PLAYER", help="your name when joining")
    p.add_argument(
        "--handshake",
        type=_handshake_arg,
        default=(DEFAULT_HANDSHAKE, None),
        metavar="HOST:PORT[#KEY]",
        help=f"handshake server (default {format_address(DEFAULT_HANDSHAKE)}), optionally "
        "with the fingerprint of its key after a #",
    )
    p.add_argument(
        "--handshake-key",
        type=_key_arg,
        metavar="FINGERPRINT",
        help="the handshake server's key fingerprint (what `python -m server` prints): "
        "refuse any other server",
    )
    p.add_argument("--password", metavar="PW", help="password of the game")
    p.add_argument(
        "--lan",
        action="store_true",
        help="play on the local network with no handshake server: --host is found there "
        "(broadcast discovery), --join looks for the game by name there and joins it",
    )
    p.add_argument(
        "--local-address",
        type=_address_arg,
        default=DEFAULT_LOCAL,
        metavar="HOST:PORT",
        help="address to bind (default 0.0.0.0:0, any free port)",
    )
    p.add_argument("--bot", action="store_true", help="let the computer play this side")
    p.add_argument("--headless", action="store_true", help="no window (needs --host or --join)")
    p.add_argument(
        "--points",
        type=_points,
        default=DEFAULT_POINTS,
        metavar="N",
        help="points to win (host only; default %(default)s)",
    )
    p.add_argument("--seed", type=int, help="seed of the serves and the bot (default: random)")
    p.add_argument(
        "--timeout",
        type=_seconds,
        metavar="SECONDS",
        help=f"give up after this long (headless default {DEFAULT_HEADLESS_TIMEOUT:.0f})",
    )
    p.add_argument(
        "--rematch",
        action="store_true",
        help="headless: accept rematches until the opponent leaves (one JSON line per game)",
    )
    sim = p.add_argument_group("network simulator (applied to what this process sends)")
    sim.add_argument("--sim-latency", type=_seconds, default=0.0, metavar="SECONDS")
    sim.add_argument("--sim-jitter", type=_seconds, default=0.0, metavar="SECONDS")
    sim.add_argument("--sim-loss", type=_fraction, default=0.0, metavar="FRACTION")
    p.add_argument("-v", "--verbose", action="count", default=0, help="log more (-vv: debug)")
    return p


def parse_args(argv: Sequence[str] | None = None) -> Options:
    parser = build_parser()
    ns = parser.parse_args(argv)
    mode = "demo" if ns.demo else "host" if ns.host else "join" if ns.join else "menu"
    if ns.headless and mode not in ("host", "join"):
        parser.error("--headless needs --host NAME or --join NAME")
    if ns.lan and mode not in ("host", "join"):
        parser.error("--lan needs --host NAME or --join NAME (the menu's Browse lists LAN "
                     "games by itself)")
    if ns.player and mode != "join":
        parser.error("--as is for --join")
    for name in (ns.host, ns.join, ns.player):
        if name is not None and not name.strip():
            parser.error("names must not be empty")
    timeout = ns.timeout
    if timeout is None and ns.headless:
        timeout = DEFAULT_HEADLESS_TIMEOUT
    return Options(
        mode=mode,
        server_name=ns.host or ns.join,
        player_name=ns.player,
        handshake=ns.handshake[0],
        handshake_key=ns.handshake_key or ns.handshake[1],
        password=ns.password,
        local_address=ns.local_address,
        lan=ns.lan,
        bot=ns.bot,
        headless=ns.headless,
        points=ns.points,
        seed=ns.seed,
        timeout=timeout,
        rematch=ns.rematch,
        sim_latency=ns.sim_latency,
        sim_jitter=ns.sim_jitter,
        sim_loss=ns.sim_loss,
        verbose=ns.verbose,
    )
