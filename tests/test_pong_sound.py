"""Synthesised sound effects, and silence when there is no audio device."""

from __future__ import annotations

import numpy as np
import pygame
import pytest

from games.pong.sim import EventKind, SimEvent
from games.pong.sound import SOUND_NAMES, SoundBoard, sound_for, synthesize, to_mixer_format


@pytest.mark.parametrize("name", SOUND_NAMES)
def test_every_effect_is_a_short_clean_wave(name: str) -> None:
    wave = synthesize(name, 22050)
    assert wave.dtype == np.float32
    assert 0.03 * 22050 < wave.size < 1.0 * 22050
    assert np.abs(wave).max() <= 1.0
    assert np.abs(wave).max() > 0.1
    assert abs(float(wave[-1])) < 0.05  # fades out: no click at the end


def test_samples_take_the_mixers_shape() -> None:
    wave = synthesize("wall", 44100)
    stereo = to_mixer_format(wave, -16, 2)
    assert stereo.dtype == np.int16 and stereo.shape == (wave.size, 2)
    assert np.array_equal(stereo[:, 0], stereo[:, 1])
    mono = to_mixer_format(wave, 8, 1)
    assert mono.dtype == np.uint8 and mono.shape == (wave.size,)
    assert to_mixer_format(wave, 32, 2).dtype == np.float32


def test_events_map_to_effects() -> None:
    assert sound_for(SimEvent(EventKind.WALL), 0) == "wall"
    assert sound_for(SimEvent(EventKind.PADDLE, 1), 0) == "paddle"
    assert sound_for(SimEvent(EventKind.POINT, 1), 0) == "score"
    assert sound_for(SimEvent(EventKind.GAME_OVER, 0), 0) == "win"
    assert sound_for(SimEvent(EventKind.GAME_OVER, 1), 0) == "lose"
    assert sound_for(SimEvent(EventKind.SERVE, 1), 0) is None


def test_no_audio_device_means_silence_not_a_crash(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_device(*args: object, **kwargs: object) -> None:
        raise pygame.error("No available audio device")

    monkeypatch.setattr(pygame.mixer, "get_init", lambda: None)
    monkeypatch.setattr(pygame.mixer, "init", no_device)
    board = SoundBoard()
    assert not board.enabled
    board.play("win")
    board.play_events([SimEvent(EventKind.WALL)], 0)


def test_sounds_load_on_the_dummy_audio_driver(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SDL_AUDIODRIVER", "dummy")
    try:
        board = SoundBoard()
        if not board.enabled:
            pytest.skip("this pygame has no dummy audio driver")
        board.play_events([SimEvent(EventKind.PADDLE, 0), SimEvent(EventKind.GAME_OVER, 0)], 0)
    finally:
        pygame.mixer.quit()
