"""MIDI clock: the tempo from 24 clock messages per beat, the transport, beats and bars.

``MidiClock`` is fed the clock's realtime messages (``clock``, ``start``, ``stop``,
``continue``) with their arrival times, on one thread (the ``midi`` worker). The tempo is
measured over the last ``WINDOW`` clock intervals (the span from the first to the last
over their count, so one late message moves it little); a gap over ``GAP`` seconds (the
clock stopped) starts the measurement again. ``start`` puts the position at the first
beat of bar 1; ``stop`` freezes it; ``continue`` goes on from there (or from where a song
position pointer, ``songpos``, put it: a DAW's locator). Clock messages keep
the tempo current while stopped (most devices send them all the time), but only a
running transport counts beats.

``tick`` returns what a tick completed (a beat, a bar), so the caller acts on the
downbeat itself; ``Pulse`` is the strength envelope over the beats: ``pulse[1]`` on the
beat, falling back towards ``pulse[0]`` with ``pulse_decay`` (like the audio-reactive
envelope's release).
"""

from __future__ import annotations

import collections
import math
import time
from dataclasses import dataclass

PPQN = 24  # MIDI clock messages per quarter note
WINDOW = 96  # clock intervals the tempo is measured over (4 beats)
MIN_INTERVALS = 12  # intervals before a tempo is reported (half a beat)
GAP = 0.5  # seconds between clock messages that count as a stopped clock (under 5 BPM)


@dataclass(frozen=True)
class ClockState:
    """What other threads read; replaced whole by the clock's thread."""

    tempo: float | None = None  # beats per minute
    running: bool = False
    ticks: int = 0  # clock messages counted since start (the position)
    beat_at: float | None = None  # monotonic time of the latest beat
    beats_per_bar: int = 4

    @property
    def beat(self) -> int:
        """Beats since start, 0-based."""
        return self.ticks // PPQN

    def as_dict(self) -> dict:
        return {
            "tempo": None if self.tempo is None else round(self.tempo, 2),
            "running": self.running,
            "bar": self.beat // self.beats_per_bar + 1,
            "beat": self.beat % self.beats_per_bar + 1,
            "ticks": self.ticks,
        }


@dataclass(frozen=True)
class Tick:
    """What one clock message completed: a beat (``beat``: its count since start) and maybe a bar."""

    beat: int | None = None
    bar: int | None = None  # bars since start, when this tick is a downbeat


class MidiClock:
    def __init__(self, beats_per_bar: int = 4) -> None:
        self.beats_per_bar = beats_per_bar
        self._times: collections.deque[float] = collections.deque(maxlen=WINDOW + 1)
        self.state = ClockState(beats_per_bar=beats_per_bar)

    def tick(self, at: float) -> Tick:
        """A clock message at ``at``; a running transport counts it (the first one after start is beat 0)."""
        if self._times and at - self._times[-1] > GAP:
            self._times.clear()
        self._times.append(at)
        tempo = self.state.tempo
        if len(self._times) > MIN_INTERVALS:
            span = self._times[-1] - self._times[0]
            tempo = 60.0 / (PPQN * span / (len(self._times) - 1)) if span > 0 else tempo
        elif len(self._times) == 1:
            tempo = None  # a new measurement after a gap
        state = self.state
        if not state.running:
            self.state = ClockState(tempo, False, state.ticks, state.beat_at, self.beats_per_bar)
            return Tick()
        ticks = state.ticks
        on_beat = ticks % PPQN == 0
        self.state = ClockState(tempo, True, ticks + 1, at if on_beat else state.beat_at, self.beats_per_bar)
        if not on_beat:
            return Tick()
        beat = ticks // PPQN
        return Tick(beat, beat // self.beats_per_bar if beat % self.beats_per_bar == 0 else None)

    def start(self) -> None:
        self.state = ClockState(self.state.tempo, True, 0, None, self.beats_per_bar)

    def stop(self) -> None:
        self.state = ClockState(self.state.tempo, False, self.state.ticks, self.state.beat_at, self.beats_per_bar)

    def locate(self, sixteenths: int) -> None:
        """``songpos``: the position in 16th notes (6 clocks each), taken up by the next ``continue``."""
        state = self.state
        self.state = ClockState(state.tempo, state.running, sixteenths * PPQN // 4, state.beat_at, self.beats_per_bar)

    def resume(self) -> None:
        """``continue``: on from the position where it stopped."""
        self.state = ClockState(self.state.tempo, True, self.state.ticks, self.state.beat_at, self.beats_per_bar)


class Pulse:
    """The dream strength factor over the beats (the ``LookSwitch``'s modulation)."""

    def __init__(self, clock: MidiClock, low: float, high: float, decay: float) -> None:
        self.clock, self.low, self.high, self.decay = clock, low, high, decay

    def factor(self, now: float | None = None) -> float:
        state = self.clock.state
        if not state.running or state.beat_at is None:
            return self.low
        since = max(0.0, (time.monotonic() if now is None else now) - state.beat_at)
        return self.low + (self.high - self.low) * math.exp(-since / self.decay)


__all__ = ["GAP", "PPQN", "ClockState", "MidiClock", "Pulse", "Tick"]
