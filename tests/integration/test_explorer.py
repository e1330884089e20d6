"""The explorer page in headless Chromium against the real API (`recomart serve`): the rendered
DOM shows the served list with reasons, similar items, the audience and trending; a screenshot
is kept next to the test's temp folder for a person to look at."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from recomart.processes import stop_group

pytestmark = pytest.mark.slow
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _chromium(args: list[str], profile: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run", f"--user-data-dir={profile}",
         "--virtual-time-budget=8000", "--window-size=1280,900", *args],
        capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install -y "
                                             "chromium) - the explorer page cannot be rendered")
def test_explorer_renders_recommendations_in_chromium(tmp_path):
    from recomart.lake import Lake
    from recomart.serving.synthetic import publish_synthetic
    from recomart.streaming.broker import free_port

    lake = Lake(tmp_path / "lake")
    publish_synthetic(lake, users=100, products=50, n=10)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECOMART_")}
    env["RECOMART_LAKE_ROOT"] = str(lake.root)
    log = tmp_path / "api.log"
    with open(log, "ab") as out:
        api = subprocess.Popen([str(Path(sys.executable).parent / "recomart"), "serve", "--port",
                                str(port)], env=env, stdout=out, stderr=subprocess.STDOUT,
                               start_new_session=True)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            assert api.poll() is None and time.monotonic() < deadline, log.read_text()[-2000:]
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        url = f"{base}/explorer?user=7&product=5"
        dom = _chromium(["--dump-dom", url], tmp_path / "profile1")
        assert dom.returncode == 0, dom.stderr[-2000:]
        html = dom.stdout
        assert "model synthetic v1" in html and "online store ok" in html
        recs = httpx.get(f"{base}/v1/users/7/recommendations?n=10").json()["items"]
        first = recs[0]["product_id"]
        assert f"<td>1</td><td>{first}</td>" in html  # the served list, rank 1
        assert '<span class="reason batch">batch</span>' in html
        assert "<td>6</td>" in html  # product 5's best neighbour (similar) and audience user
        assert "pick a user" not in html and "pick a product" not in html
        errors = re.findall(r'<span class="err">([^<]*)</span>', html.split("<script>")[0])
        assert not errors, errors
        shot = tmp_path / "explorer.png"
        png = _chromium([f"--screenshot={shot}", url], tmp_path / "profile2")
        assert png.returncode == 0 and shot.exists(), png.stderr[-2000:]
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
        print(f"explorer screenshot: {shot}")
    finally:
        stop_group(api, signal.SIGTERM, 20)
