"""Commands that need no model never import TensorFlow (it takes seconds to import)."""

from __future__ import annotations

import subprocess
import sys

from tests.fixtures.media import write_clip

PROBE = """
import sys
from streamdream.cli import main
for argv in {commands!r}:
    try:
        main(argv)
    except SystemExit:  # --help exits
        pass
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras"))
print("LOADED", loaded[:5])
"""


def test_help_validate_config_config_schema_models_and_evaluate_never_import_tensorflow(tmp_path):
    clip = write_clip(tmp_path / "in.mp4", width=64, height=48, frames=6)
    config = tmp_path / "c.yaml"
    config.write_text("dream: {steps: 2}\n")
    commands = [["--help"], ["run", "--help"], ["validate-config", str(config)], ["config-schema"], ["models"], ["evaluate", str(clip), str(clip)]]
    proc = subprocess.run([sys.executable, "-c", PROBE.format(commands=commands)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "LOADED []" in proc.stdout, proc.stdout
    assert "valid" in proc.stdout and "efficientnet_lite0" in proc.stdout and "warp" in proc.stdout
