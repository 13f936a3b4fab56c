"""MIDI input (mido, python-rtmidi): a controller's knobs, faders and pads, and its clock.

``midi: {port: NAME}`` turns it on (``streamdream midi-ports`` lists the ports; a part of a
name is enough). One worker (``midi``) owns the port. The port's callback (the backend's
thread) only stamps each message with its arrival time and queues it (``receive``, the
one way in: tests without a MIDI sequencer feed messages through it too); the worker
drains the queue and:

* maps control changes and notes to the control verbs through ``midi_map.Bindings``, and
  performs them with the same checks as HTTP and OSC (``control.perform``). A fader's burst
  of values is coalesced twice: the latest value per control of each drained batch, then
  the director's own coalescing of strength and tweaks (the OSC fader's path);
* follows MIDI clock (``midi.clock``, ``midi_clock.py``): the tempo, the transport, the
  next preset every ``switch_every`` bars or beats on the downbeat, and the ``Pulse``;
* in learn mode (``learn``, from the control page) binds the next control change or note
  to the control chosen, and saves the binding beside the config (``CONFIG.midi.json``).

A port that is missing, cannot be opened or vanishes (a controller unplugged: its name
leaves the backend's list, checked every ``CHECK`` seconds) is never fatal: it is retried
with the ``reconnect`` section's backoff, and ``streamdream_midi_up`` and
``/api/state``'s ``midi.up`` say whether it is up. A message that maps to nothing, or
that the controller refuses, is counted (``streamdream_midi_messages_total{result}``),
logged (the first of a burst) and dropped.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

import mido
from prometheus_client import CollectorRegistry, Counter, Gauge
from pydantic import ValidationError

from ..config import MIDI_VERBS, MidiBinding, MidiConfig, ReconnectConfig, _describe
from ..errors import ControlError
from ..runtime.queues import FrameQueue, QueuePolicy
from ..runtime.workers import POLL, Backoff, Worker
from .burstlog import BurstLog
from .control import Controller, perform
from .midi_clock import MidiClock, Pulse
from .midi_map import PRESSES, Bindings, Key, describe, learned_path, load_learned, save_learned, scaled

log = logging.getLogger(__name__)

QUEUE = 4096  # messages waiting at most (a clock sends 24 per beat); more are dropped and counted
CHECK = 1.0  # seconds between looks at whether the open port is still there
LOG_QUIET = 10.0  # seconds: one log line per burst of dropped messages
RESULTS = ("applied", "invalid", "unmapped", "dropped", "learned")
TRANSPORT = ("clock", "start", "stop", "continue", "songpos")


def input_names(backend: str | None = None) -> list[str]:
    """The backend's MIDI input ports; OSError saying why there are none to list (no sequencer)."""
    try:
        return list(_backend(backend).get_input_names())
    except Exception as exc:  # rtmidi raises its own SystemError without an ALSA sequencer
        raise OSError(f"cannot list MIDI ports ({_backend(backend).name}): {' '.join(str(exc).split()).rstrip('.')}") from None


def match_port(wanted: str, names: list[str]) -> str | None:
    """The port named ``wanted``, else the first whose name contains it (any case)."""
    if wanted in names:
        return wanted
    return next((name for name in names if wanted.lower() in name.lower()), None)


def _backend(name: str | None) -> mido.Backend:
    return mido.Backend(name) if name else mido.Backend()  # None: $MIDO_BACKEND, else rtmidi


class MidiInput(Worker):
    """The MIDI worker (see the module docstring)."""

    def __init__(
        self, config: MidiConfig, controller: Controller, registry: CollectorRegistry, *,
        config_path: Path, reconnect: ReconnectConfig,
    ) -> None:  # fmt: skip
        super().__init__("midi")
        assert config.port is not None
        self.config = config
        self.controller = controller
        self.learned_file = learned_path(config_path, config.learned)
        self.bindings = Bindings(config.controls, load_learned(self.learned_file))  # a bad file fails the start
        self._events: FrameQueue[tuple[Any, float]] = FrameQueue("midi", QUEUE, QueuePolicy.DROP_NEWEST, self._dropped)
        self._backoff = Backoff(reconnect.initial, reconnect.max)
        self._port: Any = None
        self._port_name: str | None = None
        self._next_try = 0.0
        self._next_check = 0.0
        self._down_reason: str | None = "not opened yet"
        self._cc_high: dict[int, bool] = {}  # a CC press fires when its value rises through 64
        self._learning: MidiBinding | None = None  # the target waiting for a control (its cc is a placeholder)
        self._learn_lock = threading.Lock()
        self.last_learned: str | None = None
        self.clock = MidiClock(config.beats_per_bar) if config.clock else None
        self.pulse = Pulse(self.clock, config.pulse[0], config.pulse[1], config.pulse_decay) if self.clock and config.pulse else None
        unit = config.beats_per_bar if config.switch_unit == "bars" else 1
        self._switch_beats = round(config.switch_every * unit) if config.switch_every is not None else None
        self.switches: list[dict[str, Any]] = []  # the latest clock-driven switches (for /api/state)
        self._drops = BurstLog(log, "MIDI", "streamdream_midi_messages_total", LOG_QUIET)
        self.up_gauge = Gauge("streamdream_midi_up", "1 while the MIDI input port is open, else 0.", registry=registry)
        self.tempo_gauge = Gauge("streamdream_midi_tempo_bpm", "Tempo of the MIDI clock (0: none).", registry=registry)
        self.messages = Counter("streamdream_midi_messages", "MIDI messages received, by result.", ["result"], registry=registry)
        for result in RESULTS:
            self.messages.labels(result=result)

    # --- the way in (the port's callback thread, or a test) -------------------------------------

    def receive(self, message: Any, at: float | None = None) -> None:
        """Queue ``message`` (a ``mido.Message``) stamped with its arrival time; never blocks."""
        self._events.put((message, time.monotonic() if at is None else at), timeout=0.0)

    def _dropped(self, queue: str, reason: str) -> None:
        self.count("dropped", f"a message: the queue is full ({QUEUE})")

    # --- learn mode (any thread) ------------------------------------------------------------------

    def learn(self, verb: Any, layer: Any = None, preset: Any = None) -> dict[str, Any]:
        """Bind the next control change or note to ``verb`` (None: stop learning)."""
        if verb is None:
            with self._learn_lock:
                self._learning = None
            return {"learning": None}
        if verb not in MIDI_VERBS:
            raise ControlError(f"learn: give a control to bind, one of {', '.join(MIDI_VERBS)}, got {str(verb)[:40]!r}")
        try:
            target = MidiBinding.model_validate({"cc": 0, "verb": verb, "layer": layer, "preset": preset})
        except ValidationError as exc:
            raise ControlError(f"learn {verb}: {_describe(dict(exc.errors()[0]))}") from None
        with self._learn_lock:
            self._learning = target
        return {"learning": _target(target)}

    # --- the worker -------------------------------------------------------------------------------

    def step(self) -> bool:
        now = time.monotonic()
        if self._port is None and now >= self._next_try:
            self._connect(now)
        elif self._port is not None and now >= self._next_check:
            self._check_present(now)
        try:
            events = [self._events.get(timeout=POLL)]
        except TimeoutError:
            return True
        self._handle(events + self._events.drain())
        return True

    def end(self) -> None:
        self._close()

    def _connect(self, now: float) -> None:
        wanted = self.config.port or ""
        try:
            name = match_port(wanted, input_names(self.config.backend))
            if name is None:
                raise OSError(f"no MIDI input port matching {wanted!r} (plugged in? `streamdream midi-ports` lists them)")
            self._port = _backend(self.config.backend).open_input(name, callback=self.receive)
        except Exception as exc:  # never fatal: retried with backoff
            delay = self._backoff.next_delay()
            self._next_try = now + delay
            reason = " ".join(str(exc).split()) or type(exc).__name__
            if reason != self._down_reason:
                log.warning("MIDI: %s; retrying in %.0f s", reason, delay)
            self._down_reason = reason
            self.up_gauge.set(0)
            return
        self._port_name, self._down_reason = name, None
        self._backoff.reset()
        self._next_check = now + CHECK
        self.up_gauge.set(1)
        log.info("MIDI input: %s", name)

    def _check_present(self, now: float) -> None:
        self._next_check = now + CHECK
        try:
            present = self._port_name in input_names(self.config.backend)
        except OSError:
            present = False
        if not present:
            self._close()
            self._down_reason = f"port {self._port_name!r} vanished (unplugged?)"
            log.warning("MIDI: %s; retrying", self._down_reason)
            self._next_try = now + self._backoff.next_delay()

    def _close(self) -> None:
        port, self._port = self._port, None
        self.up_gauge.set(0)
        if port is not None:
            try:
                port.close()
            except Exception as exc:  # a vanished device may fail its close too
                log.debug("MIDI: closing %s: %r", self._port_name, exc)

    # --- messages ---------------------------------------------------------------------------------

    def _handle(self, events: list[tuple[Any, float]]) -> None:
        latest: dict[Key, tuple[MidiBinding, int]] = {}  # number verbs: the batch's last value per control
        table = self.bindings.table()
        for message, at in events:
            kind = message.type
            if kind in TRANSPORT:
                self._transport(message, at)
                continue
            channel = self.config.channel
            if channel is not None and getattr(message, "channel", channel - 1) != channel - 1:
                continue
            if kind == "control_change":
                key, data = ("cc", message.control), message.value
                rose = data >= 64 and not self._cc_high.get(message.control, False)
                self._cc_high[message.control] = data >= 64
            elif kind == "note_on" and message.velocity > 0:
                key, data, rose = ("note", message.note), message.velocity, True
            else:
                continue  # note offs, pitch bends, sysex...: nothing is mapped to them
            if self._learn(key):
                table = self.bindings.table()
                continue
            binding = table.get(key)
            if binding is None:
                self.count("unmapped")
            elif binding.verb in PRESSES:
                if rose:
                    self._perform(binding, None, key)
            else:
                latest[key] = (binding, data)
        for key, (binding, data) in latest.items():
            self._perform(binding, scaled(binding, data), key)

    def _perform(self, binding: MidiBinding, value: float | None, key: Key) -> None:
        argument = binding.preset if binding.verb == "preset" else value
        try:
            perform(self.controller, binding.verb, argument, binding.layer)
        except ControlError as exc:
            self.count("invalid", f"{key[0]} {key[1]} ({describe(binding)}, value {value}): {exc}")
            return
        except Exception as exc:  # a fault behind the verb: logged with its traceback, the input goes on
            log.error("MIDI: %s failed: %r", describe(binding), exc, exc_info=exc)
            self.count("invalid")
            return
        self.count("applied")

    def _learn(self, key: Key) -> bool:
        with self._learn_lock:
            target, self._learning = self._learning, None
        if target is None:
            return False
        binding = target.model_copy(update={"cc": key[1] if key[0] == "cc" else None, "note": key[1] if key[0] == "note" else None})
        self.bindings = self.bindings.learn(binding)
        try:
            save_learned(self.learned_file, self.bindings.learned)
        except OSError as exc:
            log.error("MIDI learn: cannot save %s: %s (the binding holds until a restart)", self.learned_file, exc.strerror or exc)
        self.last_learned = describe(binding)
        log.info("MIDI learn: %s (saved in %s)", self.last_learned, self.learned_file)
        self.count("learned")
        return True

    def _transport(self, message: Any, at: float) -> None:
        clock, kind = self.clock, message.type
        if clock is None:
            return
        if kind == "start":
            clock.start()
            self._prepare_next(None)
        elif kind == "stop":
            clock.stop()
        elif kind == "continue":
            clock.resume()
        elif kind == "songpos":
            clock.locate(message.pos)
        else:
            tick = clock.tick(at)
            if tick.beat is not None and self._switch_beats and tick.beat > 0 and tick.beat % self._switch_beats == 0:
                self._switch_on_beat(tick.beat, at)
        tempo = clock.state.tempo
        self.tempo_gauge.set(tempo or 0.0)

    def _switch_on_beat(self, beat: int, at: float) -> None:
        try:
            answer = perform(self.controller, "next")
        except ControlError as exc:
            self.count("invalid", f"the clock's preset switch at beat {beat}: {exc}")
            return
        except Exception as exc:  # a fault behind the verb: logged, the clock goes on
            log.error("MIDI clock: the preset switch at beat %d failed: %r", beat, exc, exc_info=exc)
            self.count("invalid")
            return
        self.count("applied")
        bar = beat // self.config.beats_per_bar + 1
        entry = {"bar": bar, "beat": beat % self.config.beats_per_bar + 1, "preset": answer.get("preset"),
                 "clock_at": at, "requested_at": time.monotonic()}  # fmt: skip
        self.switches = (self.switches + [entry])[-16:]
        log.info("MIDI clock: bar %d, switching to preset %s", bar, answer.get("preset"))
        self._prepare_next(answer.get("preset"))

    def _prepare_next(self, after: str | None) -> None:
        """Have the preset after ``after`` built before its bar comes, so the switch is on the downbeat."""
        prepare = getattr(self.controller, "prepare_next", None)
        if self._switch_beats is None or prepare is None:
            return
        try:
            prepare(after)
        except ControlError as exc:  # still starting, or too many changes waiting: built at the switch then
            log.debug("MIDI clock: preparing the next preset: %s", exc)

    def count(self, result: str, what: str = "") -> None:
        self.messages.labels(result=result).inc()
        if result not in ("applied", "unmapped", "learned"):
            self._drops.dropped(what)

    # --- what /api/state shows ----------------------------------------------------------------------

    @property
    def up(self) -> bool:
        return self._port is not None

    def state(self) -> dict[str, Any]:
        learning = self._learning
        clock = self.clock.state.as_dict() if self.clock is not None else None
        return {
            "port": self.config.port,
            "up": self.up,
            "name": self._port_name if self.up else None,
            "down_reason": None if self.up else self._down_reason,
            "learning": _target(learning) if learning is not None else None,
            "last_learned": self.last_learned,
            "bindings": self.bindings.as_list(),
            "tempo": clock["tempo"] if clock else None,
            "clock": clock,
            "pulse": round(self.pulse.factor(), 3) if self.pulse is not None else None,
            "switches": list(self.switches),
        }


def _target(binding: MidiBinding) -> str:
    return binding.verb + (f" {binding.layer}" if binding.layer else "") + (f" {binding.preset}" if binding.preset else "")


__all__ = ["MidiInput", "input_names", "match_port"]
