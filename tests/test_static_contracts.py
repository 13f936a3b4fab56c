"""The house's static contracts: import floors, no import cycles, the type checker and the linter.

A renamed function behind an in-function import once left a control verb answering 500 on
the default model; mypy (which reads in-function imports too) and ruff's rule against
imports outside the top of a module (except where TensorFlow, Keras, JAX, torch, Ray or an
optional extra would load, each saying so) keep names honest across the package.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _tool(name: str) -> str:
    path = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: `pip install -e '.[test]'` brings it")
    return path


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_import_floors_hold():
    proc = _run(_tool("lint-imports"), "--no-cache")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "0 broken" in proc.stdout


def test_no_import_cycles():
    graph = grimp.build_graph("streamdream")
    cycles = sorted(
        {tuple(sorted((a, b))) for a in graph.modules for b in graph.find_modules_directly_imported_by(a)
         if graph.chain_exists(importer=b, imported=a)}
    )  # fmt: skip
    assert cycles == []


def test_type_checker_is_clean():
    proc = _run(sys.executable, "-m", "mypy")
    assert proc.returncode == 0, proc.stdout[-6000:]


def test_linter_is_clean():
    proc = _run(_tool("ruff"), "check", "streamdream", "tests", "benchmarks", "scripts")
    assert proc.returncode == 0, proc.stdout[-6000:]
