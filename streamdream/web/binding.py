"""Where an HTTP server may listen: the listen address grammar and the control API's token rule.

Checked by the preflight before anything starts and again by the server itself, so a
control API that would be open to the network without a token never listens.
"""

from __future__ import annotations

import os
import socket

from ..config import ControlConfig
from ..errors import ConfigError, ControlError, StreamdreamError
from .origin import is_loopback

TOKEN_ENV = "STREAMDREAM_CONTROL_TOKEN"


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
    port = port_number(port_text)
    if port is None:
        raise ConfigError(f"--metrics: give HOST:PORT or PORT with a port 0..65535, e.g. 127.0.0.1:9108, got {text!r}")
    return host.strip("[]") or default_host, port


def port_number(text: str) -> int | None:
    """``text`` as a TCP port, 0..65535 (0: any free port); None if it is not one."""
    try:
        port = int(text)
    except ValueError:
        return None
    return port if 0 <= port <= 65535 else None


def check_listen(host: str, port: int, what: str, error: type[StreamdreamError]) -> None:
    """The address can be bound now (port 0 always can)."""
    if port == 0:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers themselves do
            probe.bind((host, port))
    except OSError as exc:
        raise error(f"{what}: cannot listen on {host}:{port}: {exc.strerror or exc}") from None


__all__ = ["TOKEN_ENV", "check_control_binding", "check_listen", "parse_listen_address", "port_number", "resolve_token"]
