"""The dream step: gradient ascent over octaves, tiled and jittered."""

import os

from ..log import import_tensorflow

if os.environ.get("KERAS_BACKEND", "tensorflow") == "tensorflow":
    import_tensorflow()  # before any submodule imports TensorFlow: keeps its start-up lines quiet
