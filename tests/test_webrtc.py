"""The webrtc: output of `streamdream serve`, watched in real headless Chromium on loopback.

The page logs in, offers, and plays the dream over WebRTC: its RTCPeerConnection's getStats
must show frames decoded, and more of them later. The offer endpoint keeps the control API's
rules (token, JSON only, same origin); a viewer that leaves is forgotten (the viewers gauge
goes back to 0); a daemon without the output shows the JPEG pictures; a source with sound
sends it too.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.fixtures.control_page import needs_chromium, open_page
from tests.fixtures.servers import http_request
from tests.fixtures.sound import write_burst_clip
from tests.test_service_daemon import TOKEN, Running, fast, wait_for, write

SOURCE = {"uri": "demo?live=1&width=320&height=240&fps=15"}
STATS = """(async () => {{
  if (!webrtc) return null;
  const out = {{}};
  (await webrtc.getStats()).forEach((r) => {{ if (r.type === "inbound-rtp") out[r.kind] = r; }});
  return out.{kind} ? out.{kind}.{field} || 0 : null;
}})()"""
LOUDEST = """(async () => {
  const track = document.getElementById("video").srcObject.getAudioTracks()[0];
  const context = new AudioContext();
  await context.resume();
  const analyser = context.createAnalyser();
  context.createMediaStreamSource(new MediaStream([track])).connect(analyser);
  const samples = new Float32Array(analyser.fftSize);
  let loudest = 0;
  for (let i = 0; i < 60; i++) {
    await new Promise((resolve) => setTimeout(resolve, 50));
    analyser.getFloatTimeDomainData(samples);
    for (const v of samples) loudest = Math.max(loudest, Math.abs(v));
  }
  context.close();
  return loudest;
})()"""


def stat(page, kind: str, field: str):
    return page.js(STATS.format(kind=kind, field=field))


def viewers(running: Running) -> float:
    return running.metrics()["streamdream_webrtc_viewers"]


@needs_chromium
def test_page_plays_the_webrtc_output_and_a_viewer_that_leaves_is_freed(tiny_model_path, tmp_path: Path):
    config = write(tmp_path / "webrtc.yaml", fast(tiny_model_path, source=SOURCE, outputs=["webrtc:"], control={"token": TOKEN}))
    running = Running(config)
    browser, page = open_page(running.url + "/", tmp_path / "profile")
    try:
        page.log_in(TOKEN)
        assert running.state()["webrtc"]["viewers"] in (0, 1)
        page.wait("webrtc !== null && webrtc.connectionState === 'connected'", "the WebRTC connection", timeout=40)
        first = wait_for(lambda: (stat(page, "video", "framesDecoded") or 0) > 0 and stat(page, "video", "framesDecoded"), 30,
                         "frames decoded by the page")
        wait_for(lambda: stat(page, "video", "framesDecoded") > first + 10, 30, "more frames decoded")
        page.wait("!document.getElementById('video').hidden && document.getElementById('picture').hidden", "the video shown")
        page.wait("document.getElementById('video').videoWidth === 320", "the video at the output's size")
        assert stat(page, "video", "decoderImplementation") is not None
        assert viewers(running) == 1
        assert stat(page, "audio", "packetsReceived") in (None, 0)  # the demo scene has no sound: none is sent
        # the viewer leaves: its connection is closed and forgotten
        page.js("webrtc.close(), true")
        wait_for(lambda: viewers(running) == 0, 30, "the viewers gauge back to 0")
        assert running.state()["webrtc"]["viewers"] == 0
        # a tab that reloads (its session cookie logs it in) watches again; one that goes elsewhere leaves
        browser.navigate(running.url + "/")
        wait_for(lambda: viewers(running) == 1, 40, "the reloaded page watching again")
        page.wait("webrtc !== null && webrtc.connectionState === 'connected'", "the WebRTC connection again", timeout=40)
        browser.navigate("about:blank")
        wait_for(lambda: viewers(running) == 0, 45, "the viewers gauge back to 0 after the tab left")
    finally:
        browser.close()
        running.close()


@needs_chromium
def test_page_falls_back_to_pictures_without_the_webrtc_output(tiny_model_path, tmp_path: Path):
    config = write(tmp_path / "jpeg.yaml", fast(tiny_model_path, source={"uri": "demo?live=1&width=160&height=120&fps=10"},
                                                control={"token": TOKEN}))  # fmt: skip
    running = Running(config)
    browser, page = open_page(running.url + "/", tmp_path / "profile")
    try:
        page.log_in(TOKEN)
        page.wait("document.getElementById('picture').naturalWidth === 160", "the JPEG picture")
        assert page.js("webrtc === null && document.getElementById('video').hidden") is True
        assert "webrtc" not in running.state()
        status, body = http_request(running.url + "/api/webrtc/offer", token=TOKEN, method="POST", body={"type": "offer", "sdp": "v=0"})
        assert status == 404 and "outputs: [{uri: 'webrtc:'}]" in body
    finally:
        browser.close()
        running.close()


def test_the_offer_endpoint_keeps_the_control_apis_token_and_origin_rules(tiny_model_path, tmp_path: Path):
    config = write(tmp_path / "rules.yaml", fast(tiny_model_path, source=SOURCE, outputs=["webrtc:"], control={"token": TOKEN}))
    running = Running(config)
    url = running.url + "/api/webrtc/offer"
    offer = {"type": "offer", "sdp": "v=0"}
    try:
        status, body = http_request(url, method="POST", body=offer)
        assert status == 401 and "control token is required" in body
        status, body = http_request(url, token="wrong-token-0000", method="POST", body=offer)
        assert status == 401
        status, body = http_request(url, token=TOKEN, method="POST", body=offer, headers={"Origin": "http://evil.example"})
        assert status == 403 and "cross-origin request refused" in body
        status, body = http_request(url, token=TOKEN, method="POST", body=offer, headers={"Content-Type": "text/plain"})
        assert status == 415
        status, body = http_request(url, token=TOKEN, method="POST", body={"sdp": 5})
        assert status == 400 and '"type": "offer"' in json.loads(body)["error"]
        status, body = http_request(url, token=TOKEN, method="POST", body=offer)
        assert status == 400 and "not a usable WebRTC offer" in body
        refused = running.metrics()
        assert refused["streamdream_control_refused_total,reason=cross_origin"] >= 1
        assert refused["streamdream_webrtc_viewers"] == 0
    finally:
        running.close()


def test_webrtc_is_refused_for_run_and_without_the_control_api(tiny_model_path, tmp_path: Path):
    from streamdream.config import load_config
    from streamdream.errors import StreamdreamError
    from streamdream.preflight import check_config

    config = load_config(write(tmp_path / "run.yaml", fast(tiny_model_path, source=SOURCE, outputs=["webrtc:"])))
    try:
        check_config(config, "run", ports=False)
        raise AssertionError("webrtc: accepted for run")
    except StreamdreamError as exc:
        assert "use it with `streamdream serve`" in str(exc)
    off = load_config(write(tmp_path / "off.yaml", fast(tiny_model_path, source=SOURCE, outputs=["webrtc:"],
                                                        control={"enabled": False})))  # fmt: skip
    try:
        check_config(off, "serve", ports=False)
        raise AssertionError("webrtc: accepted without the control API")
    except StreamdreamError as exc:
        assert "control.enabled: false" in str(exc)


@needs_chromium
def test_a_source_with_sound_sends_it_to_the_page(tiny_model_path, tmp_path: Path):
    clip = write_burst_clip(tmp_path / "beats.mp4", [(t, t + 0.2) for t in (0.5, 1.5, 2.5, 3.5)], width=320, height=240)
    config = write(tmp_path / "sound.yaml", fast(tiny_model_path, source={"uri": str(clip), "loop": True}, outputs=["webrtc:"],
                                                 control={"token": TOKEN}))  # fmt: skip
    running = Running(config)
    browser, page = open_page(running.url + "/", tmp_path / "profile")
    try:
        page.log_in(TOKEN)
        wait_for(lambda: (stat(page, "video", "framesDecoded") or 0) > 5, 40, "video frames decoded")
        wait_for(lambda: (stat(page, "audio", "totalSamplesReceived") or 0) > 48000, 30, "a second of sound received")
        # Opus spends about 3 bytes on a packet of silence; the beats and the hiss cost far more
        wait_for(lambda: stat(page, "audio", "bytesReceived") > 20 * stat(page, "audio", "packetsReceived"), 30,
                 "packets that carry sound, not silence")
        # and the page hears it: the received track's loudest sample, through Web Audio (a click is the user's gesture)
        page.wait("!document.getElementById('sound').hidden", "the sound button")
        page.click("#sound")
        loudest = page.browser.call("Runtime.evaluate", userGesture=True, awaitPromise=True, returnByValue=True, expression=LOUDEST)
        assert loudest["result"]["value"] > 0.05, loudest
        assert running.state()["webrtc"]["audio"] is True
    finally:
        browser.close()
        running.close()


def test_without_aiortc_the_check_says_what_to_install(tiny_model_path, tmp_path: Path, monkeypatch):
    import importlib.util

    from streamdream.config import load_config
    from streamdream.errors import StreamdreamError
    from streamdream.preflight import check_config

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "aiortc" else real(name, *a))
    config = load_config(write(tmp_path / "serve.yaml", fast(tiny_model_path, source=SOURCE, outputs=["webrtc:"])))
    try:
        check_config(config, "serve", ports=False)
        raise AssertionError("webrtc: accepted without aiortc")
    except StreamdreamError as exc:
        assert "needs aiortc" in str(exc) and "pip install 'streamdream[webrtc]'" in str(exc)
