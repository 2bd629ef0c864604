#!/usr/bin/env bash
# The README's test command: set up everything, lint, then run the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check src tests bench experiments
.venv/bin/ruff format --check src tests bench experiments
.venv/bin/python -m pytest "$@"
