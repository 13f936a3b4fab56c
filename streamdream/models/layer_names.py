"""Layer names of every registry model, read from a JSON table: no TensorFlow needed.

The table is generated from the real networks by ``scripts/make-layer-names.py`` and
checked against them by the tests, so a check before TensorFlow loads names the same
layers the model has.
"""

from __future__ import annotations

import difflib
import functools
import json
from pathlib import Path

from .registry import REGISTRY

TABLE_PATH = Path(__file__).with_name("layer_names.json")


@functools.cache
def layer_names(model: str) -> frozenset[str] | None:
    """The layer names of registry model ``model``, or None if the table lacks it."""
    table = json.loads(TABLE_PATH.read_text(encoding="utf-8"))
    names = table.get(model)
    return frozenset(names) if names is not None else None


def suggest(name: str, names: frozenset[str], count: int = 3) -> list[str]:
    """Layer names close to a misspelled ``name``."""
    return difflib.get_close_matches(name, sorted(names), n=count, cutoff=0.6)


def build_layer_names(model: str) -> list[str]:
    """The names, from the network itself (imports Keras; builds without downloading weights)."""
    import keras  # noqa: PLC0415 - loads Keras and its backend

    # Keras names unnamed layers from a per-process counter (activation, activation_1, ...):
    # start it afresh, so the names are those a command that builds only this model sees
    keras.backend.clear_session()
    entry = REGISTRY[model]
    if entry.weights_file is None:  # the EfficientNet-Lites: our own builder
        from .efficientnet_lite import VARIANTS, _build  # noqa: PLC0415 - loads Keras and its backend

        # built as load_efficientnet_lite builds it, without its weights: the headless
        # network plus ``classes``, the classifier applied at every position
        whole = _build(VARIANTS[model], (None, None, 3))
        head = whole.get_layer("head").output
        network = keras.Model(whole.input, [head, keras.layers.Dense(1000, name="classes")(head)])
    else:
        module_name, fn_name = entry.build.keras_builder.rsplit(".", 1)  # type: ignore[attr-defined]
        fn = getattr(getattr(keras.applications, module_name), fn_name)
        network = fn(include_top=False, weights=None, input_shape=(None, None, 3))
    # the input layer's name depends on how many models Keras built before: not a dream layer
    return sorted(layer.name for layer in network.layers if type(layer).__name__ != "InputLayer")
