"""``streamdream run``: one input dreamed into its outputs, in this process or on a Ray cluster."""

from __future__ import annotations

import argparse
import logging
from typing import TYPE_CHECKING

from ..arguments import config_from_args
from ..errors import ConfigError, SinkError
from ..log import redact_url
from ..runtime.interrupts import owned
from ..runtime.workers import StopToken

if TYPE_CHECKING:  # the pipeline loads PyAV and OpenCV: only after the arguments parsed
    from ..pipeline.runner import PipelineResult

log = logging.getLogger("streamdream")


def stop_summary(result: PipelineResult, outputs: str) -> str:
    """'38 in, 33 out, 4 dropped (stale 4), 1 in flight -> out.mp4': in = out + dropped + in flight."""
    dropped = sum(result.dropped.values())
    reasons = ", ".join(f"{reason} {count}" for reason, count in sorted(result.dropped.items()))
    in_flight = result.frames_in - result.frames_out - dropped
    text = f"{result.frames_in} frames in, {result.frames_out} out, {dropped} dropped"
    text += f" ({reasons})" if reasons else ""
    text += f", {in_flight} in flight when stopped" if in_flight else ""
    return f"{text} -> {outputs}"


def command(args: argparse.Namespace, stop: StopToken) -> int:
    config = config_from_args(args)
    from ..app import run_pipeline  # noqa: PLC0415 - after the arguments parsed: a mistake in them is reported before PyAV, OpenCV and aiohttp load
    from ..cluster.command import resuming, run_command  # noqa: PLC0415 - after the arguments parsed: a mistake in them is reported before PyAV, OpenCV and aiohttp load
    from ..preflight import Problems, check_config, check_dream  # noqa: PLC0415 - after the arguments parsed: a mistake in them is reported before PyAV, OpenCV and aiohttp load
    from ..service.http import start_metrics  # noqa: PLC0415 - after the arguments parsed: a mistake in them is reported before PyAV, OpenCV and aiohttp load

    if args.workers is not None or args.cluster is not None:
        if config.coherence.passes == 2:  # the second pass walks the whole file back: one process
            raise ConfigError("two passes (coherence.passes set to 2, --passes 2) dream a file in one process: "
                              "run them without --workers and --cluster, or one pass with them")
        config = resuming(config)  # a stopped run's partial output is replaced when it resumes, not refused
        check_config(config, "run")
        problems = Problems()
        check_dream(config, problems)  # the cluster dreams segments apart: a picture can be blended, not a moving input
        problems.raise_first()
        return run_command(config, stop, workers=args.workers, cluster=args.cluster, resources=dict(args.worker_resource or ()))
    check_config(config, "run")

    with owned(stop) as workers:  # the run's one owner: every thread it starts, stopped and joined at the end
        observer, server = None, None
        if config.metrics.enabled:
            observer, server = start_metrics(config.metrics, workers, model=config.model.name)
        try:
            result = run_pipeline(config, workers, observer=observer)
        finally:
            if server is not None:
                server.shutdown()
    # a file not finished (a stop before the end) is named where it is: NAME.partial.EXT
    shown = [o.partial or o.uri for o in result.outputs] or [redact_url(o.uri) for o in config.outputs]
    log.info("%s", stop_summary(result, ", ".join(shown)))
    if result.error is not None:
        raise result.error
    if result.outputs_down:  # finalized as far as they got; the run itself went on
        down = result.outputs_down[0]
        raise SinkError(f"output {down.uri} failed and did not recover: {down.error}")
    return 130 if result.stopped and not (result.info and result.info.live) else 0
