"""``streamdream gallery``: one labelled contact sheet of models x presets on your own picture.

Each available model dreams the picture once per preset, at the same width and strength, so
the looks can be compared side by side and picked in one command. Models whose weights are
not on this machine are listed on the sheet's last line instead of stopping the sheet.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Iterable

import cv2
import numpy as np
from tqdm import tqdm

from ..app import build_engine, to_uint8
from ..config import Config, ModelConfig, load_config, with_overrides
from ..errors import ModelError, StreamdreamError
from ..images import read_rgb8, write_image
from ..models.registry import REGISTRY, get_entry
from ..runtime.workers import StopToken
from .job_checks import check_gallery_job

log = logging.getLogger(__name__)

LABEL_HEIGHT = 28
GAP = 4


def _label(tile: np.ndarray, text: str) -> np.ndarray:
    """``tile`` with a dark strip above it carrying ``text``."""
    strip = np.full((LABEL_HEIGHT, tile.shape[1], 3), 24, np.uint8)
    cv2.putText(strip, text, (6, LABEL_HEIGHT - 9), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (235, 235, 235), 1, cv2.LINE_AA)
    return np.concatenate([strip, tile], 0)


def _grid(rows: list[list[np.ndarray]], note: str | None) -> np.ndarray:
    width = max(sum(t.shape[1] for t in row) + GAP * (len(row) - 1) for row in rows)
    lines = []
    for row in rows:
        line = np.concatenate([x for t in row for x in (t, np.zeros((t.shape[0], GAP, 3), np.uint8))][:-1], 1)
        pad = width - line.shape[1]
        lines += [np.pad(line, ((0, 0), (0, pad), (0, 0))), np.zeros((GAP, width, 3), np.uint8)]
    if note:
        lines.append(_label(np.zeros((0, width, 3), np.uint8), note))
    return np.concatenate(lines, 0)


def contact_sheet(
    config: Config,
    picture: np.ndarray,
    models: Iterable[str],
    presets: Iterable[str] | None,
    width: int,
    stop: StopToken,
    progress=None,
) -> np.ndarray:
    """A uint8 RGB sheet: a row per model (its presets left to right), the original first."""
    from ..dream.engine import resize  # noqa: PLC0415 - loads the Keras backend: after the preflight

    height = round(picture.shape[0] * width / picture.shape[1])
    small = resize(picture.astype(np.float32), width, height)
    rows: list[list[np.ndarray]] = []
    missing: list[str] = []
    original = _label(to_uint8(small), "original")
    for name in models:
        entry = get_entry(name)
        available, where = entry.available()
        if not available:
            missing.append(name)
            continue
        row = [original]
        for preset in presets or entry.presets:
            if stop.is_set():
                raise StreamdreamError("stopped before the sheet was finished")
            if preset not in entry.presets:
                raise ModelError(f"model {name}: unknown preset {preset!r}; choose one of {', '.join(entry.presets)}")
            look = config.model_copy(update={"model": ModelConfig(name=name, preset=preset)})
            dreamed = build_engine(look).dream(small)
            description = entry.presets[preset].description.split(":")[0]
            row.append(_label(to_uint8(dreamed), f"{name}  {preset} ({description})"))
            if progress is not None:
                progress.update(1)
        rows.append(row)
    if not rows:
        raise ModelError("no model for the sheet has its weights on this machine: " + ", ".join(missing)
                         + " (see `streamdream models`)")
    note = "weights not on this machine: " + ", ".join(missing) if missing else None
    if missing:
        log.warning("left off the sheet, their weights are not on this machine: %s (see `streamdream models`)", ", ".join(missing))
    return _grid(rows, note)


def command(args: argparse.Namespace, stop: StopToken) -> int:
    config = load_config(args.config) if args.config else Config()
    config = with_overrides(config, dream={"strength": args.strength, "seed": args.seed})
    models = [m.strip() for m in args.models.split(",")] if args.models else list(REGISTRY)
    presets = [p.strip() for p in args.presets.split(",")] if args.presets else None
    check_gallery_job(config, args.input, args.output, args.overwrite, models, presets, args.width)

    picture = read_rgb8(args.input)
    total = sum(len(presets or REGISTRY[m].presets) for m in models if REGISTRY[m].available()[0])
    with tqdm(total=total, unit="dream", desc="gallery", disable=True if args.no_progress else None) as progress:
        sheet = contact_sheet(config, picture, models, presets, args.width, stop, progress)
    write_image(args.output, sheet, overwrite=args.overwrite)
    log.info("wrote %s (%dx%d)", args.output, sheet.shape[1], sheet.shape[0])
    return 0


__all__ = ["command", "contact_sheet"]
