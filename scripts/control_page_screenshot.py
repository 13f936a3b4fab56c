"""The control page's screenshot in the README and docs/installations.md (docs/images/control-page.jpg), taken here.

    .venv/bin/python scripts/control_page_screenshot.py

The daemon serves the live demo scene dreamed by efficientnet_lite0 with the installation's
three presets; a headless Chromium (the tests' driver) opens the page, clicks ``evening``,
waits for its look, and saves what it shows.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from streamdream.config import load_config  # noqa: E402
from streamdream.runtime.workers import StopToken  # noqa: E402
from streamdream.service.daemon import Service  # noqa: E402
from tests.fixtures.preview_browser import HeadlessChromium, find_chromium  # noqa: E402
from tests.test_control_page import Page  # noqa: E402


def wait(condition, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.2)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(ROOT / "docs/images/control-page.jpg"))
    parser.add_argument("--preset", default="evening", help="the preset button to click")
    args = parser.parse_args()
    installation = yaml.safe_load((ROOT / "configs/installation.yaml").read_text())
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        path = work / "page.yaml"
        path.write_text(yaml.safe_dump({
            "source": {"uri": "demo?live=1&width=640&height=360&fps=25"},
            "outputs": ["null"],
            "model": installation["model"], "dream": {"width": 320, "octaves": 3, "steps": 4, "seed": 0},
            "metrics": {"port": 0},
            "playlist": {**installation["playlist"], "crossfade": 0, "schedule": []},
        }))  # fmt: skip
        stop = StopToken()
        service = Service(path, load_config(path), stop)
        thread = threading.Thread(target=service.run, daemon=True)
        thread.start()
        wait(lambda: service.server is not None and service.pipeline is not None, 120, "the daemon")
        browser = HeadlessChromium(find_chromium() or "chromium", work / "profile", url=service.server.url + "/", width=1100, height=700)
        page = Page(browser)
        try:
            browser.call("Emulation.setDeviceMetricsOverride", width=1100, height=540, deviceScaleFactor=1, mobile=False)
            page.wait(f"document.querySelector('button[data-preset={args.preset}]') !== null", "the preset buttons", 60)
            page.click(f"button[data-preset={args.preset}]")
            wait(lambda: (s := service.state())["preset"] == args.preset and s["showing"] == args.preset, 120, "the preset's look")
            time.sleep(8.0)  # a few full dreams in
            png = np.frombuffer(browser.screenshot(), np.uint8)
            cv2.imwrite(args.out, cv2.imdecode(png, cv2.IMREAD_COLOR), [cv2.IMWRITE_JPEG_QUALITY, 85])  # a tenth of the PNG
        finally:
            browser.close()
            stop.set()
            thread.join(timeout=60)
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
