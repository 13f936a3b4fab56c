"""Health: is the daemon doing its job? Answers /healthz from pipeline events.

Healthy while output frames flow. Unhealthy (503, with the reason) when the source has
been down longer than ``health.source_down_after`` (the outputs then show the idle
animation, which is fine for a while but not forever), when no output frame was
written for ``health.stuck_after`` seconds (a stuck pipeline), or when an output has
been failing (retried meanwhile) for longer than ``health.output_down_after``. An output
that is down for less is named in the 200 answer, as is a second input (``dream.blend_with``)
that is down: the first goes on alone, so the piece still runs.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from ..config import HealthConfig
from ..runtime.observer import PipelineObserver


@dataclass(frozen=True)
class HealthStatus:
    ok: bool
    reason: str
    source_up: bool | None  # None: the source never reported (a plain file or camera under `run`)
    source_down_seconds: float
    last_output_age: float | None  # None: no output frame yet

    def as_dict(self) -> dict:
        return {
            "ok": self.ok,
            "reason": self.reason,
            "source_up": self.source_up,
            "source_down_seconds": round(self.source_down_seconds, 3),
            "last_output_age": None if self.last_output_age is None else round(self.last_output_age, 3),
        }


class HealthMonitor(PipelineObserver):
    def __init__(self, config: HealthConfig, clock=time.monotonic) -> None:
        self.config = config
        self._clock = clock
        self._lock = threading.Lock()
        self._started = clock()
        self._last_output: float | None = None
        self._up: bool | None = None
        self._down_since: float | None = None
        self._outputs_down: dict[str, float] = {}  # output -> since when; replaced whole
        self._blend_down_since: float | None = None  # the second input (dream.blend_with): a note, never unhealthy

    def configure(self, config: HealthConfig) -> None:
        self.config = config

    # --- events -------------------------------------------------------------------------------

    def frame_done(self, stage: str) -> None:
        if stage == "write":
            self._last_output = self._clock()

    def source_up(self, up: bool) -> None:
        with self._lock:
            if up:
                self._down_since = None
            elif self._down_since is None:
                self._down_since = self._clock()
            self._up = up

    def blend_source_up(self, up: bool) -> None:
        with self._lock:
            self._blend_down_since = None if up else (self._blend_down_since or self._clock())

    def output_up(self, output: str, up: bool) -> None:
        with self._lock:
            down = dict(self._outputs_down)
            if up:
                down.pop(output, None)
            else:
                down.setdefault(output, self._clock())
            self._outputs_down = down

    def output_removed(self, output: str) -> None:
        """An output a reload removed no longer counts, however long it had been failing."""
        with self._lock:
            self._outputs_down = {name: since for name, since in self._outputs_down.items() if name != output}

    def source_replaced(self) -> None:
        """A reload gave a new source: its time down starts now, not when the old one went down."""
        with self._lock:
            if self._down_since is not None:
                self._down_since = self._clock()

    # --- the verdict --------------------------------------------------------------------------

    def status(self) -> HealthStatus:
        now = self._clock()
        cfg = self.config
        with self._lock:
            up, down_since, outputs_down = self._up, self._down_since, self._outputs_down
        last = self._last_output
        down_for = 0.0 if down_since is None else now - down_since
        age = None if last is None else now - last
        silent_for = now - (last if last is not None else self._started)
        if down_since is not None and down_for > cfg.source_down_after:
            reason = f"source down for {down_for:.0f} s (health.source_down_after: {cfg.source_down_after:g} s)"
            return HealthStatus(False, reason, up, down_for, age)
        if silent_for > cfg.stuck_after:
            what = "no output frame yet" if last is None else "no output frame"
            reason = f"pipeline stuck: {what} for {silent_for:.0f} s (health.stuck_after: {cfg.stuck_after:g} s)"
            return HealthStatus(False, reason, up, down_for, age)
        if outputs_down:
            output, since = min(outputs_down.items(), key=lambda item: item[1])
            if now - since > cfg.output_down_after:
                reason = (f"output {output} failing for {now - since:.0f} s, retrying "
                          f"(health.output_down_after: {cfg.output_down_after:g} s)")  # fmt: skip
                return HealthStatus(False, reason, up, down_for, age)
        notes = [f"source down for {down_for:.0f} s, showing idle frames"] if up is False else []
        notes += [f"output {o} down for {now - t:.0f} s, retrying" for o, t in sorted(outputs_down.items())]
        blend_down = self._blend_down_since
        if blend_down is not None:
            notes.append(f"second input (dream.blend_with) down for {now - blend_down:.0f} s, the first goes on alone")
        return HealthStatus(True, "ok" + (f" ({'; '.join(notes)})" if notes else ""), up, down_for, age)
