"""`labelloop ui` starts Dagster's webserver without warnings: dagster 1.13's `dagster dev`
SupersessionWarning (it points to `dg dev`, which labelloop does not install) is filtered for
that process only."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from support.helpers import cli, free_port


def test_ui_starts_without_warnings(tmp_path):
    ws = tmp_path / "ws"
    cli(ws, "init")
    port = free_port()
    labelloop = Path(sys.executable).with_name("labelloop")
    proc = subprocess.Popen([str(labelloop), "--workspace", str(ws), "ui", "-p", str(port)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True,
                            env={k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"})
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(1)
        else:
            raise AssertionError("the Dagster UI did not answer within 120 s")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    assert f"Dagster UI on http://127.0.0.1:{port}" in out
    assert "Warning" not in out, out
