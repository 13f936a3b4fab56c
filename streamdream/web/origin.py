"""DNS rebinding and cross-site requests: the ``Host`` allow-list and the same-origin check.

A web page can make a browser send requests to 127.0.0.1, but only under its own host
name: a rebinding page's requests carry ``Host: attacker.example``, and a cross-site
``fetch`` or form carries the page's ``Origin``. So every request's ``Host`` must name
this server (by default its bound address, ``localhost``, ``127.0.0.1`` or ``[::1]``; a
server bound beyond loopback also answers to IP literals, which no rebinding can forge,
and to this machine's own names), and a state-changing request with an ``Origin`` must
come from the same origin.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from urllib.parse import urlsplit

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
WILDCARDS = ("", "0.0.0.0", "::")


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def is_loopback(host: str) -> bool:
    host = host.strip("[]").lower()
    if host == "localhost":
        return True
    ip = _ip(host)
    return bool(ip and ip.is_loopback)


def split_host(value: str) -> tuple[str, int | None] | None:
    """``'Example.com.:8080'`` -> ``('example.com', 8080)``; ``'[::1]'`` -> ``('::1', None)``; None if malformed."""
    value = value.strip()
    try:
        parts = urlsplit(f"//{value}")
        host, port = parts.hostname, parts.port
    except ValueError:
        return None
    if not host or parts.username is not None or parts.password is not None or parts.path or parts.query:
        return None
    return host.rstrip("."), port


class HostAllowList:
    """The names this server answers to (see the module docstring)."""

    def __init__(self, bound_host: str, extra: Iterable[str] = ()) -> None:
        bound = bound_host.strip("[]").lower()
        self.names = {name.lower() for name in LOOPBACK_NAMES} | {bound} | {n.strip("[]").lower().rstrip(".") for n in extra}
        self.any_ip = bound in WILDCARDS or not is_loopback(bound)
        if self.any_ip:  # reachable from the network: answer to this machine's own names too
            own = socket.gethostname().lower()
            self.names |= {own, f"{own}.local", socket.getfqdn().lower()}
        self.names.discard("")

    def allows(self, host_header: str | None) -> bool:
        if host_header is None:  # only HTTP/1.0 clients omit it, never a browser
            return True
        parsed = split_host(host_header)
        if parsed is None:
            return False
        host = parsed[0]
        return host in self.names or (self.any_ip and _ip(host) is not None)

    def describe(self) -> str:
        names = sorted(self.names) + (["any IP address"] if self.any_ip else [])
        return ", ".join(names)


def cross_origin(origin: str | None, host_header: str | None, fetch_site: str | None) -> str | None:
    """Why a state-changing request looks cross-site, or None when it does not.

    No ``Origin`` (curl, scripts): not a browser, nothing to forge. ``Origin: null``
    (sandboxed frames, some redirects) is never same-origin.
    """
    if fetch_site is not None and fetch_site.lower() not in ("same-origin", "none"):
        return f"Sec-Fetch-Site is {fetch_site!r}"
    if origin is None:
        return None
    parts = urlsplit(origin.strip())
    target = split_host(host_header or "")
    try:
        origin_port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    except ValueError:
        return f"Origin {origin[:100]!r} is not a valid origin"
    if target is None or not parts.hostname:
        return f"Origin {origin[:100]!r} is not this server"
    host, port = target
    same = parts.scheme == "http" and parts.hostname.rstrip(".") == host and origin_port == (port or 80)
    return None if same else f"Origin {origin[:100]!r} is not this server"
