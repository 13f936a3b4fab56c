"""streamdream: live DeepDream video."""

__version__ = "0.1.0"
