"""Connection limits aiohttp does not have: a cap on open connections and a head timeout.

``GuardedProtocol`` wraps aiohttp's per-connection protocol. ``ConnectionPool`` admits a
new connection while fewer than ``max_connections`` are open; at the cap it drops the
oldest *idle* connection (one that is not in the middle of a request: a half-sent request,
a keep-alive connection between requests) to make room, and refuses the newcomer with a
503 only when every connection is busy. So 1,000 half-open connections hold at most
``max_connections`` file descriptors, and a health check still gets through.

An idle connection has ``idle_timeout`` seconds to deliver a complete request head (from
its opening, or from the end of its previous response); a request then in progress is
bounded by the request timeout of ``server.py``, a stream by its send timeout.
"""

from __future__ import annotations

import asyncio
import logging

log = logging.getLogger(__name__)

_BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n"
    b"Content-Length: 41\r\nConnection: close\r\n\r\ntoo many connections; try again shortly\r\n"
)


class ConnectionPool:
    """The open connections of one server, oldest first (only touched on its event loop)."""

    def __init__(self, max_connections: int, idle_timeout: float) -> None:
        self.max_connections = max_connections
        self.idle_timeout = idle_timeout
        self._open: dict[GuardedProtocol, None] = {}  # insertion order = age
        self.evicted = 0
        self.refused = 0

    def __len__(self) -> int:
        return len(self._open)

    def admit(self, guard: GuardedProtocol) -> bool:
        if len(self._open) >= self.max_connections:
            victim = next((g for g in self._open if not g.busy), None)
            if victim is None:
                self.refused += 1
                return False
            self.evicted += 1
            self.discard(victim)
            victim.drop("evicted: the connection cap was reached")
        self._open[guard] = None
        return True

    def discard(self, guard: GuardedProtocol) -> None:
        self._open.pop(guard, None)

    def close_all(self) -> None:
        for guard in list(self._open):
            guard.drop("server stopping")
        self._open.clear()


class GuardedProtocol(asyncio.Protocol):
    """aiohttp's protocol for one connection, behind the pool's admission and idle timer."""

    def __init__(self, inner: asyncio.Protocol, pool: ConnectionPool) -> None:
        self._inner = inner
        self._pool = pool
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._admitted = False
        self.busy = 0

    # --- asyncio.Protocol, forwarded --------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        if not self._pool.admit(self):
            transport.write(_BUSY)  # type: ignore[attr-defined]
            transport.close()
            return
        self._admitted = True
        self._inner.connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self._admitted:
            self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received() if self._admitted else None

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel()
        self._pool.discard(self)
        if self._admitted:
            self._admitted = False
            self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        if self._admitted:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._admitted:
            self._inner.resume_writing()

    # --- requests (told by the server's middleware) -----------------------------------------

    def request_started(self) -> None:
        self.busy += 1
        self._cancel()

    def request_finished(self) -> None:
        self.busy -= 1
        if self.busy == 0 and self._admitted:
            self._arm()

    def drop(self, why: str) -> None:
        log.debug("dropping a connection: %s", why)
        self._cancel()
        if self._transport is not None:
            self._transport.abort()

    # --- the idle timer ---------------------------------------------------------------------

    def _arm(self) -> None:
        self._cancel()
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self._pool.idle_timeout, self._expired)

    def _cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expired(self) -> None:
        self._timer = None
        if not self.busy:
            self._pool.discard(self)
            self.drop(f"no complete request within {self._pool.idle_timeout:g} s")
