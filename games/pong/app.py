"""The windowed game: open the window, run the scenes, clean everything up."""

from __future__ import annotations

import logging
import time

import pygame

from games.pong import theme
from games.pong.cli import Options, format_address
from games.pong.demo import LocalDemo
from games.pong.link import make_peer
from games.pong.lobby import ConnectRequest
from games.pong.scenes.base import Context, DemoLike, Scene, Settings
from games.pong.scenes.connecting import ConnectingScene
from games.pong.scenes.menu import MenuScene
from games.pong.scenes.navigator import Navigator
from games.pong.sound import SoundBoard

log = logging.getLogger(__name__)

FPS = 60


def open_window() -> pygame.Surface:
    pygame.display.set_caption("Pong")
    try:
        return pygame.display.set_mode(theme.SCREEN_SIZE, pygame.SCALED)
    except pygame.error:  # no renderer for SCALED (some dummy/virtual displays)
        return pygame.display.set_mode(theme.SCREEN_SIZE)


def make_demo() -> DemoLike:
    return LocalDemo()


def make_context(opts: Options, sounds: SoundBoard) -> Context:
    settings = Settings(
        name=opts.user_name,
        handshake=format_address(opts.handshake)
        + (f"#{opts.handshake_key}" if opts.handshake_key else ""),
        password=opts.password or "",
        join_name=opts.server_name if opts.mode == "join" and opts.server_name else "",
    )
    ctx = Context(
        opts=opts,
        settings=settings,
        sounds=sounds,
        make_peer=lambda: make_peer(opts),
        make_demo=make_demo,
    )
    ctx.nav = Navigator(ctx)
    return ctx


def first_scene(ctx: Context) -> Scene:
    opts = ctx.opts
    if opts.mode == "demo":
        return ConnectingScene.demo(ctx, ctx.settings.name)
    if opts.mode in ("host", "join"):
        return ConnectingScene(ctx, ConnectRequest.from_options(opts))
    return MenuScene(ctx)


def run_frames(ctx: Context, screen: pygame.Surface, scene: Scene) -> None:
    """events -> update -> draw -> flip -> tick, until the player quits."""
    clock = pygame.time.Clock()
    started = time.monotonic()
    scene.enter(started)
    while ctx.running:
        now = time.monotonic()
        # The engine's events come only from tick()'s list (Config(post_events=False)):
        # pygame's queue holds the window's events alone.
        net_events = ctx.peer.tick(now) if ctx.peer is not None else []
        for event in pygame.event.get():
            if event.type == pygame.QUIT:
                ctx.quit()
            else:
                scene.handle_event(event, now)
        for event in net_events:
            scene.handle_net(event, now)
        scene.update(now)
        if ctx.next_scene is not None:
            scene.exit()
            scene, ctx.next_scene = ctx.next_scene, None
            scene.enter(now)
            continue
        scene.draw(screen, now)
        pygame.display.flip()
        clock.tick(FPS)
        ctx.fps = clock.get_fps()
        if ctx.opts.timeout and now - started > ctx.opts.timeout:
            log.warning("--timeout reached, closing")
            ctx.quit()
    scene.exit()


def run(opts: Options) -> int:
    pygame.init()
    ctx: Context | None = None
    try:
        try:
            screen = open_window()
        except pygame.error as exc:
            log.error("cannot open a window (%s); --headless runs without one", exc)
            return 1
        ctx = make_context(opts, SoundBoard())
        run_frames(ctx, screen, first_scene(ctx))
        return 0
    except KeyboardInterrupt:
        return 0
    finally:
        if ctx is not None:
            ctx.close_peer()
            ctx.stop_demo()
        pygame.quit()
