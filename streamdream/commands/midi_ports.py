"""`streamdream midi-ports`: the MIDI input ports this machine has, and which one a config would open.

With ``--config``, the config's ``midi.backend`` is used and the port its ``midi.port``
names (exactly, or as a part of a name, as the daemon matches it) is marked. No ports to
list (no MIDI sequencer, mido not installed) is a ``SourceError`` saying why.
"""

from __future__ import annotations

import argparse

from ..config import MidiConfig, load_config
from ..errors import SourceError
from ..runtime.workers import StopToken


def list_ports(midi: MidiConfig) -> list[str]:
    """The lines to print: one port a line, ``*`` before the one ``midi.port`` would open."""
    try:
        from ..service.midi import input_names, match_port  # noqa: PLC0415 - mido is the midi extra
    except ImportError as exc:
        raise SourceError(f"MIDI needs {exc.name or 'mido'}: pip install 'streamdream[midi]'") from None
    try:
        names = input_names(midi.backend)
    except OSError as exc:
        raise SourceError(f"{exc}; is there a MIDI sequencer here (/dev/snd/seq on Linux)?") from None
    if not names:
        return ["no MIDI input ports (plug a controller in, or start the program that sends MIDI)"]
    chosen = match_port(midi.port, names) if midi.port else None
    lines = [f"{'*' if name == chosen else ' '} {name}" for name in names]
    if midi.port and chosen is None:
        lines.append(f"midi.port {midi.port!r} matches none of these")
    elif chosen is not None:
        lines.append(f"* the port midi.port {midi.port!r} opens")
    return lines


def command(args: argparse.Namespace, stop: StopToken) -> int:
    midi = load_config(args.config).midi if args.config else MidiConfig()
    if args.backend:
        midi = midi.model_copy(update={"backend": args.backend})
    for line in list_ports(midi):
        print(line)
    return 0


__all__ = ["command", "list_ports"]
