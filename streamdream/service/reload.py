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
and logged with the problem; the running one stays. So is an empty, ``null`` or
comments-only file (``load_config(complete=True)``), and one that lacks a section the running
config has (``check_complete``): a reload is a complete config or none.
The file watch applies a file only once it has stopped changing (``ConfigWatcher``).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..config import Config
from ..errors import ConfigError

log = logging.getLogger(__name__)

POLL_SECONDS = 2.0
Stamp = tuple[int, int, int]  # mtime (ns), size, inode
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
    """Notices a changed config file by polling its stat (no extra dependency, works on any FS).

    A change is reported only once the file has stopped changing: the same size, mtime and
    inode on two polls at least ``settle`` seconds apart, so an editor (or ``cp``, or a slow
    network share) half-way through a save is never read. A new inode is a file renamed
    into place (the atomic save: write a temporary file, then rename), complete at once.
    """

    def __init__(
        self, path: str | Path, interval: float = POLL_SECONDS, clock: Callable[[], float] = time.monotonic,
        settle: float | None = None,
    ) -> None:  # fmt: skip
        self.path = Path(path)
        self.interval = interval
        self.settle = interval if settle is None else settle
        self._clock = clock
        self._next = clock() + interval
        self._stamp = self._read()
        self._pending: tuple[Stamp, float] | None = None  # a new stamp and when it was first seen

    def _read(self) -> Stamp | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def changed(self) -> bool:
        """True once after each change, once it has settled (checked at most every ``interval`` seconds)."""
        now = self._clock()
        if now < self._next:
            return False
        self._next = now + self.interval
        stamp = self._read()
        if stamp is None or stamp == self._stamp:
            self._pending = None  # a file being replaced may be missing for a moment: wait for it
            return False
        renamed = self._stamp is not None and stamp[2] != self._stamp[2]
        if not renamed:
            if self._pending is None or self._pending[0] != stamp:
                self._pending = (stamp, now)  # still being written, or just finished: look again
                return False
            if now - self._pending[1] < self.settle:
                return False
        self._stamp, self._pending = stamp, None
        return True

    def mark_current(self) -> None:
        """The file as it is now was just read: do not report it again."""
        self._stamp, self._pending = self._read(), None


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


def check_complete(old: Config, new: Config, path: str | Path) -> None:
    """ConfigError if ``new`` lacks a section the running config set: a file cut short (a save
    caught half-way, a truncated copy) would otherwise put that section back to its defaults
    (the demo source, ``dream.mp4``). To go back to a section's defaults, write them out."""
    missing = sorted(old.model_fields_set - new.model_fields_set)
    if missing:
        raise ConfigError(
            f"{path}: the running config's section(s) {', '.join(missing)} are missing; a reload needs the "
            "complete config (was the file read half-way through a save?); to go back to a section's "
            "defaults, write the section out, or restart streamdream"
        )


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
