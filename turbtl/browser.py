"""Headless Chromium checks of the pages the suite writes (the report, the asv site).

``render(url)`` loads a page in headless Chromium, lets its scripts run, and returns the DOM after
scripts plus a PNG screenshot. Pages written by the suite mark every image that decoded with
``data-loaded="1"`` (a tiny inline script), so a caller can count the figures the browser drew.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars"]


def chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


@dataclass
class Rendered:
    dom: str
    screenshot: Path

    def count(self, pattern: str) -> int:
        return len(re.findall(pattern, self.dom))


def render(url: str, screenshot: str | Path, width: int = 1400, height: int = 3000,
           budget_ms: int = 5000, timeout: float = 120) -> Rendered:
    exe = chromium()
    if exe is None:
        raise FileNotFoundError("chromium not found (make sysdeps installs it as root)")
    with tempfile.TemporaryDirectory() as ud:
        common = [exe, *FLAGS, f"--user-data-dir={ud}", f"--virtual-time-budget={budget_ms}",
                  f"--window-size={width},{height}"]
        dom = subprocess.run(common + ["--dump-dom", url], capture_output=True, text=True,
                             timeout=timeout).stdout
        subprocess.run(common + [f"--screenshot={screenshot}", url], capture_output=True, text=True,
                       timeout=timeout, check=True)
    return Rendered(dom=dom, screenshot=Path(screenshot))


# Inline script for the suite's pages: mark decoded images (see module docstring).
MARK_IMAGES_JS = """<script>
window.addEventListener('load', function () {
  var n = 0;
  document.querySelectorAll('img').forEach(function (im) {
    if (im.complete && im.naturalWidth > 0) { im.setAttribute('data-loaded', '1'); n++; }
  });
  document.body.setAttribute('data-figures-loaded', String(n));
});
</script>"""
