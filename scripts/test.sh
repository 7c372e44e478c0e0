#!/usr/bin/env bash
# Set up .venv (kinebridge + its test extra) and run the whole test suite. Extra arguments go to
# pytest, e.g. `bash scripts/test.sh -k kmp`. Golden data are read from ../shared/data (override
# with KINEBRIDGE_SHARED_DATA).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
# Debian libraries the world and camera tests load: EGL + Mesa (MuJoCo renders headless through
# EGL) and libusb (pyrealsense2 links against it). Installed only when missing and root.
if command -v dpkg-query >/dev/null 2>&1; then
    missing=()
    for pkg in libegl1 libgl1-mesa-dri libusb-1.0-0; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        if [ "$(id -u)" = 0 ]; then
            apt-get update -qq >/dev/null
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
        else
            echo "scripts/test.sh: missing Debian packages ${missing[*]}; install them as root" >&2
        fi
    fi
fi
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".[test]"
# compile the Numba kernels once into their cache (≈1 min on a fresh 2-core box; seconds when warm), so
# no test's node spends its start-up compiling
.venv/bin/kinebridge warmup --quiet
exec .venv/bin/python -m pytest "$@"
