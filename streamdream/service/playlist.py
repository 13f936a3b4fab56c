"""Presets and the playlist: which look runs now, and when the next switch is due.

A preset is laid over the config's ``model``, ``dream`` and ``coherence`` sections
(``apply_preset``). The playlist switches presets at the times of day in ``schedule``
and every ``interval`` seconds to the next one in ``cycle`` order (only while the current
preset is in the cycle: an evening preset set by the schedule stays the evening). A
manual switch through the control API restarts the interval. Crossfading is the
``LookSwitch``'s job (``pipeline/looks.py``), not this module's.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable

from ..config import Config, ModelConfig, PlaylistConfig, PresetConfig

DEFAULT_PRESET = "default"  # the config's own model/dream sections when no presets are defined
MAX_DREAM_STRENGTH = 10.0  # dream.strength's upper bound


def apply_preset(config: Config, preset: PresetConfig | None, strength: float = 1.0) -> Config:
    """The config a preset (and a runtime strength multiplier) makes: only model, dream, coherence change
    (a preset's ``blend_with``, ``blend`` and ``blend_mode`` are laid over ``dream``'s)."""
    model = config.model
    if preset is not None and (preset.model or preset.preset or preset.layers):
        name = preset.model or model.name
        same = name == model.name
        model = ModelConfig(
            name=name,
            weights=model.weights if same else None,
            preprocess=model.preprocess if same else None,
            preset=preset.preset if (preset.preset or preset.layers) else (model.preset if same else None),
            layers=preset.layers if preset.layers else (None if preset.preset or not same else model.layers),
        )
    scale = strength * (preset.strength if preset is not None else 1.0)
    changes: dict = {"strength": min(MAX_DREAM_STRENGTH, config.dream.strength * scale)}
    if preset is not None and preset.steps is not None:
        changes["steps"] = preset.steps
    if preset is not None and preset.octaves is not None:
        changes["octaves"] = preset.octaves
    if preset is not None:  # its own second input, share and mode (a switch crossfades between the inputs)
        changes.update({f: getattr(preset, f) for f in ("blend_with", "blend", "blend_mode") if getattr(preset, f) is not None})
    dream = config.dream.model_copy(update=changes)
    coherence = config.coherence
    if preset is not None and preset.coherence is not None:
        coherence = coherence.model_copy(update={"mode": preset.coherence})
    return config.model_copy(update={"model": model, "dream": dream, "coherence": coherence})


def preset_names(config: PlaylistConfig) -> tuple[str, ...]:
    return tuple(config.presets) or (DEFAULT_PRESET,)


def _minutes(at: str) -> int:
    hours, minutes = at.split(":")
    return int(hours) * 60 + int(minutes)


def next_in(order: tuple[str, ...], current: str) -> str:
    """The preset after ``current`` in ``order`` (the first one if ``current`` is not in it)."""
    if current not in order:
        return order[0]
    return order[(order.index(current) + 1) % len(order)]


def previous_in(order: tuple[str, ...], current: str) -> str:
    """The preset before ``current`` in ``order`` (the last one if ``current`` is not in it)."""
    if current not in order:
        return order[-1]
    return order[(order.index(current) - 1) % len(order)]


class Playlist:
    """Decides the preset at start and when the next one is due. Owned by one thread (the
    daemon's director worker); others read what it publishes."""

    def __init__(
        self,
        config: PlaylistConfig,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], dt.datetime] = dt.datetime.now,
    ) -> None:
        self.config = config
        self._clock = clock
        self._wall = wall
        self._switched_at = clock()
        self._last_check = wall()

    @property
    def order(self) -> tuple[str, ...]:
        return self.config.order or (DEFAULT_PRESET,)

    def initial(self) -> str:
        """``start``, else the schedule entry in force now (the latest at or before now, wrapping
        to yesterday's last), else the first preset."""
        cfg = self.config
        if cfg.start:
            return cfg.start
        if cfg.schedule:
            now = self._wall()
            minute = now.hour * 60 + now.minute
            entries = sorted(cfg.schedule, key=lambda e: _minutes(e.at))
            past = [e for e in entries if _minutes(e.at) <= minute]
            return (past[-1] if past else entries[-1]).preset
        return self.order[0]

    def next_after(self, current: str) -> str:
        return next_in(self.order, current)

    def switched(self) -> None:
        """Any switch (scheduled, timed or manual) restarts the interval."""
        self._switched_at = self._clock()

    def seconds_to_next(self) -> float | None:
        if self.config.interval is None or len(self.order) < 2:
            return None
        return max(0.0, self.config.interval - (self._clock() - self._switched_at))

    def due(self, current: str) -> str | None:
        """The preset to switch to now, or None. Call every second or so."""
        now = self._wall()
        previous, self._last_check = self._last_check, now
        scheduled = self._crossed(previous, now)
        if scheduled is not None:
            return scheduled if scheduled != current else None
        remaining = self.seconds_to_next()
        if remaining is not None and remaining <= 0 and current in self.order:
            # a preset outside the cycle (set by the schedule or by hand) stays until the next event
            return self.next_after(current)
        return None

    def _crossed(self, previous: dt.datetime, now: dt.datetime) -> str | None:
        """The last schedule entry whose time of day falls in (previous, now]."""
        if not self.config.schedule or now <= previous or now - previous > dt.timedelta(hours=23):
            return None
        hit = None
        for entry in self.config.schedule:
            hours, minutes = (int(x) for x in entry.at.split(":"))
            for day in (previous.date(), now.date()):
                moment = dt.datetime.combine(day, dt.time(hours, minutes), tzinfo=now.tzinfo)
                if previous < moment <= now and (hit is None or moment >= hit[0]):
                    hit = (moment, entry.preset)
        return hit[1] if hit else None
