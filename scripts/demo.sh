#!/usr/bin/env bash
# The README's first command: set up a fresh Debian 12 machine (as root), build mxedge, and run the
# gateway's main job on a built-in lab — inbound mail over STARTTLS and implicit TLS, spooled and
# relayed to a Postfix receiver standing in for the organisation's mail server. See scripts/demo.py.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
ninja -C build -j "$(nproc)" mxedge-dataplane
exec /usr/bin/python3 scripts/demo.py "$@"
