#!/usr/bin/env bash
# Tools the tests need beyond the Python package, each installed only when missing.
# Every step is idempotent and says what it installs.
set -euo pipefail
cd "$(dirname "$0")/.."
