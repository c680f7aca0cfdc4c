#!/usr/bin/env bash
# One GPU host run (prepared by scripts/prepare-gpu-run.sh): `bash bench/gpu/run.sh [PART]`
# builds the CUDA addon with cmake, runs every kernel and model check against the CPU backend,
# measures the peer (torch) and PART's kernels and end-to-end rows, and prints the table; decode
# (and all) then print the op-by-op profile of a decode step. Results also go to $OUT when set
# (the device tool brings them back).
#
# PART and its budget on an H100/H200 host (16 cores), the machine's start not included; each
# stage is cut off at its budget so a run fits a 15-minute device allowance:
#   decode   build 60 s, checks 120 s, kernels and e2e 120 s, profile 60 s    (about 6 min)
#   prefill  build 60 s, checks 120 s, peer 60 s, kernels and e2e 120 s       (about 6 min)
#   train    build 60 s, checks and training checks 180 s, the training rows 60 s  (about 5 min)
#   all      build 60 s, checks 120 s, peer 60 s, everything 240 s, profile 60 s  (about 9 min)
set -euo pipefail
cd "$(dirname "$0")/../.."
part=${1:-all}
case $part in decode|prefill|train|all) ;; *) echo "usage: bash bench/gpu/run.sh [decode|prefill|train|all]"; exit 2 ;; esac
OUT=${OUT:-/tmp/jamba-gpu}
mkdir -p "$OUT"
xz -dc .device/node.xz > .device/node && chmod +x .device/node
export PATH=$PWD/.device:$PATH
[ -e node_modules ] || ln -s .device/node_modules node_modules
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt" || echo "nvidia-smi: no GPU visible"
# sm_90 alone by default (25 s on the host's 16 cores); CUDA_ARCHS="80 90" for both.
cmake -S . -B build-cuda -DJAMBA_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES="${CUDA_ARCHS:-90}" -DNODE_API_INCLUDE_DIR=$PWD/.device/include -DCMAKE_BUILD_TYPE=Release > "$OUT/cmake.log" 2>&1 \
  || { tail -n 30 "$OUT/cmake.log"; exit 1; }
cmake --build build-cuda -j "$(nproc)" > "$OUT/build.log" 2>&1 || { grep -E "error" "$OUT/build.log" | head -n 40; exit 1; }
export JAMBA_ADDON=$PWD/build-cuda/jamba.node
if [ "$part" = prefill ] || [ "$part" = all ]; then
  timeout 60 python3 bench/gpu/peer.py "$OUT/peer.json" > /dev/null || echo "peer measurement failed; ratios to torch will be missing"
fi
status=0
budget=$([ "$part" = all ] && echo 360 || echo 240)
timeout "$budget" node dist/bench/gpu.js --part "$part" --peer "$OUT/peer.json" 2>&1 | tee "$OUT/gpu-bench.md" || status=$?
if [ "$part" = decode ] || [ "$part" = all ]; then
  # Where a decode step's time goes, op by op (CUDA events; no Nsight needed).
  timeout 60 node dist/bench/gpu.js --profile 2>&1 | tee "$OUT/gpu-profile.md" || status=1
fi
exit $status
