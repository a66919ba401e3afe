"""The scene graph in one place: the app gives every scene this as ``ctx.go``."""

from __future__ import annotations

from games.pong.lobby import ConnectRequest
from games.pong.scenes.base import Context
from games.pong.scenes.browse import BrowseScene
from games.pong.scenes.connecting import ConnectingScene
from games.pong.scenes.menu import MenuScene
from games.pong.scenes.message import MessageScene
from games.pong.scenes.play import PlayScene
from games.pong.scenes.win import WinScene
from games.pong.session import MatchSession


class Navigator:
    """Implements ``scenes.base.Navigation`` by switching the context's scene."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def menu(self) -> None:
        self.ctx.close_peer()
        self.ctx.stop_demo()
        self.ctx.switch(MenuScene(self.ctx))

    def browse(self) -> None:
        self.ctx.switch(BrowseScene(self.ctx))

    def connect(self, request: ConnectRequest) -> None:
        self.ctx.switch(ConnectingScene(self.ctx, request))

    def demo(self, name: str) -> None:
        self.ctx.switch(ConnectingScene.demo(self.ctx, name))

    def play(self, session: MatchSession) -> None:
        self.ctx.switch(PlayScene(self.ctx, session))

    def game_over(self, session: MatchSession) -> None:
        self.ctx.switch(WinScene(self.ctx, session))

    def message(self, title: str, text: str) -> None:
        self.ctx.switch(MessageScene(self.ctx, title, text))
