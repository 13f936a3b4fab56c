"""``streamdream image IN OUT``: dream one picture, with a progress bar of gradient steps."""

from __future__ import annotations

import argparse
import logging

from ..app import build_engine, to_uint8
from ..arguments import config_from_args
from ..images import read_image, write_image
from ..progress import progress_bar
from ..runtime.workers import StopToken
from ..sources.blend import still_blend
from .job_checks import check_image_job
from .stills import dream_at_width, dream_size, total_steps

log = logging.getLogger("streamdream")


def command(args: argparse.Namespace, stop: StopToken) -> int:
    config = config_from_args(args)
    check_image_job(config, args.input, args.output, args.overwrite)

    picture = read_image(args.input)
    engine = build_engine(config)
    height, width = picture.shape[:2]
    log.info("dreaming %s (%dx%d) at %dx%d", args.input, width, height, *dream_size(width, height, config.dream.width))
    steps = 1 if getattr(engine, "one_pass", False) else total_steps(engine.config, width, height)
    bar = progress_bar(steps, unit="step", desc="dreaming", enabled=not args.no_progress)

    def on_step(octave: int, step: int) -> None:
        bar.set_description_str(f"octave {octave + 1}", refresh=False)
        bar.update(1)

    try:
        dreamed = dream_at_width(engine, picture, config.dream.width, on_step=on_step,
                                 blend=still_blend(config.dream, config.source.max_pixels))
    finally:
        bar.close()
    write_image(args.output, to_uint8(dreamed), overwrite=args.overwrite)
    log.info("wrote %s (%d gradient steps)", args.output, engine.steps_total)
    return 0
