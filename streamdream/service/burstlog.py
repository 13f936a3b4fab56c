"""One log line per burst of dropped control messages: a fader sending garbage 100 times a second
must not flood the log. The rest of a burst is counted into the next line (the metric counts all)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable


class BurstLog:
    """``dropped(what)`` logs at most one warning every ``quiet`` seconds, naming how many it held back."""

    def __init__(self, logger: logging.Logger, surface: str, metric: str, quiet: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        self._log, self._surface, self._metric = logger, surface, metric
        self._quiet, self._clock = quiet, clock
        self._last = float("-inf")
        self._held = 0

    def dropped(self, what: str, exc_info: bool = False) -> None:
        now = self._clock()
        if now - self._last < self._quiet:
            self._held += 1
            return
        more = f" ({self._held} more dropped since the last such line)" if self._held else ""
        self._log.warning("%s: dropped %s%s; counted in %s", self._surface, what, more, self._metric, exc_info=exc_info)
        self._last, self._held = now, 0


__all__ = ["BurstLog"]
