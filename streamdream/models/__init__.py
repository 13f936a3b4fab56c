"""Networks to dream with: the registry, Keras builders, weight loading and conversion.

Only hands names on: listing the models (``registry``) must not import TensorFlow. The
modules that need it call ``log.import_tensorflow()`` first, which keeps its start-up
lines quiet.
"""
