"""Sound effects synthesised with numpy; silence when there is no audio device."""

from __future__ import annotations

import logging

import numpy as np
import numpy.typing as npt
import pygame

from games.pong.sim import EventKind, SimEvent

log = logging.getLogger(__name__)

SAMPLE_RATE = 44100
VOLUME = 0.35

Wave = npt.NDArray[np.float32]


def tone(freq: float | Wave, duration: float, sample_rate: int, *, square: bool = False) -> Wave:
    """A sine (or soft square) wave with a quick attack and an exponential decay.

    `freq` may be an array (one frequency per sample) for sweeps.
    """
    n = int(duration * sample_rate)
    t = np.arange(n, dtype=np.float64) / sample_rate
    freqs = np.broadcast_to(np.asarray(freq, dtype=np.float64), (n,))
    phase = 2 * np.pi * np.cumsum(freqs) / sample_rate
    wave = np.sin(phase)
    if square:
        wave = np.tanh(4 * wave)  # rounded square: bright, not harsh
    attack = np.minimum(1.0, t / 0.004)
    decay = np.exp(-t * 5.0 / max(duration, 1e-3))
    return (wave * attack * decay).astype(np.float32)


def synthesize(name: str, sample_rate: int = SAMPLE_RATE) -> Wave:
    """The named effect as mono float samples in [-1, 1]."""
    if name == "wall":
        return tone(660.0, 0.05, sample_rate)
    if name == "paddle":
        return tone(440.0, 0.07, sample_rate, square=True)
    if name == "score":
        n = int(0.35 * sample_rate)
        return tone(np.geomspace(520.0, 180.0, n).astype(np.float32), 0.35, sample_rate)
    if name in ("win", "lose"):
        notes = (523.25, 659.25, 783.99, 1046.5) if name == "win" else (392.0, 349.2, 311.1, 261.6)
        return np.concatenate([tone(f, 0.14, sample_rate, square=True) for f in notes])
    raise ValueError(f"no sound called {name!r}")


SOUND_NAMES = ("wall", "paddle", "score", "win", "lose")


def sound_for(event: SimEvent, my_side: int) -> str | None:
    """Which effect a game event makes."""
    if event.kind == EventKind.WALL:
        return "wall"
    if event.kind == EventKind.PADDLE:
        return "paddle"
    if event.kind == EventKind.POINT:
        return "score"
    if event.kind == EventKind.GAME_OVER:
        return "win" if event.side == my_side else "lose"
    return None


def to_mixer_format(wave: Wave, size: int, channels: int) -> npt.NDArray[np.generic]:
    """Samples shaped and typed as the mixer wants (`pygame.mixer.get_init()`)."""
    scaled = np.clip(wave * VOLUME, -1.0, 1.0)
    bits = abs(size)
    if size == 32:  # 32-bit float
        data: npt.NDArray[np.generic] = scaled.astype(np.float32)
    elif bits == 8:
        data = (scaled * 127 + (0 if size < 0 else 128)).astype(np.int8 if size < 0 else np.uint8)
    elif size < 0:
        data = (scaled * (2 ** (bits - 1) - 1)).astype(np.int16 if bits == 16 else np.int32)
    else:
        data = ((scaled + 1) * (2 ** (bits - 1) - 1)).astype(np.uint16 if bits == 16 else np.uint32)
    if channels > 1:
        data = np.ascontiguousarray(np.repeat(data[:, None], channels, axis=1))
    return data


class SoundBoard:
    """Plays effects by name; does nothing at all if the mixer cannot start."""

    def __init__(self, enabled: bool = True) -> None:
        self._sounds: dict[str, pygame.mixer.Sound] = {}
        if not enabled:
            return
        try:
            if not pygame.mixer.get_init():
                pygame.mixer.init(frequency=SAMPLE_RATE, size=-16, channels=2, buffer=512)
            init = pygame.mixer.get_init()
            if not init:
                return
            freq, size, channels = init
            for name in SOUND_NAMES:
                samples = to_mixer_format(synthesize(name, freq), size, channels)
                self._sounds[name] = pygame.sndarray.make_sound(samples)
        except (pygame.error, ValueError, NotImplementedError) as exc:
            log.info("no sound: %s", exc)
            self._sounds.clear()

    @property
    def enabled(self) -> bool:
        return bool(self._sounds)

    def play(self, name: str) -> None:
        sound = self._sounds.get(name)
        if sound is not None:
            sound.play()

    def play_events(self, events: list[SimEvent], my_side: int) -> None:
        for event in events:
            name = sound_for(event, my_side)
            if name is not None:
                self.play(name)
