"""The HTTP servers' common base: aiohttp with limits, the Host allow-list and CSRF checks."""

from .origin import HostAllowList, cross_origin, is_loopback
from .server import Limits, WebServer, text_response

__all__ = ["HostAllowList", "Limits", "WebServer", "cross_origin", "is_loopback", "text_response"]
