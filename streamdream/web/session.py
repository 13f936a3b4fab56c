"""The control page's login: a signed session cookie, HttpOnly and SameSite=Strict.

A browser that logged in with the control token gets ``streamdream_session``: the time it
was issued and an HMAC, under a secret made at server start, of that time and of the
token's hash. No session is stored: a restart or a new token (a reload) ends every
session, and a session ends by itself after ``lifetime`` seconds. The cookie is HttpOnly
(no script on any page can read it) and SameSite=Strict (no other site's page can make
the browser send it); the API's POST rules (JSON only, same ``Origin``) apply on top.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import time
from collections.abc import Callable

from aiohttp import web

COOKIE = "streamdream_session"
LIFETIME = 12 * 3600.0  # seconds a login lasts


class Sessions:
    def __init__(self, lifetime: float = LIFETIME, clock: Callable[[], float] = time.time) -> None:
        self.lifetime = lifetime
        self._clock = clock
        self._secret = os.urandom(32)

    def _mac(self, issued: int, token: str) -> str:
        message = f"{issued}:{hashlib.sha256(token.encode()).hexdigest()}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()

    def issue(self, token: str) -> str:
        issued = int(self._clock())
        return f"{issued}.{self._mac(issued, token)}"

    def valid(self, cookie: str | None, token: str) -> bool:
        """Whether ``cookie`` was issued here for ``token`` and has not expired."""
        if not cookie or len(cookie) > 200:
            return False
        issued_text, _, mac = cookie.partition(".")
        if not issued_text.isdigit():
            return False
        issued = int(issued_text)
        if not 0 <= self._clock() - issued <= self.lifetime:
            return False
        return hmac.compare_digest(mac.encode(), self._mac(issued, token).encode())

    def set_cookie(self, response: web.StreamResponse, token: str) -> None:
        response.set_cookie(COOKIE, self.issue(token), max_age=int(self.lifetime), path="/", httponly=True, samesite="Strict")

    @staticmethod
    def clear_cookie(response: web.StreamResponse) -> None:
        response.del_cookie(COOKIE, path="/")


__all__ = ["COOKIE", "LIFETIME", "Sessions"]
