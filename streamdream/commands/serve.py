"""``streamdream serve --config FILE``: the installation daemon, reloaded by SIGHUP or a changed file."""

from __future__ import annotations

import argparse
import signal
import threading

from ..config import load_config
from ..preflight import check_config
from ..service import daemon


def command(args: argparse.Namespace, stop: threading.Event) -> int:
    check_config(load_config(args.config), "serve")
    signal.signal(signal.SIGHUP, lambda *_: daemon.request_reload())
    return daemon.serve(args.config, stop)
