"""The control API's fine settings, laid over the config: step size, carry, layer weights, crossfade.

A tweak is ``(key, value)``: ``step_size`` and ``carry`` replace the config's
``dream.step_size`` and ``coherence.carry`` *before* the preset and the strength are laid
over it (so the strength still multiplies the step size), and ``layer:NAME`` sets the
weight of one layer of the look the preset makes (a layer the look does not have is left
alone: a preset switch keeps the weights of the layers the new look shares). Bounds are
the config's own (``DreamConfig``, ``CoherenceConfig``, ``LayerSpec``): a value the YAML
would refuse is refused here with the same words. ``crossfade`` changes no look: the
director reads it for the next switch (``playlist.crossfade``'s bounds). ``blend`` sets the share
of the second input (``dream.blend``) over the preset's: a preset that names its own blend
takes the blend control back when it is switched to (``service/director.py``).
"""

from __future__ import annotations

from collections.abc import Callable

from pydantic import BaseModel, ValidationError

from ..config import Config, LayerSpec, ModelConfig, _describe
from ..errors import ControlError, ModelError
from ..models.loader import resolve_look
from ..models.registry import REGISTRY

Tweaks = tuple[tuple[str, float], ...]
LAYER = "layer:"


def resolved_layers(model: ModelConfig) -> tuple[LayerSpec, ...]:
    """The look's layers with their weights: explicit ones, else the registry preset's (weight 1)."""
    if model.layers:
        return model.layers
    entry = REGISTRY.get(model.name)
    if entry is None:
        return ()
    try:
        return resolve_look(model, entry.presets, entry.default_preset)[0]
    except ModelError:  # an unknown preset fails the build with its own message
        return ()


def _checked(section: BaseModel, field: str, value: float, where: str) -> BaseModel:
    """``section`` with ``field`` set to ``value``, validated by the section's own bounds."""
    try:
        return type(section).model_validate({**section.model_dump(), field: value})
    except ValidationError as exc:
        error = exc.errors()[0]
        raise ControlError(f"{where}: {_describe(error)}, got {value:g}") from None


def check_tweak(effective: Config, key: str, value: float) -> None:
    """ControlError if ``value`` is out of bounds for ``key``, or the layer is not in the look."""
    if key == "step_size":
        _checked(effective.dream, "step_size", value, "step_size")
    elif key == "carry":
        _checked(effective.coherence, "carry", value, "carry")
    elif key == "crossfade":
        _checked(effective.playlist, "crossfade", value, "crossfade")
    elif key == "blend":
        _checked(effective.dream, "blend", value, "blend")
    elif key.startswith(LAYER):
        layer = key[len(LAYER):]
        names = [spec.name for spec in resolved_layers(effective.model)]
        if layer not in names:
            raise ControlError(f"layer {layer[:64]!r} is not in the current look; its layers: {', '.join(names) or 'none'}")
        _checked(LayerSpec(name=layer), "weight", value, f"layer {layer} weight")
    else:  # pragma: no cover - the verbs table only makes the keys above
        raise ControlError(f"unknown setting {key!r}")


def apply_tweaks(config: Config, tweaks: Tweaks, lay_preset: Callable[[Config], Config]) -> Config:
    """The effective config: base tweaks, then ``lay_preset`` (preset and strength), then layer weights."""
    values = dict(tweaks)
    base = config
    if "step_size" in values:
        base = base.model_copy(update={"dream": base.dream.model_copy(update={"step_size": values["step_size"]})})
    if "carry" in values:
        base = base.model_copy(update={"coherence": base.coherence.model_copy(update={"carry": values["carry"]})})
    effective = lay_preset(base)
    if "blend" in values:
        effective = effective.model_copy(update={"dream": effective.dream.model_copy(update={"blend": values["blend"]})})
    weights = {key[len(LAYER):]: value for key, value in values.items() if key.startswith(LAYER)}
    if not weights:
        return effective
    layers = resolved_layers(effective.model)
    if not any(spec.name in weights for spec in layers):
        return effective
    layers = tuple(spec.model_copy(update={"weight": weights[spec.name]}) if spec.name in weights else spec for spec in layers)
    return effective.model_copy(update={"model": effective.model.model_copy(update={"layers": layers})})


__all__ = ["LAYER", "Tweaks", "apply_tweaks", "check_tweak", "resolved_layers"]
