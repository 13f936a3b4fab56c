"""MIDI: every control verb from a knob or a pad, on the default model; a controller unplugged
and plugged again; MIDI clock's tempo, transport and bar-synchronous preset switches.

The daemon is one per module (efficientnet_lite0, dreaming at 64 px, loaded once). Which
MIDI path runs (rtmidi virtual ports, or messages fed through ``MidiInput.receive`` where
the machine has no ALSA sequencer) is ``tests.fixtures.midi.MIDI_PATH``.
"""

from __future__ import annotations

import threading
import time

import pytest

mido = pytest.importorskip("mido")

from streamdream.config import MidiBinding, parse_config
from streamdream.errors import ConfigError
from streamdream.service.midi_clock import PPQN, MidiClock, Pulse
from streamdream.service.midi_map import Bindings, learned_path, load_learned, save_learned, scaled
from tests.fixtures.midi import BACKEND, MIDI_PATH, Controller
from tests.helpers import wait_for
from tests.test_service_daemon import TOKEN, Running, write

PORT = "streamdream-test knobs"
SOURCE = {"uri": "demo?live=1&width=96&height=64&fps=10"}
PRESETS = {"presets": {"calm": {"strength": 1.0}, "wild": {"strength": 1.5}, "soft": {"strength": 0.7}}, "crossfade": 0}
CONTROLS = [
    {"cc": 1, "verb": "strength"},
    {"cc": 2, "verb": "step_size"},
    {"cc": 3, "verb": "carry"},
    {"cc": 4, "verb": "layer", "layer": "block_6"},
    {"cc": 5, "verb": "crossfade", "min": 0.0, "max": 4.0},
    {"cc": 20, "verb": "next"},
    {"note": 36, "verb": "preset", "preset": "wild"},
    {"note": 37, "verb": "next"},
    {"note": 38, "verb": "previous"},
]


def lite_config(tmp_path, port: str = PORT, **midi):
    return {
        "model": {"name": "efficientnet_lite0"},
        "dream": {"octaves": 1, "steps": 1, "width": 64, "seed": 0},
        "coherence": {"mode": "independent"},
        "source": SOURCE,
        "outputs": ["null"],
        "metrics": {"port": 0},
        "control": {"token": TOKEN},
        "reconnect": {"initial": 0.2, "max": 1.0},
        "playlist": PRESETS,
        "midi": {"port": port, "backend": BACKEND, "controls": CONTROLS, **midi},
    }


@pytest.fixture(scope="module")
def knobs():
    controller = Controller(PORT)
    yield controller
    controller.close()


@pytest.fixture(scope="module")
def lite(tmp_path_factory, knobs):
    """The daemon on the default model with a MIDI controller and its clock (a preset a bar)."""
    tmp = tmp_path_factory.mktemp("midi")
    config = write(tmp / "midi.yaml", lite_config(tmp, clock=True, switch_every=1, pulse=[1.0, 1.5]))
    running = Running(config)
    print("MIDI path:", MIDI_PATH)
    wait_for(lambda: running.state()["midi"]["up"], 30, "the MIDI port to open")
    yield running
    running.close()


def settle(running, check, what, timeout=120):
    """Wait for ``check(state)``; on a timeout the state is in the error."""
    try:
        return wait_for(lambda: check(running.state()), timeout, what)
    except AssertionError:
        raise AssertionError(f"{what}: {running.state()}") from None


def midi_count(running, result: str) -> float:
    return running.metrics()[f"streamdream_midi_messages_total,result={result}"]


# --- one test per verb: the mapped control moves what /api/state reports -----------------------------


def test_cc_sets_the_strength_scaled_to_its_range(lite, knobs):
    knobs.cc(1, 127)
    settle(lite, lambda s: s["strength"] == 3.0, "strength 3.0 (CC 1 at 127)")
    knobs.cc(1, 0)
    settle(lite, lambda s: s["strength"] == 0.1, "strength 0.1 (CC 1 at 0)")
    knobs.cc(1, 64)
    settle(lite, lambda s: s["strength"] == round(0.1 + 2.9 * 64 / 127, 4), "strength at half travel")


def test_cc_sets_the_step_size(lite, knobs):
    knobs.cc(2, 127)
    settle(lite, lambda s: s["dream"]["step_size"] == 16.0 and s["tweaks"]["step_size"] == 16.0, "step size 16")


def test_cc_sets_the_carry(lite, knobs):
    knobs.cc(3, 0)
    settle(lite, lambda s: s["carry"] == 0.05, "carry 0.05 (its bottom: the verb refuses 0)")


def test_cc_sets_a_layer_weight(lite, knobs):
    knobs.cc(4, 127)  # block_6 is the mid preset's layer (the default look)
    settle(lite, lambda s: s["layer_weights"] == {"block_6": 2.0}, "block_6's weight 2.0")
    knobs.cc(4, 0)
    settle(lite, lambda s: s["layer_weights"] == {"block_6": 0.0}, "block_6's weight 0")


def test_cc_sets_the_crossfade_with_the_bindings_own_range(lite, knobs):
    knobs.cc(5, 127)
    settle(lite, lambda s: s["playlist"]["crossfade"] == 4.0, "crossfade 4 s (the binding's max)")
    knobs.cc(5, 0)
    settle(lite, lambda s: s["playlist"]["crossfade"] == 0.0, "crossfade 0")


def test_a_note_switches_to_its_preset(lite, knobs):
    knobs.note(36)
    settle(lite, lambda s: s["preset"] == "wild" and s["showing"] == "wild", "preset wild (note 36)")


def test_notes_step_through_the_playlist_both_ways(lite, knobs):
    cycle = lite.state()["cycle"]
    start = lite.state()["preset"]
    after = cycle[(cycle.index(start) + 1) % len(cycle)]
    knobs.note(37)
    settle(lite, lambda s: s["preset"] == after, f"next preset {after} (note 37)")
    knobs.note(38)
    settle(lite, lambda s: s["preset"] == start, f"previous preset {start} (note 38)")


def test_a_cc_button_fires_next_once_per_press(lite, knobs):
    cycle = lite.state()["cycle"]
    start = lite.state()["preset"]
    applied = midi_count(lite, "applied")
    knobs.cc(20, 127)
    knobs.cc(20, 127)  # held: no second press
    knobs.cc(20, 0)  # released
    after = cycle[(cycle.index(start) + 1) % len(cycle)]
    settle(lite, lambda s: s["preset"] == after, f"next preset {after} (CC 20 pressed)")
    assert midi_count(lite, "applied") == applied + 1


def test_a_fader_burst_coalesces_and_its_last_value_wins(lite, knobs):
    for value in list(range(128)) + list(range(127, 40, -1)):
        knobs.cc(1, value)
    settle(lite, lambda s: s["strength"] == scaled(MidiBinding(cc=1, verb="strength"), 41), "the fader's last value")


def test_unmapped_and_refused_messages_are_counted_not_fatal(lite, knobs):
    unmapped, invalid = midi_count(lite, "unmapped"), midi_count(lite, "invalid")
    knobs.cc(99, 10)
    wait_for(lambda: midi_count(lite, "unmapped") == unmapped + 1, 10, "an unmapped CC counted")
    assert midi_count(lite, "invalid") == invalid
    assert lite.service.midi.alive


def test_http_has_the_verbs_midi_added_previous_and_crossfade(lite):
    from tests.fixtures.servers import http_request

    start = lite.state()["preset"]
    cycle = lite.state()["cycle"]
    status, body = http_request(lite.url + "/api/preset/previous", token=TOKEN, method="POST", body={})
    assert status == 200, body
    settle(lite, lambda s: s["preset"] == cycle[cycle.index(start) - 1], "the previous preset over HTTP")
    status, body = http_request(lite.url + "/api/crossfade", token=TOKEN, method="POST", body={"value": 75})
    assert status == 400 and "crossfade: must be <= 60" in body and "got 75" in body
    status, body = http_request(lite.url + "/api/midi/learn", token=TOKEN, method="POST", body={"control": "warp"})
    assert status == 400 and "learn: give a control to bind" in body and "'warp'" in body


# --- a controller unplugged and plugged again ------------------------------------------------------


def test_an_unplugged_controller_is_retried_and_serve_goes_on(lite, knobs):
    assert lite.metrics()["streamdream_midi_up"] == 1.0
    knobs.unplug()
    settle(lite, lambda s: not s["midi"]["up"] and "vanished" in s["midi"]["down_reason"], "MIDI down after the unplug", 30)
    assert lite.metrics()["streamdream_midi_up"] == 0.0
    before = lite.metrics()["streamdream_frames_total,stage=write"]
    wait_for(lambda: lite.metrics()["streamdream_frames_total,stage=write"] > before + 3, 60, "frames while MIDI is down")
    assert lite.service.midi.alive and lite.thread.is_alive()
    knobs.plug()
    settle(lite, lambda s: s["midi"]["up"], "MIDI up again after the plug", 30)
    wait_for(knobs.listened, 10, "the daemon listening again")
    knobs.cc(1, 127)
    settle(lite, lambda s: s["strength"] == 3.0, "a knob after the plug")


# --- MIDI clock -----------------------------------------------------------------------------------------


class ShowWatcher:
    """Notes when the look shown changes, and the strength factor the dream gets (polled every 5 ms)."""

    def __init__(self, service) -> None:
        self.service, self.changes, self.factors, self._stop = service, [], [], threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        last = self.service.director.state()["showing"]
        while not self._stop.is_set():
            showing = self.service.director.state()["showing"]
            if showing != last:
                self.changes.append((time.monotonic(), showing))
                last = showing
            self.factors.append(self.service.assembly.looks.modulation(None))  # the pulse ignores the frame
            time.sleep(0.005)

    def stop(self) -> list:
        self._stop.set()
        self._thread.join(5)
        return self.changes


@pytest.mark.parametrize("bpm", [120, 174])
def test_clock_tempo_and_preset_switches_on_the_bar(lite, knobs, bpm):
    bars = 4
    lite.service.midi.switches.clear()
    watcher = ShowWatcher(lite.service)
    beat_times = knobs.play_clock(bpm, beats=bars * 4 + 1)  # the downbeat of bar 5 ends it
    time.sleep(1.0)
    changes = watcher.stop()
    state = lite.state()["midi"]
    knobs.send(mido.Message("stop"))
    assert abs(state["tempo"] - bpm) <= 1.0, f"measured {state['tempo']} BPM for {bpm}"
    assert max(watcher.factors) > 1.4 and min(watcher.factors) < 1.1  # the dream's strength pulses on the beats
    switches = state["switches"]
    assert [s["bar"] for s in switches] == [2, 3, 4, 5], switches
    print(f"\n{bpm} BPM (measured {state['tempo']}), {MIDI_PATH}")
    print("bar | downbeat sent (s) | switch asked (+ms) | new look shown (+ms)")
    for switch in switches:
        downbeat = beat_times[(switch["bar"] - 1) * 4]
        assert switch["beat"] == 1
        assert abs(switch["clock_at"] - downbeat) < 0.05  # the switch is the downbeat's own clock message
        shown = next((at for at, preset in changes if at >= switch["clock_at"] and preset == switch["preset"]), None)
        print(f"{switch['bar']:>3} | {downbeat - beat_times[0]:>17.3f} | {1000 * (switch['requested_at'] - downbeat):>18.1f} | "
              f"{'-' if shown is None else f'{1000 * (shown - downbeat):.0f}':>20}")
    settle(lite, lambda s: not s["midi"]["clock"]["running"], "the transport stopped")
    assert lite.service.assembly.looks.modulation(None) == 1.0  # no pulse while stopped


def test_clock_transport_stop_and_continue_keep_the_position(lite, knobs):
    lite.service.midi.switches.clear()
    knobs.play_clock(150, beats=2)
    knobs.send(mido.Message("stop"))
    settle(lite, lambda s: not s["midi"]["clock"]["running"] and s["midi"]["clock"]["ticks"] == 2 * PPQN, "stopped at beat 3")
    knobs.play_clock(150, beats=1, start=False)  # clocks while stopped: tempo only
    assert lite.state()["midi"]["clock"]["ticks"] == 2 * PPQN
    knobs.send(mido.Message("continue"))
    knobs.play_clock(150, beats=1, start=False)
    clock = settle(lite, lambda s: s["midi"]["clock"]["ticks"] == 3 * PPQN and s["midi"]["clock"], "three beats counted")
    assert clock["bar"] == 1 and clock["beat"] == 4 and clock["running"]
    knobs.send(mido.Message("stop"))
    assert lite.state()["midi"]["switches"] == []  # no downbeat of bar 2 yet


# --- without a model ------------------------------------------------------------------------------------


def test_clock_measures_tempo_and_counts_bars_from_start():
    for bpm in (120.0, 174.0, 60.0):
        clock, interval = MidiClock(4), 60.0 / (bpm * PPQN)
        clock.start()
        ticks = [clock.tick(100.0 + n * interval) for n in range(PPQN * 8 + 1)]
        assert abs(clock.state.tempo - bpm) < 0.01
        assert [t.bar for t in ticks if t.bar is not None] == [0, 1, 2]
        assert [n for n, t in enumerate(ticks) if t.beat is not None] == [PPQN * b for b in range(9)]
    clock.tick(200.0)  # a clock after a long gap starts a new measurement
    assert clock.state.tempo is None
    clock.stop()
    clock.locate(16)  # song position: bar 2 (16 sixteenths)
    clock.resume()
    assert clock.tick(201.0).bar == 1 and clock.state.as_dict()["bar"] == 2


def test_pulse_rises_on_the_beat_and_decays():
    clock = MidiClock(4)
    pulse = Pulse(clock, 1.0, 1.6, decay=0.1)
    assert pulse.factor(0.0) == 1.0  # stopped
    clock.start()
    clock.tick(10.0)
    assert pulse.factor(10.0) == pytest.approx(1.6)
    assert pulse.factor(10.1) == pytest.approx(1.0 + 0.6 / 2.718281828, rel=1e-6)
    assert pulse.factor(12.0) < 1.001
    clock.stop()
    assert pulse.factor(10.0) == 1.0


def test_bindings_scale_learn_and_survive_a_file(tmp_path):
    assert scaled(MidiBinding(cc=1, verb="carry"), 127) == 1.0
    assert scaled(MidiBinding(cc=1, verb="layer", layer="a", min=-1, max=1), 0) == -1.0
    bindings = Bindings((MidiBinding(cc=1, verb="strength"),))
    bindings = bindings.learn(MidiBinding(cc=7, verb="strength")).learn(MidiBinding(note=40, verb="next"))
    table = bindings.table()
    assert table[("cc", 7)].verb == "strength" and table[("cc", 1)].verb == "strength" and table[("note", 40)].verb == "next"
    assert len(bindings.learn(MidiBinding(cc=9, verb="strength")).learned) == 2  # strength moved from CC 7 to CC 9
    path = learned_path(tmp_path / "c.yaml", None)
    assert path == tmp_path / "c.yaml.midi.json"
    save_learned(path, bindings.learned)
    assert load_learned(path) == bindings.learned
    path.write_text('[{"cc": 300, "verb": "strength"}]')
    with pytest.raises(ConfigError, match=r"c.yaml.midi.json: learned binding 0.cc: must be <= 127"):
        load_learned(path)


def test_midi_config_errors_name_the_key_and_value():
    cases = [
        ({"midi": {"controls": [{"cc": 1, "note": 3, "verb": "strength"}]}}, "give either cc or note"),
        ({"midi": {"controls": [{"cc": 1, "verb": "layer"}]}}, "verb layer needs layer"),
        ({"midi": {"controls": [{"cc": 128, "verb": "strength"}]}}, "midi.controls.0.cc: must be <= 127, got 128"),
        ({"midi": {"controls": [{"cc": 1, "verb": "warp"}]}}, "midi.controls.0.verb"),
        ({"midi": {"switch_every": 4}}, "set clock: true"),
        ({"midi": {"clock": True, "switch_every": 0.3}}, "must come to whole beats"),
        ({"midi": {"clock": True, "switch_every": 2}, "playlist": {"interval": 30}}, "keep one"),
        ({"midi": {"channel": 17}}, "midi.channel: must be <= 16, got 17"),
    ]
    for data, words in cases:
        with pytest.raises(ConfigError, match=words):
            parse_config(data)


# --- the tiny model: a port missing at start, learn mode in the page ------------------------------------


def tiny_config(tiny_model_path, port: str, **midi):
    from tests.test_service_daemon import fast

    return fast(tiny_model_path, source=SOURCE, playlist=PRESETS, control={"token": TOKEN},
                reconnect={"initial": 0.2, "max": 1.0}, midi={"port": port, "backend": BACKEND, **midi})


def test_a_controller_missing_at_start_does_not_stop_serve_and_is_opened_when_plugged(tiny_model_path, tmp_path):
    name = "streamdream-test late"
    config = write(tmp_path / "late.yaml", tiny_config(tiny_model_path, "late", controls=[{"cc": 7, "verb": "strength"}]))
    running = Running(config)
    try:
        midi = running.state()["midi"]
        assert not midi["up"] and "no MIDI input port matching 'late'" in midi["down_reason"]
        before = running.metrics()["streamdream_frames_total,stage=write"]
        wait_for(lambda: running.metrics()["streamdream_frames_total,stage=write"] > before + 3, 30, "frames without MIDI")
        late = Controller(name)  # found by a part of its name
        try:
            settle(running, lambda s: s["midi"]["up"] and name in s["midi"]["name"], "the port opened once plugged", 30)
            wait_for(late.listened, 10, "the daemon listening")
            late.cc(7, 127)
            settle(running, lambda s: s["strength"] == 3.0, "strength from the late controller", 30)
        finally:
            late.close()
    finally:
        running.close()


def test_midi_ports_command_lists_ports_and_marks_the_configs(tmp_path, capsys):
    from streamdream.cli import main
    from streamdream.errors import SourceError

    plugged = [Controller("streamdream-test alpha"), Controller("streamdream-test beta")]
    try:
        config = write(tmp_path / "ports.yaml", {"midi": {"port": "BETA", "backend": BACKEND}})
        assert main(["midi-ports", "--config", str(config)]) == 0
        lines = capsys.readouterr().out.splitlines()
        assert any(line.startswith("  ") and "streamdream-test alpha" in line for line in lines), lines
        assert any(line.startswith("* ") and "streamdream-test beta" in line for line in lines), lines
        assert lines[-1] == "* the port midi.port 'BETA' opens"
    finally:
        for controller in plugged:
            controller.close()
    if BACKEND is not None:  # no sequencer: rtmidi has no ports to list, and says why
        from streamdream.commands.midi_ports import list_ports
        from streamdream.config import MidiConfig

        with pytest.raises(SourceError, match="sequencer"):
            list_ports(MidiConfig())


def test_learn_mode_binds_a_knob_from_the_page_and_keeps_it_after_a_restart(tiny_model_path, tmp_path):
    from tests.fixtures.control_page import needs_chromium, open_page

    if needs_chromium.args[0]:
        pytest.skip("needs chromium")
    pads = Controller("streamdream-test pads")
    config = write(tmp_path / "learn.yaml", tiny_config(tiny_model_path, "pads"))
    running = Running(config)
    browser, page = open_page(running.url + "/", tmp_path / "profile", height=900)
    try:
        page.log_in(TOKEN)
        page.wait("document.getElementById('midi-port').textContent.includes('up')", "the MIDI port shown up")
        # learn: the Learn button, then a click on the strength slider, then a knob
        page.click("#midi-learn")
        page.wait("document.body.classList.contains('learning')", "learn mode")
        page.click("#strength", fraction=0.9)
        settle(running, lambda s: s["midi"]["learning"] == "strength", "the daemon waiting for a knob for strength", 30)
        assert running.state()["strength"] == 1.0  # the click chose the slider; it did not move the strength
        pads.cc(21, 100)
        page.wait("document.getElementById('midi-bindings').textContent.includes('CC 21 -> strength (learned)')",
                  "the learned binding on the page")
        page.wait("!document.body.classList.contains('learning')", "learn mode over")
        assert (tmp_path / "learn.yaml.midi.json").exists()
        pads.cc(21, 127)
        settle(running, lambda s: s["strength"] == 3.0, "strength from the learned knob", 30)
        page.wait("document.getElementById('strength-value').textContent === '3.00'", "the slider following the knob")
    finally:
        browser.close()
        running.close()
    running = Running(config)  # a restart: the binding is read back from beside the config
    try:
        settle(running, lambda s: s["midi"]["up"], "MIDI up after the restart", 30)
        wait_for(pads.listened, 10, "the daemon listening")
        assert {"cc": 21, "verb": "strength", "learned": True, "text": "CC 21 -> strength"} in running.state()["midi"]["bindings"]
        pads.cc(21, 0)
        settle(running, lambda s: s["strength"] == 0.1, "the learned knob after the restart", 30)
    finally:
        running.close()
        pads.close()


def test_serve_preflight_names_a_missing_midi_backend():
    from streamdream.preflight import check_config

    config = parse_config({"outputs": ["null"], "midi": {"port": "x", "backend": "nosuch.backend"}})
    with pytest.raises(ConfigError, match="midi.backend: no module 'nosuch.backend'"):
        check_config(config, "serve", ports=False)
    check_config(parse_config({"outputs": ["null"], "midi": {"port": "x", "backend": BACKEND}}), "serve", ports=False)


def test_serve_with_a_controller_that_is_not_there_runs_and_stops_cleanly(tiny_model_path, tmp_path):
    """`streamdream serve` as a user runs it, with the real backend (rtmidi): here no sequencer or
    no such port, so MIDI is down, said in /api/state and the metric, and the daemon serves on."""
    import json
    import os
    import signal
    import subprocess
    import sys

    from tests.fixtures.servers import free_port, http_request
    from tests.test_service_daemon import fast, samples

    port = free_port()
    data = fast(tiny_model_path, source=SOURCE, metrics={"port": port}, midi={"port": "no-such-controller-xyz"})
    config = write(tmp_path / "serve.yaml", data)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "STREAMDREAM_CONTROL_TOKEN": ""}
    proc = subprocess.Popen([sys.executable, "-m", "streamdream.cli", "serve", "--config", str(config)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    url = f"http://127.0.0.1:{port}"

    def state():
        try:
            status, body = http_request(url + "/api/state")
        except OSError:
            return {}
        return json.loads(body) if status == 200 else {}

    try:
        midi = wait_for(lambda: (state().get("frames") or {}).get("out", 0) > 3 and state()["midi"], 120, "frames out with MIDI on")
        assert not midi["up"] and midi["down_reason"]
        assert samples(http_request(url + "/metrics")[1])["streamdream_midi_up"] == 0.0
        assert proc.poll() is None
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    assert "MIDI: " in out and "Traceback" not in out, out
