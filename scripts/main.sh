#!/usr/bin/env bash
# Set up .venv (kinebridge + its evaluation extra) and run the main job: `kinebridge run`, the
# controller runtime on the simulated RealMan RM75 (one pouring task, then a summary). Extra
# arguments go to it, e.g. `bash scripts/main.sh --replan-goal 0.36,0.08,0.10,-10` or `--serve`.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".[eval]"
# compile the Numba kernels into their cache before the runtime starts (≈1 min the first time on a
# loaded 2-core box, each step printed; seconds afterwards)
.venv/bin/kinebridge warmup
exec .venv/bin/kinebridge run "$@"
