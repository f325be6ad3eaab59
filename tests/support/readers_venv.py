"""Run tests/support/release_readers.py (datumaro, supervision) in ``.venv-readers``, the virtualenv
scripts/test-services.sh makes for them, on a release folder; returns what they found."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
READERS = REPO / ".venv-readers" / "bin" / "python"


def read_with_readers(release: Path) -> dict:
    """The JSON :mod:`release_readers` prints for ``release`` (see its docstring)."""
    assert READERS.is_file(), f"{READERS} is missing: run bash scripts/test-services.sh"
    proc = subprocess.run([str(READERS), str(REPO / "tests" / "support" / "release_readers.py"), str(release)],
                          capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)
