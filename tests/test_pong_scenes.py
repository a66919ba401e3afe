"""Menus, browser, connecting, play and game-over scenes against a fake peer (no sockets)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pygame
import pytest

from framework import Delivery, events
from framework.rollback.wire import TAG_INPUT, decode_input, tag_of
from games.pong import app
from games.pong.cli import parse_args
from games.pong.lobby import ConnectRequest, Role, Stage
from games.pong.match import ROLLBACK_CHANNEL, Status
from games.pong.net import decode_event
from games.pong.scenes.base import Context, Scene
from games.pong.scenes.browse import BrowseScene
from games.pong.scenes.connecting import ConnectingScene
from games.pong.scenes.menu import MenuScene
from games.pong.scenes.message import MessageScene
from games.pong.scenes.play import PlayScene
from games.pong.scenes.win import WinScene
from games.pong.sim import REMATCH_BIT, Intent, decode_intent
from games.pong.sound import SoundBoard


class FakePeer:
    """Records what the game asks of the engine; returns the events a test queues."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.sent: list[tuple[str, Any, Any, int]] = []
        self.queued: list[pygame.event.Event] = []
        self.closed = False

    def init_server(self, *args: Any, **kwargs: Any) -> None:
        self.calls.append(("init_server", args))

    def init_client(self, *args: Any, **kwargs: Any) -> None:
        self.calls.append(("init_client", args))

    def request_server_list(self, *args: Any, **kwargs: Any) -> None:
        self.calls.append(("request_server_list", args))

    def request_lan_server_list(self) -> None:
        self.calls.append(("request_lan_server_list", ()))

    def send(self, peer_name: str, message: Any, delivery: Any = None, channel: int = 0) -> None:
        self.sent.append((peer_name, message, delivery, channel))

    def drop_peer(self, peer_name: str) -> None:
        self.calls.append(("drop_peer", (peer_name,)))

    def get_stats(self, peer_name: str) -> None:
        return None

    def get_server_name(self) -> str | None:
        return "alice"

    def tick(self, now: float | None = None) -> list[pygame.event.Event]:
        out, self.queued = self.queued, []
        return out

    def quit_connection(self) -> None:
        self.calls.append(("quit_connection", ()))

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def display() -> Iterator[pygame.Surface]:
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
    pygame.display.init()
    pygame.font.init()
    try:
        yield pygame.display.set_mode((800, 600))
    finally:
        pygame.display.quit()


@pytest.fixture
def ctx(display: pygame.Surface) -> Context:
    context = app.make_context(parse_args(["--seed", "3"]), SoundBoard(enabled=False))
    context.settings.name = "alice"
    peers: list[FakePeer] = []

    def make_peer() -> FakePeer:
        peers.append(FakePeer())
        return peers[-1]

    context.make_peer = make_peer  # type: ignore[assignment]
    context.peers = peers  # type: ignore[attr-defined]
    return context


def key(k: int, mod: int = 0) -> pygame.event.Event:
    return pygame.event.Event(pygame.KEYDOWN, key=k, mod=mod, unicode="")


def typed(text: str) -> pygame.event.Event:
    return pygame.event.Event(pygame.TEXTINPUT, text=text)


def click(pos: tuple[int, int]) -> pygame.event.Event:
    return pygame.event.Event(pygame.MOUSEBUTTONDOWN, button=1, pos=pos)


def switch(ctx: Context, surface: pygame.Surface, now: float = 0.0) -> Scene:
    """Apply the pending scene switch as the app would, and draw it once."""
    scene = ctx.next_scene
    assert scene is not None
    ctx.next_scene = None
    scene.enter(now)
    scene.draw(surface, now)
    return scene


def test_the_menu_takes_typing_and_hosts_on_click(ctx: Context, display: pygame.Surface) -> None:
    menu = MenuScene(ctx)
    menu.enter(0.0)
    menu.handle_event(key(pygame.K_BACKSPACE, pygame.KMOD_CTRL), 0.0)  # clear the name
    menu.handle_event(typed("carol"), 0.0)
    host_button = menu.form.widgets[4]
    menu.handle_event(click(host_button.rect.center), 0.0)
    scene = switch(ctx, display)
    assert isinstance(scene, ConnectingScene)
    assert scene.request.role == Role.HOST
    assert scene.request.server_name == "carol"
    assert scene.request.handshake == ("127.0.0.1", 5160)
    peer = ctx.peers[-1]  # type: ignore[attr-defined]
    assert peer.calls[0] == ("init_server", (("127.0.0.1", 5160), ("0.0.0.0", 0), "carol", None))


def test_the_menu_explains_what_is_missing(ctx: Context, display: pygame.Surface) -> None:
    menu = MenuScene(ctx)
    menu.act("join")
    assert "name of the game" in menu.error
    assert ctx.next_scene is None
    menu.form.field("Handshake server").value = "nowhere"
    menu._save()  # as a button press would
    menu.act("host")
    assert "Handshake server" in menu.error
    menu.draw(display, 0.0)


def test_keyboard_focus_moves_with_tab_and_enter_presses_buttons(ctx: Context) -> None:
    menu = MenuScene(ctx)
    for _ in range(4):
        menu.handle_event(key(pygame.K_TAB), 0.0)  # past the four fields
    assert menu.form.focus == 4
    menu.handle_event(key(pygame.K_DOWN), 0.0)  # "Join"
    menu.handle_event(key(pygame.K_DOWN), 0.0)  # "Browse servers"
    menu.handle_event(key(pygame.K_RETURN), 0.0)
    assert isinstance(ctx.next_scene, BrowseScene)


def connect_as_host(ctx: Context, display: pygame.Surface) -> tuple[ConnectingScene, FakePeer]:
    request = ConnectRequest(Role.HOST, "alice", "alice", ("127.0.0.1", 5160), ("127.0.0.1", 0))
    scene = ConnectingScene(ctx, request)
    scene.enter(0.0)
    peer = ctx.peers[-1]  # type: ignore[attr-defined]
    return scene, peer


def test_connecting_shows_progress_and_starts_the_match(
    ctx: Context, display: pygame.Surface
) -> None:
    scene, _ = connect_as_host(ctx, display)
    assert scene.connector is not None
    assert "Registering" in scene.connector.status()
    scene.handle_net(
        pygame.event.Event(events.CONFIRMED_AS_SERVER, handshake_address=("127.0.0.1", 5160)), 0.5
    )
    assert scene.connector.stage == Stage.WAITING
    assert "Waiting for a player" in scene.connector.status()
    scene.draw(display, 1.0)
    scene.handle_net(pygame.event.Event(events.CLIENT_CONFIRMED, new_peer="bob"), 2.0)
    # An event in the same frame, after the connection, reaches the match.
    scene.handle_net(
        pygame.event.Event(
            events.RECEIVED_RELIABLE_MESSAGE_FROM_PEER,
            packet_data={"from": "bob", "to": "alice", "message": ["bye"], "message_id": 1},
        ),
        2.0,
    )
    play = switch(ctx, display, 2.0)
    assert isinstance(play, PlayScene)
    assert play.session.match.opponent == "bob"
    assert play.session.match.status == Status.LOST


def test_a_connection_error_is_shown_and_esc_goes_back(
    ctx: Context, display: pygame.Surface
) -> None:
    scene, peer = connect_as_host(ctx, display)
    scene.handle_net(pygame.event.Event(events.ERROR, message="Wrong password"), 1.0)
    assert scene.failed
    assert scene.connector is not None and "Wrong password" in scene.connector.error
    scene.draw(display, 1.0)
    scene.handle_event(key(pygame.K_ESCAPE), 1.0)
    assert isinstance(switch(ctx, display), MenuScene)
    assert peer.closed


def test_the_browser_lists_servers_with_locks_and_asks_for_passwords(
    ctx: Context, display: pygame.Surface
) -> None:
    browse = BrowseScene(ctx)
    browse.enter(0.0)
    peer = ctx.peers[-1]  # type: ignore[attr-defined]
    assert peer.calls == [("request_lan_server_list", ()),
                          ("request_server_list", (("127.0.0.1", 5160),))]
    servers = [
        {"name": "zed", "password_required": True},
        {"name": "bob", "password_required": False},
    ]
    listed = pygame.event.Event(
        events.RECEIVED_SERVER_LIST, server_names=["zed", "bob"], servers=servers
    )
    browse.handle_net(listed, 0.2)
    assert [(e.name, e.locked) for e in browse.entries] == [("bob", False), ("zed", True)]
    browse.draw(display, 0.3)
    browse.handle_event(key(pygame.K_DOWN), 0.3)
    browse.handle_event(key(pygame.K_RETURN), 0.3)
    assert "needs a password" in browse.error
    assert ctx.next_scene is None
    browse.form.field("Password").value = "s3cret"
    browse.handle_event(key(pygame.K_RETURN), 0.4)
    scene = switch(ctx, display)
    assert isinstance(scene, ConnectingScene)
    assert (scene.request.role, scene.request.server_name) == (Role.CLIENT, "zed")
    assert scene.request.password == "s3cret"
    browse.handle_event(key(pygame.K_F5), 0.5)  # refreshing asks again
    assert ctx.peers[-1].calls[-1][0] in ("request_server_list", "init_client")  # type: ignore[attr-defined]


def test_the_browser_lists_lan_games_with_a_tag_and_joins_them_directly(
    ctx: Context, display: pygame.Surface
) -> None:
    browse = BrowseScene(ctx)
    browse.enter(0.0)
    peer = ctx.peers[-1]  # type: ignore[attr-defined]
    internet = pygame.event.Event(
        events.RECEIVED_SERVER_LIST, server_names=["bob"],
        servers=[{"name": "bob", "password_required": False}],
    )
    lan = pygame.event.Event(
        events.RECEIVED_SERVER_LIST, server_names=["bob", "den"], lan=True,
        servers=[
            {"name": "bob", "password_required": False, "address": ("10.0.0.2", 4000),
             "lan": True},
            {"name": "den", "password_required": True, "address": ("10.0.0.3", 4001),
             "lan": True},
            {"name": "junk", "password_required": False, "address": "nowhere", "lan": True},
        ],
    )
    browse.handle_net(lan, 1.0)
    browse.handle_net(internet, 1.1)
    assert [(e.name, e.lan, e.address) for e in browse.entries] == [
        ("bob", False, None), ("bob", True, ("10.0.0.2", 4000)),
        ("den", True, ("10.0.0.3", 4001))]
    # An empty LAN answer later removes the LAN games, not the others.
    browse.draw(display, 1.2)
    browse.handle_event(key(pygame.K_DOWN), 1.2)
    browse.handle_event(key(pygame.K_RETURN), 1.2)
    scene = switch(ctx, display)
    assert isinstance(scene, ConnectingScene)
    assert scene.request.lan and scene.request.host_address == ("10.0.0.2", 4000)
    assert peer.calls[0] == ("request_lan_server_list", ())
    browse.handle_net(pygame.event.Event(events.RECEIVED_SERVER_LIST, server_names=[],
                                         servers=[], lan=True), 2.0)
    assert [(e.name, e.lan) for e in browse.entries] == [("bob", False)]


def test_the_browser_says_when_the_handshake_server_is_silent(ctx: Context) -> None:
    browse = BrowseScene(ctx)
    browse.enter(0.0)
    browse.update(10.0)
    assert "does not answer" in browse.error


def start_play(ctx: Context, display: pygame.Surface) -> tuple[PlayScene, FakePeer]:
    scene, peer = connect_as_host(ctx, display)
    scene.handle_net(pygame.event.Event(events.CONFIRMED_AS_SERVER, handshake_address=("h", 1)), 0)
    scene.handle_net(pygame.event.Event(events.CLIENT_CONFIRMED, new_peer="bob"), 0.0)
    play = switch(ctx, display)
    assert isinstance(play, PlayScene)
    return play, peer


def test_keys_become_paddle_intents_and_f3_toggles_the_overlay(
    ctx: Context, display: pygame.Surface
) -> None:
    play, peer = start_play(ctx, display)
    view = play.session.match.view()
    assert play.session.controller(view) == Intent.STAY
    play.handle_event(key(pygame.K_w), 0.1)
    assert play.session.controller(view) == Intent.UP
    play.handle_event(pygame.event.Event(pygame.KEYUP, key=pygame.K_w, mod=0), 0.1)
    play.handle_event(key(pygame.K_DOWN), 0.1)
    assert play.session.controller(view) == Intent.DOWN
    assert not ctx.settings.show_stats
    play.handle_event(key(pygame.K_F3), 0.1)
    assert ctx.settings.show_stats
    for t in (0.1, 0.2, 0.3):
        play.update(t)
    play.draw(display, 0.3)
    inputs = sent_inputs(peer)
    assert inputs, "the rollback session sent our inputs"
    assert decode_intent(inputs[-1]) == Intent.DOWN


def sent_inputs(peer: FakePeer) -> bytes:
    """Our inputs as the rollback session sent them (the newest message's)."""
    messages = [
        decode_input(m, 1)
        for _, m, delivery, channel in peer.sent
        if tag_of(m) == TAG_INPUT
        and (delivery, channel) == (Delivery.UNRELIABLE, ROLLBACK_CHANNEL)
    ]
    return messages[-1].inputs if messages else b""


def test_a_third_player_is_turned_away(ctx: Context, display: pygame.Surface) -> None:
    play, peer = start_play(ctx, display)
    play.handle_net(pygame.event.Event(events.CLIENT_CONFIRMED, new_peer="carol"), 0.5)
    assert ("drop_peer", ("carol",)) in peer.calls
    assert play.session.match.opponent == "bob"


def test_escape_says_bye_and_returns_to_the_menu(ctx: Context, display: pygame.Surface) -> None:
    play, peer = start_play(ctx, display)
    play.handle_event(key(pygame.K_ESCAPE), 0.5)
    sent_events = [decode_event(m).kind.value for _, m, _, _ in peer.sent if tag_of(m) is None]
    assert "bye" in sent_events
    assert isinstance(switch(ctx, display), MenuScene)
    assert peer.closed


def test_an_opponent_who_leaves_is_reported_then_the_menu_returns(
    ctx: Context, display: pygame.Surface
) -> None:
    play, peer = start_play(ctx, display)
    play.handle_net(pygame.event.Event(events.PEER_TIMEOUT, peer_name="bob"), 1.0)
    play.update(1.0)
    message = switch(ctx, display, 1.0)
    assert isinstance(message, MessageScene)
    assert "bob timed out" in message.message
    assert peer.closed
    message.update(20.0)
    assert isinstance(ctx.next_scene, MenuScene)


def test_game_over_offers_a_rematch(ctx: Context, display: pygame.Surface) -> None:
    play, peer = start_play(ctx, display)
    match = play.session.match
    match.status = Status.OVER  # as if the last point was just scored
    match.winner, match.final_score = 0, (11, 5)
    play.update(0.1)
    win = switch(ctx, display, 0.1)
    assert isinstance(win, WinScene)
    win.handle_event(key(pygame.K_r), 0.2)
    assert match.i_want_rematch
    win.update(0.25)
    assert sent_inputs(peer)[-1] & REMATCH_BIT  # the wish travels in the input byte
    win.draw(display, 0.2)


def test_the_app_loop_runs_the_menu_and_stops_on_timeout(display: pygame.Surface) -> None:
    opts = parse_args(["--timeout", "0.3"])
    ctx = app.make_context(opts, SoundBoard(enabled=False))
    app.run_frames(ctx, display, app.first_scene(ctx))
    assert not ctx.running
