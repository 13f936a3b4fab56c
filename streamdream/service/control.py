"""The control verbs, one table for every surface: the HTTP API, OSC and the web page.

A surface turns its request into ``(verb, argument)`` and calls ``perform``; the argument's
type is checked here (a number, a preset name), its range by the controller (the
director checks a strength against its bound, a step size against ``dream.step_size``'s),
so an OSC message and an HTTP request with the same value get the same answer, or the
same ``ControlError``:

==============  ======================  =============================================
verb            HTTP                    OSC
==============  ======================  =============================================
``strength``    ``POST /api/strength``  ``/streamdream/strength <float>``
``preset``      ``POST /api/preset``    ``/streamdream/preset <string>``
``next``        ``POST /api/preset/next``  ``/streamdream/preset/next``
``previous``    ``POST /api/preset/previous``  ``/streamdream/preset/previous``
``step_size``   ``POST /api/step_size``    ``/streamdream/step_size <float>``
``carry``       ``POST /api/carry``        ``/streamdream/carry <float>``
``crossfade``   ``POST /api/crossfade``    ``/streamdream/crossfade <float>``
``blend``       ``POST /api/blend``        ``/streamdream/blend <float>``
``layer``       ``POST /api/layer/NAME/weight``  ``/streamdream/layer/NAME/weight <float>``
==============  ======================  =============================================

MIDI (``midi.py``) maps control changes and notes onto the same verbs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from ..errors import ControlError

MAX_NAME = 200  # characters of a preset or layer name looked at


class Controller(Protocol):
    """What the control surfaces drive; raises ControlError for a request it cannot honour."""

    def state(self) -> dict[str, Any]: ...

    def next_preset(self) -> dict[str, Any]: ...

    def previous_preset(self) -> dict[str, Any]: ...

    def set_preset(self, name: str) -> dict[str, Any]: ...

    def set_strength(self, value: float) -> dict[str, Any]: ...

    def set_step_size(self, value: float) -> dict[str, Any]: ...

    def set_carry(self, value: float) -> dict[str, Any]: ...

    def set_crossfade(self, value: float) -> dict[str, Any]: ...

    def set_layer_weight(self, layer: str, value: float) -> dict[str, Any]: ...

    def set_blend(self, value: float) -> dict[str, Any]: ...


def number(value: Any, verb: str) -> float:
    """``value`` as a float; ControlError with an example otherwise (booleans are not numbers)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ControlError(f'give the {verb.replace("_", " ")} as {{"value": NUMBER}}, e.g. {{"value": 1.5}}, got {_shown(value)}')
    if value != value or value in (float("inf"), float("-inf")):
        raise ControlError(f"the {verb.replace('_', ' ')} must be a finite number, got {value}")
    return float(value)


def name(value: Any, what: str = "preset") -> str:
    if not isinstance(value, str) or not value.strip():
        raise ControlError(f'give the {what} as {{"name": "NAME"}}, got {_shown(value)}')
    return value.strip()[:MAX_NAME]


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


@dataclass(frozen=True)
class Verb:
    name: str
    takes: str  # "number", "name" or "nothing"
    call: Callable[..., dict[str, Any]]  # (controller, argument[, layer]) -> the answer


VERBS: dict[str, Verb] = {
    v.name: v
    for v in (
        Verb("strength", "number", lambda c, x: c.set_strength(x)),
        Verb("preset", "name", lambda c, x: c.set_preset(x)),
        Verb("next", "nothing", lambda c, x: c.next_preset()),
        Verb("previous", "nothing", lambda c, x: c.previous_preset()),
        Verb("step_size", "number", lambda c, x: c.set_step_size(x)),
        Verb("carry", "number", lambda c, x: c.set_carry(x)),
        Verb("crossfade", "number", lambda c, x: c.set_crossfade(x)),
        Verb("blend", "number", lambda c, x: c.set_blend(x)),
        Verb("layer", "number", lambda c, x, layer: c.set_layer_weight(layer, x)),
    )
}


def perform(controller: Controller, verb: str, argument: Any = None, layer: str | None = None) -> dict[str, Any]:
    """Check ``argument`` for ``verb`` and run it on ``controller``; ControlError saying what was wrong."""
    spec = VERBS[verb]
    if spec.takes == "number":
        argument = number(argument, "layer weight" if verb == "layer" else verb)
    elif spec.takes == "name":
        argument = name(argument)
    if verb == "layer":
        return spec.call(controller, argument, name(layer, "layer"))
    return spec.call(controller, argument)


__all__ = ["Controller", "VERBS", "Verb", "name", "number", "perform"]
