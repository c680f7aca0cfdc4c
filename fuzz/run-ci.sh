#!/usr/bin/env bash
# The bounded fuzz run of CI: each native libFuzzer target and the TypeScript fuzzer for about
# FUZZ_SECONDS (default 45) each, from the seed corpus copied to a scratch folder. A crash fails
# the run and leaves its input in fuzz/crashes/. Local, longer runs: FUZZ_SECONDS=3600 bash fuzz/run-ci.sh
set -uo pipefail
cd "$(dirname "$0")/.."
secs=${FUZZ_SECONDS:-45}
if ! command -v clang++ >/dev/null || ! ls /usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a >/dev/null 2>&1; then
  echo "fuzz: installing clang and its libFuzzer runtime from Debian"
  (apt-get update -qq && apt-get install -y -qq clang libclang-rt-14-dev) >/dev/null 2>&1 || { echo "fuzz: cannot install clang"; exit 1; }
fi
bash fuzz/build.sh || exit 1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p fuzz/crashes
status=0
for target in safetensors_header forward bm25_index; do
  case $target in safetensors_header) corpus=header ;; forward) corpus=forward ;; bm25_index) corpus=bm25 ;; esac
  cp -r "fuzz/corpus/$corpus" "$work/$corpus"
  if ! ./build-fuzz/${target}_fuzz -max_total_time="$secs" -timeout=10 -rss_limit_mb=4096 -print_final_stats=1 \
       -artifact_prefix=fuzz/crashes/ "$work/$corpus" > "$work/$target.log" 2>&1; then
    tail -40 "$work/$target.log"
    echo "fuzz: $target found a crash (input in fuzz/crashes/)"
    status=1
  else
    echo "fuzz: $target: $(grep -E 'stat::number_of_executed_units' "$work/$target.log" | awk '{print $2}') runs in ${secs} s, no crash"
  fi
done
node dist/fuzz/js-fuzz.js --seconds "$secs" || status=1
exit $status
