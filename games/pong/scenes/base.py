"""The scene contract and what every scene may reach (the `Context`)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import pygame

from games.pong.cli import DEFAULT_HANDSHAKE, Options, format_address
from games.pong.link import PeerLike
from games.pong.sound import SoundBoard

if TYPE_CHECKING:
    from games.pong.lobby import ConnectRequest
    from games.pong.session import MatchSession

log = logging.getLogger(__name__)


@dataclass
class Settings:
    """What the player typed in the menu; kept across scenes."""

    name: str
    handshake: str = format_address(DEFAULT_HANDSHAKE)
    password: str = ""
    join_name: str = ""
    show_stats: bool = False


class Scene:
    """One screen. The app calls, every frame: handle_event (input), handle_net
    (engine events), update, draw; and enter / exit around a switch."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def enter(self, now: float) -> None:
        """Became the current scene."""

    def exit(self) -> None:
        """Stops being the current scene."""

    def handle_event(self, event: pygame.event.Event, now: float) -> None:
        """A keyboard or mouse event (engine events never come here)."""

    def handle_net(self, event: pygame.event.Event, now: float) -> None:
        """An event the engine returned from `Peer.tick()`."""

    def update(self, now: float) -> None:
        """Advance this scene's logic."""

    def draw(self, surface: pygame.Surface, now: float) -> None:
        """Draw; must not change anything the scene's logic reads."""


class DemoLike(Protocol):
    """What the local demo runtime offers scenes (see `games.pong.demo`)."""

    @property
    def handshake(self) -> tuple[str, int]:
        """The local handshake server's address."""

    def spawn_bot(self, server_name: str) -> None:
        """Start the bot opponent process, joining `server_name`."""

    def bot_failed(self) -> str | None:
        """Why the bot process is gone, or None while it runs (or before it starts)."""

    def stop(self) -> None:
        """Stop the bot process and the handshake server."""


class Navigation(Protocol):
    """Where a scene can go. The app provides it (``scenes.navigator``), so scenes
    never import each other."""

    def menu(self) -> None:
        """Close whatever session there is and show the menu."""

    def browse(self) -> None: ...

    def connect(self, request: ConnectRequest) -> None: ...

    def demo(self, name: str) -> None:
        """Host ``name`` on a local handshake server against a bot process."""

    def play(self, session: MatchSession) -> None: ...

    def game_over(self, session: MatchSession) -> None: ...

    def message(self, title: str, text: str) -> None:
        """Show a message, then the menu."""


@dataclass
class Context:
    """Shared by the scenes of one app run."""

    opts: Options
    settings: Settings
    sounds: SoundBoard
    make_peer: Callable[[], PeerLike]
    make_demo: Callable[[], DemoLike]
    peer: PeerLike | None = None
    demo: DemoLike | None = None
    running: bool = True
    fps: float = 0.0  # measured by the app, shown by the overlay
    next_scene: Scene | None = field(default=None, repr=False)
    nav: Navigation | None = field(default=None, repr=False)

    @property
    def go(self) -> Navigation:
        """Scene changes (set by the app)."""
        assert self.nav is not None, "the app sets Context.nav"
        return self.nav

    def switch(self, scene: Scene) -> None:
        """Change scene at the end of this frame."""
        self.next_scene = scene

    def quit(self) -> None:
        self.running = False

    def open_peer(self) -> PeerLike:
        """A fresh peer for a new session (the old one is closed)."""
        self.close_peer()
        self.peer = self.make_peer()
        return self.peer

    def close_peer(self) -> None:
        if self.peer is None:
            return
        peer, self.peer = self.peer, None
        try:
            peer.quit_connection()
            peer.tick()
        except Exception:  # leaving must always work
            log.exception("quitting the session")
        finally:
            peer.close()

    def start_demo(self) -> DemoLike:
        self.stop_demo()
        self.demo = self.make_demo()
        return self.demo

    def stop_demo(self) -> None:
        if self.demo is not None:
            demo, self.demo = self.demo, None
            demo.stop()
