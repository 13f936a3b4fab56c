"""Progress bars for the long commands (image, zoom, run, evaluate, bench), on standard error.

One place for tqdm's settings, so every command's bar looks alike and ``--no-progress``
means the same everywhere. A disabled bar is tqdm's own no-op.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any, TypeVar

from tqdm import tqdm

T = TypeVar("T")


def progress_bar(total: int | None = None, *, unit: str, desc: str, enabled: bool = True, **kwargs: Any):
    """A tqdm bar (``update(n)``, ``set_postfix_str``, ``close``); nothing is shown when disabled."""

    return tqdm(total=total, unit=unit, desc=desc, file=sys.stderr, dynamic_ncols=True, disable=not enabled, **kwargs)


def progress_iter(items: Iterable[T], total: int | None = None, *, unit: str, desc: str, enabled: bool = True) -> Iterable[T]:
    """``items``, advancing a bar by one per item."""
    bar = progress_bar(total, unit=unit, desc=desc, enabled=enabled)
    try:
        for item in items:
            yield item
            bar.update(1)
    finally:
        bar.close()
