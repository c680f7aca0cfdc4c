#!/usr/bin/env bash
# One GPU host run (prepared by scripts/prepare-gpu-run.sh): builds the CUDA addon with cmake,
# runs every kernel check against the CPU backend, measures the peer (torch) and the kernels,
# and prints the table, then the op-by-op profile of a decode step. Results also go to $OUT when
# set (the device tool brings them back).
set -euo pipefail
cd "$(dirname "$0")/../.."
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
python3 bench/gpu/peer.py "$OUT/peer.json" > /dev/null || echo "peer measurement failed; ratios to torch will be missing"
status=0
node dist/bench/gpu.js --peer "$OUT/peer.json" 2>&1 | tee "$OUT/gpu-bench.md" || status=$?
# Where a decode step's time goes, op by op (CUDA events; no Nsight needed).
node dist/bench/gpu.js --profile 2>&1 | tee "$OUT/gpu-profile.md" || status=1
exit $status
