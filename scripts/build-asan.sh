#!/usr/bin/env bash
# Builds the addon with AddressSanitizer and UndefinedBehaviorSanitizer into build-asan/Release/.
set -euo pipefail
cd "$(dirname "$0")/.."
out=build-asan/Release
mkdir -p "$out/obj"
napi=$(node -p "require('node-addon-api').include_dir")
node_inc=$(node -p "require('path').join(process.execPath, '..', '..', 'include', 'node')")
flags="-std=c++17 -O2 -g -march=native -fno-math-errno -fPIC -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined -DNAPI_VERSION=8 -DNAPI_CPP_EXCEPTIONS -I$node_inc -I$napi"
# One compiler per core.
node -p "require('./csrc/sources.json').cpu.join('\n')" |
  xargs -P "$(nproc)" -I{} sh -c 'g++ '"$flags"' -c "$1" -o "'"$out"'/obj/$(echo "$1" | tr / _).o"' _ {}
g++ -shared -fsanitize=address,undefined "$out"/obj/*.o -o "$out/jamba.node" -lpthread
echo "built $out/jamba.node"
