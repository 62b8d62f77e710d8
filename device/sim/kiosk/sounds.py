"""Key clicks and beeps made on the spot as short 16-bit buffers, when a mixer is available.

Without an audio device (or with SDL's dummy driver) every sound is silently nothing.
"""

from __future__ import annotations

import logging
import math
from array import array

import pygame

log = logging.getLogger(__name__)

RATE = 22050


def tone(frequency: float, seconds: float, volume: float = 0.3, rate: int = RATE) -> bytes:
    """A sine tone with a short fade at both ends (no click from a cut waveform), mono int16."""
    count = max(int(rate * seconds), 1)
    fade = max(min(count // 8, int(rate * 0.005)), 1)
    samples = array("h")
    for i in range(count):
        envelope = min(1.0, i / fade, (count - 1 - i) / fade)
        samples.append(
            int(32767 * volume * envelope * math.sin(2 * math.pi * frequency * i / rate))
        )
    return samples.tobytes()


def click(rate: int = RATE) -> bytes:
    """A key click: a few milliseconds of a decaying high tone."""
    count = int(rate * 0.012)
    samples = array(
        "h",
        (
            int(20000 * math.exp(-i / (count / 5)) * math.sin(2 * math.pi * 2400 * i / rate))
            for i in range(count)
        ),
    )
    return samples.tobytes()


class Sounds:
    """`click()`, `beep()` and `alert()`; each does nothing when no mixer could be opened."""

    def __init__(self, enabled: bool = True) -> None:
        self._sounds: dict[str, pygame.mixer.Sound] = {}
        if not enabled:
            return
        try:
            if not pygame.mixer.get_init():
                pygame.mixer.init(frequency=RATE, size=-16, channels=1, buffer=512)
            frequency, sample_format, channels = pygame.mixer.get_init()
            if sample_format != -16:
                raise TypeError(f"mixer format {sample_format}, not signed 16-bit")
            buffers = {"click": click(frequency), "beep": tone(1000, 0.12, rate=frequency)}
            buffers["alert"] = tone(660, 0.25, rate=frequency)
            for name, mono in buffers.items():
                data = mono if channels == 1 else _spread(mono, channels)
                self._sounds[name] = pygame.mixer.Sound(buffer=data)
        except (pygame.error, TypeError) as err:
            log.info("no sound: %s", err)
            self._sounds = {}

    def close(self) -> None:
        """Free the sounds before the mixer goes (a Sound freed after it would crash SDL)."""
        if self._sounds:
            pygame.mixer.stop()
            self._sounds = {}
            pygame.mixer.quit()

    @property
    def available(self) -> bool:
        return bool(self._sounds)

    def play(self, name: str) -> None:
        sound = self._sounds.get(name)
        if sound is not None:
            sound.play()

    def click(self) -> None:
        self.play("click")

    def beep(self) -> None:
        self.play("beep")

    def alert(self) -> None:
        self.play("alert")


def _spread(mono: bytes, channels: int) -> bytes:
    """The same samples on every channel (the mixer may insist on stereo)."""
    source = array("h")
    source.frombytes(mono)
    out = array("h")
    for sample in source:
        out.extend([sample] * channels)
    return out.tobytes()
