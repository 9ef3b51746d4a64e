#!/usr/bin/env bash
# bench/gpu_check.sh: every stage of faceswap on a GPU machine, in one command, in under 10 minutes.
#
# WHAT HAS RUN WHERE (keep this true): written and validated on a CPU-only machine; NOT YET RUN ON A GPU.
# Ran on CPU: `--device cpu --quick` end to end (rc 0) in a Python 3.11 with torch but without kornia,
# facenet-pytorch, ffmpeg-python, imageio-ffmpeg, isal, requests, c2pa: install from the wheels, every
# stage, the table; once with kornia 0.9.0 and once with 0.8.2 (the 3.10 wheel). `install` + imports ran
# on CPython 3.10, 3.12 and 3.13 (no torch there). The nvidia-smi sampler ran against a fake nvidia-smi.
# Only syntax/import-checked: the CUDA branches (torch.cuda peak memory, GPU info, --device cuda of
# every command, bench/train.py --device cuda with its cuda synchronisation, the real nvidia-smi).
#
# On the device tool: run(command="bench/gpu_check.sh", carry=["bench/gpu_wheels"], timeout_s=600).
#
# Usage
#   bench/gpu_check.sh --download             # here, with the registry: fill bench/gpu_wheels/ (56 MiB)
#   bench/gpu_check.sh                        # on the GPU machine: install, machine info, all stages on cuda
#   bench/gpu_check.sh --device cpu --quick   # smoke run of the same path on a CPU (~5 min on 2 busy cores)
# Options:
#   --data DIR           clips (the first two *.mp4 are A and B); default ../shared/data/faces from the
#                        repo root, then shared/data/faces, else the bundled samples/identity_{a,b}.mp4
#   --train-minutes M    minutes of `faceswap train` per preset (default 2)
#   --budget S           seconds for all stages (default 500; a stage that would run past it is skipped;
#                        install + machine info come first, ~1 min), so the whole run stays < 10 min
#   --python PY          the Python with CUDA torch (default: the first python3/python that imports torch)
#   --no-bench           skip bench/train.py
#
# The device tool copies only tracked and not-ignored files: bench/gpu_wheels/ is git-ignored, so pass
# it in `carry` (["bench/gpu_wheels"]; 64 MiB for the tree + carried paths; the wheels are 56 MiB).
#
# The download step (what --download runs, here, once; binary wheels per CPython 3.10-3.13, the rest once):
#   P="--no-deps --only-binary=:all: --platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64"
#   for v in 3.10 3.11 3.12 3.13; do
#     pip download $P -d bench/gpu_wheels --python-version $v isal==1.9.1 charset-normalizer==3.5.3; done
#   pip download $P -d bench/gpu_wheels --python-version 3.10 kornia==0.8.2    # 0.9 needs Python >= 3.11
#   pip download $P -d bench/gpu_wheels --python-version 3.12 kornia==0.9.0 facenet-pytorch==2.5.3 \
#     ffmpeg-python==0.2.0 future==1.0.0 requests==2.34.2 urllib3==2.8.0 idna==3.20 certifi   # py3-none-any
#   pip wheel --no-deps --no-binary imageio-ffmpeg -w bench/gpu_wheels imageio-ffmpeg==0.8.1   # no binary
#   + the static ffmpeg 9.0.2 of the imageio-ffmpeg 0.8.1 platform wheel, xz -6: ffmpeg-linux-x86_64-v9.0.2.xz
# Why (64 MiB in all): the 0.8.1 platform wheel is 68 MB (its ffmpeg is 50 MB as .xz); older wheels do
# not work (0.6.0/0.7.0's ffmpeg 7.0.2: probe counts 0 frames; 0.5.1's ffmpeg 4.2.2: no -fps_mode).
# kornia_rs (21 MB for four CPythons) is replaced by a stub: only kornia.io, unused here, imports it.
# c2pa-python (16 MB + cryptography) does not fit: convert runs --no-credentials unless c2pa imports.
# facenet-pytorch is always installed --no-deps (its requirements would pull another torch).
#
# What it does and prints
#   1. pip install --no-index --find-links bench/gpu_wheels --no-deps --target <scratch>/site: only the
#      packages that do not import already; never torch; ffmpeg unpacked to <scratch>/ffmpeg/. The repo
#      and that dir go on PYTHONPATH and a `faceswap` shim (python -m faceswap) on PATH: nothing is
#      written into the machine's Python.
#   2. Python, torch, CUDA, cuDNN, GPU name / memory / compute capability, nvidia-smi, package versions.
#   3. extract of clips A and B; train for 2 min of hq (and of any 256 px preset in PRESETS: none
#      today, the sizes are lite/original 64, hq 128); convert of A with the hq model; detect train
#      (real faces of A and B + that model); detect of the swap + clip B; bench/train.py --device <dev>
#      --quick. Each under `timeout`, each in its own process; per stage: device, status, wall s, speed
#      (frames/s, it/s + EG/s from log.csv, faces/s), peak torch.cuda.max_memory_allocated in the
#      stage's process, peak nvidia-smi memory.used and mean GPU % while it ran, peak RSS.
#   4. A summary table; exit 1 if any stage failed or timed out (the next stages still run).
# Outputs: $OUT/gpu_check/ when $OUT is set (the device tool brings it back), else a new /tmp dir:
#   run.log, summary.txt, summary.json, logs/<stage>.log, train_hq/{log.csv,config.json,loss.png}, detect.json.
#   Faces, models and the swapped video stay in a scratch dir under /tmp (not brought back).
set -u -o pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$HERE")
WHEELS=$HERE/gpu_wheels
DEVICE=cuda QUICK=() DATA=() MINUTES=2 BUDGET=500 PY=${PYTHON:-} DOWNLOAD=0 BENCH=()

while [ $# -gt 0 ]; do
  case $1 in
    --download) DOWNLOAD=1 ;;
    --device) DEVICE=$2; shift ;;
    --quick) QUICK=(--quick) ;;
    --data) DATA=(--data "$2"); shift ;;
    --train-minutes) MINUTES=$2; shift ;;
    --budget) BUDGET=$2; shift ;;
    --python) PY=$2; shift ;;
    --no-bench) BENCH=(--no-bench) ;;
    -h|--help) sed -n '2,/^set -u/p' "$0" | sed '$d'; exit 0 ;;
    *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

if [ "$DOWNLOAD" = 1 ]; then
  # Run here (with the package registry). Binary wheels for each CPython the GPU machine may have.
  PY=${PY:-python3}
  mkdir -p "$WHEELS"
  dl() { "$PY" -m pip download --no-deps --only-binary=:all: --platform manylinux2014_x86_64 \
           --platform manylinux_2_28_x86_64 "$@"; }
  for v in 3.10 3.11 3.12 3.13; do
    dl -d "$WHEELS" --python-version "$v" isal==1.9.1 charset-normalizer==3.5.3 || exit 1
  done
  dl -d "$WHEELS" --python-version 3.10 kornia==0.8.2 || exit 1  # kornia 0.9 needs Python >= 3.11
  dl -d "$WHEELS" --python-version 3.12 kornia==0.9.0 facenet-pytorch==2.5.3 ffmpeg-python==0.2.0 future==1.0.0 \
     requests==2.34.2 urllib3==2.8.0 idna==3.20 certifi==2026.10.19.post1 || exit 1
  # imageio-ffmpeg: its binary-free wheel (from the sdist) + the 0.8.1 platform wheel's ffmpeg as .xz.
  "$PY" -m pip wheel --no-deps --no-binary imageio-ffmpeg -w "$WHEELS" imageio-ffmpeg==0.8.1 || exit 1
  if ! ls "$WHEELS"/ffmpeg-*.xz >/dev/null 2>&1; then
    TMPW=$(mktemp -d)
    dl -d "$TMPW" --python-version 3.12 imageio-ffmpeg==0.8.1 || exit 1
    # xz -6 of the 172 MB binary: ~5 min on 2 busy cores; python's lzma does the same where xz is missing.
    "$PY" - "$TMPW"/imageio_ffmpeg-*.whl "$WHEELS" <<'PYEOF' || exit 1
import lzma, shutil, sys, zipfile
from pathlib import Path
z = zipfile.ZipFile(sys.argv[1])
name = next(n for n in z.namelist() if "/binaries/ffmpeg-" in n)
out = Path(sys.argv[2], Path(name).name + ".xz")
with z.open(name) as src, lzma.open(str(out) + ".part", "wb", preset=6) as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
Path(str(out) + ".part").rename(out)
print(f"{name} -> {out}")
PYEOF
    rm -rf "$TMPW"
  fi
  du -sh "$WHEELS"
  echo "carry [\"bench/gpu_wheels\"] with the device tool (tree + wheels must stay under 64 MiB)"
  exit 0
fi

case $DEVICE in cuda|cpu) ;; *) echo "--device cuda or cpu" >&2; exit 2 ;; esac
if [ -z "$PY" ]; then
  for c in python3 python; do
    if command -v "$c" >/dev/null && "$c" -c 'import torch' 2>/dev/null; then PY=$(command -v "$c"); break; fi
  done
fi
[ -n "$PY" ] || { echo "no python that imports torch (pass --python)" >&2; exit 2; }

if [ -n "${OUT:-}" ]; then RUN=$OUT/gpu_check; else RUN=$(mktemp -d /tmp/gpu_check.XXXXXX); fi
SCRATCH=$(mktemp -d /tmp/gpu_check_work.XXXXXX)
mkdir -p "$RUN" "$SCRATCH/bin"
exec > >(tee "$RUN/run.log") 2>&1
echo "gpu_check: device $DEVICE, python $PY, outputs $RUN, scratch $SCRATCH, $(date -u +%FT%TZ)"
STATUS=0

echo "== install"
export PYTHONPATH=$SCRATCH/site:$REPO${PYTHONPATH:+:$PYTHONPATH}
timeout 180 "$PY" "$HERE/gpu_check.py" install --wheels "$WHEELS" --target "$SCRATCH/site" || STATUS=1
[ -s "$SCRATCH/ffmpeg_exe" ] && export IMAGEIO_FFMPEG_EXE=$(cat "$SCRATCH/ffmpeg_exe")
printf '#!/bin/sh\nexec "%s" -m faceswap "$@"\n' "$PY" > "$SCRATCH/bin/faceswap"
chmod +x "$SCRATCH/bin/faceswap"
export PATH=$SCRATCH/bin:$PATH
[ "$DEVICE" = cpu ] && export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}  # a shared CPU: see DEVELOPERS.md
timeout 60 faceswap --version || { echo "faceswap does not start"; STATUS=1; }

echo "== machine"
timeout 60 "$PY" "$HERE/gpu_check.py" machine || STATUS=1

"$PY" "$HERE/gpu_check.py" stages --device "$DEVICE" "${QUICK[@]}" "${DATA[@]}" "${BENCH[@]}" \
  --train-minutes "$MINUTES" --budget "$BUDGET" --work "$SCRATCH" --out "$RUN" || STATUS=1
echo "gpu_check: exit $STATUS; outputs in $RUN"
exit $STATUS
