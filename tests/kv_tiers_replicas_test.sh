#!/usr/bin/env bash
# Two `kiln serve` replicas (stories260K on the CPU backend, a 16-block device KV pool) pointed at
# one private redis-server share a prefix: a prompt completed on replica A is, on replica B, a
# prefix-cache hit served from Redis (B's /metrics: kiln_kv_tier_hit_tokens_total{tier="redis"} >
# 0) with the same greedy completion. A also runs a host tier, whose series appear in its /metrics.
# Exit 77 (CTest: skipped) when the kiln binary or the model is missing.
#
#   kv_tiers_replicas_test.sh KILN_BINARY
set -uo pipefail
kiln=$1
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
shared=${KILN_SHARED:-$root/../shared}
model=$shared/models/stories260K/hf
skip() { echo "SKIP: $*"; exit 77; }
[ -x "$kiln" ] || skip "kiln binary $kiln not built"
[ -f "$model/config.json" ] || skip "$model missing (set KILN_SHARED)"
command -v redis-server >/dev/null || { echo "redis-server missing (scripts/setup.sh)"; exit 1; }

tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; wait "$p" 2>/dev/null; done; rm -rf "$tmp"; }
trap cleanup EXIT
fail() { echo "FAIL: $*"; for f in "$tmp"/*.log; do echo "--- $f"; tail -20 "$f"; done; exit 1; }

redis_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no >"$tmp/redis.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do
  [ "$(redis-cli -p "$redis_port" ping 2>/dev/null)" = PONG ] && break
  sleep 0.05
done
[ "$(redis-cli -p "$redis_port" ping 2>/dev/null)" = PONG ] || fail "redis-server did not start"

start() {  # start NAME EXTRA_FLAGS... → sets port_NAME
  local name=$1; shift
  "$kiln" serve --model "$model" --port 0 --num-threads 1 --num-kv-blocks 16 --max-model-len 256 \
    --redis-url "redis://127.0.0.1:$redis_port" --redis-timeout-ms 2000 "$@" >"$tmp/$name.log" 2>&1 &
  pids+=($!)
  local port=""
  for _ in $(seq 1 300); do
    port=$(sed -n 's/.*listening on http:\/\/127\.0\.0\.1:\([0-9]*\).*/\1/p' "$tmp/$name.log" 2>/dev/null)
    [ -n "$port" ] && break
    sleep 0.1
  done
  [ -n "$port" ] || fail "replica $name did not start"
  eval "port_$name=$port"
}
start a --cpu-offload-gb 0.01
start b

prompt="Once upon a time, there was a little girl named Lily. She loved to play outside in the sun with her friends. One day, she found a big red ball in the park. She was very happy and ran to show her mom. Her mom smiled and said they could play together after lunch."
body=$(python3 -c 'import json,sys; print(json.dumps({"model": "hf", "prompt": sys.argv[1], "max_tokens": 16, "temperature": 0}))' "$prompt")
complete() { curl -sf -H 'Content-Type: application/json' -d "$body" "http://127.0.0.1:$1/v1/completions"; }
text_of() { python3 -c 'import json,sys; print(json.load(sys.stdin)["choices"][0]["text"])'; }

a_text=$(complete "$port_a" | text_of) || fail "completion on replica A failed"
# A's blocks reach Redis asynchronously (write-through after the host store).
for _ in $(seq 1 100); do
  [ "$(redis-cli -p "$redis_port" dbsize)" -gt 0 ] 2>/dev/null && break
  sleep 0.05
done
[ "$(redis-cli -p "$redis_port" dbsize)" -gt 0 ] || fail "replica A wrote nothing to Redis"
b_text=$(complete "$port_b" | text_of) || fail "completion on replica B failed"
[ "$a_text" = "$b_text" ] || fail "replicas disagree: '$a_text' vs '$b_text'"

metric() {  # metric PORT TIER SERIES
  curl -sf "http://127.0.0.1:$1/metrics" |
    sed -n "s/^$3{model_name=\"[^\"]*\",tier=\"$2\"} \\([0-9.e+]*\\)$/\\1/p"
}
b_hits=$(metric "$port_b" redis kiln_kv_tier_hit_tokens_total)
[ -n "$b_hits" ] && python3 -c "import sys; sys.exit(0 if float('$b_hits') > 0 else 1)" ||
  fail "replica B: no Redis hits (kiln_kv_tier_hit_tokens_total{tier=redis} = '$b_hits')"
a_cap=$(metric "$port_a" host kiln_kv_tier_capacity_bytes)
[ -n "$a_cap" ] || fail "replica A: no host tier series in /metrics"
echo "OK: replica B served $b_hits prompt tokens from Redis; both completed '$a_text'"
