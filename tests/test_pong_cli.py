"""The command line contract, and how connection troubles are put into words."""

from __future__ import annotations

from typing import Any

import pygame
import pytest

from framework import events
from games.pong.cli import (
    DEFAULT_HANDSHAKE,
    DEFAULT_HEADLESS_TIMEOUT,
    format_address,
    parse_address,
    parse_args,
)
from games.pong.lobby import (
    JOIN_TIMEOUT,
    REGISTER_TIMEOUT,
    Connector,
    ConnectRequest,
    Role,
    Stage,
    explain_error,
)


def test_no_options_is_the_menu() -> None:
    opts = parse_args([])
    assert opts.mode == "menu"
    assert opts.handshake == DEFAULT_HANDSHAKE == ("127.0.0.1", 5160)
    assert opts.timeout is None


def test_the_documented_command_lines_parse() -> None:
    assert parse_args(["--demo"]).mode == "demo"
    host = parse_args(["--host", "alice", "--handshake", "10.0.0.1:6000", "--password", "pw"])
    assert (host.mode, host.server_name, host.user_name) == ("host", "alice", "alice")
    assert (host.handshake, host.password) == (("10.0.0.1", 6000), "pw")
    join = parse_args(
        [
            "--join",
            "alice",
            "--as",
            "bob",
            "--bot",
            "--headless",
            "--points",
            "3",
            "--local-address",
            "127.0.0.1:0",
            "--seed",
            "9",
            "--timeout",
            "60",
            "--sim-latency",
            "0.05",
            "--sim-loss",
            "0.05",
        ]
    )
    assert (join.mode, join.server_name, join.user_name) == ("join", "alice", "bob")
    assert join.bot and join.headless
    assert (join.points, join.seed, join.timeout) == (3, 9, 60.0)
    assert join.local_address == ("127.0.0.1", 0)
    assert (join.sim_latency, join.sim_loss) == (0.05, 0.05)


def test_a_headless_run_always_has_a_timeout() -> None:
    assert parse_args(["--host", "a", "--headless"]).timeout == DEFAULT_HEADLESS_TIMEOUT


@pytest.mark.parametrize(
    "argv",
    [
        ["--headless"],
        ["--demo", "--headless"],
        ["--host", "a", "--join", "b"],
        ["--host", "a", "--as", "b"],
        ["--join", "a", "--handshake", "nowhere"],
        ["--join", "a", "--points", "0"],
        ["--join", "a", "--sim-loss", "2"],
        ["--join", " "],
    ],
)
def test_bad_command_lines_are_refused(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        parse_args(argv)
    assert exc.value.code == 2
    assert capsys.readouterr().err


def test_addresses_parse_and_print_back() -> None:
    assert parse_address("127.0.0.1:5160") == ("127.0.0.1", 5160)
    assert parse_address("[::1]:80") == ("::1", 80)
    assert format_address(("::1", 80)) == "[::1]:80"
    for bad in ("5160", ":80", "host:port", "host:70000"):
        with pytest.raises(ValueError):
            parse_address(bad)


REQUEST = ConnectRequest(Role.CLIENT, "bob", "alice", ("127.0.0.1", 5160), ("127.0.0.1", 0))


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("wrong password", "Wrong password for 'alice'"),
        ("'alice' needs a password", "'alice' needs a password"),
        ("could not join: handshake server 1.2.3.4:5 did not answer", "does not answer"),
        ("no server named alice", "No game called 'alice'"),
        ("server not found", "No game called 'alice'"),
        ("handshake server unreachable (request expired)", "does not answer"),
        ("something else", "something else"),
    ],
)
def test_engine_errors_become_plain_words(message: str, expected: str) -> None:
    assert expected in explain_error(message, REQUEST)


class QuietPeer:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def init_server(self, *args: Any, **kwargs: Any) -> None:
        self.calls.append("init_server")

    def init_client(self, *args: Any, **kwargs: Any) -> None:
        self.calls.append("init_client")

    def get_server_name(self) -> str | None:
        return "alice"


def test_a_silent_handshake_server_fails_the_connection_in_time() -> None:
    connector = Connector(QuietPeer(), REQUEST, now=100.0)  # type: ignore[arg-type]
    connector.start()
    assert connector.stage == Stage.JOINING
    connector.update(100.0 + JOIN_TIMEOUT - 1)
    assert not connector.failed
    connector.update(100.0 + JOIN_TIMEOUT + 1)
    assert connector.failed and "does not answer" in connector.error

    host = ConnectRequest(Role.HOST, "alice", "alice", ("127.0.0.1", 5160), ("127.0.0.1", 0))
    connector = Connector(QuietPeer(), host, now=0.0)  # type: ignore[arg-type]
    connector.start()
    connector.update(REGISTER_TIMEOUT + 1)
    assert connector.failed


def test_an_unreachable_peer_is_named() -> None:
    connector = Connector(QuietPeer(), REQUEST, now=0.0)  # type: ignore[arg-type]
    connector.start()
    connector.handle(pygame.event.Event(events.PEER_CONNECTION_FAILED, peer_name="alice"))
    assert connector.failed
    assert "Could not reach 'alice' (peer unreachable)" in connector.error


def test_the_client_learns_its_opponent_on_confirmation() -> None:
    connector = Connector(QuietPeer(), REQUEST, now=0.0)  # type: ignore[arg-type]
    connector.start()
    connector.handle(pygame.event.Event(events.CONFIRMED_AS_CLIENT, server_address=("h", 1)))
    assert connector.connected and connector.opponent == "alice"


def test_the_handshake_key_can_be_pinned_two_ways() -> None:
    fp = "3F9A2C4177D091BE5E06C2AA0B138F4D"
    pinned = "3f9a-2c41-77d0-91be-5e06-c2aa-0b13-8f4d"
    assert parse_args(["--join", "g", "--handshake-key", fp]).handshake_key == pinned
    opts = parse_args(["--join", "g", "--handshake", f"203.0.113.5:5160#{pinned}"])
    assert opts.handshake == ("203.0.113.5", 5160) and opts.handshake_key == pinned
    assert parse_args(["--join", "g"]).handshake_key is None
    with pytest.raises(SystemExit):
        parse_args(["--join", "g", "--handshake-key", "not-a-key"])


class LanPeer(QuietPeer):
    """Records the LAN calls too, with their arguments."""

    def __init__(self) -> None:
        super().__init__()
        self.args: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    def init_server(self, *args: Any, **kwargs: Any) -> None:
        super().init_server()
        self.args.append(("init_server", args, kwargs))

    def init_client(self, *args: Any, **kwargs: Any) -> None:
        super().init_client()
        self.args.append(("init_client", args, kwargs))

    def request_lan_server_list(self) -> None:
        self.calls.append("request_lan_server_list")


def test_lan_flag_hosts_with_no_handshake_server() -> None:
    opts = parse_args(["--host", "den", "--lan", "--password", "pw"])
    assert opts.lan
    peer = LanPeer()
    connector = Connector(peer, ConnectRequest.from_options(opts), now=0.0)  # type: ignore[arg-type]
    connector.start()
    assert peer.args[0][1][0] is None and peer.args[0][1][2:] == ("den", "pw")
    connector.handle(pygame.event.Event(events.CONFIRMED_AS_SERVER, handshake_address=None))
    assert connector.stage == Stage.WAITING and "local network" in connector.status()
    with pytest.raises(SystemExit):
        parse_args(["--lan"])


def test_lan_join_looks_for_the_game_by_name_then_joins_its_address() -> None:
    opts = parse_args(["--join", "den", "--as", "bob", "--lan"])
    peer = LanPeer()
    connector = Connector(peer, ConnectRequest.from_options(opts), now=0.0)  # type: ignore[arg-type]
    connector.start()
    assert connector.stage == Stage.SEARCHING and peer.calls == ["request_lan_server_list"]
    connector.update(0.5)
    assert peer.calls == ["request_lan_server_list"]
    connector.update(2.0)  # not found yet: asked again
    assert peer.calls == ["request_lan_server_list"] * 2
    other = {"name": "other", "password_required": False, "address": ("10.0.0.9", 1),
             "lan": True}
    connector.handle(pygame.event.Event(events.RECEIVED_SERVER_LIST, server_names=["other"],
                                        servers=[other], lan=True))
    assert connector.stage == Stage.SEARCHING
    den = {"name": "den", "password_required": False, "address": ("10.0.0.2", 4000),
           "lan": True}
    connector.handle(pygame.event.Event(events.RECEIVED_SERVER_LIST, server_names=["den"],
                                        servers=[other, den], lan=True))
    assert connector.stage == Stage.JOINING
    name, args, kwargs = peer.args[-1]
    assert name == "init_client" and args[0] is None and args[2:4] == ("bob", "den")
    assert kwargs["host_address"] == ("10.0.0.2", 4000)
    connector.handle(pygame.event.Event(events.CONFIRMED_AS_CLIENT, server_address=("h", 1)))
    assert connector.connected


def test_lan_join_gives_up_when_the_game_is_nowhere() -> None:
    opts = parse_args(["--join", "den", "--lan"])
    connector = Connector(LanPeer(), ConnectRequest.from_options(opts), now=0.0)  # type: ignore[arg-type]
    connector.start()
    connector.update(JOIN_TIMEOUT + 1)
    assert connector.failed and "local network" in connector.error


def test_a_host_whose_handshake_server_is_silent_hosts_on_the_lan() -> None:
    peer = LanPeer()
    host = ConnectRequest(Role.HOST, "alice", "alice", ("127.0.0.1", 5160), ("127.0.0.1", 0))
    connector = Connector(peer, host, now=0.0)  # type: ignore[arg-type]
    connector.start()
    connector.handle(pygame.event.Event(
        events.ERROR, message="registration failed: handshake server 127.0.0.1:5160 did not "
        "answer"))
    assert not connector.failed
    connector.handle(pygame.event.Event(events.SESSION_TERMINATED, reason="registration"))
    assert not connector.failed and peer.args[-1][1][0] is None
    assert "hosting on the local network only" in connector.note
    connector.handle(pygame.event.Event(events.CONFIRMED_AS_SERVER, handshake_address=None))
    assert connector.stage == Stage.WAITING and "local network" in connector.status()
    # A refusal is not silence: that still fails.
    refused = Connector(LanPeer(), host, now=0.0)  # type: ignore[arg-type]
    refused.start()
    refused.handle(pygame.event.Event(
        events.ERROR, message="registration refused by the handshake server: name taken"))
    assert refused.failed
