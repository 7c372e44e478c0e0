#!/usr/bin/env bash
# Set up .venv (kinebridge + its test extra) and run the whole test suite. Extra arguments go to
# pytest, e.g. `bash scripts/test.sh -k kmp`. Golden data are read from ../shared/data (override
# with KINEBRIDGE_SHARED_DATA).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".[test]"
exec .venv/bin/python -m pytest "$@"
