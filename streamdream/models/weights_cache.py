"""The converted-weights cache, with its integrity recorded beside it.

A converted ``.weights.h5`` is written under a temporary name, hashed, and renamed into
place together with ``NAME.sha256`` (a small JSON file naming the hash and the source it
was made from). Loading checks the file against that hash first: a cache that was
damaged, swapped or written by another version is not loaded but made again from the
hash-checked source.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)


def record_path(cache: Path) -> Path:
    return cache.with_name(cache.name + ".sha256")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _recorded(cache: Path, source_sha256: str) -> str | None:
    """The hash recorded for ``cache`` if the record is sound and names ``source_sha256``."""
    try:
        with open(record_path(cache), "rb") as f:
            record = json.loads(f.read(4096))
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("source_sha256") != source_sha256:
        return None
    digest = record.get("sha256")
    return digest if isinstance(digest, str) and len(digest) == 64 else None


def load_cached_weights(model, cache: Path, source_sha256: str) -> bool:
    """Load ``cache`` into ``model`` if it is there and matches its recorded hash; False to convert again."""
    if not cache.exists():
        return False
    expected = _recorded(cache, source_sha256)
    if expected is None:
        log.warning("weights cache %s has no valid hash record; converting again", cache)
        return False
    try:
        actual = _sha256(cache)
    except OSError as exc:
        log.warning("cannot read weights cache %s (%s); converting again", cache, exc)
        return False
    if actual != expected:
        log.warning("weights cache %s does not match its recorded sha256 (damaged or replaced); converting again", cache)
        return False
    try:
        model.load_weights(cache)
    except Exception as exc:  # noqa: BLE001 - any unreadable cache is rebuilt from source
        log.warning("ignoring unreadable weights cache %s (%s); converting again", cache, exc)
        return False
    log.debug("loaded weights from %s (sha256 %s)", cache, actual[:12])
    return True


def save_cached_weights(model, cache: Path, source_sha256: str) -> None:
    """Write ``model``'s weights to ``cache`` with its hash record; a failure only costs the cache."""
    stem = cache.name[: -len(".weights.h5")] if cache.name.endswith(".weights.h5") else cache.stem
    tmp = cache.with_name(f"{stem}.tmp{os.getpid()}.weights.h5")
    record_tmp = record_path(tmp)
    try:
        model.save_weights(tmp)
        record_tmp.write_text(json.dumps({"sha256": _sha256(tmp), "source_sha256": source_sha256}) + "\n")
        # the record last: a crash between the renames leaves a cache without a matching record, made again
        os.replace(tmp, cache)
        os.replace(record_tmp, record_path(cache))
    except OSError as exc:
        log.warning("could not cache converted weights at %s: %s", cache, exc)
        tmp.unlink(missing_ok=True)
        record_tmp.unlink(missing_ok=True)
