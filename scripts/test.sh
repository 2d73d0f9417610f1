#!/usr/bin/env bash
# Sets up a fresh Debian 12 machine (as root), builds mxedge twice — release with warnings as errors,
# and ASan+UBSan — and runs every test in both: unit tests, fuzz-corpus replays, and the lab
# integration tests that start real Postfix, smtp-sink and swaks peers on loopback.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh

jobs=$(nproc)
run_suite() {
  local dir=$1; shift
  echo "== configure and build: $dir"
  cmake -S . -B "$dir" -G Ninja -DMXEDGE_WERROR=ON "$@" >/dev/null
  ninja -C "$dir" -j "$jobs"
  echo "== tests: $dir"
  ctest --test-dir "$dir" --output-on-failure --timeout 1500
}

run_suite build -DCMAKE_BUILD_TYPE=RelWithDebInfo
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  run_suite build-sanitize -DCMAKE_BUILD_TYPE=Debug -DMXEDGE_SANITIZE=ON
echo "== all test suites passed"
