#!/usr/bin/env bash
# The whole test suite against the ASan + UBSan build of the addon. Node itself is not
# instrumented, so libasan is preloaded; leak checking is left to the dispose loop test
# (Node's own allocations at exit are not ours to report).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build-asan.sh
export JAMBA_ADDON="$PWD/build-asan/Release/jamba.node"
export LD_PRELOAD="$(g++ -print-file-name=libasan.so):$(g++ -print-file-name=libubsan.so)"
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:halt_on_error=1:detect_odr_violation=0"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
npx tsc -p tsconfig.json
# Suites that never reach native code (the float64 references and their finite differences, the
# JS layers) gain nothing from the sanitizers; the training demos run the native paths that
# grad.test.ts and train.test.ts already cover, for minutes, and shakespeare.test.ts runs the
# forward pass that kernels, fixtures-random and random-configs cover, over 40,000 tokens of
# validation text. The server, CLI and client suites (server, server-cluster, openai-client,
# examples, cli, cli-train) test HTTP, process and argument handling around the generation and
# training calls that generation, binding, hostile, grad and train run here; under the sanitizers
# they cost two minutes of child processes and waiting. CI's time budget leaves them all out here.
npx jest --runInBand --testPathIgnorePatterns \
  '/(grad-reference|nn|bf16-reference|train-demos-prompts|train-demos-passes|shakespeare|server|server-cluster|openai-client|examples|cli|cli-train)\.test\.ts$' "$@"
