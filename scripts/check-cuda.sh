#!/usr/bin/env bash
# `npm run check:cuda`, for kernel work: compiles every CUDA source alone with nvcc for sm_80 and
# sm_90, warnings as errors, and the CUDA glue with the host compiler, on a machine with no GPU,
# and prints each kernel's registers, shared memory and spills. (CI builds the backend through
# `npm install`, with JAMBA_CUDA_WERROR=1.) Fails if nvcc is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
NVCC=${NVCC:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}
if [ ! -x "$NVCC" ]; then
  echo "check:cuda: nvcc not found (set NVCC)"; exit 1
fi
CUDA_INC=$(dirname "$(readlink -f "$NVCC")")/../include
[ -f "$CUDA_INC/cuda_runtime_api.h" ] || CUDA_INC=/usr/local/cuda/include
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
mapfile -t cu < <(node -p "require('./csrc/sources.json').cuda.filter(f => f.endsWith('.cu')).join('\n')")
mapfile -t cpp < <(node -p "require('./csrc/sources.json').cuda.filter(f => f.endsWith('.cpp')).join('\n')")
fail=0
for f in "${cu[@]}"; do
  log="$out/$(basename "$f").log"
  if "$NVCC" -std=c++17 -O3 -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90 \
      -Xcompiler -Wall,-Wextra -Werror all-warnings -Xptxas -v -c "$f" -o "$out/$(basename "$f").o" > "$log" 2>&1; then
    spills=$(grep -c "[1-9][0-9]* bytes spill stores" "$log" || true)
    kernels=$(grep -c "Compiling entry function" "$log" || true)
    echo "ok   $f ($kernels kernel instances, $spills with spills)"
  else
    cat "$log"; echo "FAIL $f"; fail=1
  fi
done
NAPI_INC=$(node -p "require('node-addon-api').include_dir")
NODE_INC=$(dirname "$(readlink -f "$(command -v node)")")/../include/node
for f in "${cpp[@]}"; do
  if g++ -std=c++17 -Wall -Wextra -Werror -fsyntax-only -DJAMBA_WITH_CUDA -DNAPI_VERSION=8 -DNAPI_CPP_EXCEPTIONS \
      -I"$CUDA_INC" -I"$NAPI_INC" -I"$NODE_INC" "$f"; then
    echo "ok   $f"
  else
    echo "FAIL $f"; fail=1
  fi
done
g++ -std=c++17 -Wall -Wextra -Werror -fsyntax-only -DJAMBA_WITH_CUDA -DNAPI_VERSION=8 -DNAPI_CPP_EXCEPTIONS \
  -I"$CUDA_INC" -I"$NAPI_INC" -I"$NODE_INC" csrc/napi/addon.cpp && echo "ok   csrc/napi/addon.cpp (with CUDA)" || fail=1
exit $fail
