"""The control page at / of the daemon's HTTP port, driven in real headless Chromium.

A person's path: open the page, log in with the token (the page shows its form on a 401),
see the picture and the source, click a preset, drag the strength slider; /api/state must
follow. Clicks and the drag are real mouse events sent through the DevTools protocol.
"""

from __future__ import annotations

from pathlib import Path

from streamdream.service.recent import RecentErrors
from streamdream.web.session import Sessions
from tests.fixtures.control_page import needs_chromium, open_page
from tests.fixtures.servers import http_request
from tests.test_service_daemon import TOKEN, Running, fast, wait_for, write

PRESETS = {"presets": {"calm": {"strength": 1.0}, "wild": {"strength": 1.5}}, "crossfade": 0}
SOURCE = {"uri": "demo?live=1&width=160&height=120&fps=10"}
@needs_chromium
def test_page_logs_in_switches_preset_and_moves_the_strength_slider(tiny_model_path, tmp_path: Path):
    config = write(tmp_path / "page.yaml", fast(tiny_model_path, source=SOURCE, playlist=PRESETS, control={"token": TOKEN}))
    running = Running(config)
    browser, page = open_page(running.url + "/", tmp_path / "profile")
    try:
        # 1. the API answers 401 without the token, so the page asks for it
        page.log_in(TOKEN)
        page.wait("getComputedStyle(document.getElementById('login')).display === 'none'", "the login to go through")
        cookies = browser.call("Network.getAllCookies")["cookies"]
        session = next(c for c in cookies if c["name"] == "streamdream_session")
        assert session["httpOnly"] and session["sameSite"] == "Strict"
        assert page.js("document.cookie") == ""  # no script can read it
        # 2. the picture and the source state
        page.wait("document.getElementById('picture').naturalWidth === 160", "the live picture")
        page.wait("document.getElementById('source').textContent.includes('up')", "the source state")
        assert running.state()["preset"] == "calm"
        # 3. a click on a preset button switches the look
        page.wait("document.querySelector('button[data-preset=wild]') !== null", "the preset buttons")
        page.click("button[data-preset=wild]")
        wait_for(lambda: running.state()["preset"] == "wild", 30, "preset wild after the click")
        page.wait("document.querySelector('button[data-preset=wild]').classList.contains('active')", "wild marked active")
        # 4. a click on the slider's track at 80 % moves it there and sets the strength
        assert running.state()["strength"] == 1.0
        page.click("#strength", fraction=0.8)
        slider = float(page.js("document.getElementById('strength').value"))
        assert 2.0 < slider < 2.8
        wait_for(lambda: running.state()["strength"] == slider, 30, f"strength {slider} from the slider")
        browser.screenshot()  # renders with the new state (kept by the test only as a smoke check)
    finally:
        browser.close()
        running.close()


def test_page_is_served_with_a_strict_content_security_policy(tiny_model_path, tmp_path):
    import urllib.request

    config = write(tmp_path / "csp.yaml", fast(tiny_model_path, source=SOURCE, playlist=PRESETS, control={"token": TOKEN}))
    running = Running(config)
    try:
        with urllib.request.urlopen(running.url + "/", timeout=5) as response:
            csp = response.headers["Content-Security-Policy"]
            html = response.read().decode()
        assert "default-src 'none'" in csp and "'unsafe-inline'" not in csp and "script-src 'sha256-" in csp
        assert "<script src" not in html and "http" not in html.split("<script>")[1]  # nothing from elsewhere
        status, _ = http_request(running.url + "/api/snapshot.jpg")
        assert status == 401  # the picture needs the token too
        status, body = http_request(running.url + "/api/login", method="POST", body={"token": "wrong-token-123"})
        assert status == 401 and "wrong token" in body
        status, body = http_request(running.url + "/api/step_size", token=TOKEN, method="POST", body={"value": 500})
        assert status == 400 and "step_size: must be <= 64" in body and "got 500" in body
    finally:
        running.close()


def test_sessions_are_bound_to_the_token_and_expire():
    now = [1000.0]
    sessions = Sessions(lifetime=60, clock=lambda: now[0])
    cookie = sessions.issue("token-one-123")
    assert sessions.valid(cookie, "token-one-123")
    assert not sessions.valid(cookie, "token-two-456")  # a new token (a reload) ends it
    assert not Sessions().valid(cookie, "token-one-123")  # another server (a restart) never made it
    assert not sessions.valid(cookie.replace(".", ".0"), "token-one-123")
    now[0] += 61
    assert not sessions.valid(cookie, "token-one-123")


def test_recent_errors_keep_the_last_warnings_redacted():
    import logging

    handler = RecentErrors(keep=3)
    log = logging.getLogger("streamdream.test_recent")
    log.addHandler(handler)
    try:
        log.info("not kept")
        for i in range(5):
            log.warning("lost rtsp://user:secret@cam/%d", i)
    finally:
        log.removeHandler(handler)
    entries = handler.entries()
    assert [e["message"] for e in entries] == [f"lost rtsp://user:***@cam/{i}" for i in (2, 3, 4)]
    assert [e["level"] for e in entries] == ["warning"] * 3
