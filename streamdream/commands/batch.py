"""``streamdream batch IN_DIR OUT_DIR``: every video of a folder dreamed, resumable, optionally on Ray."""

from __future__ import annotations

import argparse

from ..arguments import config_from_args
from ..runtime.workers import StopToken


def command(args: argparse.Namespace, stop: StopToken) -> int:
    config = config_from_args(args)
    from ..cluster.batch import batch_command  # noqa: PLC0415 - after the arguments parsed: a mistake in them is reported before PyAV, OpenCV and aiohttp load
    from ..preflight import Problems, check_dream  # noqa: PLC0415 - after the arguments parsed: a mistake in them is reported before PyAV, OpenCV and aiohttp load

    problems = Problems()
    # the folders are batch's own to check; on a cluster a picture can be blended, not a moving input
    check_dream(config, problems, None if args.workers is not None or args.cluster is not None else "run")
    problems.raise_first()
    return batch_command(config, args.in_dir, args.out_dir, stop, workers=args.workers, cluster=args.cluster,
                         resources=dict(args.worker_resource or ()))  # fmt: skip
