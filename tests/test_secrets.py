"""Secrets at one gate: whatever a message holds, no planted secret reaches a log line, an API
answer or a metric, through every command that logs config values (see ``fixtures/secrets.py``)."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from streamdream.config import load_config
from streamdream.errors import ConfigError
from streamdream.log import RedactingFilter
from streamdream.redact import redact
from streamdream.service.recent import RecentErrors

ROOT = Path(__file__).parent.parent
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "STREAMDREAM_CONTROL_TOKEN": ""}


def streamdream(*args: object, timeout: float = 120) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "streamdream.cli", *map(str, args)],
        capture_output=True, text=True, cwd=ROOT, timeout=timeout, env=ENV, check=False,
    )  # fmt: skip
    return proc.stdout + proc.stderr


def get(url: str, token: str | None = None) -> str:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.read().decode()
    except urllib.error.HTTPError as exc:  # a 503 from /healthz is an answer to scan too
        return exc.read().decode()


# --- the gate, unit by unit --------------------------------------------------------------------


def test_the_gate_hides_secret_parameters_yaml_keys_and_assignments_outside_urls() -> None:
    assert redact("https://acct.blob.core.windows.net/v/x.mp4?sv=2024&sas=Zm9vYmFy&se=1") == (
        "https://acct.blob.core.windows.net/v/x.mp4?sv=2024&sas=***&se=1")  # fmt: skip
    assert redact("  in 'c.yaml', line 3:\n    db_password: hunter2 ]\n    ^") == "  in 'c.yaml', line 3:\n    db_password: ***\n    ^"
    assert redact("near {uri: demo, API-Key: k3y, n: 2}") == "near {uri: demo, API-Key: ***, n: 2}"
    assert redact("AccountName=a;AccountKey=s3cr3t;Pwd=x") == "AccountName=a;AccountKey=***;Pwd=***"
    for plain in ("c.yaml:4: dream.octaves: must be >= 1, got 0", "output night.mkv is back", "strength: 1.5"):
        assert redact(plain) == plain  # only secrets go


def test_a_yaml_error_never_quotes_the_line(tmp_path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("source: demo\nstream_password: hunter2-9: more\n")
    message = str(pytest.raises(ConfigError, load_config, path).value)
    assert "hunter2" not in message
    assert f"{path}:2:" in message and "not valid YAML: mapping values are not allowed here" in message


def test_a_new_message_cannot_leak_through_the_log_handler() -> None:
    """Call sites that redact nothing: the handler's filter and the recent-errors list still do."""
    try:
        yaml.safe_load("source: demo\nauth_token: t0k3n-1: x\n")
    except yaml.YAMLError as exc:
        parser_error = str(exc)
    assert "t0k3n-1" in parser_error  # PyYAML quotes the line: the case to guard against
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(self.format(record))

    handler, recent = Collect(), RecentErrors()
    handler.addFilter(RedactingFilter())
    logger = logging.getLogger("test_secrets.gate")
    logger.addHandler(handler)
    logger.addHandler(recent)
    logger.propagate = False
    try:
        logger.error("reload failed: %s", parser_error)
        logger.error("fetching https://h/v.mp4?sv=1&sas=sas-555 failed")
        logger.warning("connection string AccountKey=acc-key-9 refused")
    finally:
        logger.removeHandler(handler)
        logger.removeHandler(recent)
    text = "\n".join(lines) + json.dumps(recent.entries())
    assert not [s for s in ("t0k3n-1", "sas-555", "acc-key-9") if s in text], text


# --- the commands, end to end ------------------------------------------------------------------


def test_no_planted_secret_reaches_a_log_an_answer_or_a_metric(planted_secrets, tmp_path) -> None:
    secrets = planted_secrets
    config = tmp_path / "secret.yaml"
    config.write_text(yaml.safe_dump(secrets.config, sort_keys=False))
    bad = tmp_path / "bad.yaml"
    bad.write_text(secrets.bad_yaml)
    seen: dict[str, str] = {}  # what was captured -> its text

    seen["validate-config"] = streamdream("validate-config", config)
    seen["validate-config, bad YAML"] = streamdream("validate-config", bad)
    assert "not valid YAML" in seen["validate-config, bad YAML"]
    seen["run"] = streamdream("run", "--config", config, "-y")

    url = f"http://127.0.0.1:{secrets.config['metrics']['port']}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamdream.cli", "serve", "--config", str(config)],
        cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        def state() -> dict:
            return json.loads(get(url + "/api/state", secrets.control_token))

        deadline = time.monotonic() + 120
        while True:
            try:
                if state().get("outputs") and all(o["error"] for o in state()["outputs"][1:]):
                    break  # running, and both publish outputs have failed (and logged their URLs)
            except (OSError, ValueError):
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"serve did not come up:\n{proc.communicate()[0] if proc.poll() is not None else ''}")
            time.sleep(0.5)

        def scrape(when: str) -> None:
            for path in ("/api/state", "/metrics", "/healthz", "/api/nope"):
                seen[f"{when} GET {path}"] = get(url + path, secrets.control_token)

        scrape("running")
        config.write_text(secrets.bad_yaml)  # a reload that fails on the password's line
        proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 30
        while state()["config"]["last_reload"]["ok"] is not False:
            assert time.monotonic() < deadline, "the bad reload was not rejected"
            time.sleep(0.2)
        scrape("after a bad reload")
        config.write_text(yaml.safe_dump(secrets.reloaded(), sort_keys=False))  # a new source, with a sig
        proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 30
        while state()["config"]["last_reload"]["ok"] is not True:
            assert time.monotonic() < deadline, "the good reload was not applied"
            time.sleep(0.2)
        time.sleep(1.0)  # the new source's first failure is logged
        scrape("after a good reload")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            seen["serve log"] = proc.communicate(timeout=60)[0]
        except subprocess.TimeoutExpired:
            proc.kill()
            seen["serve log"] = proc.communicate()[0]
    # the scan could fail: the logs name the redacted URLs the secrets were in
    assert "viewer:***@127.0.0.1" in seen["serve log"] and "/live/***" in seen["serve log"], seen["serve log"]
    assert "sig=***" in seen["serve log"] and "config reload rejected" in seen["serve log"]
    leaks = {what: secrets.leaks(text) for what, text in seen.items() if secrets.leaks(text)}
    assert not leaks, "\n\n".join(f"{what}: {found}\n{seen[what]}" for what, found in leaks.items())
