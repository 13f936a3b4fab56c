"""The `streamdream` command: parse, dispatch to ``commands/``, signals -> one stop event, exit codes.

Every command first checks what it can without the model (``preflight.py`` for configs,
``commands/job_checks.py`` for the files named on the command line), so a
mistake fails in about a second, before TensorFlow is imported. The grammar (options,
help, "did you mean") is in ``arguments.py``; each command's body in ``commands/NAME.py``;
the exit codes in ``errors.EXIT_CODES``.
"""

from __future__ import annotations

import importlib
import logging
import signal
import sys
import threading
from typing import Any

from .arguments import build_parser
from .errors import StreamdreamError
from .log import redact_url, setup_logging

log = logging.getLogger("streamdream")

# each command's module in streamdream/commands/, imported when the command runs: a command
# imports what it needs at its top, and only the command that runs pays for it
COMMANDS = {
    "image": "image",
    "zoom": "zoom",
    "gallery": "gallery",
    "run": "run",
    "batch": "batch",
    "serve": "serve",
    "bench": "bench",
    "evaluate": "evaluate",
    "validate-config": "validate_config",
    "config-schema": "config_schema",
    "models": "models",
    "midi-ports": "midi_ports",
}


def _install_signals(stop: threading.Event) -> None:
    def on_signal(signum: int, _frame: Any) -> None:
        if stop.is_set():  # a second Ctrl-C: give up waiting
            raise KeyboardInterrupt
        log.info("%s received: stopping, finalizing outputs", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level, args.tf_verbose)
    stop = threading.Event()
    if threading.current_thread() is threading.main_thread():
        _install_signals(stop)
    try:
        command = importlib.import_module(f"streamdream.commands.{COMMANDS[args.command]}")
        return int(command.command(args, stop))
    except StreamdreamError as exc:
        log.error("%s", redact_url(str(exc)))
        return exc.exit_code
    except KeyboardInterrupt:
        log.error("interrupted")
        return 130


def entry_point() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry_point()
