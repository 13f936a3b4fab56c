"""Adaptive quality: keep the time per dream near a target by moving width and steps.

Pure logic, fed with measured seconds; it never reads a clock, so it is tested with
made-up timings. The cost of a dream is taken as proportional to width^2 x steps
(pixels x gradient steps); the controller smooths the measured time, waits a few
frames after each change so the measurement reflects it, and then moves one knob:

* over budget: fewer steps first (down to ``min_steps``), then a smaller width;
* under budget: a larger width first (up to ``max_width``), then more steps.

So quality is one ladder, width before steps: the detail's resolution is the last
thing given up. A band of ``tolerance`` around the target avoids hunting.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..config import CoherenceConfig

WIDTH_MULTIPLE = 16  # widths stay multiples of this (codec and tiling friendly)
MAX_FACTOR = 2.0  # one change scales the cost by at most this much (either way)


@dataclass(frozen=True)
class Quality:
    width: int
    steps: int


class QualityController:
    def __init__(
        self,
        target_fps: float,
        min_width: int,
        max_width: int,
        min_steps: int,
        max_steps: int,
        start: Quality,
        *,
        smoothing: float = 0.3,
        tolerance: float = 0.15,
        settle: int = 3,
    ) -> None:
        if target_fps <= 0:
            raise ValueError(f"target_fps must be > 0, got {target_fps}")
        if not (0 < min_width <= max_width and 0 < min_steps <= max_steps):
            raise ValueError(f"need 0 < min <= max, got width {min_width}..{max_width}, steps {min_steps}..{max_steps}")
        self.budget = 1.0 / target_fps
        self.min_width, self.max_width = min_width, max_width
        self.min_steps, self.max_steps = min_steps, max_steps
        self.smoothing = smoothing
        self.tolerance = tolerance
        self.settle = settle
        self.quality = Quality(self._clamp_width(start.width), min(max(start.steps, min_steps), max_steps))
        self.smoothed: float | None = None
        self._since_change = 0

    @classmethod
    def from_config(cls, config: CoherenceConfig, width: int, steps: int) -> QualityController:
        return cls(config.target_fps, config.min_width, config.max_width, config.min_steps, config.max_steps, Quality(width, steps))

    def _clamp_width(self, width: float) -> int:
        rounded = int(round(width / WIDTH_MULTIPLE)) * WIDTH_MULTIPLE
        return min(max(rounded, self.min_width), self.max_width)

    def observe(self, seconds: float) -> Quality | None:
        """Feed one measured time per frame; returns the new quality when it changes."""
        if seconds < 0 or not math.isfinite(seconds):
            return None
        self.smoothed = seconds if self.smoothed is None else self.smoothed + self.smoothing * (seconds - self.smoothed)
        self._since_change += 1
        if self._since_change < self.settle:
            return None
        ratio = self.smoothed / self.budget  # > 1: too slow
        if abs(ratio - 1.0) <= self.tolerance:
            return None
        proposal = self._cheaper(ratio) if ratio > 1 else self._dearer(ratio)
        if proposal == self.quality:
            return None
        self.quality = proposal
        self.smoothed = None  # measure the new setting afresh
        self._since_change = 0
        return proposal

    def _cheaper(self, ratio: float) -> Quality:
        factor = min(ratio, MAX_FACTOR)  # cost must shrink by this
        q = self.quality
        if q.steps > self.min_steps:
            steps = min(q.steps - 1, math.floor(q.steps / factor))
            return Quality(q.width, max(steps, self.min_steps))
        width = min(self._clamp_width(q.width / math.sqrt(factor)), q.width - WIDTH_MULTIPLE)
        return Quality(max(width, self.min_width), q.steps)

    def _dearer(self, ratio: float) -> Quality:
        factor = min(1.0 / max(ratio, 1e-9), MAX_FACTOR)  # cost may grow by this
        q = self.quality
        if q.width < self.max_width:
            width = max(self._clamp_width(q.width * math.sqrt(factor)), q.width + WIDTH_MULTIPLE)
            proposal = Quality(min(width, self.max_width), q.steps)
        else:
            steps = max(q.steps + 1, math.floor(q.steps * factor))
            proposal = Quality(q.width, min(steps, self.max_steps))
        # a change that would land over budget would only be undone at the next check
        predicted = ratio * _cost(proposal) / _cost(q)
        return proposal if predicted <= 1.0 + self.tolerance else q


def _cost(quality: Quality) -> float:
    return float(quality.width) ** 2 * quality.steps


__all__ = ["Quality", "QualityController"]
