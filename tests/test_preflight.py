"""Mistakes found without the model: before TensorFlow is imported, with the right exit code and message."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from streamdream.config import parse_config
from streamdream.errors import EXIT_CODES, ModelError, SinkError, SourceError
from streamdream.models.layer_names import TABLE_PATH
from streamdream.models.registry import REGISTRY
from tests.fixtures.mistakes import MISTAKES, make_files
from tests.fixtures.servers import free_port

REPO = Path(__file__).resolve().parent.parent
CONFIGS = REPO / "configs"
ENV = {**os.environ, "PYTHONPATH": str(REPO)}

# Runs every mistake through the CLI's main() in one process: quick, and at the end that
# process shows whether anything imported TensorFlow or Keras.
DRIVER = """
import contextlib, io, json, sys, time
from streamdream.cli import main
results = []
for args in json.loads(sys.argv[1]):
    err = io.StringIO()
    started = time.perf_counter()
    with contextlib.redirect_stderr(err):
        try:
            code = main(args)
        except SystemExit as exc:  # argparse's usage errors
            code = exc.code
    results.append({"code": code, "stderr": err.getvalue(), "seconds": time.perf_counter() - started})
print(json.dumps({"results": results, "loaded": [m for m in ("tensorflow", "keras") if m in sys.modules]}))
"""


def test_every_mistake_fails_before_tensorflow_with_its_exit_code_and_message(tmp_path):
    make_files(tmp_path)
    cases = [list(m.args) for m in MISTAKES]
    proc = subprocess.run([sys.executable, "-c", DRIVER, json.dumps(cases)], capture_output=True, text=True, cwd=tmp_path, env=ENV, timeout=600)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    for mistake, result in zip(MISTAKES, report["results"]):
        shown = f"streamdream {' '.join(mistake.args)}: exit {result['code']}\n{result['stderr']}"
        assert result["code"] == mistake.code, shown
        assert mistake.message in result["stderr"], shown
        assert "Traceback" not in result["stderr"], shown
    assert report["loaded"] == []  # no mistake waited for TensorFlow or Keras
    assert not list(tmp_path.glob("*.partial-*")) and not (tmp_path / "out.mp4").exists()
    slowest = max(report["results"], key=lambda r: r["seconds"])
    print(f"{len(MISTAKES)} mistakes, slowest {slowest['seconds']:.2f} s in-process")


def test_a_misspelled_option_shows_the_command_s_own_usage():
    proc = subprocess.run(
        [sys.executable, "-m", "streamdream.cli", "zoom", "in.png", "-o", "z.mp4", "--frames", "3", "--zom", "1.1"],
        capture_output=True, text=True, env=ENV, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.startswith("usage: streamdream zoom") and "did you mean --zoom?" in proc.stderr


def test_the_registry_and_the_layer_table_need_no_tensorflow():
    code = (
        "import sys; import streamdream.preflight, streamdream.models.registry as r, streamdream.models.layer_names as n; "
        "assert all(n.layer_names(m) for m in r.REGISTRY), 'a model without layer names'; "
        "print([m for m in ('tensorflow', 'keras') if m in sys.modules])"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_the_layer_table_matches_the_real_networks():
    # in a process of its own: building resets Keras' layer-name counters
    code = (
        "import json; from streamdream.models.layer_names import build_layer_names; "
        "from streamdream.models.registry import REGISTRY; print(json.dumps({m: build_layer_names(m) for m in REGISTRY}))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, timeout=600)
    assert proc.returncode == 0, proc.stderr
    real = json.loads(proc.stdout.strip().splitlines()[-1])
    table = json.loads(TABLE_PATH.read_text())
    assert set(table) == set(real) == set(REGISTRY)
    for model in REGISTRY:
        assert table[model] == real[model], f"{model}: regenerate the table with scripts/make-layer-names.py"


def test_validate_config_says_valid_only_for_configs_that_would_start(tmp_path):
    for path in CONFIGS.glob("*.yaml"):
        env = ENV
        if path.name == "container.yaml":
            # as in its container: /data a volume, a token in the environment (without one it would not start)
            (tmp_path / "data").mkdir(exist_ok=True)
            path = tmp_path / "data" / "container.yaml"
            path.write_text((CONFIGS / "container.yaml").read_text().replace("/data/", f"{tmp_path}/data/"))
            proc = subprocess.run([sys.executable, "-m", "streamdream.cli", "validate-config", str(path)], capture_output=True,
                                  text=True, env={**ENV, "STREAMDREAM_CONTROL_TOKEN": ""}, timeout=120)  # fmt: skip
            assert proc.returncode == 6 and "without a token" in proc.stderr, proc.stderr
            env = {**ENV, "STREAMDREAM_CONTROL_TOKEN": "a-token-for-the-test"}
        if path.name == "classic-inception.yaml":
            env = _with_inception_weights_only_here(path, tmp_path)
        proc = subprocess.run(
            [sys.executable, "-m", "streamdream.cli", "validate-config", str(path)], capture_output=True, text=True,
            cwd=tmp_path, env=env, timeout=120,
        )  # fmt: skip
        assert proc.returncode == 0, f"{path.name}: {proc.stderr}"
        expected = "serve" if path.name in ("installation.yaml", "container.yaml") else "run"
        assert f"valid for `streamdream {expected} --config`" in proc.stdout


def _with_inception_weights_only_here(config: Path, tmp_path: Path) -> dict[str, str]:
    """InceptionV3's weights are downloaded on first use: a config needing them is not valid on a
    machine that has them not and cannot download them (the proxy is a closed port), and the
    message is what `run` would say; with the file in the Keras cache it is valid (the env returned)."""
    keras_home = tmp_path / "keras"
    offline = {**ENV, "KERAS_HOME": str(keras_home), "https_proxy": f"http://127.0.0.1:{free_port()}", "HTTPS_PROXY": ""}
    proc = subprocess.run([sys.executable, "-m", "streamdream.cli", "validate-config", str(config)], capture_output=True,
                          text=True, cwd=tmp_path, env=offline, timeout=120)  # fmt: skip
    weights = REGISTRY["inception_v3"].weights_file
    assert proc.returncode == 3, proc.stderr  # errors.EXIT_CODES: model
    assert "inception_v3 weights are not on this machine and could not be downloaded (proxy 127.0.0.1:" in proc.stderr
    assert f"Put {weights} at {keras_home / 'models' / weights}" in proc.stderr and "Traceback" not in proc.stderr
    (keras_home / "models").mkdir(parents=True)
    (keras_home / "models" / weights).write_bytes(b"")  # only its presence is checked before the model loads
    return {**ENV, "KERAS_HOME": str(keras_home)}


def test_checks_name_every_problem_and_exit_with_the_first_one_s_code(tmp_path):
    from streamdream.preflight import check_config

    config = parse_config({"source": "ftp://x/y", "outputs": ["out.avi", "window:big"], "model": {"name": "alexnet"}})
    with pytest.raises(ModelError) as error:  # the model comes first: exit 3
        check_config(config)
    message = str(error.value)
    for words in ("unknown model 'alexnet'", "unsupported input scheme ftp://", "'.avi'", "window:big"):
        assert words in message
    with pytest.raises(SourceError, match="is a still image"):
        still = tmp_path / "photo.jpg"
        import cv2
        import numpy as np

        cv2.imwrite(str(still), np.zeros((16, 16, 3), np.uint8))
        check_config(parse_config({"source": str(still), "outputs": [str(tmp_path / "o.mp4")]}))
    with pytest.raises(SinkError, match="is given twice"):
        check_config(parse_config({"outputs": [str(tmp_path / "a.mp4"), f"file:{tmp_path}/./a.mp4"]}))


def test_every_error_kind_has_its_row_in_the_one_exit_code_table():
    from streamdream import errors

    kinds = [c for c in vars(errors).values() if isinstance(c, type) and issubclass(c, errors.StreamdreamError)]
    assert {c.exit_code for c in kinds} <= set(EXIT_CODES)
    page = (REPO / "docs" / "command-line.md").read_text()
    for code, meaning in EXIT_CODES.items():
        assert f"| {code} | {meaning} |" in page, f"docs/command-line.md's exit-code table lacks {code}"


def test_the_download_probe_names_a_refused_connection_and_leaves_no_thread(monkeypatch):
    """The probe (a name lookup has no timeout) runs under an owner that is closed before it returns."""
    from streamdream.preflight import download_problem

    for name in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    port = free_port()  # nothing listens there
    before = set(threading.enumerate())
    problem = download_problem(f"http://127.0.0.1:{port}/weights.h5", timeout=10.0)
    assert problem is not None and problem.startswith(f"127.0.0.1:{port}: ") and "refused" in problem.lower()
    assert [t.name for t in threading.enumerate() if t not in before and t.is_alive()] == []
