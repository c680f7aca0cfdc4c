#!/usr/bin/env bash
# The package as a user gets it, and the deployment recipe of docs/deploy.md, step by step (there is
# no container runtime on the CI machine, so the recipe's steps run here as a script):
#   1. `npm pack`, and the tarball holds the embedded model and no test fixtures;
#   2. an empty application depends on the tarball; its lockfile is made and the npm cache filled,
#      then `npm ci --omit=dev --offline` installs it from the cache alone, with JAMBA_CUDA=OFF;
#   3. the library loads the embedded model and generates;
#   4. `jamba serve` runs as an unprivileged user, with no network but loopback, on a model folder
#      mounted read-only: /health/live at once, /health/ready once loaded, a completion, then
#      SIGTERM and exit 0.
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'kill "${server:-}" 2>/dev/null || true; rm -rf "$work"' EXIT
chmod 755 "$work"

echo "== 1. npm pack"
tarball=$(npm pack --silent --pack-destination "$work" | tail -n 1)
tar -tzf "$work/$tarball" > "$work/files.txt"
echo "$tarball: $(wc -l < "$work/files.txt") files, $(du -h "$work/$tarball" | cut -f1)"
if grep -E '^package/(test/|fuzz/|bench/|\.ci/)|reference\.safetensors|experts_int8\.reference|tokenizer-cases\.json|tinyshakespeare\.txt|/layouts/|chat-template/cases\.json' "$work/files.txt"; then
  echo "the tarball holds test fixtures or test code (above)"; exit 1
fi
grep -qx 'package/models/jamba-tiny-shakespeare/model.safetensors' "$work/files.txt" || { echo "the tarball lacks the embedded model"; exit 1; }

echo "== 2. an application installs it offline (npm ci --omit=dev), CPU only"
app="$work/app"
mkdir -p "$app"
cp "$work/$tarball" "$app/"
cat > "$app/package.json" <<EOF
{ "name": "jamba-app", "private": true, "dependencies": { "jamba-node": "file:$tarball" } }
EOF
# With the registry (or a mirror) at hand: the lockfile, and the npm cache filled (nothing built).
(cd "$app" && npm install --package-lock-only --omit=dev --prefer-offline --no-audit --no-fund --loglevel=error \
  && npm ci --omit=dev --ignore-scripts --prefer-offline --no-audit --no-fund --loglevel=error && rm -rf node_modules)
# The image build: offline, from the lockfile and the cache.
start=$(date +%s)
(cd "$app" && JAMBA_CUDA=OFF npm ci --omit=dev --offline --no-audit --no-fund --loglevel=error 2>&1 | tail -n 3)
echo "npm ci: $(( $(date +%s) - start )) s"
[ ! -e "$app/node_modules/jest" ] || { echo "dev dependencies were installed"; exit 1; }

echo "== 3. the library generates from the embedded model"
(cd "$app" && node -e '
const { loadModel } = require("jamba-node");
(async () => {
  const model = await loadModel();
  const r = await model.complete("ROMEO:\n", { maxTokens: 12, temperature: 0 });
  if (r.tokens.length !== 12 || !r.text.trim()) throw new Error(`generated ${JSON.stringify(r)}`);
  console.log(`generated: ${JSON.stringify(r.text)}`);
  await model.dispose();
})().catch((e) => { console.error(e); process.exit(1); });')

echo "== 4. jamba serve: unprivileged, no network, the model mounted read-only"
model="$work/model"
cp -r "$app/node_modules/jamba-node/models/jamba-tiny-shakespeare" "$model"
chmod -R a-w "$model"
run_as=(); sandbox=()
if [ "$(id -u)" = 0 ]; then
  # setpriv executes the server in its own place (no session process between), so SIGTERM reaches it.
  command -v setpriv > /dev/null && run_as=(setpriv --reuid=nobody --regid=nogroup --clear-groups --)
  # A network namespace with loopback alone: anything the server tried to fetch would fail.
  unshare -n true 2> /dev/null && sandbox=(unshare -n)
fi
port=18080
"${sandbox[@]}" sh -c 'ip link set lo up 2>/dev/null; exec "$@"' sh \
  "${run_as[@]}" "$app/node_modules/.bin/jamba" serve --model "$model" --host 127.0.0.1 --port "$port" --shutdown-timeout 5 \
  > "$work/serve.log" 2>&1 &
server=$!
# The server is in its own network namespace: probe it from inside that namespace.
probe() { if [ ${#sandbox[@]} -gt 0 ]; then nsenter -t "$server" -n "$@"; else "$@"; fi; }
for _ in $(seq 1 100); do
  probe curl -s -o /dev/null "http://127.0.0.1:$port/health/live" && break
  sleep 0.1
done
[ "$(probe curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/health/live")" = 200 ] || { cat "$work/serve.log"; echo "not live"; exit 1; }
for _ in $(seq 1 300); do
  [ "$(probe curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/health/ready")" = 200 ] && break
  sleep 0.1
done
probe curl -sf "http://127.0.0.1:$port/health/ready" > /dev/null || { cat "$work/serve.log"; echo "never ready"; exit 1; }
out=$(probe curl -sf "http://127.0.0.1:$port/v1/completions" -H 'content-type: application/json' -d '{"prompt":"ROMEO:\n","max_tokens":8,"temperature":0}')
echo "completion: $out" | cut -c1-160
echo "$out" | grep -q '"finish_reason":"length"' || { echo "no completion"; exit 1; }
node_pid=$(pgrep -f "jamba serve --model $model" | tail -n 1)
echo "server process: user $(ps -o user= -p "$node_pid"), network $(probe ip -brief link | awk '{print $1}' | paste -sd, -)"
kill -TERM "$server"
code=0; wait "$server" || code=$?
server=
cat "$work/serve.log" | sed 's/^/  serve: /'
[ "$code" = 0 ] || { echo "jamba serve exited with $code on SIGTERM"; exit 1; }
echo "pack check: ok"
