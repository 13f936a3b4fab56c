"""The Grafana dashboard in docs/: valid JSON, valid PromQL, and only metrics a real daemon exports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.fixtures.servers import http_request
from tests.test_service_daemon import Running, fast, write

DASHBOARD = Path(__file__).resolve().parents[1] / "docs" / "grafana-dashboard.json"
SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count", "_created"), "info": ("_info",),
            "gauge": ("",), "summary": ("_sum", "_count", "_created")}


def queries() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    exprs += [v["definition"] for v in dashboard["templating"]["list"]]
    return exprs


def test_dashboard_is_grafana_json_with_valid_promql(tmp_path):
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "streamdream" and dashboard["__inputs"][0]["pluginId"] == "prometheus"
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert len(panels) >= 15 and all(p["targets"] and p["title"] for p in panels)
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (scripts/install-system-deps.sh installs it)")
    rules = [{"record": f"dashboard:expr{i}", "expr": e.replace("$instance", ".*")}
             for i, e in enumerate(queries()) if not e.startswith("label_values")]
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    check = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr


def test_every_metric_the_dashboard_queries_is_in_a_real_scrape(tiny_model_path, tmp_path):
    config = write(tmp_path / "all.yaml", fast(
        tiny_model_path, source={"uri": "demo?live=1&width=160&height=120&fps=10"}, osc={"port": 0}, audio_react={},
    ))  # fmt: skip
    running = Running(config)
    try:
        status, text = http_request(running.url + "/metrics")
    finally:
        running.close()
    assert status == 200
    exported = set()
    for family in text_string_to_metric_families(text):
        exported |= {family.name + suffix for suffix in SUFFIXES.get(family.type, ("",))}
    queried = {name for expr in queries() for name in re.findall(r"\bstreamdream_[a-z_]+", expr)}
    assert len(queried) >= 20
    assert sorted(queried - exported) == []
