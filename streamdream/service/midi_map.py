"""MIDI bindings: which control change or note drives which control verb, and with what value.

A binding (``MidiBinding`` in the config) names a CC or a note and a verb. A number
verb's value is the controller's 0-127 scaled linearly onto the binding's ``min``..``max``,
by default the verb's range below (every value in it is one the verb accepts, so a knob
turned to either end is never refused):

=============  ==============  =============================================================
verb           0 .. 127        why this range
=============  ==============  =============================================================
``strength``   0.1 .. 3.0      the control page's slider (the verb takes up to 10)
``step_size``  0.5 .. 16.0     pixel levels per step (the verb takes up to 64)
``carry``      0.05 .. 1.0     the whole range but 0 (which the verb refuses)
``layer``      0.0 .. 2.0      a layer's weight, off to double (the verb takes -100..100)
``crossfade``  0.0 .. 10.0     seconds (the verb takes up to 60)
``blend``      0.0 .. 1.0      the second input's share, its whole range
=============  ==============  =============================================================

A press verb (``preset``, ``next``, ``previous``) fires on a note-on, or when a control
change rises through 64 (a button that sends 127 then 0 fires once). Bindings learned on
the control page are kept in a JSON file beside the config (``CONFIG.midi.json``); for the
same CC or note they win over the config's ``midi.controls``.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError

from ..config import MidiBinding, _describe
from ..errors import ConfigError

log = logging.getLogger(__name__)

RANGES: dict[str, tuple[float, float]] = {
    "strength": (0.1, 3.0),
    "step_size": (0.5, 16.0),
    "carry": (0.05, 1.0),
    "layer": (0.0, 2.0),
    "crossfade": (0.0, 10.0),
    "blend": (0.0, 1.0),
}
PRESSES = ("preset", "next", "previous")
MAX_LEARNED = 512  # bindings kept in the learned file
_LEARNED = TypeAdapter(list[MidiBinding])

Key = tuple[str, int]  # ("cc", 7) or ("note", 36)


def key_of(binding: MidiBinding) -> Key:
    return ("cc", binding.cc) if binding.cc is not None else ("note", binding.note)  # type: ignore[return-value]


def scaled(binding: MidiBinding, data: int) -> float:
    """``data`` (0-127) on the binding's range, rounded to 4 decimals (a knob has 128 steps)."""
    low, high = RANGES[binding.verb]
    low = low if binding.min is None else binding.min
    high = high if binding.max is None else binding.max
    return round(low + (high - low) * max(0, min(127, data)) / 127.0, 4)


def describe(binding: MidiBinding) -> str:
    """'CC 21 -> strength', 'note 36 -> preset calm'."""
    source = f"CC {binding.cc}" if binding.cc is not None else f"note {binding.note}"
    target = binding.verb + (f" {binding.layer}" if binding.layer else "") + (f" {binding.preset}" if binding.preset else "")
    return f"{source} -> {target}"


def learned_path(config_path: Path, configured: Path | None) -> Path:
    """``midi.learned``, relative to the config's folder, else ``CONFIG.midi.json`` beside it."""
    if configured is None:
        return config_path.with_name(config_path.name + ".midi.json")
    return configured if configured.is_absolute() else config_path.parent / configured


def load_learned(path: Path) -> tuple[MidiBinding, ...]:
    """The bindings saved by learn mode; () if there is no file; ConfigError naming the file otherwise."""
    try:
        text = path.read_text("utf-8")
    except FileNotFoundError:
        return ()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the learned MIDI bindings: {exc.strerror or exc}") from None
    try:
        data = json.loads(text)
        return tuple(_LEARNED.validate_python(data)[:MAX_LEARNED])
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: the learned MIDI bindings are not JSON ({exc}); delete the file to start again") from None
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(p) for p in error["loc"])
        raise ConfigError(f"{path}: learned binding {where}: {_describe(dict(error))}; delete the file to start again") from None


def save_learned(path: Path, bindings: tuple[MidiBinding, ...]) -> None:
    """Write the learned bindings whole (a temporary file renamed over the old one)."""
    data = [b.model_dump(exclude_none=True) for b in bindings[-MAX_LEARNED:]]
    partial = path.with_name(f"{path.name}.partial-{os.getpid()}")
    partial.write_text(json.dumps(data, indent=1) + "\n", "utf-8")
    os.replace(partial, path)


@dataclass(frozen=True)
class Bindings:
    """The config's bindings with the learned ones over them, looked up by CC or note."""

    configured: tuple[MidiBinding, ...]
    learned: tuple[MidiBinding, ...] = ()

    def table(self) -> dict[Key, MidiBinding]:
        table = {key_of(b): b for b in self.configured}
        table.update({key_of(b): b for b in self.learned})
        return table

    def learn(self, binding: MidiBinding) -> Bindings:
        """These bindings with ``binding`` learned (replacing what its CC or note, or its target, had)."""
        target = (binding.verb, binding.layer, binding.preset)
        kept = tuple(b for b in self.learned if key_of(b) != key_of(binding) and (b.verb, b.layer, b.preset) != target)
        return Bindings(self.configured, kept + (binding,))

    def as_list(self) -> list[dict[str, Any]]:
        learned = {key_of(b) for b in self.learned}
        return [
            {**b.model_dump(exclude_none=True), "learned": key in learned, "text": describe(b)}
            for key, b in sorted(self.table().items())
        ]


__all__ = ["PRESSES", "RANGES", "Bindings", "describe", "key_of", "learned_path", "load_learned", "save_learned", "scaled"]
