"""OSC control: a real python-osc client over UDP loopback drives the daemon (tiny dream)."""

from __future__ import annotations

import socket
import time

import pytest
from pythonosc.osc_message_builder import OscMessageBuilder
from pythonosc.osc_packet import OscPacket
from pythonosc.udp_client import SimpleUDPClient

from streamdream.config import OscConfig
from streamdream.errors import ConfigError
from streamdream.service.osc import OscServer
from tests.test_service_daemon import TOKEN, Running, fast, wait_for, write

PRESETS = {"presets": {"calm": {"strength": 1.0}, "wild": {"strength": 1.5}}, "crossfade": 0}
SOURCE = {"uri": "demo?live=1&width=160&height=120&fps=10"}


@pytest.fixture
def osc_daemon(tiny_model_path, tmp_path):
    config = write(tmp_path / "osc.yaml", fast(tiny_model_path, source=SOURCE, playlist=PRESETS, osc={"port": 0}))
    running = Running(config)
    yield running, SimpleUDPClient("127.0.0.1", running.service.osc.port)
    running.close()


def osc_count(running: Running, result: str) -> float:
    return running.metrics()[f"streamdream_osc_messages_total,result={result}"]


def test_osc_client_changes_strength_preset_and_settings(osc_daemon):
    running, client = osc_daemon
    assert running.state()["preset"] == "calm"
    client.send_message("/streamdream/strength", 0.5)
    wait_for(lambda: running.state()["strength"] == 0.5, 30, "the strength to become 0.5")
    client.send_message("/streamdream/preset/next", [])
    wait_for(lambda: running.state()["preset"] == "wild", 30, "the next preset")
    client.send_message("/streamdream/preset", "calm")
    client.send_message("/streamdream/step_size", 3.0)
    client.send_message("/streamdream/carry", 0.9)
    client.send_message("/streamdream/layer/conv2/weight", 0.25)

    def settled():  # the control strength multiplies dream.strength; the engine steps 3.0 x 0.5 levels
        state = running.state()
        return (state["preset"] == "calm" and state["dream"]["step_size"] == 3.0 and state["dream"]["strength"] == 0.5
                and state["carry"] == 0.9 and state["layer_weights"] == {"conv2": 0.25})

    try:
        wait_for(settled, 30, "preset, step size, carry and layer weight from OSC")
    except AssertionError:
        raise AssertionError(running.state()) from None
    assert osc_count(running, "applied") == 6
    assert osc_count(running, "invalid") == 0


def test_osc_query_answers_the_state_to_the_sender(osc_daemon):
    running, _ = osc_daemon
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(10)
        sock.sendto(OscMessageBuilder("/streamdream/query").build().dgram, ("127.0.0.1", running.service.osc.port))
        data, sender = sock.recvfrom(65536)
    assert sender[1] == running.service.osc.port
    values = {m.message.address: m.message.params for m in OscPacket(data).messages}
    assert values["/streamdream/preset"] == ["calm"]
    assert values["/streamdream/presets"] == ["calm", "wild"]
    assert values["/streamdream/strength"] == [1.0]
    assert values["/streamdream/source/up"] == [1]
    assert values["/streamdream/layer/conv2/weight"] == [1.0]


def test_invalid_osc_messages_are_counted_and_the_daemon_goes_on(osc_daemon, caplog):
    running, client = osc_daemon
    caplog.set_level("WARNING")
    port = running.service.osc.port
    client.send_message("/streamdream/strength", "loud")  # not a number
    client.send_message("/streamdream/strength", 99.0)  # out of the HTTP API's bound
    client.send_message("/streamdream/strength", [])  # no argument
    client.send_message("/streamdream/preset", "nosuch")  # unknown preset
    client.send_message("/streamdream/layer/conv9/weight", 1.0)  # not a layer of the look
    client.send_message("/elsewhere/thing", 1.0)  # unknown address
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(b"\x00\x01 definitely not OSC", ("127.0.0.1", port))
        # an address that is not UTF-8: python-osc raises UnicodeDecodeError, not ParseError (it ended the worker)
        sock.sendto(b"/\xff\xfe\x00,f\x00\x00\x00\x00\x00\x00", ("127.0.0.1", port))
    wait_for(lambda: osc_count(running, "invalid") == 8, 10, "eight invalid messages counted")
    assert "OSC: dropped" in caplog.text and "streamdream_osc_messages_total" in caplog.text
    # still running and still listening: frames flow, the API answers, a good message is applied
    before = running.metrics()["streamdream_frames_total,stage=write"]
    wait_for(lambda: running.metrics()["streamdream_frames_total,stage=write"] > before + 5, 10, "frames after the bad messages")
    client.send_message("/streamdream/strength", 2.0)
    wait_for(lambda: running.state()["strength"] == 2.0, 30, "a good message after the bad ones")
    assert running.service.osc.alive
    assert osc_count(running, "applied") == 1


def test_osc_beyond_loopback_needs_an_allow_list_and_drops_strangers():
    with pytest.raises(ConfigError, match="osc.allow"):
        OscServer(OscConfig(host="0.0.0.0", port=0), controller=None, registry=None)  # type: ignore[arg-type]
    from prometheus_client import CollectorRegistry

    server = OscServer(OscConfig(host="0.0.0.0", port=0, allow=("192.168.1.0/24",)), controller=None, registry=CollectorRegistry())  # type: ignore[arg-type]
    try:
        assert server.allows("192.168.1.20") and server.allows("127.0.0.1") and server.allows("::ffff:192.168.1.7")
        assert not server.allows("192.168.2.1") and not server.allows("10.0.0.1")
    finally:
        server.end()


class PassThrough:
    def process(self, frame):
        return frame


def test_a_fader_is_taken_up_whole_while_looks_build_and_its_last_value_wins(tmp_path):
    """200 strength values in ~0.4 s while each build takes 1.5 s: none is refused or waits,
    they coalesce into a few builds, and the last value sent is the one that shows."""
    from streamdream.pipeline.looks import Look

    built = []

    def slow_build(preset, config, warm_on):
        built.append(config.dream.strength)
        if len(built) > 1:
            time.sleep(1.5)  # longer than a control request may wait for room
        return Look(preset, config, None, PassThrough())

    config = write(tmp_path / "fader.yaml", {"source": SOURCE, "outputs": ["null"], "metrics": {"port": 0},
                                             "control": {"token": TOKEN}, "osc": {"port": 0}})
    running = Running(config, build=slow_build)
    try:
        client = SimpleUDPClient("127.0.0.1", running.service.osc.port)
        values = [round(1.0 + k / 400, 4) for k in range(1, 201)]
        for value in values:
            client.send_message("/streamdream/strength", value)
            time.sleep(0.002)
        wait_for(lambda: osc_count(running, "applied") == len(values), 30, "every fader value applied")
        wait_for(lambda: running.state()["strength"] == values[-1], 30, "the last value to show")
        assert osc_count(running, "invalid") == 0
        assert built[-1] == values[-1] and len(built) < 40  # coalesced: not one build per message
    finally:
        running.close()


def test_osc_previous_preset_and_crossfade(osc_daemon):
    running, client = osc_daemon
    client.send_message("/streamdream/crossfade", 2.5)
    wait_for(lambda: running.state()["playlist"]["crossfade"] == 2.5, 30, "crossfade 2.5 s from OSC")
    client.send_message("/streamdream/preset/previous", [])  # calm is first: previous wraps to wild
    wait_for(lambda: running.state()["preset"] == "wild", 30, "the previous preset")
    client.send_message("/streamdream/crossfade", 61.0)  # over playlist.crossfade's bound
    wait_for(lambda: osc_count(running, "invalid") == 1, 10, "the refused crossfade counted")
    assert running.state()["playlist"]["crossfade"] == 2.5
