"""The service's HTTP server: /metrics for Prometheus, /healthz, and the control API.

==============================  =========================================================
``GET  /metrics``               Prometheus text format (path set by ``metrics.path``)
``GET  /healthz``               200 ``ok`` while frames flow; 503 and the reason otherwise
``GET  /api/state``             preset, strength, playlist, source and health as JSON
``POST /api/preset/next``       switch to the next preset of the playlist
``POST /api/preset``            ``{"name": "evening"}``: switch to that preset
``POST /api/strength``          ``{"value": 1.5}``: multiply the dream step size
==============================  =========================================================

It runs on the hardened base in ``streamdream/web`` (timeouts, connection cap, bounded
bodies, the ``Host`` allow-list). On top of that, for ``/api/*``:

- a ``POST`` must have ``Content-Type: application/json`` (415), which no page can send
  to another origin without a CORS preflight this server never grants, and an ``Origin``,
  if it has one, of this server (403);
- ``Authorization: Bearer TOKEN`` whenever a token is configured (``control.token`` or
  ``STREAMDREAM_CONTROL_TOKEN``); a server bound beyond loopback refuses to start without
  one. Wrong tokens are throttled per client (429) and logged once per burst;
- bodies are bounded JSON objects (``web/jsonbody.py``: 400).

/metrics and /healthz are open, as scrapers and health checks expect. Every answer and
error message goes through ``redact_data``: no credential leaves through the API.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import os
import weakref
from typing import Any, Protocol

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, Counter

from ..config import ControlConfig, MetricsConfig
from ..errors import ConfigError, ControlError
from ..redact import redact_data, redact_url
from ..web import Limits, WebServer, cross_origin, is_loopback, text_response
from ..web.jsonbody import BodyError, parse_object
from ..web.throttle import TokenThrottle
from .health import HealthMonitor
from .metrics import PrometheusObserver

log = logging.getLogger(__name__)

TOKEN_ENV = "STREAMDREAM_CONTROL_TOKEN"
MAX_BODY = 16 * 1024
REFUSAL_REASONS = ("no_token", "wrong_token", "throttled", "cross_origin", "content_type")


class Controller(Protocol):
    """What the control API drives; raises ControlError for a request it cannot honour."""

    def state(self) -> dict[str, Any]: ...

    def next_preset(self) -> dict[str, Any]: ...

    def set_preset(self, name: str) -> dict[str, Any]: ...

    def set_strength(self, value: float) -> dict[str, Any]: ...


def resolve_token(config: ControlConfig) -> str | None:
    """The control token: ``control.token``, else the environment, else None."""
    if config.token is not None:
        return config.token.get_secret_value()
    env = os.environ.get(TOKEN_ENV, "").strip()
    if env and not 8 <= len(env) <= 512:
        raise ControlError(f"{TOKEN_ENV}: must be 8-512 characters (value not shown)")
    return env or None


def check_control_binding(host: str, control: ControlConfig) -> str | None:
    """The token to require, or ControlError if the API would be open to the network."""
    token = resolve_token(control)
    if control.enabled and token is None and not is_loopback(host):
        raise ControlError(
            f"the control API would listen on {host} (not loopback) without a token: set control.token "
            f"(or {TOKEN_ENV}) to a secret of 8+ characters, set control.enabled: false, "
            "or bind metrics.host: 127.0.0.1"
        )
    return token


def parse_listen_address(text: str, default_host: str = "127.0.0.1") -> tuple[str, int]:
    """``'HOST:PORT'``, ``':PORT'``, ``'PORT'`` or ``'[::1]:PORT'`` -> (host, port); ConfigError naming the value."""
    host, _, port_text = text.strip().rpartition(":")
    host = host.strip("[]") or default_host
    try:
        port = int(port_text)
        if not 0 <= port <= 65535:
            raise ValueError
    except ValueError:
        raise ConfigError(f"--metrics: give HOST:PORT or PORT with a port 0..65535, e.g. 127.0.0.1:9108, got {text!r}") from None
    return host, port


def _json(status: int, data: Any, **headers: str) -> web.Response:
    body = json.dumps(redact_data(data), indent=1) + "\n"
    return web.Response(status=status, text=body, content_type="application/json", headers={"Cache-Control": "no-store", **headers})


def _error(status: int, message: str, **headers: str) -> web.Response:
    return _json(status, {"error": message}, **headers)


_REFUSED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # registry -> its counter


def _refusal_counter(metrics: PrometheusObserver) -> Counter:
    """``streamdream_control_refused_total{reason}`` on the metrics' registry, made once per registry."""
    registry = metrics.registry
    if registry not in _REFUSED:
        counter = Counter(
            "streamdream_control_refused", "Control API requests refused, by reason (throttled: too many wrong tokens).",
            ["reason"], registry=registry,
        )  # fmt: skip
        for reason in REFUSAL_REASONS:
            counter.labels(reason=reason)
        _REFUSED[registry] = counter
    return _REFUSED[registry]


class ServiceServer:
    """The HTTP server in its own event-loop thread; ``shutdown()`` stops it and frees the port."""

    def __init__(
        self,
        config: MetricsConfig,
        *,
        metrics: PrometheusObserver,
        health: HealthMonitor,
        controller: Controller | None = None,
        control: ControlConfig | None = None,
        limits: Limits = Limits(max_body=MAX_BODY),
    ) -> None:
        self.config = config
        self.metrics = metrics
        self.health = health
        self.controller = controller
        control = control or ControlConfig(enabled=False)
        self.token = check_control_binding(config.host, control) if controller is not None else None
        self.control_enabled = controller is not None and control.enabled
        self.throttle = TokenThrottle()
        self.refused = _refusal_counter(metrics)
        routes = [
            web.get(config.path, self._metrics),
            web.get("/healthz", self._healthz),
            web.get("/api/state", self._state),
            web.post("/api/preset/next", self._next_preset),
            web.post("/api/preset", self._set_preset),
            web.post("/api/strength", self._set_strength),
            web.route("*", "/{tail:.*}", self._not_found),
        ]
        self._web = WebServer(
            routes, config.host, config.port, name="service", limits=limits,
            allowed_hosts=config.allowed_hosts, what="metrics/health/control (metrics.port)",
        )  # fmt: skip

    @property
    def port(self) -> int:
        return self._web.port

    @property
    def url(self) -> str:
        return self._web.url

    def set_control(self, control: ControlConfig) -> None:
        """Apply a reloaded ``control`` section (token, enabled); the address stays."""
        if self.controller is None:
            return
        self.token = check_control_binding(self.config.host, control)
        self.control_enabled = control.enabled

    def start(self) -> None:
        self._web.start()
        what = "metrics, health" + (", control API" if self.control_enabled else "")
        log.info("serving %s on %s (metrics at %s)", what, self.url, self.config.path)

    def shutdown(self) -> None:
        self._web.stop()

    # --- open endpoints -----------------------------------------------------------------------

    async def _metrics(self, request: web.Request) -> web.Response:
        body = self.metrics.exposition()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST, "Cache-Control": "no-store"})

    async def _healthz(self, request: web.Request) -> web.Response:
        status = self.health.status()
        return text_response(200 if status.ok else 503, redact_url(status.reason))

    async def _not_found(self, request: web.Request) -> web.Response:
        return _error(404, f"no such endpoint {request.method} {request.path}; try GET {self.config.path}, "
                           "GET /healthz, GET /api/state or POST /api/preset/next, /api/preset, /api/strength")

    # --- the control API ----------------------------------------------------------------------

    def _refuse(self, reason: str, status: int, message: str, **headers: str) -> web.Response:
        self.refused.labels(reason=reason).inc()
        return _error(status, message, **headers)

    def _check(self, request: web.Request) -> web.Response | None:
        """The refusal for a control request, or None when it may go ahead."""
        if not self.control_enabled or self.controller is None:
            return _error(404, "the control API is disabled (control.enabled: false)")
        if request.method == "POST":
            why = cross_origin(request.headers.get("Origin"), request.headers.get("Host"), request.headers.get("Sec-Fetch-Site"))
            if why is not None:
                return self._refuse("cross_origin", 403, f"cross-origin request refused: {why}")
            if request.content_type != "application/json":
                return self._refuse("content_type", 415, "send the request with 'Content-Type: application/json'")
        if self.token is None:
            return None
        client = request.remote or "?"
        wait = self.throttle.retry_after(client)
        if wait is not None:
            self.throttle.refused(client, f"a {request.method} {request.path} while throttled")
            return self._refuse("throttled", 429, f"too many wrong tokens; try again in {wait:.0f} s",
                                **{"Retry-After": str(max(1, round(wait)))})
        header = request.headers.get("Authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), self.token.encode()):
            return None
        reason = "wrong_token" if header else "no_token"
        self.throttle.refused(client, f"refused {request.method} {request.path}: {reason.replace('_', ' ')}")
        return self._refuse(reason, 401, "a control token is required: send 'Authorization: Bearer TOKEN'",
                            **{"WWW-Authenticate": 'Bearer realm="streamdream"'})

    async def _call(self, request: web.Request, action) -> web.Response:
        refusal = self._check(request)
        if refusal is not None:
            return refusal
        body: dict[str, Any] = {}
        if request.method == "POST":
            try:
                body = parse_object(await request.read())
            except web.HTTPRequestEntityTooLarge:
                return _error(413, f"request body over {MAX_BODY} bytes")
            except BodyError as exc:
                return _error(400, str(exc))
        loop = asyncio.get_running_loop()
        try:
            result = await loop.run_in_executor(None, action, body)  # the controller may take a lock
        except ControlError as exc:
            return _error(400, str(exc))
        return _json(200, result)

    async def _state(self, request: web.Request) -> web.Response:
        def state(_body: dict) -> dict[str, Any]:
            return {**self.controller.state(), "health": self.health.status().as_dict()}

        return await self._call(request, state)

    async def _next_preset(self, request: web.Request) -> web.Response:
        return await self._call(request, lambda _body: self.controller.next_preset())

    async def _set_preset(self, request: web.Request) -> web.Response:
        def set_preset(body: dict) -> dict[str, Any]:
            name = body.get("name")
            if not isinstance(name, str) or not name:
                raise ControlError('give the preset as {"name": "NAME"}')
            return self.controller.set_preset(name[:200])

        return await self._call(request, set_preset)

    async def _set_strength(self, request: web.Request) -> web.Response:
        def set_strength(body: dict) -> dict[str, Any]:
            value = body.get("value")
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ControlError('give the strength as {"value": NUMBER}, e.g. {"value": 1.5}')
            return self.controller.set_strength(float(value))

        return await self._call(request, set_strength)


__all__ = [
    "ServiceServer", "Controller", "resolve_token", "is_loopback", "check_control_binding", "parse_listen_address", "TOKEN_ENV",
]  # fmt: skip
