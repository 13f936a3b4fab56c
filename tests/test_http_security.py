"""The service's HTTP surface under attack: CSRF from a real browser, DNS rebinding, request
smuggling, idle connections, oversized and malicious bodies, token guessing."""

from __future__ import annotations

import shutil
import socket
import threading
import time
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from streamdream.config import ControlConfig, HealthConfig, MetricsConfig
from streamdream.runtime.workers import Workers
from streamdream.service.health import HealthMonitor
from streamdream.service.http import ServiceServer
from streamdream.service.metrics import PrometheusObserver
from streamdream.web.server import Limits
from tests.fixtures.servers import http_request
from tests.test_service_units import FakeController

TOKEN = "correct-horse-battery"


def serve(workers: Workers, token: str | None = TOKEN, **limits) -> tuple[ServiceServer, FakeController]:
    controller = FakeController()
    server = ServiceServer(
        MetricsConfig(port=0), metrics=PrometheusObserver(), health=HealthMonitor(HealthConfig(stuck_after=600)),
        controller=controller, control=ControlConfig(token=token), limits=Limits(max_body=16 * 1024, **limits),
    )  # fmt: skip
    server.start(workers)
    return server, controller


@pytest.fixture
def guarded(monkeypatch, workers):
    monkeypatch.delenv("STREAMDREAM_CONTROL_TOKEN", raising=False)
    server, controller = serve(workers)
    yield server, controller
    server.shutdown()


@pytest.fixture
def open_loopback(monkeypatch, workers):
    """The default installation: loopback, no token."""
    monkeypatch.delenv("STREAMDREAM_CONTROL_TOKEN", raising=False)
    server, controller = serve(workers, token=None)
    yield server, controller
    server.shutdown()


def raw_exchange(port: int, data: bytes, wait: float = 1.5) -> bytes:
    """Send raw bytes; everything the server answers until it closes or falls silent."""
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as sock:
        sock.sendall(data)
        received = b""
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except TimeoutError:
            pass
    return received


def statuses(reply: bytes) -> list[int]:
    return [int(line.split()[1]) for line in reply.split(b"\r\n") if line.startswith((b"HTTP/1.1 ", b"HTTP/1.0 "))]


def refused(server: ServiceServer, reason: str) -> float:
    text = http_request(server.url + "/metrics")[1]
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "streamdream_control_refused_total" and sample.labels == {"reason": reason}:
                return sample.value
    raise AssertionError(f"no refusal counter for {reason}")


def smuggled(port: int) -> bytes:
    """A complete, authorised state-changing request, to hide inside another request's body."""
    return (f"POST /api/preset/next HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {TOKEN}\r\n"
            "Content-Type: application/json\r\nContent-Length: 0\r\n\r\n").encode()


# --- CSRF and DNS rebinding --------------------------------------------------------------------

ATTACKER_PAGE = """<!doctype html><html><head><title>cat pictures</title></head><body><script>
const target = "http://127.0.0.1:{port}/api/strength";
Promise.allSettled([
  fetch(target, {{method: "POST", mode: "no-cors", headers: {{"Content-Type": "text/plain"}}, body: '{{"value": 7.5}}'}}),
  fetch(target, {{method: "POST", headers: {{"Content-Type": "application/json"}}, body: '{{"value": 7.5}}'}}),
]).then(() => {{ document.title = "sent"; }});
</script></body></html>
"""


@pytest.mark.skipif(shutil.which("chromium") is None and shutil.which("google-chrome") is None, reason="needs chromium")
def test_cross_origin_post_from_a_page_in_chromium_changes_nothing(open_loopback, tmp_path: Path) -> None:
    from tests.fixtures.preview_browser import HeadlessChromium, find_chromium

    server, controller = open_loopback
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text(ATTACKER_PAGE.format(port=server.port))
    attacker = ThreadingHTTPServer(("127.0.0.1", 0), partial(SimpleHTTPRequestHandler, directory=str(site)))
    threading.Thread(target=attacker.serve_forever, daemon=True).start()
    browser = HeadlessChromium(find_chromium() or "chromium", tmp_path / "profile",
                               url=f"http://127.0.0.1:{attacker.server_address[1]}/index.html")
    try:
        deadline = time.monotonic() + 30
        while browser.call("Runtime.evaluate", expression="document.title")["result"].get("value") != "sent":
            assert time.monotonic() < deadline, "the attacker page never sent its requests"
            time.sleep(0.2)
    finally:
        browser.close()
        attacker.shutdown()
        attacker.server_close()
    assert controller.calls == []  # the strength did not change
    assert refused(server, "cross_origin") >= 1  # the no-cors POST reached the server and was refused
    # control: the same change from a non-browser client on this machine goes through
    assert http_request(server.url + "/api/strength", method="POST", body={"value": 7.5})[0] == 200
    assert controller.calls == [7.5]


@pytest.mark.parametrize("path", ["/api/state", "/metrics", "/healthz"])
def test_dns_rebinding_host_is_refused(guarded, path: str) -> None:
    server, _ = guarded
    request = f"GET {path} HTTP/1.1\r\nHost: {{}}:{server.port}\r\nAuthorization: Bearer {TOKEN}\r\nConnection: close\r\n\r\n"
    reply = raw_exchange(server.port, request.format("attacker.example").encode())
    assert statuses(reply) == [400] and b"DNS rebinding" in reply and b"preset" not in reply
    for host in ("localhost", "127.0.0.1"):
        assert statuses(raw_exchange(server.port, request.format(host).encode())) == [200]


def test_cross_origin_and_form_content_types_are_refused(open_loopback) -> None:
    server, controller = open_loopback
    body = b'{"value": 7.5}'
    base = f"POST /api/strength HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n"
    cases = [
        ("Content-Type: application/json\r\nOrigin: http://evil.example\r\n", 403),
        ("Content-Type: application/json\r\nOrigin: null\r\n", 403),
        (f"Content-Type: application/json\r\nOrigin: http://127.0.0.1:{server.port + 1}\r\n", 403),
        ("Content-Type: text/plain\r\n", 415),
        ("Content-Type: application/x-www-form-urlencoded\r\n", 415),
        ("Content-Type: application/json\r\nSec-Fetch-Site: cross-site\r\n", 403),
    ]
    for headers, status in cases:
        assert statuses(raw_exchange(server.port, (base + headers + "\r\n").encode() + body)) == [status], headers
    assert controller.calls == []
    same_origin = f"Content-Type: application/json\r\nOrigin: http://127.0.0.1:{server.port}\r\n"
    assert statuses(raw_exchange(server.port, (base + same_origin + "\r\n").encode() + body)) == [200]
    assert controller.calls == [7.5]


# --- request smuggling -------------------------------------------------------------------------


def test_oversized_body_is_not_run_as_a_request(guarded) -> None:
    server, controller = guarded
    hidden = smuggled(server.port)
    length = 100_000
    head = (f"POST /api/strength HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nAuthorization: Bearer {TOKEN}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n").encode()
    reply = raw_exchange(server.port, head + hidden + b" " * (length - len(hidden)))
    assert statuses(reply) == [413]
    assert controller.calls == []


def test_chunked_body_is_not_run_as_a_request(guarded) -> None:
    server, controller = guarded
    hidden = smuggled(server.port)
    head = (f"POST /api/strength HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nAuthorization: Bearer {TOKEN}\r\n"
            "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n").encode()
    reply = raw_exchange(server.port, head + f"{len(hidden):x}\r\n".encode() + hidden + b"\r\n0\r\n\r\n")
    assert statuses(reply) == [400] and b"not JSON" in reply
    both = head.replace(b"Transfer-Encoding", b"Content-Length: 5\r\nTransfer-Encoding")
    assert statuses(raw_exchange(server.port, both + b"0\r\n\r\n" + hidden)) == [400]
    assert controller.calls == []


def test_unauthorised_body_is_not_run_as_a_request(guarded) -> None:
    server, controller = guarded
    hidden = smuggled(server.port)
    head = (f"POST /api/strength HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(hidden)}\r\n\r\n").encode()
    assert statuses(raw_exchange(server.port, head + hidden)) == [401]
    assert controller.calls == []


# --- connections, bodies, tokens ---------------------------------------------------------------


def test_idle_connections_are_capped_and_timed_out(monkeypatch, workers) -> None:
    monkeypatch.delenv("STREAMDREAM_CONTROL_TOKEN", raising=False)
    server, _ = serve(workers, max_connections=8, idle_timeout=1.0)
    idle = []
    try:
        for _ in range(60):  # half-sent requests, never finished
            sock = socket.create_connection(("127.0.0.1", server.port))
            sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            idle.append(sock)
        assert http_request(server.url + "/healthz")[0] == 200  # still answers, at once
        assert len(server._web.pool) <= 8
        time.sleep(1.5)
        for sock in idle[-7:]:  # the newest survived eviction; the idle timeout closed them
            sock.settimeout(5)
            assert sock.recv(100) == b""
    finally:
        for sock in idle:
            sock.close()
        server.shutdown()


@pytest.mark.parametrize("body, status, words", [
    (b'{"value": 1e400}', 400, b"out of range"),
    (b'{"value": 1' + b"0" * 400 + b"}", 400, b"out of range"),
    (b'{"value": NaN}', 400, b"not a number JSON allows"),
    (b"[" * 30_000 + b"]" * 30_000, 413, b"over"),
    (b'{"a":' * 1000 + b"1" + b"}" * 1000, 400, b"nests deeper"),
    (b'{"value": "\xff"}', 400, b"not UTF-8"),
    (b'["value", 1]', 400, b"JSON object"),
])  # fmt: skip
def test_hostile_json_bodies_are_400_not_tracebacks(guarded, body: bytes, status: int, words: bytes) -> None:
    server, controller = guarded
    head = (f"POST /api/strength HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nAuthorization: Bearer {TOKEN}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
    reply = raw_exchange(server.port, head + body)
    assert statuses(reply) == [status] and words in reply, reply[:300]
    assert controller.calls == []


def test_wrong_tokens_are_throttled_and_logged_once(guarded, caplog) -> None:
    server, controller = guarded
    answers = [http_request(server.url + "/api/preset/next", token=f"guess-{i:04d}", method="POST")[0] for i in range(12)]
    assert answers[:5] == [401] * 5 and set(answers[5:]) == {429}
    assert http_request(server.url + "/api/preset/next", token=TOKEN, method="POST")[0] == 429  # even the right one, for now
    assert refused(server, "wrong_token") == 5 and refused(server, "throttled") == 8
    assert len([r for r in caplog.records if "control API" in r.getMessage()]) == 1
    assert "guess-" not in caplog.text and controller.calls == []


def test_a_body_that_never_arrives_times_out(monkeypatch, workers) -> None:
    monkeypatch.delenv("STREAMDREAM_CONTROL_TOKEN", raising=False)
    server, controller = serve(workers, request_timeout=1.0)
    try:
        head = (f"POST /api/strength HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nAuthorization: Bearer {TOKEN}\r\n"
                "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{").encode()
        assert statuses(raw_exchange(server.port, head, wait=5)) == [408]
        assert controller.calls == [] and http_request(server.url + "/healthz")[0] == 200
    finally:
        server.shutdown()
