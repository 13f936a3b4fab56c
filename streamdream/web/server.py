"""One hardened aiohttp server in its own event-loop thread: the base of /metrics, the API, the preview.

What every server gets, whatever its routes:

- a cap on open connections, idle ones dropped first (``guard.py``), and an idle timeout
  that bounds both the time to send a request head and the keep-alive wait;
- a request timeout (408) for every route but the streaming ones, which have a send
  timeout instead (a client that stops reading is dropped);
- bounded bodies (``client_max_size``: 413), header lines and counts (aiohttp's parser),
  and aiohttp's HTTP/1.1 parser for Content-Length and chunked bodies: a body is always
  read or discarded as a body, never run as a request;
- the ``Host`` allow-list (``origin.py``: 400 for any other host name);
- no access log (a query string could hold a secret); requests are logged at DEBUG, a
  malformed request as one warning line (no traceback).

The socket is bound in the constructor (a port in use fails at once); ``start()`` serves it
on the process's HTTP event-loop thread, ``stop()`` closes every connection and frees it.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from ..errors import StreamdreamError
from ..runtime.executor import WorkerExecutor
from ..runtime.workers import Workers
from .guard import ConnectionPool, GuardedProtocol
from .origin import HostAllowList

log = logging.getLogger(__name__)


class _MalformedRequestFilter(logging.Filter):
    """aiohttp logs a malformed request (garbage bytes, a broken header) with a traceback, as if
    the server had failed: it is the client's mistake, one warning line, the bytes not quoted."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, HttpProcessingError):
            record.msg, record.args = "%s: malformed HTTP request (%s), answered 400", (record.getMessage(), type(error).__name__)
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.exc_info = record.exc_text = None
        return True


logging.getLogger("aiohttp.server").addFilter(_MalformedRequestFilter())

T = TypeVar("T")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Limits:
    max_connections: int = 64
    idle_timeout: float = 10.0  # to send a request head, and between keep-alive requests
    request_timeout: float = 10.0  # a whole request (its body included) and its answer
    send_timeout: float = 10.0  # a streaming client that reads nothing for this long is dropped
    max_body: int = 16 * 1024
    stop_timeout: float = 3.0


def text_response(status: int, text: str, **headers: str) -> web.Response:
    return web.Response(status=status, text=text if text.endswith("\n") else text + "\n", headers={"Cache-Control": "no-store", **headers})


_COMMON_HEADERS = {"Server": "streamdream", "X-Content-Type-Options": "nosniff"}  # not the library and its version


async def _common_headers(request: web.Request, response: web.StreamResponse) -> None:
    response.headers.update(_COMMON_HEADERS)


class _CommonHeadersHandler(RequestHandler):
    """aiohttp's connection handler, whose own error pages (the 400 for a request it cannot
    parse, its 500 and 504) carry the common headers too: they never reach the application,
    so its ``on_response_prepare`` does not see them, and aiohttp would name itself and its
    version in them."""

    __slots__ = ()  # the layout of RequestHandler (slotted): a handler can become one

    def handle_error(
        self, request: BaseRequest, status: int = 500, exc: BaseException | None = None, message: str | None = None
    ) -> web.StreamResponse:
        response = super().handle_error(request, status, exc, message)
        response.headers.update(_COMMON_HEADERS)
        return response


def _with_common_headers(handler: RequestHandler) -> RequestHandler:
    """``handler`` (made by aiohttp's server, with its settings) as a ``_CommonHeadersHandler``."""
    handler.__class__ = _CommonHeadersHandler
    return handler


class _SharedLoop:
    """One event-loop thread for every HTTP server of one owner tree (the service's, the preview's).

    One thread rather than one per server: two loop threads would hand the GIL back and forth
    at every step of a request, which costs more than they gain. The thread, and the workers
    that run the loop's blocking calls (``WorkerExecutor``), belong to the top of the servers'
    owner tree (``Workers.root``: the daemon's or the command's), so they are listed and joined
    with every other thread of it; the last of that tree's servers to stop ends them. A process
    has one tree (``run``, ``serve``), so one loop; two trees (a test's) get one each, so no
    tree holds a loop that another tree's server still uses, or that outlives its own join.
    """

    _lock = threading.Lock()
    _by_root: ClassVar[dict[Workers, _SharedLoop]] = {}  # the loops running now, by their tree's top

    def __init__(self, root: Workers) -> None:
        self.root = root
        self.loop = asyncio.new_event_loop()
        self.executor = WorkerExecutor(root, "http-call", max_workers=4)
        self.worker = root.spawn("http", self._run, self.loop)
        self.users = 0

    @classmethod
    def acquire(cls, owner: Workers) -> _SharedLoop:
        """The loop of ``owner``'s tree, started by its first server; ``release()`` once per acquire."""
        with cls._lock:
            shared = cls._by_root.get(owner.root)
            if shared is None:
                shared = cls._by_root[owner.root] = cls(owner.root)
            shared.users += 1
            return shared

    def release(self) -> None:
        """The last server of the tree to stop ends the loop thread and the call workers, and joins them."""
        with self._lock:
            self.users -= 1
            if self.users > 0 or self._by_root.get(self.root) is not self:
                return
            del self._by_root[self.root]
        self.loop.call_soon_threadsafe(self.loop.stop)
        thread = self.worker.thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=10)
        self.executor.shutdown(wait=True)

    @classmethod
    def executor_of(cls, loop: asyncio.AbstractEventLoop) -> WorkerExecutor | None:
        with cls._lock:
            return next((shared.executor for shared in cls._by_root.values() if shared.loop is loop), None)

    @staticmethod
    def _run(loop: asyncio.AbstractEventLoop) -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
        finally:
            loop.close()


async def run_blocking(fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` on one of the HTTP loop's call workers (a JPEG encode, a verb that takes a lock)."""
    loop = asyncio.get_running_loop()
    executor = _SharedLoop.executor_of(loop)
    if executor is None:  # pragma: no cover - only the loop's own coroutines call this, while it runs
        raise RuntimeError("no HTTP loop is running")
    return await loop.run_in_executor(executor, fn, *args)


class WebServer:
    """Serve ``routes`` on ``host:port`` (see the module docstring). Binds in the constructor."""

    def __init__(
        self,
        routes: Iterable[web.RouteDef],
        host: str,
        port: int,
        *,
        name: str,
        limits: Limits = Limits(),
        allowed_hosts: Iterable[str] = (),
        streaming: Iterable[str] = (),
        what: str = "this server",
    ) -> None:
        self.name = name
        self.host = host.strip("[]")
        self.limits = limits
        self.hosts = HostAllowList(self.host, allowed_hosts)
        self._streaming = frozenset(streaming)
        self._routes = list(routes)
        self.pool = ConnectionPool(limits.max_connections, limits.idle_timeout)
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        try:
            self._socket = socket.create_server((self.host, port), family=family, backlog=128)
        except OSError as exc:
            raise StreamdreamError(
                f"cannot listen on {host}:{port} for {what}: {exc.strerror or exc}; "
                "choose another port or stop the other program"
            ) from None
        self._socket.setblocking(False)
        self.port = int(self._socket.getsockname()[1])
        self._loop: asyncio.AbstractEventLoop | None = None
        self._shared: _SharedLoop | None = None
        self._ready = threading.Event()

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        return self._loop

    # --- start and stop -----------------------------------------------------------------------

    def start(self, workers: Workers) -> None:
        """Serve, on the process's one loop thread; ``workers``: the owner whose tree it joins."""
        shared = self._shared = _SharedLoop.acquire(workers)
        loop = self._loop = shared.loop
        self._task = asyncio.run_coroutine_threadsafe(self._main(), loop)
        self._task.add_done_callback(lambda _: self._ready.set())
        self._ready.wait(timeout=30)
        if self._task.done() and self._task.exception() is not None:
            self._loop, self._shared = None, None
            shared.release()
            raise StreamdreamError(f"{self.name}: the HTTP server failed to start: {self._task.exception()}")

    def stop(self) -> None:
        """Close every connection and end this server; the last server to stop ends the loop thread."""
        loop, shared, task = self._loop, self._shared, getattr(self, "_task", None)
        if loop is not None and shared is not None and task is not None:
            self._loop, self._shared = None, None
            stopping = getattr(self, "_stopping", None)
            if stopping is not None:
                loop.call_soon_threadsafe(stopping.set)
            try:
                task.result(timeout=self.limits.stop_timeout + 5)
            except Exception:  # noqa: BLE001 - stopping goes on whatever went wrong in serving
                log.exception("%s: the HTTP server did not stop cleanly", self.name)
            shared.release()
        self._socket.close()

    async def _main(self) -> None:
        self._stopping = asyncio.Event()
        app = web.Application(client_max_size=self.limits.max_body, middlewares=[self._guard_middleware])
        app.add_routes(self._routes)
        app.on_response_prepare.append(_common_headers)
        runner = web.AppRunner(
            app, access_log=None, handler_cancellation=True, shutdown_timeout=self.limits.stop_timeout,
            keepalive_timeout=self.limits.idle_timeout, lingering_time=2.0,
        )  # fmt: skip
        await runner.setup()
        loop = asyncio.get_running_loop()
        pool = self.pool
        handlers = runner.server
        assert handlers is not None  # runner.setup() made it
        server = await loop.create_server(lambda: GuardedProtocol(_with_common_headers(handlers()), pool), sock=self._socket)
        self._ready.set()
        try:
            await self._stopping.wait()
        finally:
            server.close()
            await runner.cleanup()
            pool.close_all()

    # --- every request ------------------------------------------------------------------------

    @web.middleware
    async def _guard_middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        transport = request.transport
        guard = transport.get_protocol() if transport is not None else None
        if not isinstance(guard, GuardedProtocol):
            guard = None
        if guard is not None:
            guard.request_started()
        try:
            log.debug("%s: %s %s from %s", self.name, request.method, request.path, request.remote)
            if not self.hosts.allows(request.headers.get("Host")):
                return text_response(
                    400, f"unknown Host {request.headers.get('Host', '')[:100]!r}: this server answers to "
                    f"{self.hosts.describe()} (DNS rebinding protection; add names with metrics.allowed_hosts)",
                )  # fmt: skip
            if request.path in self._streaming:
                return await handler(request)
            return await self._within_timeout(request, handler)
        finally:
            if guard is not None:
                guard.request_finished()

    async def _within_timeout(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """The handler's answer, or 408 after ``request_timeout`` (a timer, not a task per request)."""
        task = asyncio.current_task()
        assert task is not None, "aiohttp runs every handler in a task"
        expired = []

        def expire() -> None:
            expired.append(True)
            task.cancel()

        timer = asyncio.get_running_loop().call_later(self.limits.request_timeout, expire)
        try:
            return await handler(request)
        except asyncio.CancelledError:
            if not expired:
                raise
            if hasattr(task, "uncancel"):
                task.uncancel()
            return text_response(408, f"request not complete within {self.limits.request_timeout:g} s", Connection="close")
        finally:
            timer.cancel()
