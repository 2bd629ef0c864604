#!/usr/bin/env bash
# Create .venv with PyTorch 2.13.0 (CPU build, no CUDA packages) and coreecg (editable, with test tools).
# Idempotent: a second run only re-checks. Override the interpreter with PYTHON=python3.11.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
# torch first and pinned: with it installed, coreecg's "torch>=2.2" installs nothing more, so pip
# never pulls the multi-GB CUDA build.
.venv/bin/python -m pip install --quiet --disable-pip-version-check "torch==2.13.0" 2> >(grep -v "is ignored" >&2)
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[test]" 2> >(grep -v "is ignored" >&2)
