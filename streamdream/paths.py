"""Where streamdream keeps files it makes once and reuses (converted weights)."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs


def cache_dir() -> Path:
    """The user's cache folder for streamdream; ``STREAMDREAM_CACHE_DIR`` overrides it."""
    override = os.environ.get("STREAMDREAM_CACHE_DIR")
    path = Path(override) if override else Path(platformdirs.user_cache_dir("streamdream"))
    path.mkdir(parents=True, exist_ok=True)
    return path
