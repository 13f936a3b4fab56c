"""``streamdream validate-config FILE``: everything ``run`` or ``serve`` would check, without the model."""

from __future__ import annotations

import argparse
from typing import Literal

from ..config import load_config
from ..log import redact_url
from ..runtime.workers import StopToken

SERVE_SECTIONS = ("playlist", "control", "health", "reconnect", "idle", "midi")


def command(args: argparse.Namespace, stop: StopToken) -> int:
    config = load_config(args.file)
    from ..preflight import check_config  # noqa: PLC0415 - after the arguments parsed: a mistake in them is reported before PyAV, OpenCV and aiohttp load

    command_name: Literal["run", "serve"] = args.for_command or ("serve" if config.model_fields_set & set(SERVE_SECTIONS) else "run")
    # ports are left out: the daemon this config belongs to may be running and holding them
    check_config(config, command_name, ports=False)
    print(
        f"{args.file}: valid for `streamdream {command_name} --config` ({len(config.outputs)} output(s), "
        f"model {config.model.name}, source {redact_url(config.source.uri)})"
    )
    return 0
