#!/usr/bin/env bash
# Train the shipped keypoint model (export/keypoints/models/mug_kp.onnx) in one short run on a GPU machine:
# render a data set on every core, train on CUDA under a time limit, and leave the checkpoints, the
# validation metrics and the log in $OUT. Export and evaluation happen afterwards on a CPU machine
# (kinebridge export keypoints / kinebridge eval keypoints), with the project's pinned torch.
#
#   OUT=/tmp/out scripts/gpu_train_keypoints.sh                     # the GPU run (defaults below)
#   OUT=/tmp/out DEVICE=cpu N=60 DATA_S=20 TRAIN_MIN=0.2 SIZE=tiny BATCH=4 LWORKERS=1 RWORKERS=2 \
#       NO_WHEELS=1 PY=.venv/bin/python scripts/gpu_train_keypoints.sh    # a dry run on a CPU box
#
# On a bare machine with no kinebridge install: SETUP_GL=1 unpacks the GL loader .debs in .gl/ into /
# (headless EGL on the NVIDIA driver), the wheels in .whl/ (MuJoCo, pydantic, ...) are installed into
# /tmp/site unless NO_WHEELS=1, and kinebridge is put on the path as links (kinebridge.<folder>, as
# setup.py maps the folders) — nothing is built. Every stage has a time limit, so the script ends
# in about DATA_S + 60·TRAIN_MIN + 60 s (at most DATA_S + 60·TRAIN_MIN + 130 s) and leaves what it has in $OUT (6 files: log.txt, data_manifest.json, train/{best,last}.pt, train/metrics.json, train/val.png).
set -uo pipefail
OUT=${OUT:?set OUT to the folder for the results}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
PY=${PY:-python3}
N=${N:-12000}                 # frames asked for (80/10/10 train/val/test); DATA_S may cut the training split
DATA_S=${DATA_S:-110}          # rendering time limit (s)
SEED=${SEED:-0}
TRAIN_MIN=${TRAIN_MIN:-3.8}    # training time limit (min); the cosine schedule runs over it
DEVICE=${DEVICE:-cuda}
SIZE=${SIZE:-default}
STEPS=${STEPS:-100000}        # upper bound: the time limit ends the run first
BATCH=${BATCH:-64}
LR=${LR:-0.002}
CROP=${CROP:-256x192}
VAL_EVERY=${VAL_EVERY:-2000}
VAL_FRAMES=${VAL_FRAMES:-100}
NCPU=$(nproc)
RWORKERS=${RWORKERS:-$NCPU}
LWORKERS=${LWORKERS:-$(( NCPU > 3 ? NCPU - 2 : 1 ))}
WORK=${WORK:-/tmp/kbrun}
mkdir -p "$OUT"
LOG=$OUT/log.txt
export PYTHONUNBUFFERED=1 MUJOCO_GL=egl OMP_WAIT_POLICY=PASSIVE

# the checkpoints go straight to $OUT/train (last.pt at every validation), so a run stopped from
# outside still leaves its latest checkpoint there
TRAIN_OUT=$OUT/train

{
    echo "== $(date -u +%FT%TZ) $(uname -m) $NCPU cpus; N=$N DATA_S=$DATA_S TRAIN_MIN=$TRAIN_MIN DEVICE=$DEVICE SIZE=$SIZE BATCH=$BATCH"
    command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    if [ "${SETUP_GL:-0}" = 1 ]; then
        for f in .gl/*.deb; do dpkg -x "$f" /; done
        ldconfig
        v=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
        [ -f "$v" ] && export __EGL_VENDOR_LIBRARY_FILENAMES=$v
    fi
    SITE=""
    if [ "${NO_WHEELS:-0}" != 1 ]; then
        rm -rf /tmp/site
        "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
            || { echo "wheel install failed"; exit 3; }
        SITE=/tmp/site
    fi
    rm -rf "$WORK" && mkdir -p "$WORK/kb/kinebridge"
    for r in runtime kernels export drivers bench; do ln -s "$ROOT/$r" "$WORK/kb/kinebridge/$r"; done
    export PYTHONPATH=$WORK/kb${SITE:+:$SITE}
    # the perception subcommands alone (`kinebridge data|train keypoints`, the same functions and the same
    # recorded command lines), so that no other CLI module's imports are needed on the machine
    RUNNER='import argparse, sys
from kinebridge.runtime.cli import perception
p = argparse.ArgumentParser(prog="kinebridge")
perception.add(p.add_subparsers(dest="command", required=True))
a = p.parse_args()
sys.exit(a.func(a))'
    KB=("$PY" -c "$RUNNER")
    "$PY" -c "import mujoco, torch, kinebridge.export.keypoints.train as t; print('mujoco', mujoco.__version__, 'torch', torch.__version__, 'cuda', torch.cuda.is_available(), t.__file__)" \
        || { echo "imports failed"; exit 4; }

    echo "== data $(date -u +%T)"
    timeout "$(awk "BEGIN{print int($DATA_S + 45)}")" "${KB[@]}" data keypoints --n "$N" --seed "$SEED" --out "$WORK/data" \
        --workers "$RWORKERS" --time-limit-s "$DATA_S" --no-progress || { echo "data failed rc=$?"; exit 5; }
    cp "$WORK/data/manifest.json" "$OUT/data_manifest.json"
    du -sh "$WORK/data"

    echo "== train $(date -u +%T)"
    timeout "$(awk "BEGIN{print int($TRAIN_MIN * 60 + 60)}")" "${KB[@]}" train keypoints --data "$WORK/data" --out "$TRAIN_OUT" \
        --size "$SIZE" --steps "$STEPS" --batch "$BATCH" --lr "$LR" --crop "$CROP" --val-every "$VAL_EVERY" \
        --val-frames "$VAL_FRAMES" --workers "$LWORKERS" --device "$DEVICE" --time-limit-min "$TRAIN_MIN" \
        --seed "$SEED" --no-progress || { echo "train failed rc=$?"; exit 6; }
    command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=memory.used,utilization.gpu --format=csv,noheader
    echo "== done $(date -u +%T)"
    ls -la "$OUT" "$TRAIN_OUT"
} 2>&1 | tee -a "$LOG"
exit "${PIPESTATUS[0]}"
