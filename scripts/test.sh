#!/usr/bin/env bash
# Builds kiln (via scripts/setup.sh) and runs every test. GPU-only tests skip with a message when
# no GPU is present; tests that need ../shared read it via KILN_SHARED (default ../shared).
set -euo pipefail
cd "$(dirname "$0")/.."
export KILN_SHARED=${KILN_SHARED:-$(cd .. && pwd)/shared}
scripts/setup.sh
BUILD_DIR=${KILN_BUILD_DIR:-build}
ctest --test-dir "$BUILD_DIR" --output-on-failure -j"$(nproc)" --timeout 900
