#!/usr/bin/env bash
# Builds the native fuzz targets with clang's libFuzzer, AddressSanitizer and UBSan into build-fuzz/.
# Each source is compiled once, on every core, then the three targets are linked from the objects.
set -euo pipefail
cd "$(dirname "$0")/.."
out=build-fuzz
mkdir -p "$out/obj"
flags="-std=c++17 -O1 -g -march=native -fno-math-errno -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
# The model's sources (no retrieval, no binding) and the retrieval index's, from the one source list.
model=$(node -p "require('./csrc/sources.json').cpu.filter(f => !f.includes('/napi/') && !f.includes('/retrieval/')).join(' ')")
retrieval=$(node -p "require('./csrc/sources.json').cpu.filter(f => f.includes('/retrieval/')).join(' ')")
obj() { for f in "$@"; do echo "$out/obj/$(echo "${f%.cpp}" | tr / _).o"; done; }
# shellcheck disable=SC2086
printf '%s\n' $model $retrieval fuzz/safetensors_header_fuzz.cpp fuzz/forward_fuzz.cpp fuzz/bm25_index_fuzz.cpp | sort -u |
  xargs -P "$(nproc)" -I{} sh -c 'o="'"$out"'/obj/$(echo "$(echo {} | sed "s/\.cpp$//")" | tr / _).o"; clang++ '"$flags"' -c {} -o "$o"'
# shellcheck disable=SC2046,SC2086
clang++ $flags $(obj fuzz/safetensors_header_fuzz.cpp csrc/model/safetensors_header.cpp) -o "$out/safetensors_header_fuzz"
# shellcheck disable=SC2046,SC2086
clang++ $flags $(obj fuzz/forward_fuzz.cpp $model) -lpthread -o "$out/forward_fuzz"
# shellcheck disable=SC2046,SC2086
clang++ $flags $(obj fuzz/bm25_index_fuzz.cpp $retrieval csrc/core/thread_pool.cpp) -lpthread -o "$out/bm25_index_fuzz"
echo "built $out/safetensors_header_fuzz $out/forward_fuzz $out/bm25_index_fuzz"
