#!/usr/bin/env bash
# Runs one `kiln bench serve` test script with node: KILN_BINARY, KILN_SHARED and KILN_SOURCE_DIR
# in its environment. Exit 77 (CTest: skipped) when node or the kiln binary is missing.
#
#   run.sh KILN_BINARY SCRIPT.mjs
set -uo pipefail
kiln=$1; script=$2
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
skip() { echo "SKIP: $*"; exit 77; }
command -v node >/dev/null || skip "node is not installed"
[ -x "$kiln" ] || skip "kiln binary $kiln not built"
KILN_BINARY=$kiln KILN_SHARED=${KILN_SHARED:-$root/../shared} KILN_SOURCE_DIR=$root \
  exec node "$script"
