#!/usr/bin/env bash
# Starts `kiln serve` on a free loopback port with stories260K, runs a node script against it
# (KILN_BASE_URL, KILN_API_KEY, KILN_SERVER_PID in its environment), then stops the server with
# SIGTERM and checks it exits 0. Exit 77 (CTest: skipped) when node, the openai npm package, the
# kiln binary or the model is missing.
#
#   run_with_server.sh KILN_BINARY SCRIPT.mjs [extra kiln serve flags...]
set -uo pipefail
kiln=$1; script=$2; shift 2
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
shared=${KILN_SHARED:-$root/../shared}
model=$shared/models/stories260K/hf
skip() { echo "SKIP: $*"; exit 77; }
command -v node >/dev/null || skip "node is not installed"
[ -d "$root/node_modules/openai" ] || skip "node_modules/openai missing (run npm ci in $root)"
[ -x "$kiln" ] || skip "kiln binary $kiln not built"
[ -f "$model/config.json" ] || skip "$model missing (set KILN_SHARED)"

log=$(mktemp)
api_key=test-key-$$
"$kiln" serve --model "$model" --port 0 --served-model-name stories \
  --chat-template "$here/chat_template.jinja" --api-key "$api_key" --shutdown-grace-period 10 \
  "$@" >"$log" 2>&1 &
pid=$!
port=""
for _ in $(seq 1 300); do
  port=$(sed -n 's/.*listening on http:\/\/127\.0\.0\.1:\([0-9]*\).*/\1/p' "$log")
  [ -n "$port" ] && break
  kill -0 $pid 2>/dev/null || break
  sleep 0.1
done
if [ -z "$port" ]; then
  echo "kiln serve did not start:"; cat "$log"; kill $pid 2>/dev/null; exit 1
fi
KILN_BASE_URL="http://127.0.0.1:$port" KILN_API_KEY=$api_key KILN_SERVER_PID=$pid \
  NODE_PATH="$root/node_modules" node "$script"
rc=$?
kill -TERM $pid 2>/dev/null  # (already gone when the script itself signalled it)
wait $pid
server_rc=$?
if [ $server_rc -ne 0 ]; then
  echo "kiln serve exited with $server_rc after SIGTERM:"; tail -20 "$log"; rc=1
fi
rm -f "$log"
exit $rc
