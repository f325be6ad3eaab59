"""`python -m pipelines.cli` (how the CLI runs without the installed `labelloop` script)."""

from __future__ import annotations

import os
import subprocess
import sys

from support.helpers import REPO_ROOT

ROOT = REPO_ROOT


def test_python_m_pipelines_cli_runs(tmp_path):
    """Was: ImportError (pipelines.qa_cli imported pipelines.cli back while it ran as __main__)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-m", "pipelines.cli", "--help"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.startswith("Usage: labelloop"), out.stderr[-2000:]
    assert "serve-webhook" in out.stdout and "calibrate" in out.stdout
    bad = subprocess.run([sys.executable, "-m", "pipelines.cli", "--workspace", str(tmp_path), "status"], cwd=ROOT,
                         env=env, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and "is not a labelloop workspace" in bad.stderr
