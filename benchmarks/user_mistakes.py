"""Every user mistake of tests/fixtures/mistakes.py as a real command: its message, exit code and time to fail.

    python benchmarks/user_mistakes.py [--markdown]

Each mistake runs as its own `python -m streamdream.cli ...` in a folder holding the files it
refers to, and is timed from start to exit (the Python start-up and imports included). The
time is what a user waits; the tests check codes and messages, never times.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.fixtures.mistakes import MISTAKES, make_files  # noqa: E402


def first_line(stderr: str) -> str:
    """The message without the log prefix; for argparse errors, the error line."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if " ERROR " in line or ": error: " in line]
    line = (errors or lines or [""])[0]
    return line.split(" ERROR streamdream: ", 1)[-1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--markdown", action="store_true", help="a markdown table (default: plain text)")
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        make_files(Path(folder))
        for mistake in MISTAKES:
            started = time.perf_counter()
            proc = subprocess.run(
                [sys.executable, "-m", "streamdream.cli", *mistake.args], capture_output=True, text=True, cwd=folder, env=env, timeout=600
            )
            seconds = time.perf_counter() - started
            ok = proc.returncode == mistake.code and mistake.message in proc.stderr
            rows.append((" ".join(mistake.args), proc.returncode, seconds, first_line(proc.stderr), ok))
    if args.markdown:
        print("| command (`streamdream ...`) | exit | seconds | message |")
        print("| --- | --- | --- | --- |")
        for command, code, seconds, message, ok in rows:
            print(f"| `{command}` | {code}{'' if ok else ' (!)'} | {seconds:.2f} | {message.replace('|', '/')} |")
    else:
        for command, code, seconds, message, _ in rows:
            print(f"{code:>3} {seconds:6.2f} s  streamdream {command}\n            {message}")
    times = sorted(r[2] for r in rows)
    print(f"\n{len(rows)} mistakes; time to fail: median {times[len(times) // 2]:.2f} s, max {times[-1]:.2f} s")
    return 0 if all(r[4] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
