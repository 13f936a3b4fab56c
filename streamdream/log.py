"""Logging setup: one line per event, credentials never printed, TensorFlow quiet."""

from __future__ import annotations

import logging
import os
import sys
import tempfile

from .redact import redact, redact_url

__all__ = ["redact_url", "RedactingFilter", "setup_logging", "quiet_tensorflow", "import_tensorflow"]


class RedactingFilter(logging.Filter):
    """The logging side of the one gate (``redact.redact``): set on the handler, so no record,
    whatever its source and whatever its call site did, leaks a credential."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        if record.exc_info and not record.exc_text:  # a traceback quotes URLs from messages and locals
            record.exc_text = _FORMATTER.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


_FORMATTER = logging.Formatter()


def quiet_tensorflow(verbose: bool = False) -> None:
    """Silence TensorFlow's C++ and Python start-up chatter unless asked for.

    Must run before TensorFlow is imported to affect the C++ logger.
    """
    if verbose:
        os.environ["STREAMDREAM_TF_VERBOSE"] = "1"
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    for name in ("tensorflow", "absl", "keras", "h5py", "jax._src.xla_bridge"):  # jax: "no TPU" on every start
        logging.getLogger(name).setLevel(logging.ERROR)


def setup_logging(level: str = "INFO", tf_verbose: bool = False) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    quiet_tensorflow(tf_verbose)


def import_tensorflow() -> None:
    """Import TensorFlow once, hiding the lines its C++ core prints while it starts.

    TF_CPP_MIN_LOG_LEVEL does not reach the absl messages of recent releases (CUDA probing
    on a machine without a GPU prints an error line that is not one), so standard error is
    parked in a file during the import and the device probe, and replayed if they fail.
    ``--tf-verbose`` (STREAMDREAM_TF_VERBOSE=1) shows everything.
    """
    if "tensorflow" in sys.modules or os.environ.get("STREAMDREAM_TF_VERBOSE"):
        return
    quiet_tensorflow()
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as parked:
        os.dup2(parked.fileno(), 2)
        try:
            import tensorflow as tf  # noqa: PLC0415 - loads TensorFlow

            tf.config.list_physical_devices()
        except Exception:  # (not on Ctrl-C: its chatter would hide the acknowledgement)
            os.dup2(saved, 2)
            parked.seek(0)
            sys.stderr.write(parked.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
