#!/usr/bin/env bash
# Builds kiln (via scripts/setup.sh) and runs every test. GPU-only tests skip with a message when
# no GPU is present; tests that need ../shared read it via KILN_SHARED (default ../shared).
# Then builds the engine and server tests with ThreadSanitizer in their own build directory
# (build-tsan, only those targets) and runs them; KILN_SKIP_TSAN=1 skips that stage.
set -euo pipefail
cd "$(dirname "$0")/.."
export KILN_SHARED=${KILN_SHARED:-$(cd .. && pwd)/shared}
scripts/setup.sh
BUILD_DIR=${KILN_BUILD_DIR:-build}
ctest --test-dir "$BUILD_DIR" --output-on-failure -j"$(nproc)" --timeout 900

if [ -z "${KILN_SKIP_TSAN:-}" ]; then
  t0=$(date +%s)
  TSAN_DIR=${KILN_TSAN_BUILD_DIR:-build-tsan}
  TSAN_TESTS=(engine_test engine_core_test generation_test server_protocol_test server_http_test
              server_openai_test server_hardening_test)
  KILN_NO_CUDA=1 cmake -S . -B "$TSAN_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DKILN_TSAN=ON >/dev/null
  cmake --build "$TSAN_DIR" -j"$(nproc)" --target "${TSAN_TESTS[@]}"
  regex="^($(IFS='|'; echo "${TSAN_TESTS[*]}"))\$"
  # OpenBLAS threads are not instrumented: one thread keeps TSan from seeing unordered accesses.
  TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 ${TSAN_OPTIONS:-}" OPENBLAS_NUM_THREADS=1 \
    ctest --test-dir "$TSAN_DIR" --output-on-failure -j"$(nproc)" --timeout 900 -R "$regex"
  echo "test.sh: ThreadSanitizer stage (build + tests) took $(( $(date +%s) - t0 )) s"
fi
