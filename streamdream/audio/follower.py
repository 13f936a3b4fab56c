"""Loudness with attack and release, and onsets: the level the dream's strength follows.

Mono samples at ``RATE`` go in, in pieces of any length; one level per ``HOP`` (10 ms)
comes out, from 0 (at or below ``floor_db``) to 1 (at or above ``ceiling_db``):

1. loudness: the RMS of the hop in dBFS, mapped linearly from ``floor_db..ceiling_db`` to 0..1;
2. envelope: a one-pole follower that rises with time constant ``attack`` and falls with
   ``release`` (the time to cover 63 % of a step), so a drum hit lifts the dream at once
   and it sinks back smoothly;
3. onsets: a rise of ``onset_db`` or more above the quietest of the last ``ONSET_WINDOW``
   hops (and above the floor) starts a pulse of height 1, at most one per
   ``ONSET_REFRACTORY``, that decays with ``release``; ``onsets`` x the pulse is added.

Pure numpy, no thread: the caller owns the order of the samples (``react.py``).
"""

from __future__ import annotations

import collections
import math
from dataclasses import dataclass

import numpy as np

from ..config import AudioReactConfig

RATE = 16000  # samples per second analysed (the input is resampled to this, mono)
HOP = 160  # samples per level: 10 ms
ONSET_WINDOW = 5  # hops (50 ms) a rise is measured over
ONSET_REFRACTORY = 0.1  # seconds between two onsets at least
SILENCE_DB = -120.0


@dataclass(frozen=True)
class Levels:
    """Levels of consecutive hops, the first starting at ``start`` seconds."""

    start: float
    values: np.ndarray  # float32, 0..1, read-only
    onsets: int  # onsets detected in these hops


class LoudnessFollower:
    def __init__(self, config: AudioReactConfig) -> None:
        self.config = config
        hop_seconds = HOP / RATE
        self._attack = math.exp(-hop_seconds / config.attack)
        self._release = math.exp(-hop_seconds / config.release)
        self._refractory_hops = max(1, round(ONSET_REFRACTORY / hop_seconds))
        self._pending = np.zeros(0, np.float32)
        self._pending_start = 0.0  # seconds of the first pending sample
        self._envelope = 0.0
        self._pulse = 0.0
        self._recent_db: collections.deque[float] = collections.deque([SILENCE_DB] * ONSET_WINDOW, maxlen=ONSET_WINDOW)
        self._since_onset = self._refractory_hops
        self.onsets = 0

    def restart(self, start: float) -> None:
        """A gap in the audio: forget the unfinished hop; the next samples start at ``start``."""
        self._pending = np.zeros(0, np.float32)
        self._pending_start = start

    def feed(self, samples: np.ndarray, start: float | None = None) -> Levels | None:
        """Levels for every hop the samples complete; ``start``: their time, if this is the first piece."""
        if start is not None and self._pending.size == 0:
            self._pending_start = start
        data = np.concatenate([self._pending, np.asarray(samples, np.float32).ravel()])
        hops = data.size // HOP
        if hops == 0:
            self._pending = data
            return None
        first = self._pending_start
        frames = data[: hops * HOP].reshape(hops, HOP)
        self._pending = data[hops * HOP:]
        self._pending_start = first + hops * HOP / RATE
        rms = np.sqrt(np.mean(np.square(frames, dtype=np.float32), axis=1))
        db = 20.0 * np.log10(np.maximum(rms, 1e-6))
        cfg = self.config
        loud = np.clip((db - cfg.floor_db) / (cfg.ceiling_db - cfg.floor_db), 0.0, 1.0)
        values = np.empty(hops, np.float32)
        onsets = 0
        for i in range(hops):  # a recursive filter: one step per hop (100 a second)
            x = float(loud[i])
            coefficient = self._attack if x > self._envelope else self._release
            self._envelope = x + coefficient * (self._envelope - x)
            self._pulse *= self._release
            self._since_onset += 1
            level = float(db[i])
            if (cfg.onsets > 0 and level > cfg.floor_db and level - min(self._recent_db) >= cfg.onset_db
                    and self._since_onset >= self._refractory_hops):
                self._pulse, self._since_onset = 1.0, 0
                onsets += 1
            self._recent_db.append(level)
            values[i] = min(1.0, self._envelope + cfg.onsets * self._pulse)
        self.onsets += onsets
        values.flags.writeable = False
        return Levels(first, values, onsets)


def strength_factor(config: AudioReactConfig, level: float) -> float:
    """The dream strength factor for a level (0: ``strength[0]``, 1: ``strength[1]``)."""
    low, high = config.strength
    return low + (high - low) * level


__all__ = ["HOP", "RATE", "Levels", "LoudnessFollower", "strength_factor"]
