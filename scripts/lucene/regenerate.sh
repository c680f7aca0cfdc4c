#!/usr/bin/env bash
# Regenerates everything the tests take from real Lucene (scripts/lucene/LuceneHarness.java):
#   third_party/lucene/standard-tokenizer.json   the tokenizer's scanner tables, Java's lower case
#   test/fixtures/retrieval/lucene-terms.txt.gz  each corpus passage's EnglishAnalyzer terms
#   test/fixtures/retrieval/lucene-stems.txt.gz  Lucene's Porter stem of every word of the corpus
#                                                and of tiny Shakespeare
#   test/fixtures/retrieval/lucene-top10.jsonl   the top 10 of each query, ids and scores
# With --check, writes them to a scratch folder and fails on any difference from the committed
# ones (CI runs this when a JDK and Lucene are installed). Exits 3 when they are not.
set -euo pipefail
cd "$(dirname "$0")/../.."
harness=scripts/lucene/harness.sh
check=0
[ "${1:-}" = "--check" ] && check=1
code=0
bash "$harness" version > /dev/null 2>&1 || code=$?
if [ "$code" = 3 ]; then
  echo "Lucene goldens: no JDK or Lucene 8 here (apt-get install default-jdk-headless liblucene8-java); the committed goldens stand"
  exit 3
elif [ "$code" != 0 ]; then
  echo "Lucene goldens: the harness does not run (exit $code)"
  exit 1
fi
fixtures=test/fixtures/retrieval
out=$fixtures tables=third_party/lucene/standard-tokenizer.json
work=$(mktemp -d)
if [ "$check" = 1 ]; then
  out=$work/golden
  mkdir -p "$out"
  tables=$out/standard-tokenizer.json
fi
trap 'rm -rf "$work"' EXIT
bash "$harness" tables "$tables"
bash "$harness" analyze "$fixtures/corpus.tsv" "$work/terms.jsonl"
node -e '
const fs = require("fs");
const lines = fs.readFileSync(process.argv[1], "utf8").split("\n").filter(Boolean).map((l) => JSON.parse(l).terms.join(" "));
fs.writeFileSync(process.argv[2], require("zlib").gzipSync(lines.join("\n") + "\n", { level: 9, mtime: 0 }));
' "$work/terms.jsonl" "$out/lucene-terms.txt.gz"
# The vocabulary: every lower-cased token of both corpora, one a line, sorted (Lucene tokenizes it).
bash "$harness" tokens "$fixtures/corpus.tsv" "$work/tokens.jsonl"
node -e '
const fs = require("fs");
const words = new Set();
for (const l of fs.readFileSync(process.argv[1], "utf8").split("\n").filter(Boolean)) {
  const t = JSON.parse(l).terms;
  for (let i = 0; i < t.length; i += 2) words.add(t[i].toLowerCase());
}
for (const w of fs.readFileSync(process.argv[2], "utf8").toLowerCase().split(/[^a-z]+/)) if (w) words.add(w);
fs.writeFileSync(process.argv[3], [...words].sort().join("\n") + "\n");
' "$work/tokens.jsonl" test/fixtures/tinyshakespeare.txt "$work/words.txt"
bash "$harness" stem "$work/words.txt" "$work/stems.txt"
paste -d ' ' "$work/words.txt" "$work/stems.txt" | gzip -9 -n > "$out/lucene-stems.txt.gz"
bash "$harness" search "$fixtures/corpus.tsv" "$fixtures/queries.tsv" 10 "$out/lucene-top10.jsonl"
if [ "$check" = 1 ]; then
  status=0
  cmp -s "$tables" third_party/lucene/standard-tokenizer.json || { echo "the tokenizer tables differ from third_party/lucene/standard-tokenizer.json"; status=1; }
  for f in lucene-terms.txt.gz lucene-stems.txt.gz lucene-top10.jsonl; do
    cmp -s <(zcat -f "$out/$f") <(zcat -f "$fixtures/$f") || { echo "$f differs from the committed golden"; status=1; }
  done
  [ "$status" = 0 ] && echo "Lucene goldens: regenerated with Lucene, identical to the committed ones"
  exit $status
fi
echo "wrote $tables and $fixtures/lucene-{terms,stems,top10}"
