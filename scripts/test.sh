#!/usr/bin/env bash
# Sets up a fresh Debian 12 machine (as root), builds mxedge twice — release with warnings as errors,
# and ASan+UBSan — and runs every test in both: unit tests, fuzz-corpus replays, and the lab
# integration tests that start real Postfix, smtp-sink and swaks peers on loopback. Then the
# appliance: the image is built from the release build and booted once under qemu
# (firmware-image/boot-test.sh --quick; the update and rollback steps run in the full boot test).
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
echo "== appliance image: build and boot"
bash firmware-image/boot-test.sh --quick --build-dir build
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  run_suite build-sanitize -DCMAKE_BUILD_TYPE=Debug -DMXEDGE_SANITIZE=ON
echo "== all test suites passed"
