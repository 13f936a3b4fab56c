"""Hot reload: SIGHUP or a changed config file; what a new config changes, section by section.

What is applied without a restart, and how:

==================================  =====================================================
``model``, ``dream``, ``coherence``  a new look is built, then crossfaded in (no gap)
``playlist``                         presets and schedule replaced; the current preset
                                     stays if it still exists
``source``                           the input alone is reconnected; idle frames bridge
``outputs``                          unchanged outputs keep going (same file); new ones
                                     open, removed ones are finalized
``health``, ``reconnect``, ``idle``  take effect at once
``control``                          token and enabled take effect at once
``pipeline``, ``metrics``, ``osc``,  need a restart: logged, the running values stay
``audio_react``, ``midi``
==================================  =====================================================

A config that does not validate, or whose model cannot be built, is rejected as a whole
and logged with the problem; the running one stays.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from ..config import Config

log = logging.getLogger(__name__)

POLL_SECONDS = 2.0
LOOK_SECTIONS = ("model", "dream", "coherence", "playlist")
LIVE_SECTIONS = ("health", "reconnect", "idle", "control")
RESTART_SECTIONS = ("pipeline", "metrics", "osc", "audio_react", "midi")


class ReloadRequests:
    """A flag a signal handler may set (``Event.set`` only: safe in a handler)."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def request(self) -> None:
        self._event.set()

    def take(self) -> bool:
        """True once per request."""
        if self._event.is_set():
            self._event.clear()
            return True
        return False


class ConfigWatcher:
    """Notices a changed config file by polling its stat (no extra dependency, works on any FS)."""

    def __init__(self, path: str | Path, interval: float = POLL_SECONDS, clock=time.monotonic) -> None:
        self.path = Path(path)
        self.interval = interval
        self._clock = clock
        self._next = clock() + interval
        self._stamp = self._read()

    def _read(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def changed(self) -> bool:
        """True once after each change (checked at most every ``interval`` seconds)."""
        now = self._clock()
        if now < self._next:
            return False
        self._next = now + self.interval
        stamp = self._read()
        if stamp is None or stamp == self._stamp:
            return False  # a file being replaced may be missing for a moment: wait for it
        self._stamp = stamp
        return True

    def mark_current(self) -> None:
        """The file as it is now was just read: do not report it again."""
        self._stamp = self._read()


@dataclass(frozen=True)
class ReloadPlan:
    new: Config
    look: bool  # model/dream/coherence/playlist changed
    source: bool
    outputs: bool
    live: tuple[str, ...]  # sections applied at once
    needs_restart: tuple[str, ...]  # changed sections that only a restart applies

    @property
    def empty(self) -> bool:
        return not (self.look or self.source or self.outputs or self.live or self.needs_restart)

    def describe(self) -> str:
        parts = [name for name, on in (("look", self.look), ("source", self.source), ("outputs", self.outputs)) if on]
        parts += list(self.live)
        return ", ".join(parts) or "nothing"


def plan_reload(old: Config, new: Config) -> ReloadPlan:
    def changed(name: str) -> bool:
        return getattr(old, name) != getattr(new, name)

    return ReloadPlan(
        new=new,
        look=any(changed(n) for n in LOOK_SECTIONS),
        source=changed("source"),
        outputs=changed("outputs"),
        live=tuple(n for n in LIVE_SECTIONS if changed(n)),
        needs_restart=tuple(n for n in RESTART_SECTIONS if changed(n)),
    )
