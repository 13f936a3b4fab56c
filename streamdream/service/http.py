"""One small HTTP server: /metrics for Prometheus, /healthz, and the control API.

==============================  =========================================================
``GET  /metrics``               Prometheus text format (path set by ``metrics.path``)
``GET  /healthz``               200 ``ok`` while frames flow; 503 and the reason otherwise
``GET  /api/state``             preset, strength, playlist, source and health as JSON
``POST /api/preset/next``       switch to the next preset of the playlist
``POST /api/preset``            ``{"name": "evening"}``: switch to that preset
``POST /api/strength``          ``{"value": 1.5}``: multiply the dream step size
==============================  =========================================================

``/api/*`` needs ``Authorization: Bearer TOKEN`` whenever a token is configured
(``control.token`` or ``STREAMDREAM_CONTROL_TOKEN``); a server bound to a non-loopback
address refuses to start without one. /metrics and /healthz are open, as scrapers and
health checks expect.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import os
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

from prometheus_client import CONTENT_TYPE_LATEST

from ..config import ControlConfig, MetricsConfig
from ..errors import ControlError, StreamdreamError
from .health import HealthMonitor
from .metrics import PrometheusObserver

log = logging.getLogger(__name__)

TOKEN_ENV = "STREAMDREAM_CONTROL_TOKEN"
MAX_BODY = 64 * 1024


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


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


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


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class ServiceServer:
    """Runs the HTTP server in a daemon thread; ``shutdown()`` stops it and frees the port."""

    def __init__(
        self,
        config: MetricsConfig,
        *,
        metrics: PrometheusObserver,
        health: HealthMonitor,
        controller: Controller | None = None,
        control: ControlConfig | None = None,
    ) -> None:
        self.config = config
        self.metrics = metrics
        self.health = health
        self.controller = controller
        control = control or ControlConfig(enabled=False)
        self.token = check_control_binding(config.host, control) if controller is not None else None
        self.control_enabled = controller is not None and control.enabled
        handler = type("Handler", (_Handler,), {"service": self})
        _Server.address_family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
        try:
            self._httpd = _Server((config.host.strip("[]"), config.port), handler)
        except OSError as exc:
            raise StreamdreamError(
                f"cannot listen on {config.host}:{config.port} for metrics/health/control: "
                f"{exc.strerror or exc}; choose another metrics.port or stop the other program"
            ) from None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        host = self.config.host if ":" not in self.config.host else f"[{self.config.host.strip('[]')}]"
        return f"http://{host}:{self.port}"

    def set_control(self, control: ControlConfig) -> None:
        """Apply a reloaded ``control`` section (token, enabled); the address stays."""
        if self.controller is None:
            return
        self.token = check_control_binding(self.config.host, control)
        self.control_enabled = control.enabled

    def start(self) -> None:
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.25}, name="http", daemon=True)
        self._thread.start()
        what = "metrics, health" + (", control API" if self.control_enabled else "")
        log.info("serving %s on %s (metrics at %s)", what, self.url, self.config.path)

    def shutdown(self) -> None:
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._httpd.server_close()


class _Handler(BaseHTTPRequestHandler):
    service: ServiceServer  # set on the subclass made per server
    server_version = "streamdream"
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        log.debug("%s %s", self.address_string(), format % args)

    # --- responses ----------------------------------------------------------------------------

    def _send(self, status: int, body: bytes, content_type: str = "text/plain; charset=utf-8", extra: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, data: Any) -> None:
        self._send(status, (json.dumps(data, indent=1) + "\n").encode(), "application/json")

    def _error(self, status: int, message: str, extra: dict | None = None) -> None:
        self._send(status, (json.dumps({"error": message}) + "\n").encode(), "application/json", extra)

    # --- routing ------------------------------------------------------------------------------

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        path = self.path.split("?", 1)[0]
        service = self.service
        if path == service.config.path:
            self._send(200, service.metrics.exposition(), CONTENT_TYPE_LATEST)
        elif path == "/healthz":
            status = service.health.status()
            self._send(200 if status.ok else 503, (status.reason + "\n").encode())
        elif path == "/api/state":
            if self._authorized():
                state = service.controller.state() if service.controller else {}
                self._json(200, {**state, "health": service.health.status().as_dict()})
        else:
            self._error(404, f"no such path {path}; try {service.config.path}, /healthz or /api/state")

    do_HEAD = do_GET

    def do_POST(self) -> None:  # noqa: N802
        path = self.path.split("?", 1)[0]
        if not path.startswith("/api/"):
            self._error(404, f"no such path {path}")
            return
        if not self._authorized():
            return
        body = self._body()
        if body is None:
            return
        controller = self.service.controller
        try:
            if path == "/api/preset/next":
                result = controller.next_preset()
            elif path == "/api/preset":
                name = body.get("name")
                if not isinstance(name, str) or not name:
                    raise ControlError('give the preset as {"name": "NAME"}')
                result = controller.set_preset(name)
            elif path == "/api/strength":
                value = body.get("value")
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    raise ControlError('give the strength as {"value": NUMBER}, e.g. {"value": 1.5}')
                result = controller.set_strength(float(value))
            else:
                self._error(404, f"no such control endpoint {path}; see /api/state")
                return
        except ControlError as exc:
            self._error(400, str(exc))
            return
        self._json(200, result)

    def _authorized(self) -> bool:
        service = self.service
        if not service.control_enabled or service.controller is None:
            self._error(404, "the control API is disabled (control.enabled: false)")
            return False
        if service.token is None:
            return True
        header = self.headers.get("Authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), service.token.encode()):
            return True
        log.warning("control API: refused %s %s from %s: %s", self.command, self.path.split("?", 1)[0],
                    self.client_address[0], "wrong token" if header else "no token")
        self._error(401, "a control token is required: send 'Authorization: Bearer TOKEN'",
                    {"WWW-Authenticate": 'Bearer realm="streamdream"'})
        return False

    def _body(self) -> dict | None:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY:
            self._error(400, f"request body must be 0..{MAX_BODY} bytes of JSON")
            return None
        raw = self.rfile.read(length) if length else b""
        if not raw.strip():
            return {}
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            self._error(400, f"request body is not JSON: {exc}")
            return None
        if not isinstance(data, dict):
            self._error(400, "request body must be a JSON object")
            return None
        return data


__all__ = ["ServiceServer", "Controller", "resolve_token", "is_loopback", "check_control_binding", "TOKEN_ENV"]
