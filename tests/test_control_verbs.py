"""Every control verb of every surface, on the offline default model, as an installation runs it.

One `serve` (a subprocess, the real CLI) dreams a still picture with EfficientNet-Lite0 at
96 px, its dream made repeatable (no jitter, no random transforms), so two pictures of the
same settings are alike and any setting shows. Then every HTTP endpoint, every OSC address
(UDP on loopback) and every control of the page (headless Chromium) is used once or more;
each must change what ``/api/state`` reports and what the output shows: the dream's detail
(the picture minus the still it was dreamed from) moves by more than its noise from
picture to picture. ``carry`` acts in flow mode only, so the carry verbs come last, after
a reload into flow mode (whose carried detail keeps moving a little: its noise). ``blend``
mixes a second picture (``dream.blend_with``, at share 0 until a blend verb moves it) into
the still before it is dreamed.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import yaml
from pythonosc.osc_message_builder import OscMessageBuilder
from pythonosc.osc_packet import OscPacket
from pythonosc.udp_client import SimpleUDPClient

from tests.fixtures.control_page import needs_chromium, open_page
from tests.fixtures.servers import free_port, http_request
from tests.test_service_daemon import wait_for

ROOT = Path(__file__).parent.parent
TOKEN = "acceptance-token-5150"
WIDTH, HEIGHT = 160, 120
SETTLE_FRAMES = 4  # frames written after a change before its picture is taken
STEADY, STEADY_TRIES = 1.5, 12  # mean levels two pictures may differ by at rest; pictures tried to get there
START_TIMEOUT = 240  # seconds: TensorFlow, the model and its first look on a busy 2-core machine take ~30


def still_picture(path: Path) -> np.ndarray:
    """Waves and a checkerboard: structure at several scales for the network to find things in."""
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    picture = np.stack([
        128 + 60 * np.sin(x / 9) + 30 * np.cos(y / 13),
        128 + 50 * np.cos((x + y) / 11),
        100 + 80 * ((x // 20 + y // 20) % 2),
    ], axis=-1).clip(0, 255).astype(np.uint8)  # fmt: skip
    cv2.imwrite(str(path), picture[..., ::-1])
    return picture


def second_picture(path: Path) -> None:
    """The second input: rings, nothing like the still's waves and squares."""
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    rings = 128 + 120 * np.sin(np.hypot(x - WIDTH / 2, y - HEIGHT / 2) / 4)
    cv2.imwrite(str(path), np.stack([rings, 255 - rings, rings / 2], axis=-1).clip(0, 255).astype(np.uint8))


@dataclass
class Daemon:
    url: str
    osc_port: int
    still: np.ndarray
    process: subprocess.Popen
    config: Path

    def reload(self, **sections: Any) -> None:
        """The config file with ``sections`` replaced, applied by SIGHUP."""
        data = yaml.safe_load(self.config.read_text())
        self.config.write_text(yaml.safe_dump({**data, **sections}, sort_keys=False))
        at = self.state()["config"]["last_reload"]["at"]
        self.process.send_signal(signal.SIGHUP)
        wait_for(lambda: (r := self.state()["config"]["last_reload"])["at"] != at and r["ok"], 60, "the reload")

    def state(self) -> dict[str, Any]:
        status, body = http_request(self.url + "/api/state", TOKEN)
        assert status == 200, body
        return json.loads(body)

    def post(self, path: str, body: dict[str, Any]) -> None:
        status, answer = http_request(self.url + path, TOKEN, "POST", body)
        assert status == 200, f"POST {path} {body}: {status} {answer}"

    def detail(self) -> np.ndarray:
        """The dream's detail in the latest output picture, once a change has settled in."""
        def settled() -> dict[str, Any] | None:
            state = self.state()
            return None if state["building"] or state["fading_to"] else state

        state = wait_for(settled, 60, "the new look")
        frames = state["frames"]["out"]
        wait_for(lambda: self.state()["frames"]["out"] >= frames + SETTLE_FRAMES, 60, f"{SETTLE_FRAMES} frames")
        request = urllib.request.Request(self.url + "/api/snapshot.jpg", headers={"Authorization": f"Bearer {TOKEN}"})
        with urllib.request.urlopen(request, timeout=10) as response:
            picture = cv2.imdecode(np.frombuffer(response.read(), np.uint8), cv2.IMREAD_COLOR)[..., ::-1]
        return picture.astype(np.float32) - self.still.astype(np.float32)


@pytest.fixture(scope="module")
def lite0_daemon(tmp_path_factory) -> Iterator[Daemon]:
    folder = tmp_path_factory.mktemp("control_verbs")
    still = still_picture(folder / "still.png")
    second_picture(folder / "second.png")
    port, osc_port = free_port(), free_port()
    config = {
        "source": {"uri": f"image:{folder / 'still.png'}?seconds=86400&fps=10"},
        # model: the default, efficientnet_lite0; a small, repeatable dream
        "dream": {"width": 96, "octaves": 1, "steps": 3, "seed": 0, "jitter": 0, "transform_scale": 0, "transform_rotate": 0,
                  "blend_with": str(folder / "second.png"), "blend": 0.0},
        "coherence": {"mode": "independent"},
        "playlist": {"presets": {"patterns": {"preset": "mid"}, "textures": {"preset": "shallow"}}, "crossfade": 0},
        "outputs": ["null"],
        "metrics": {"port": port},
        "control": {"token": TOKEN},
        "osc": {"port": osc_port},
    }  # fmt: skip
    path = folder / "installation.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    log = (folder / "serve.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "streamdream.cli", "serve", "--config", str(path)],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "STREAMDREAM_CONTROL_TOKEN": ""},
    )  # fmt: skip
    daemon = Daemon(f"http://127.0.0.1:{port}", osc_port, still, process, path)

    def started() -> bool:
        if process.poll() is not None:
            pytest.fail(f"serve ended with {process.returncode}:\n{(folder / 'serve.log').read_text()}")
        try:
            return daemon.state().get("frames", {}).get("out", 0) > 0
        except (OSError, AssertionError):
            return False

    try:
        wait_for(started, START_TIMEOUT, "serve to write its first frame")
        yield daemon
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


class Verbs:
    """Sends a verb, then checks that the state and the picture follow."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.before, self.noise = self.steady_detail()
        self.done: list[str] = []

    def steady_detail(self) -> tuple[np.ndarray, float]:
        """The detail once flow mode has carried it to rest, and how much it still moves per picture."""
        detail = self.daemon.detail()
        moves: list[float] = []
        for _ in range(STEADY_TRIES):
            latest = self.daemon.detail()
            moves.append(float(np.abs(latest - detail).mean()))
            detail = latest
            if moves[-1] < STEADY:
                break
        return detail, moves[-1]

    def check(self, what: str, send: Callable[[], None], state: Callable[[dict], bool]) -> None:
        send()
        wait_for(lambda: state(self.daemon.state()), 60, f"/api/state to show {what}")
        after, noise = self.steady_detail()
        moved = float(np.abs(after - self.before).mean())
        assert moved > 3 * max(noise, self.noise) + 1.0, (
            f"{what}: the detail moved {moved:.2f} levels, its noise is {max(noise, self.noise):.2f}; "
            f"mean |detail| {float(np.abs(self.before).mean()):.2f} -> {float(np.abs(after).mean()):.2f}"
        )
        self.before, self.noise = after, noise
        self.done.append(what)


def osc_query(port: int) -> dict[str, list]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(10)
        sock.sendto(OscMessageBuilder("/streamdream/query").build().dgram, ("127.0.0.1", port))
        data, _ = sock.recvfrom(65536)
    return {m.message.address: m.message.params for m in OscPacket(data).messages}


@needs_chromium
def test_every_verb_of_every_surface_changes_the_state_and_the_picture(lite0_daemon: Daemon, tmp_path: Path) -> None:
    daemon = lite0_daemon
    start = daemon.state()
    assert start["model"] == "efficientnet_lite0" and start["preset"] == "patterns"
    verbs = Verbs(daemon)
    post = daemon.post

    # --- HTTP: every endpoint ---------------------------------------------------------------
    verbs.check("POST /api/strength 0.25", lambda: post("/api/strength", {"value": 0.25}), lambda s: s["strength"] == 0.25)
    verbs.check("POST /api/strength 1.0", lambda: post("/api/strength", {"value": 1.0}), lambda s: s["strength"] == 1.0)
    verbs.check("POST /api/step_size 0.1", lambda: post("/api/step_size", {"value": 0.1}),
                lambda s: s["dream"]["step_size"] == 0.1)
    verbs.check("POST /api/step_size 4.0", lambda: post("/api/step_size", {"value": 4.0}),
                lambda s: s["dream"]["step_size"] == 4.0)
    verbs.check("POST /api/layer/block_6/weight -1", lambda: post("/api/layer/block_6/weight", {"value": -1.0}),
                lambda s: s["layer_weights"] == {"block_6": -1.0})
    verbs.check("POST /api/preset textures", lambda: post("/api/preset", {"name": "textures"}),
                lambda s: s["preset"] == "textures")
    verbs.check("POST /api/preset/next", lambda: post("/api/preset/next", {}), lambda s: s["preset"] == "patterns")
    verbs.check("POST /api/blend 0.6", lambda: post("/api/blend", {"value": 0.6}), lambda s: s["blend"] == 0.6)

    # --- OSC: every address -----------------------------------------------------------------
    osc = SimpleUDPClient("127.0.0.1", daemon.osc_port)
    send = osc.send_message
    verbs.check("/streamdream/strength 0.25", lambda: send("/streamdream/strength", 0.25), lambda s: s["strength"] == 0.25)
    verbs.check("/streamdream/strength 1.0", lambda: send("/streamdream/strength", 1.0), lambda s: s["strength"] == 1.0)
    verbs.check("/streamdream/preset textures", lambda: send("/streamdream/preset", "textures"),
                lambda s: s["preset"] == "textures")
    verbs.check("/streamdream/layer/block_3/weight -1", lambda: send("/streamdream/layer/block_3/weight", -1.0),
                lambda s: s["layer_weights"] == {"block_3": -1.0})
    verbs.check("/streamdream/preset/next", lambda: send("/streamdream/preset/next", []), lambda s: s["preset"] == "patterns")
    verbs.check("/streamdream/step_size 0.1", lambda: send("/streamdream/step_size", 0.1),
                lambda s: s["dream"]["step_size"] == 0.1)
    verbs.check("/streamdream/step_size 2.0", lambda: send("/streamdream/step_size", 2.0),
                lambda s: s["dream"]["step_size"] == 2.0)
    verbs.check("/streamdream/blend 0.1", lambda: send("/streamdream/blend", 0.1), lambda s: abs(s["blend"] - 0.1) < 1e-6)
    answer = osc_query(daemon.osc_port)  # the one address that changes nothing: it answers the state
    assert answer["/streamdream/preset"] == ["patterns"] and answer["/streamdream/strength"] == [1.0]
    assert answer["/streamdream/layer/block_6/weight"] == [-1.0]
    assert answer["/streamdream/blend"][0] == pytest.approx(0.1)

    # --- the page, in Chromium: every control -----------------------------------------------
    browser, page = open_page(daemon.url + "/", tmp_path / "profile")
    try:
        page.log_in(TOKEN)
        page.wait("getComputedStyle(document.getElementById('login')).display === 'none'", "the login to go through")
        page.wait("document.querySelector('button[data-preset=textures]') !== null", "the preset buttons")
        verbs.check("the page's preset button", lambda: page.click("button[data-preset=textures]"),
                    lambda s: s["preset"] == "textures")
        verbs.check("the page's Next button", lambda: page.click("#next"), lambda s: s["preset"] == "patterns")
        page.wait("document.getElementById('strength').value === '1'", "the slider to show strength 1")
        verbs.check("the page's strength slider", lambda: page.click("#strength", fraction=0.1),
                    lambda s: abs(s["strength"] - float(page.js("document.getElementById('strength').value"))) < 1e-9
                    and s["strength"] < 0.6)  # fmt: skip
        page.wait("!document.getElementById('blend-section').hidden", "the blend slider (dream.blend_with is set)")
        verbs.check("the page's blend slider", lambda: page.click("#blend", fraction=0.9),
                    lambda s: abs(s["blend"] - float(page.js("document.getElementById('blend').value"))) < 1e-9
                    and s["blend"] > 0.7)  # fmt: skip
    finally:
        browser.close()

    # --- carry, in flow mode: HTTP and OSC --------------------------------------------------
    post("/api/strength", {"value": 1.0})  # the full detail again (the slider left it low), so a fade shows
    daemon.reload(coherence={"mode": "flow"})
    verbs.before, verbs.noise = verbs.steady_detail()
    verbs.check("POST /api/carry 0.3", lambda: post("/api/carry", {"value": 0.3}), lambda s: s["carry"] == 0.3)
    verbs.check("/streamdream/carry 1.0", lambda: send("/streamdream/carry", 1.0), lambda s: s["carry"] == 1.0)
    assert len(verbs.done) == 22
