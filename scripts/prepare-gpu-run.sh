#!/usr/bin/env bash
# Prepares what a GPU host run needs and does not have, in .device/ (git-ignored): a packed
# Node.js with Node-API's headers (scripts/pack-node-runtime.sh), the node modules the
# GPU script loads (node-addon-api's headers for the build, node-gyp-build, the tokenizer with
# only its linux-x64 binary, the chat-template engine, the grammar engine) and the compiled
# TypeScript (dist/). The fixtures the checks read are in the repository (test/fixtures) and travel
# with it. Then, with the device tool:
#   run  command: bash bench/gpu/run.sh   carry: [".device", "dist"]
set -euo pipefail
cd "$(dirname "$0")/.."
npx tsc -p tsconfig.json
rm -rf .device && mkdir -p .device/node_modules
bash scripts/pack-node-runtime.sh .device
cp -r node_modules/node-addon-api node_modules/node-gyp-build node_modules/tokenizers .device/node_modules/
mkdir -p .device/node_modules/@huggingface && cp -r node_modules/@huggingface/jinja .device/node_modules/@huggingface/
# The grammar engine (constrained decoding is checked on the device too).
mkdir -p .device/node_modules/@mlc-ai && cp -r node_modules/@mlc-ai/web-xgrammar .device/node_modules/@mlc-ai/
find .device/node_modules/tokenizers -name 'tokenizers.*.node' ! -name 'tokenizers.linux-x64-gnu.node' -delete
du -sh .device dist
