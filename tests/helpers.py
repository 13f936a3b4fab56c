"""Helpers shared by the test modules: the CLI as a user runs it, waiting for a condition, configs."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import yaml

REPO = Path(__file__).resolve().parents[1]
# the CLI in a child process imports this tree's package, whichever checkout runs the tests
ENV = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"}

T = TypeVar("T")


def streamdream(*args: Any, cwd: Path | None = None, timeout: float = 300, env: dict[str, str] | None = None
                ) -> subprocess.CompletedProcess[str]:  # fmt: skip
    """``streamdream ARGS...`` in a child process, as a user runs it; output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", "streamdream.cli", *map(str, args)],
        capture_output=True, text=True, cwd=cwd, env=ENV if env is None else env, timeout=timeout,
    )  # fmt: skip


def wait_for(predicate: Callable[[], T], timeout: float, what: str, interval: float = 0.05) -> T:
    """``predicate()``'s first true value; AssertionError naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)
    return value


def write_config(path: Path, data: dict[str, Any]) -> Path:
    """``data`` written to ``path`` as YAML, keys in the order given."""
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path
