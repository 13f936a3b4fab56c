"""The service's HTTP server: /metrics for Prometheus, /healthz, and the control API.

=================================  ======================================================
``GET  /``                         the control page (``page.py``): picture, state, presets
``GET  /metrics``                  Prometheus text format (path set by ``metrics.path``)
``GET  /healthz``                  200 ``ok`` while frames flow; 503 and the reason otherwise
``GET  /api/state``                preset, strength, playlist, source, health, last errors
``GET  /api/snapshot.jpg``         the latest output picture
``POST /api/login``                ``{"token": "..."}``: a session cookie for the page
``POST /api/preset/next``          switch to the next preset of the playlist
``POST /api/preset/previous``      switch to the previous preset of the playlist
``POST /api/preset``               ``{"name": "evening"}``: switch to that preset
``POST /api/strength``             ``{"value": 1.5}``: multiply the dream strength
``POST /api/step_size``            ``{"value": 2.0}``: the dream's base step size
``POST /api/carry``                ``{"value": 0.95}``: flow mode's carry
``POST /api/crossfade``            ``{"value": 2.0}``: seconds the next switches blend
``POST /api/blend``                ``{"value": 0.5}``: the second input's share (``dream.blend``)
``POST /api/layer/NAME/weight``    ``{"value": 0.5}``: one layer's weight in the objective
``POST /api/midi/learn``           ``{"control": "strength"}``: bind the next MIDI knob or pad
                                   to it (``layer``/``preset`` too for those; null: stop)
``POST /api/webrtc/offer``         ``{"type": "offer", "sdp": "..."}``: the answer that plays the
                                   ``webrtc:`` output (``sinks/webrtc.py``); 404 without one
=================================  ======================================================

The verbs and their argument checks are shared with OSC (``control.py``).

It runs on the hardened base in ``streamdream/web`` (timeouts, connection cap, bounded
bodies, the ``Host`` allow-list). On top of that, for ``/api/*``:

- a ``POST`` must have ``Content-Type: application/json`` (415), which no page can send
  to another origin without a CORS preflight this server never grants, and an ``Origin``,
  if it has one, of this server (403);
- ``Authorization: Bearer TOKEN``, or the page's session cookie (``web/session.py``), whenever
  a token is configured (``control.token`` or ``STREAMDREAM_CONTROL_TOKEN``); a server bound
  beyond loopback refuses to start without one. Wrong tokens (and logins) are throttled per
  client (429) and logged once per burst;
- bodies are bounded JSON objects (``web/jsonbody.py``: 400).

/metrics, /healthz and the page itself are open, as scrapers and health checks expect (the
page holds nothing: it asks /api/state, and shows its login form on a 401). Every answer and
error message goes through ``redact_data``, /healthz and /metrics through ``redact``: the
one gate (``redact.py``), so no credential leaves through the API whatever a message holds.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import weakref
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge

from ..config import ControlConfig, HealthConfig, MetricsConfig
from ..errors import ControlError
from ..redact import redact, redact_data
from ..runtime.observer import ObserverGroup, PipelineObserver
from ..runtime.workers import Workers
from ..sinks import webrtc
from ..web.binding import check_control_binding
from ..web.jsonbody import BodyError, parse_object
from ..web.origin import cross_origin
from ..web.server import Limits, WebServer, run_blocking, text_response
from ..web.session import COOKIE, Sessions
from ..web.throttle import TokenThrottle
from .control import Controller, perform
from .health import HealthMonitor
from .metrics import PrometheusObserver
from .page import SnapshotCache, page_response

log = logging.getLogger(__name__)

MAX_BODY = 16 * 1024
REFUSAL_REASONS = ("no_token", "wrong_token", "throttled", "cross_origin", "content_type")
SNAPSHOT = "/api/snapshot.jpg"


def _json(status: int, data: Any, **headers: str) -> web.Response:
    body = json.dumps(redact_data(data), indent=1) + "\n"
    return web.Response(status=status, text=body, content_type="application/json", headers={"Cache-Control": "no-store", **headers})


async def _read_body(request: web.Request) -> dict[str, Any] | web.Response:
    """The request's JSON object, or the error answer (413 too large, 400 not a JSON object)."""
    try:
        return parse_object(await request.read())
    except web.HTTPRequestEntityTooLarge:
        return _error(413, f"request body over {MAX_BODY} bytes")
    except BodyError as exc:
        return _error(400, str(exc))


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


_VIEWERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # registry -> its gauge


def _viewers_gauge(metrics: PrometheusObserver, hub: webrtc.WebRtcHub) -> None:
    """``streamdream_webrtc_viewers``: the WebRTC output's viewers now, made once per registry."""
    if metrics.registry not in _VIEWERS:
        gauge = Gauge("streamdream_webrtc_viewers", "Browsers watching the webrtc: output now.", registry=metrics.registry)
        gauge.set_function(lambda: hub.viewers)
        _VIEWERS[metrics.registry] = gauge


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
        self.sessions = Sessions()
        self.snapshots = SnapshotCache()
        self.webrtc = webrtc.hub()
        _viewers_gauge(metrics, self.webrtc)
        verb = self._verb
        routes = [
            web.get(config.path, self._metrics),
            web.get("/healthz", self._healthz),
            web.get("/", self._page),
            web.get("/api/state", self._state),
            web.get(SNAPSHOT, self._snapshot),
            web.post("/api/login", self._login),
            web.post("/api/logout", self._logout),
            web.post("/api/preset/next", lambda r: verb(r, "next")),
            web.post("/api/preset/previous", lambda r: verb(r, "previous")),
            web.post("/api/preset", lambda r: verb(r, "preset", "name")),
            web.post("/api/strength", lambda r: verb(r, "strength")),
            web.post("/api/step_size", lambda r: verb(r, "step_size")),
            web.post("/api/carry", lambda r: verb(r, "carry")),
            web.post("/api/crossfade", lambda r: verb(r, "crossfade")),
            web.post("/api/blend", lambda r: verb(r, "blend")),
            web.post("/api/layer/{layer}/weight", lambda r: verb(r, "layer")),
            web.post("/api/midi/learn", self._midi_learn),
            web.post("/api/webrtc/offer", self._webrtc_offer),
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

    def start(self, workers: Workers) -> None:
        """Serve on the process's HTTP thread, in ``workers``' tree (the daemon's)."""
        self._web.start(workers)
        what = "metrics, health" + (", control API" if self.control_enabled else "")
        log.info("serving %s on %s (metrics at %s)", what, self.url, self.config.path)

    def shutdown(self) -> None:
        loop = self._web.loop
        if loop is not None and self.webrtc.peers:  # viewers are closed on the loop, before it ends
            try:
                asyncio.run_coroutine_threadsafe(self.webrtc.close_all(), loop).result(timeout=5)
            except Exception:  # noqa: BLE001 - stopping goes on whatever a viewer's close did
                log.exception("closing the WebRTC viewers failed")
        self._web.stop()

    # --- open endpoints -----------------------------------------------------------------------

    async def _metrics(self, request: web.Request) -> web.Response:
        body = redact(self.metrics.exposition().decode()).encode()  # labels are chosen safe; the gate anyway
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST, "Cache-Control": "no-store"})

    async def _healthz(self, request: web.Request) -> web.Response:
        status = self.health.status()
        return text_response(200 if status.ok else 503, redact(status.reason))

    async def _page(self, request: web.Request) -> web.Response:
        if not self.control_enabled:
            return await self._not_found(request)
        return page_response()

    async def _not_found(self, request: web.Request) -> web.Response:
        return _error(404, f"no such endpoint {request.method} {request.path}; try GET /, GET {self.config.path}, "
                           "GET /healthz, GET /api/state or POST /api/preset/next, /api/preset/previous, /api/preset, "
                           "/api/strength, /api/step_size, /api/carry, /api/crossfade, /api/blend, /api/layer/NAME/weight")

    # --- the control API ----------------------------------------------------------------------

    def _refuse(self, reason: str, status: int, message: str, **headers: str) -> web.Response:
        self.refused.labels(reason=reason).inc()
        return _error(status, message, **headers)

    def _refuse_post(self, request: web.Request) -> web.Response | None:
        """A POST from another origin, or not JSON (what a form or a no-cors fetch sends), is refused."""
        why = cross_origin(request.headers.get("Origin"), request.headers.get("Host"), request.headers.get("Sec-Fetch-Site"))
        if why is not None:
            return self._refuse("cross_origin", 403, f"cross-origin request refused: {why}")
        if request.content_type != "application/json":
            return self._refuse("content_type", 415, "send the request with 'Content-Type: application/json'")
        return None

    def _check(self, request: web.Request) -> web.Response | None:
        """The refusal for a control request, or None when it may go ahead."""
        if not self.control_enabled or self.controller is None:
            return _error(404, "the control API is disabled (control.enabled: false)")
        if request.method == "POST" and (refused := self._refuse_post(request)) is not None:
            return refused
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
        if not header and self.sessions.valid(request.cookies.get(COOKIE), self.token):
            return None
        reason = "wrong_token" if header or COOKIE in request.cookies else "no_token"
        self.throttle.refused(client, f"refused {request.method} {request.path}: {reason.replace('_', ' ')}")
        return self._refuse(reason, 401, "a control token is required: send 'Authorization: Bearer TOKEN'",
                            **{"WWW-Authenticate": 'Bearer realm="streamdream"'})

    def _controller(self) -> Controller:
        """The controller, for an action ``_call`` runs: it refused the request if there is none."""
        controller = self.controller
        assert controller is not None, "_check refuses every control request without a controller"
        return controller

    async def _call(self, request: web.Request, action) -> web.Response:
        refusal = self._check(request)
        if refusal is not None:
            return refusal
        body: dict[str, Any] | web.Response = {}
        if request.method == "POST":
            body = await _read_body(request)
            if isinstance(body, web.Response):
                return body
        try:
            result = await run_blocking(action, body)  # the controller may take a lock
        except ControlError as exc:
            return _error(400, str(exc))
        return _json(200, result)

    async def _state(self, request: web.Request) -> web.Response:
        def state(_body: dict) -> dict[str, Any]:
            state = {**self._controller().state(), "health": self.health.status().as_dict()}
            if self.webrtc.active:  # the page plays webrtc: when it is there, the JPEG pictures otherwise
                state["webrtc"] = self.webrtc.state()
            return state

        return await self._call(request, state)

    async def _verb(self, request: web.Request, verb: str, field: str = "value") -> web.Response:
        layer = request.match_info.get("layer")
        return await self._call(request, lambda body: perform(self._controller(), verb, body.get(field), layer))

    async def _midi_learn(self, request: web.Request) -> web.Response:
        def learn(body: dict) -> dict[str, Any]:
            learn_on = getattr(self.controller, "midi_learn", None)
            if learn_on is None:
                raise ControlError("this server has no MIDI input")
            return learn_on(body.get("control"), body.get("layer"), body.get("preset"))

        return await self._call(request, learn)

    async def _webrtc_offer(self, request: web.Request) -> web.Response:
        """A browser's offer for the ``webrtc:`` output, answered under the control API's rules."""
        refusal = self._check(request)
        if refusal is not None:
            return refusal
        if not self.webrtc.active:
            return _error(404, "no WebRTC output is configured: add outputs: [{uri: 'webrtc:'}] (the page shows JPEG pictures)")
        body = await _read_body(request)
        if isinstance(body, web.Response):
            return body
        sdp = body.get("sdp")
        if body.get("type") != "offer" or not isinstance(sdp, str):
            return _error(400, 'send {"type": "offer", "sdp": "..."}: the browser\'s RTCPeerConnection offer')
        try:
            answer = await self.webrtc.answer(sdp)
        except webrtc.ViewerLimit as exc:
            return _error(503, str(exc), **{"Retry-After": "10"})
        except ValueError as exc:
            return _error(400, str(exc))
        # an SDP holds this session's own ICE credentials, nothing of the user's: not passed through redact
        return web.json_response({"type": "answer", "sdp": answer}, headers={"Cache-Control": "no-store"})

    async def _snapshot(self, request: web.Request) -> web.Response:
        refusal = self._check(request)
        if refusal is not None:
            return refusal
        picture = getattr(self.controller, "picture", None)
        jpeg = await run_blocking(self.snapshots.jpeg, picture() if picture else None)
        if jpeg is None:
            return _error(503, "no picture yet")
        return web.Response(body=jpeg, content_type="image/jpeg", headers={"Cache-Control": "no-store"})

    async def _login(self, request: web.Request) -> web.Response:
        """``{"token": ...}``: the page's session cookie; refused and throttled like a wrong bearer token."""
        if not self.control_enabled or self.controller is None:
            return _error(404, "the control API is disabled (control.enabled: false)")
        if (refused := self._refuse_post(request)) is not None:
            return refused
        if self.token is None:
            return _json(200, {"login": "not needed: no token is configured"})
        client = request.remote or "?"
        wait = self.throttle.retry_after(client)
        if wait is not None:
            self.throttle.refused(client, "a login while throttled")
            return self._refuse("throttled", 429, f"too many wrong tokens; try again in {wait:.0f} s",
                                **{"Retry-After": str(max(1, round(wait)))})
        try:
            given = parse_object(await request.read()).get("token")
        except (BodyError, web.HTTPRequestEntityTooLarge):
            given = None
        if isinstance(given, str) and hmac.compare_digest(given.strip().encode(), self.token.encode()):
            response = _json(200, {"login": "ok"})
            self.sessions.set_cookie(response, self.token)
            return response
        self.throttle.refused(client, "refused a login: wrong token")
        return self._refuse("wrong_token", 401, "wrong token")

    async def _logout(self, request: web.Request) -> web.Response:
        response = _json(200, {"logout": "ok"})
        Sessions.clear_cookie(response)
        return response


def start_metrics(config: MetricsConfig, workers: Workers, model: str = "") -> tuple[PipelineObserver, ServiceServer]:
    """For `streamdream run --metrics`: serve /metrics and /healthz in ``workers``' tree (the
    run's); returns (observer, server).

    The observer feeds both; the caller passes it to the pipeline and calls
    ``server.shutdown()`` at the end.
    """
    metrics = PrometheusObserver(model=model)
    health = HealthMonitor(HealthConfig())
    server = ServiceServer(config, metrics=metrics, health=health)
    server.start(workers)
    return ObserverGroup(metrics, health), server


__all__ = ["Controller", "ServiceServer", "start_metrics"]
