"""The `streamdream` command: parse, dispatch to ``commands/``, signals -> one stop event, exit codes.

SIGINT and SIGTERM: ``runtime/interrupts.py`` (acknowledged at once, the process ended within seconds).

Every command first checks what it can without the model (``preflight.py`` for configs,
``commands/job_checks.py`` for the files named on the command line), so a
mistake fails in about a second, before TensorFlow is imported. The grammar (options,
help, "did you mean") is in ``arguments.py``; each command's body in ``commands/NAME.py``;
the exit codes in ``errors.EXIT_CODES``.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import shlex
import sys
import threading

from .arguments import build_parser
from .errors import StreamdreamError
from .log import redact_url, setup_logging
from .runtime.interrupts import EXIT_CODE, GRACE, Interrupts
from .runtime.workers import StopToken

log = logging.getLogger("streamdream")

# each command's module in streamdream/commands/, imported when the command runs: a command
# imports what it needs at its top, and only the command that runs pays for it
COMMANDS = {
    "image": "image",
    "zoom": "zoom",
    "distill": "distill",
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


def resume_command(argv: list[str]) -> str:
    """The command line that runs ``argv`` again, from this directory, as the user started it."""
    program = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    if program in ("cli.py", "__main__.py", "-m"):  # python -m streamdream.cli
        start = [sys.executable, "-m", "streamdream.cli"]
    else:
        start = ["streamdream"]
    return f"cd {shlex.quote(os.getcwd())} && {shlex.join([*start, *argv])}"


def _main(argv: list[str] | None, watcher: bool = False) -> tuple[int, bool]:
    """The exit code, and whether SIGINT or SIGTERM stopped the command."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level, args.tf_verbose)
    stop = StopToken()  # the one stop: a signal sets it (runtime/interrupts.py)
    # signals can only be caught on the main thread (a test may call main() from another)
    on_main = threading.current_thread() is threading.main_thread()
    # a Ray cluster's workers are cancelled and shut down (up to 30 s): no deadline there
    on_cluster = getattr(args, "workers", None) is not None or getattr(args, "cluster", None) is not None
    interrupts = Interrupts(stop, grace=None if on_cluster else GRACE, watcher=watcher) if on_main else None
    with interrupts or contextlib.nullcontext():
        try:
            command = importlib.import_module(f"streamdream.commands.{COMMANDS[args.command]}")
            code = int(command.command(args, stop))
        except StreamdreamError as exc:
            log.error("%s", redact_url(str(exc)))
            if getattr(exc, "resumable", False):
                log.error("the finished segments are kept; to resume, run: %s", redact_url(resume_command(argv)))
            code = exc.exit_code
        except KeyboardInterrupt:  # a signal during start-up (runtime/interrupts.py)
            log.error("%s stopped before it was done; no output was written", args.command)
            code = EXIT_CODE
    return code, interrupts is not None and interrupts.fired.is_set()


def main(argv: list[str] | None = None) -> int:
    return _main(argv)[0]


def entry_point() -> None:
    code, interrupted = _main(None, watcher=True)
    if interrupted:  # a dream step (TensorFlow's threads) may still be busy: end without waiting for it
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    entry_point()
