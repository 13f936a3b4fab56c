"""``streamdream serve --config FILE``: the installation daemon, reloaded by SIGHUP or a changed file."""

from __future__ import annotations

import argparse
import signal

from ..config import load_config
from ..runtime.workers import StopToken


def command(args: argparse.Namespace, stop: StopToken) -> int:
    config = load_config(args.config)
    from ..preflight import check_config  # noqa: PLC0415 - after the arguments parsed: a mistake in them is reported before PyAV, OpenCV and aiohttp load
    from ..service import daemon  # noqa: PLC0415 - after the arguments parsed: a mistake in them is reported before PyAV, OpenCV and aiohttp load

    check_config(config, "serve")
    signal.signal(signal.SIGHUP, lambda *_: daemon.request_reload())
    return daemon.serve(args.config, stop)
