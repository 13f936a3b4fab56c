"""Wrong control tokens, throttled per client, logged once per burst.

Each client address has a bucket of ``burst`` tries that refills at one per ``refill``
seconds; a wrong or missing token takes one, and a client with an empty bucket is
answered 429 without its token being looked at. A *burst* is a run of refusals with no
gap longer than ``quiet`` seconds: its first refusal is logged (with the count of the
previous burst), the rest are only counted (the caller's metric).
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass
class _Client:
    tries: float
    updated: float
    last_refusal: float = float("-inf")
    refused_in_burst: int = 0


class TokenThrottle:
    def __init__(self, burst: int = 5, refill: float = 2.0, quiet: float = 60.0, max_clients: int = 4096, clock=time.monotonic) -> None:
        self.burst, self.refill, self.quiet = burst, refill, quiet
        self.max_clients = max_clients
        self._clock = clock
        self._clients: OrderedDict[str, _Client] = OrderedDict()

    def _client(self, address: str) -> _Client:
        now = self._clock()
        client = self._clients.get(address)
        if client is None:
            client = self._clients[address] = _Client(tries=self.burst, updated=now)
            while len(self._clients) > self.max_clients:  # bounded memory: forget the least recent
                self._clients.popitem(last=False)
        else:
            self._clients.move_to_end(address)
            client.tries = min(self.burst, client.tries + (now - client.updated) / self.refill)
            client.updated = now
        return client

    def retry_after(self, address: str) -> float | None:
        """Seconds until ``address`` may try again, or None if it may try now."""
        client = self._client(address)
        return None if client.tries >= 1 else (1 - client.tries) * self.refill

    def refused(self, address: str, what: str) -> None:
        """Count a refusal (wrong or missing token, or a throttled try); log the first of a burst."""
        client = self._client(address)
        now = self._clock()
        client.tries = max(0.0, client.tries - 1)
        if now - client.last_refusal > self.quiet:
            previous = f" ({client.refused_in_burst} refused in its previous burst)" if client.refused_in_burst else ""
            log.warning(
                "control API: %s from %s%s; further refusals from it are counted in "
                "streamdream_control_refused_total and throttled (429 after %d tries), "
                "not logged until it has been quiet for %g s", what, address, previous, self.burst, self.quiet,
            )  # fmt: skip
            client.refused_in_burst = 0
        client.refused_in_burst += 1
        client.last_refusal = now
