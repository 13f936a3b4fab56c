"""Presentation times for decoded frames, derived the way FFmpeg's own tools derive them.

A decoder hands frames out in display order, each labelled with the ``pts`` of some
packet and the ``dts`` of the packet that completed it. Usually ``pts`` is right. Some
files label frames wrongly: old DivX/Xvid AVIs ("packed B-frames") give 1, 3, 2, 5, 4...
for frames shown at 1, 2, 3, 4, 5, while their ``dts`` counts up correctly. Taking such
``pts`` at their word, and moving every time that does not increase forward, stretched a
9 s clip to 14.8 s and left its sound 7 s behind.

``BestEffortTimestamps`` is FFmpeg's ``guess_correct_pts`` (libavcodec/decode.c, what
``ffmpeg``, ``ffplay`` and ``ffprobe``'s ``best_effort_timestamp`` use; PyAV does not
expose that field): it counts how often ``pts`` and ``dts`` fail to increase and trusts
the one that fails less. FFmpeg decides frame by frame, so the frames before the first
failure keep their wrong ``pts``; ``FrameTimer`` decides a few frames late (``lookahead``)
so the first failure already counts for them. A time that is missing, or still does not
increase, is placed one frame period after the previous one: the frame rate is all a
container without usable timing has to offer.
"""

from __future__ import annotations

import collections
from fractions import Fraction
from typing import Generic, TypeVar

T = TypeVar("T")

FILE_LOOKAHEAD = 4  # frames a file's times are decided late; packed B-frames show within 3
FALLBACK_PERIOD = 1 / 30  # seconds per frame when the stream states no rate at all


class BestEffortTimestamps:
    """FFmpeg's ``guess_correct_pts``: choose between a frame's ``pts`` and ``dts``."""

    def __init__(self) -> None:
        self.faulty_pts = 0
        self.faulty_dts = 0
        self._last_pts: int | None = None
        self._last_dts: int | None = None

    def observe(self, pts: int | None, dts: int | None) -> None:
        """Count whether this frame's ``pts`` and ``dts`` went forward."""
        if dts is not None:
            self.faulty_dts += self._last_dts is not None and dts <= self._last_dts
            self._last_dts = dts
        elif pts is not None:
            self._last_dts = pts
        if pts is not None:
            self.faulty_pts += self._last_pts is not None and pts <= self._last_pts
            self._last_pts = pts
        elif dts is not None:
            self._last_pts = dts

    def choose(self, pts: int | None, dts: int | None) -> int | None:
        """The best-effort time of a frame, with the counts observed so far."""
        if pts is not None and (self.faulty_pts <= self.faulty_dts or dts is None):
            return pts
        return dts

    def new_pass(self) -> None:
        """Times start again (a looped file); the counts so far still say which to trust."""
        self._last_pts = self._last_dts = None

    def guess(self, pts: int | None, dts: int | None) -> int | None:
        """``observe`` then ``choose``: exactly FFmpeg's frame-by-frame decision."""
        self.observe(pts, dts)
        return self.choose(pts, dts)


class FrameTimer(Generic[T]):
    """Seconds for each decoded item, in order: best effort, decided ``lookahead`` frames late.

    ``push(item, pts, dts)`` returns the items whose time is decided now, as
    ``(item, seconds)``; ``flush()`` returns the rest at the end of the stream.
    """

    def __init__(self, time_base: Fraction | None, fps: Fraction | None, lookahead: int = 0) -> None:
        self.time_base = time_base
        self.period = float(1 / fps) if fps else FALLBACK_PERIOD
        self.lookahead = lookahead
        self.best_effort = BestEffortTimestamps()
        self.placed_by_rate = 0  # frames after the first whose time came from the frame rate
        self._pending: collections.deque[tuple[T, int | None, int | None]] = collections.deque()
        self._last: float | None = None

    def push(self, item: T, pts: int | None, dts: int | None) -> list[tuple[T, float]]:
        self.best_effort.observe(pts, dts)
        self._pending.append((item, pts, dts))
        ready = []
        while len(self._pending) > self.lookahead:
            ready.append(self._decide(*self._pending.popleft()))
        return ready

    @property
    def pending(self) -> int:
        """Items pushed whose time is not decided yet."""
        return len(self._pending)

    def flush(self) -> list[tuple[T, float]]:
        ready = [self._decide(*entry) for entry in self._pending]
        self._pending.clear()
        return ready

    def restart(self) -> None:
        """A new pass over the same file (a loop): times start again, counts are kept."""
        self._pending.clear()
        self._last = None
        self.best_effort.new_pass()

    def _decide(self, item: T, pts: int | None, dts: int | None) -> tuple[T, float]:
        ticks = self.best_effort.choose(pts, dts)
        seconds = float(ticks * self.time_base) if ticks is not None and self.time_base else None
        if seconds is None or (self._last is not None and seconds <= self._last):
            if self._last is not None:
                self.placed_by_rate += 1
            seconds = 0.0 if self._last is None else self._last + self.period
        self._last = seconds
        return item, seconds
