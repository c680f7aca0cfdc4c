#!/usr/bin/env bash
# Builds the native fuzz targets with clang's libFuzzer, AddressSanitizer and UBSan into build-fuzz/.
set -euo pipefail
cd "$(dirname "$0")/.."
out=build-fuzz
mkdir -p "$out"
core=$(node -p "require('./csrc/sources.json').cpu.filter(f => !f.includes('/napi/')).join(' ')")
flags="-std=c++17 -O1 -g -march=native -fno-math-errno -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
clang++ $flags fuzz/safetensors_header_fuzz.cpp csrc/model/safetensors_header.cpp -o "$out/safetensors_header_fuzz"
clang++ $flags fuzz/forward_fuzz.cpp $core -lpthread -o "$out/forward_fuzz"
retrieval=$(node -p "require('./csrc/sources.json').cpu.filter(f => f.includes('/retrieval/')).join(' ')")
clang++ $flags fuzz/bm25_index_fuzz.cpp $retrieval csrc/core/thread_pool.cpp -lpthread -o "$out/bm25_index_fuzz"
echo "built $out/safetensors_header_fuzz $out/forward_fuzz $out/bm25_index_fuzz"
