#!/usr/bin/env bash
# gpu-check.sh: every GPU test and benchmark of kiln in one go, on a GPU machine, with binaries
# built elsewhere (no rebuild there), then a short table.
#
#   scripts/gpu-check.sh --stage [BUILD_DIR]   # here: copy binaries, the non-system shared
#                                              # libraries they need, and the reference data into
#                                              # .gpu/ (ignored by git; carry it to the GPU machine)
#   scripts/gpu-check.sh [tests|bench|core|fp8|throughput|all]  # there (default all); logs go to
#                                              # $OUT; core: b1 / b64 decode and 8k prefill only
#                                              # (or /tmp); throughput runs in all/bench only
#                                              # with KILN_THROUGHPUT_PROMPTS set
#
#   KILN_BASE_GPU_DIR=.gpu-base scripts/gpu-check.sh bench   # the same latency benches with a
#                                              # second staged build (e.g. the previous commit) in
#                                              # the same call, rows side by side
#
# The GPU machine (Ubuntu 24.04, CUDA 13 runtime + cuBLASLt) lacks Debian -dev libraries, so the
# staged .gpu/lib is put first on LD_LIBRARY_PATH; `ldd` output is printed for the record.
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
# KILN_GPU_DIR: the staging folder (default .gpu; e.g. .gpu-NAME so that several builds can be
# staged side by side: carry [".gpu-NAME/payload.tgz", ".gpu-NAME/shared"] then).
G="$ROOT/${KILN_GPU_DIR:-.gpu}"
MODE=${1:-all}
SHARED_SRC=${KILN_SHARED:-$ROOT/../shared}
GPU_TESTS="cuda_sampling_test cuda_backend_test cuda_kv_transfer_test kernels_test"
BINS="kiln kernels_bench gemv_bench structured_decode_bench engine_decode_bench $GPU_TESTS"

if [ "$MODE" = "--stage" ]; then
  BUILD=${2:-$ROOT/build-cuda}
  rm -rf "$G/bin" "$G/lib"
  mkdir -p "$G/bin" "$G/lib" "$G/shared/models" "$G/shared/configs"
  for b in $BINS; do
    f=$(find "$BUILD" -type f -name "$b" -perm -u+x | head -1)
    if [ -n "$f" ]; then cp "$f" "$G/bin/"; strip --strip-debug "$G/bin/$b"; else echo "not built: $b"; fi
  done
  # Shared libraries outside glibc/libstdc++/CUDA: copy them next to the binaries.
  for f in "$G"/bin/*; do
    ldd "$f" | awk '/=> \//{print $3}' | while read -r lib; do
      case "$(basename "$lib")" in
        libc.so*|libm.so*|libdl.so*|librt.so*|libpthread.so*|libstdc++.so*|libgcc_s.so*|ld-linux*) ;;
        libcuda.so*|libcudart.so*|libcublas*.so*) ;;
        *) cp -L "$lib" "$G/lib/" ;;
      esac
    done
  done
  cp -r "$SHARED_SRC/models/tiny-qwen2" "$SHARED_SRC/models/tiny-qwen3" \
    "$SHARED_SRC/models/tinystories-656k" "$G/shared/models/"
  mkdir -p "$G/shared/models/stories260K"
  cp -r "$SHARED_SRC/models/stories260K/hf" "$SHARED_SRC/models/stories260K/greedy256.ids" \
    "$G/shared/models/stories260K/"
  cp -r "$SHARED_SRC/configs/"* "$G/shared/configs/"
  mkdir -p "$G/shared/tokenizers" && cp -r "$SHARED_SRC/tokenizers/qwen2.5" "$G/shared/tokenizers/"
  chmod -R u+w "$G/shared"
  # The carried tree must stay under 64 MiB: binaries and libraries travel compressed.
  tar -C "$G" -czf "$G/payload.tgz" bin lib && rm -rf "$G/bin" "$G/lib"
  du -sh "$G"
  exit 0
fi

if [ -f "$G/payload.tgz" ] && [ ! -d "$G/bin" ]; then tar -C "$G" -xzf "$G/payload.tgz"; fi

export LD_LIBRARY_PATH="$G/lib:/usr/local/cuda/lib64:/usr/local/cuda/lib:${LD_LIBRARY_PATH:-}"
export KILN_SHARED="$G/shared"
LOG=${OUT:-/tmp/kiln-gpu-check}
mkdir -p "$LOG"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv,noheader
date -u
ldd "$G/bin/kiln" 2>&1 | grep -E "not found|cuda|cublas" || true
declare -a TABLE

if [ "$MODE" = "all" ] || [ "$MODE" = "tests" ]; then
  for t in $GPU_TESTS; do
    if [ ! -x "$G/bin/$t" ]; then TABLE+=("test $t: not staged"); continue; fi
    KILN_SOURCE_DIR="$ROOT" timeout 300 "$G/bin/$t" > "$LOG/$t.log" 2>&1
    rc=$?
    pass=$(grep -c "^\[       OK \]" "$LOG/$t.log")
    # one line per test (with its time); gtest's closing summary lists them again without one
    fail=$(grep -cE "^\[  FAILED  \] .* \([0-9]+ ms\)$" "$LOG/$t.log")
    skip=$(grep -cE "^\[  SKIPPED \] .* \([0-9]+ ms\)$" "$LOG/$t.log")
    TABLE+=("test $t: rc=$rc ok=$pass failed=$fail skipped=$skip")
    grep -E "^\[parity\]|Failure|FAILED|error" "$LOG/$t.log" | head -40
  done
  # The yardstick for bf16 parity: HF transformers itself in bf16 against the same references
  # (where python3 has torch + transformers, as on the GPU machine).
  if [ -z "${KILN_SKIP_YARDSTICKS:-}" ] && python3 -c "import torch, transformers" 2>/dev/null; then
    python3 "$ROOT/scripts/hf_bf16_parity.py" "$G/shared/models/tiny-qwen2" "$G/shared/models/tiny-qwen3" \
      2>/dev/null | grep "^\[hf-parity\]" | tee "$LOG/hf_parity.log"
    TABLE+=("HF transformers bf16 vs references: $(grep bfloat16 "$LOG/hf_parity.log" | sed -E 's/.*\] ([^ ]+) [^ ]+ bfloat16 ([a-z]+): worst [^ ]+ ([^,]+), top-1 ([^ ]+).*/\1 \2 \3 top1 \4/' | tr '\n' ';')")
    # Where kiln's bf16 error comes from: the forward pass in float32, rounded to bf16 at kiln's points.
    python3 "$ROOT/scripts/bf16_rounding_sim.py" "$G/shared/models/tiny-qwen2" "$G/shared/models/tiny-qwen3" \
      > "$LOG/bf16_sim.log" 2>&1
    TABLE+=("bf16 rounding sim, max|d|/max|ref|: $(sed -n 's/^\[bf16-sim\] //p' "$LOG/bf16_sim.log" | tr '\n' ' ')")
  fi
  # compute-sanitizer memcheck over the GPU test suite (skipped where the tool is absent).
  SAN=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null)
  if [ -n "$SAN" ] && [ -z "${KILN_SKIP_SANITIZER:-}" ]; then
    for t in $GPU_TESTS; do
      [ -x "$G/bin/$t" ] || continue
      timeout 400 "$SAN" --tool memcheck --leak-check no --error-exitcode 99 "$G/bin/$t" \
        --gtest_filter=-*LongContext*:*QwenVocab* > "$LOG/memcheck_$t.log" 2>&1
      rc=$?
      TABLE+=("memcheck $t: rc=$rc $(grep -E 'ERROR SUMMARY' "$LOG/memcheck_$t.log" | tail -1)")
    done
  fi
fi

if [ "$MODE" = "all" ] || [ "$MODE" = "bench" ] || [ "$MODE" = "fp8" ] || [ "$MODE" = "core" ] || \
   [ "$MODE" = "throughput" ]; then
  Q7="$G/shared/configs/qwen2-7b-instruct"
  BASE=""
  if [ -n "${KILN_BASE_GPU_DIR:-}" ]; then
    BASE="$ROOT/$KILN_BASE_GPU_DIR"
    if [ -f "$BASE/payload.tgz" ] && [ ! -d "$BASE/bin" ]; then tar -C "$BASE" -xzf "$BASE/payload.tgz"; fi
  fi
  run_bench() {  # name, timeout, args...
    local name=$1 limit=$2
    shift 2
    timeout "$limit" "$G/bin/kiln" bench "$@" > "$LOG/bench_$name.log" 2>&1
    local rc=$?
    cat "$LOG/bench_$name.log" | grep -v "^\[" | tail -12
    TABLE+=("bench $name (rc=$rc): $(grep '^RESULT' "$LOG/bench_$name.log" | cut -c8-)")
    if [ -n "$BASE" ] && [ -x "$BASE/bin/kiln" ]; then
      LD_LIBRARY_PATH="$BASE/lib:$LD_LIBRARY_PATH" timeout "$limit" "$BASE/bin/kiln" bench "$@" \
        > "$LOG/base_$name.log" 2>&1
      TABLE+=("  base $name (rc=$?): $(grep '^RESULT' "$LOG/base_$name.log" | cut -c8-)")
    fi
  }
  if [ "$MODE" = "fp8" ] || [ "$MODE" = "all" ]; then
    # FP8 weights (W8A16 decode GEMVs, W8A8 cuBLASLt prefill) against bf16 in the same call.
    run_bench qwen2-7b_b1_fp8 240 latency --model "$Q7" --load-format dummy --batch-size 1 --input-len 128 --output-len 128 --quantization fp8
    run_bench qwen2-7b_b64_ctx2000_fp8 300 latency --model "$Q7" --load-format dummy --batch-size 64 --input-len 2000 --output-len 32 --quantization fp8
    run_bench qwen2-7b_prefill8k_fp8 240 latency --model "$Q7" --load-format dummy --batch-size 1 --input-len 8192 --output-len 4 --max-num-batched-tokens 8192 --quantization fp8
  fi
  if [ "$MODE" = "core" ]; then
    # The figures the model-layer refactor must keep (batch-1 / batch-64 decode, 8k prefill).
    run_bench qwen2-7b_b1 240 latency --model "$Q7" --load-format dummy --batch-size 1 --input-len 128 --output-len 128
    run_bench qwen2-7b_b64_ctx2000 300 latency --model "$Q7" --load-format dummy --batch-size 64 --input-len 2000 --output-len 32
    run_bench qwen2-7b_prefill8k 240 latency --model "$Q7" --load-format dummy --batch-size 1 --input-len 8192 --output-len 4 --max-num-batched-tokens 8192
  fi
  if [ "$MODE" != "throughput" ] && [ "$MODE" != "fp8" ] && [ "$MODE" != "core" ]; then
  run_bench qwen2-7b_b1 240 latency --model "$Q7" --load-format dummy --batch-size 1 --input-len 128 --output-len 128
  run_bench qwen2-7b_b1_eager 240 latency --model "$Q7" --load-format dummy --batch-size 1 --input-len 128 --output-len 128 --enforce-eager
  run_bench qwen2-7b_b64_ctx2000 300 latency --model "$Q7" --load-format dummy --batch-size 64 --input-len 2000 --output-len 32
  # The same batch through the engine's step, async scheduling on / off: GPU idle between steps.
  if [ -x "$G/bin/engine_decode_bench" ]; then
    timeout 300 "$G/bin/engine_decode_bench" --model "$Q7" --batch 64 > "$LOG/engine_decode.log" 2>&1
    rc=$?
    grep -v "^\[\|^I " "$LOG/engine_decode.log" | tail -4
    TABLE+=("engine decode qwen2-7b b64 (rc=$rc): $(grep '^RESULT' "$LOG/engine_decode.log" | cut -c8- | tr '\n' ' ')")
  fi
  run_bench qwen2-7b_prefill8k 240 latency --model "$Q7" --load-format dummy --batch-size 1 --input-len 8192 --output-len 4 --max-num-batched-tokens 8192
  # Structured output on the GPU: decode step with grammar constraints (32 corpus schemas) vs the
  # same batch unconstrained (issue 6 goal: <= 1.1x).
  if [ -x "$G/bin/structured_decode_bench" ]; then
    KILN_SOURCE_DIR="$ROOT" KILN_SHARED="$G/shared" timeout 300 "$G/bin/structured_decode_bench" \
      --device cuda --model "$Q7" --batch 32 --max-tokens 256 --rounds 3 --kv-cache-gib 8 \
      > "$LOG/structured_decode.log" 2>&1
    rc=$?
    tail -8 "$LOG/structured_decode.log"
    TABLE+=("structured decode qwen2-7b b32 (rc=$rc): $(grep 'median wall' "$LOG/structured_decode.log")")
  fi
  fi
  if [ "$MODE" = "throughput" ] || [ -n "${KILN_THROUGHPUT_PROMPTS:-}" ]; then
    for m in qwen2-7b-instruct llama-3.1-8b-instruct; do
      run_bench "${m}_throughput" 300 throughput --model "$G/shared/configs/$m" --load-format dummy \
        --device cuda --num-prompts "${KILN_THROUGHPUT_PROMPTS:-1000}" --input-len 1000 --output-len 1000
    done
  fi
fi

echo "==== kiln gpu-check summary ($(date -u +%F' '%H:%M) UTC) ===="
for row in "${TABLE[@]}"; do echo "  $row"; done
