"""Networks to dream with: the registry, Keras builders, weight loading and conversion."""

from ..log import import_tensorflow

import_tensorflow()  # before any submodule imports TensorFlow: keeps its start-up lines quiet
