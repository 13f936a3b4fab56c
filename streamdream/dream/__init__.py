"""The dream step: gradient ascent over octaves, tiled and jittered."""

from ..log import import_tensorflow

import_tensorflow()  # before any submodule imports TensorFlow: keeps its start-up lines quiet
