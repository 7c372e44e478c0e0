#!/usr/bin/env bash
# Set up .venv (kinebridge + its evaluation extra) and run the main job. Extra arguments go to the
# job, e.g. `bash scripts/main.sh --shapes GShape --random-cases 3`.
# The main job today is the LASA shape-preservation evaluation (`kinebridge eval lasa`); later
# issues make it the controller daemon on the simulated RealMan arm.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".[eval]"
exec .venv/bin/kinebridge eval lasa "$@"
