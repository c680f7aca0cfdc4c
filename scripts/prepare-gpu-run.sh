#!/usr/bin/env bash
# Prepares what a GPU host run needs and does not have, in .device/ (git-ignored): a packed
# Node.js with Node-API's headers (../shared/scripts/pack-node-runtime.sh), the two node
# modules the GPU script loads (node-addon-api's headers for the build, node-gyp-build), and the
# compiled TypeScript (dist/). Then, with the device tool:
#   run  command: bash bench/gpu/run.sh   carry: [".device", "dist"]
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${JAMBA_SHARED_DIR:-../shared}
npx tsc -p tsconfig.json
rm -rf .device && mkdir -p .device/node_modules
bash "$SHARED/scripts/pack-node-runtime.sh" .device
cp -r node_modules/node-addon-api node_modules/node-gyp-build .device/node_modules/
du -sh .device dist
