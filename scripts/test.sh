#!/usr/bin/env bash
# README set-up command (2): install everything the tests need on a fresh machine, then run them.
# Extra arguments go to pytest (e.g. `bash scripts/test.sh -k e2e`).
set -euo pipefail
cd "$(dirname "$0")/.."
export PIP_DISABLE_PIP_VERSION_CHECK=1
python3 -m venv .venv
.venv/bin/pip install -e '.[test]'
bash scripts/test-services.sh   # servers and tools the tests start (each step idempotent)
.venv/bin/lint-imports          # the package layers and no import cycles (pyproject.toml, [tool.importlinter])
.venv/bin/mypy                  # the typed rows and records through labelloop's signatures ([tool.mypy])
bash scripts/docs.sh            # the documentation site, warnings as errors (docs/, Sphinx + MyST)
.venv/bin/pytest "$@"
