#!/usr/bin/env bash
# Build the documentation site (docs/, Sphinx + MyST) into docs/_build/html, warnings as errors.
# Needs sphinx and myst-parser in .venv (the `test` extra: .venv/bin/pip install -e '.[test]').
# The old build is removed first: an incremental build does not repeat the warnings of pages
# that did not change, so a second run after a failed one would pass.
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf docs/_build
.venv/bin/sphinx-build -n -W --keep-going -b html docs docs/_build/html
