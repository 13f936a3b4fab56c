"""The classic dream-zoom animation: dream a still, zoom in slightly, dream again."""

from __future__ import annotations

import argparse
import logging
from fractions import Fraction

from ..app import build_engine, to_uint8
from ..arguments import config_from_args
from ..config import Config, OutputConfig
from ..frames import Frame, SourceInfo, freeze
from ..images import read_image
from ..progress import progress_bar
from ..runtime.interrupts import EXIT_CODE, owned, stop_watched
from ..runtime.workers import StopToken
from ..sinks import open_sink
from ..sources.blend import still_blend
from .job_checks import check_zoom_job
from .stills import dream_at_width, dream_size

log = logging.getLogger(__name__)


def dream_zoom(
    config: Config,
    image_path: str,
    output: OutputConfig,
    *,
    frames: int,
    zoom: float,
    fps: int,
    stop: StopToken,
    progress: bool = True,
) -> int:
    """Write ``frames`` frames to ``output``; returns how many were written (fewer if stopped).

    Each frame is dreamed at ``config.dream.width`` (the picture's width if unset).
    """
    from ..dream.engine import zoom_frame  # noqa: PLC0415 - loads Keras and its backend: after the preflight

    picture = read_image(image_path)
    height, width = picture.shape[:2]
    info = SourceInfo(uri=image_path, width=width, height=height, fps=Fraction(fps), live=False, frame_count=frames, kind="image")
    with owned(stop) as workers:  # the zoom's owner: a publish watchdog or a preview server, joined at the end
        sink = open_sink(output, workers, audio_source=None)  # a still has no sound; the CLI's preflight refused output == input
        blend = still_blend(config.dream, config.source.max_pixels)
        engine = build_engine(config)
        log.info("zooming %s (%dx%d), dreamed at %dx%d", image_path, width, height, *dream_size(width, height, config.dream.width))
        sink.open(info)
        written = 0
        bar = progress_bar(frames, unit="frame", desc="zoom", enabled=progress)
        try:
            with stop_watched():  # a Ctrl-C ends the loop here, and the file is finalized
                for index in range(frames):
                    if stop.is_set():
                        break
                    picture = dream_at_width(engine, picture, config.dream.width, blend=blend)
                    sink.write(Frame(image=freeze(to_uint8(picture)), index=index, pts=index / fps))
                    written += 1
                    bar.update(1)
                    picture = zoom_frame(picture, zoom)
        finally:
            bar.close()
            stopped_early = getattr(sink, "stopped_early", None)  # a file: beside the target, not onto it
            if written < frames and stopped_early is not None:
                stopped_early()
            sink.close()
        return written


def command(args: argparse.Namespace, stop: StopToken) -> int:
    config = config_from_args(args)
    output = OutputConfig(uri=args.output, overwrite=args.overwrite)
    check_zoom_job(config, args.input, output, args.frames, args.fps, args.zoom)
    written = dream_zoom(
        config, args.input, output, frames=args.frames, zoom=args.zoom, fps=args.fps, stop=stop, progress=not args.no_progress
    )
    if written < args.frames:  # the file was finalized beside args.output (logged)
        return EXIT_CODE
    log.info("wrote %s (%d frames)", args.output, written)
    return 0
