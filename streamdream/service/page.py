"""The control page at ``/`` of the daemon's HTTP port, and the picture it shows.

The page is one file of plain HTML, CSS and JavaScript shipped in the package
(``web/static/control.html``): no build step, nothing from a CDN. It drives the same API
as any other client (``/api/state``, ``/api/preset``, ``/api/strength``, ...), shows a
login form when the API answers 401, and reloads ``/api/snapshot.jpg`` for the live
picture. Its Content-Security-Policy allows its own origin and its own inline code only (by
hash), so no injected markup could run, load or send anything.
"""

from __future__ import annotations

import base64
import hashlib
import re
import threading
from functools import lru_cache
from importlib import resources

import cv2
import numpy as np
from aiohttp import web

JPEG_QUALITY = 80


def _hashes(html: str, tag: str) -> str:
    """CSP source hashes of the page's own inline ``<script>`` or ``<style>`` blocks."""
    blocks = re.findall(rf"<{tag}>(.*?)</{tag}>", html, flags=re.S)
    return " ".join(f"'sha256-{base64.b64encode(hashlib.sha256(b.encode()).digest()).decode()}'" for b in blocks)


@lru_cache(maxsize=1)
def _page() -> tuple[bytes, str]:
    """The page and its Content-Security-Policy: only this origin, only its own inline code."""
    html = resources.files("streamdream.web").joinpath("static/control.html").read_text("utf-8")
    csp = (
        f"default-src 'none'; img-src 'self'; connect-src 'self'; style-src {_hashes(html, 'style')}; "
        f"script-src {_hashes(html, 'script')}; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    )
    return html.encode("utf-8"), csp


def page_response() -> web.Response:
    body, csp = _page()
    return web.Response(
        body=body, content_type="text/html", charset="utf-8",
        headers={"Cache-Control": "no-store", "Content-Security-Policy": csp, "X-Frame-Options": "DENY",
                 "Referrer-Policy": "no-referrer"},
    )  # fmt: skip


class SnapshotCache:
    """JPEG of the latest output picture, encoded once per picture whoever asks."""

    def __init__(self, quality: int = JPEG_QUALITY) -> None:
        self.quality = quality
        self._lock = threading.Lock()
        self._last: tuple[np.ndarray, bytes] | None = None  # the picture (kept, so its id stays unique) and its JPEG

    def jpeg(self, picture: np.ndarray | None) -> bytes | None:
        if picture is None:
            return None
        with self._lock:
            if self._last is not None and self._last[0] is picture:
                return self._last[1]
        ok, buffer = cv2.imencode(".jpg", cv2.cvtColor(picture, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        if not ok:
            return None
        with self._lock:
            self._last = (picture, buffer.tobytes())
            return self._last[1]


__all__ = ["SnapshotCache", "page_response"]
