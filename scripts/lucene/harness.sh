#!/usr/bin/env bash
# Compiles and runs the Lucene harness (LuceneHarness.java) against Debian's Lucene 8 jars:
#   apt-get install default-jdk-headless liblucene8-java
#   bash scripts/lucene/harness.sh MODE ARGS...      (modes: see LuceneHarness.java)
# Exits 3 when no JDK or Lucene is installed, so callers can tell "unavailable" from "failed".
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
jars=/usr/share/java
core=$(ls "$jars"/lucene-core-8*.jar 2>/dev/null | head -n 1 || true)
common=$(ls "$jars"/lucene-analyzers-common-8*.jar 2>/dev/null | head -n 1 || true)
if ! command -v javac > /dev/null || [ -z "$core" ] || [ -z "$common" ]; then
  echo "lucene harness: needs a JDK and Lucene 8 (apt-get install default-jdk-headless liblucene8-java)" >&2
  exit 3
fi
cp="$core:$common"
out=${JAMBA_LUCENE_CLASSES:-${TMPDIR:-/tmp}/jamba-lucene-harness}
if [ ! -f "$out/LuceneHarness.class" ] || [ "$here/LuceneHarness.java" -nt "$out/LuceneHarness.class" ]; then
  mkdir -p "$out"
  javac -nowarn -cp "$cp" -d "$out" "$here/LuceneHarness.java"
fi
exec java -Xmx${JAMBA_LUCENE_HEAP:-4g} -cp "$cp:$out" LuceneHarness "$@"
