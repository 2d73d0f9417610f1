#!/bin/bash
# firmware-image/boot-test.sh: builds the appliance image and boots it under qemu (boot_test.py).
#
#   bash firmware-image/boot-test.sh [--quick] [--out DIR] [--build-dir DIR] [--keep]
#
# Default: builds version V (the project's) and the update bundle of version V.1, then boots V, relays
# a message, updates to V.1, rolls back, and survives a corrupt update (about 15 minutes under
# software emulation). --quick: builds V only and checks one boot (about 6 minutes).
# Exit 0 when every check passed.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
SRC=$(cd "$HERE/.." && pwd)
OUT=$HERE/out
QUICK=0
BUILD_ARGS=()
TEST_ARGS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1; shift ;;
    --out) OUT=$(realpath -m "${2:?}"); shift 2 ;;
    --build-dir) BUILD_ARGS+=(--build-dir "${2:?}"); shift 2 ;;
    --keep) TEST_ARGS+=(--keep); shift ;;
    -h|--help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "boot-test.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" = 0 ] || { echo "boot-test.sh: run as root" >&2; exit 1; }
need=()
for p in qemu-system-x86 qemu-utils ovmf socat openssh-client mtools dosfstools swaks postfix; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}"; fi

V=$(sed -n 's/^project(mxedge VERSION \([0-9.]*\).*/\1/p' "$SRC/CMakeLists.txt")
bash "$HERE/build.sh" --out "$OUT" --version "$V" "${BUILD_ARGS[@]}"
if [ "$QUICK" = 1 ]; then
  exec /usr/bin/python3 "$HERE/boot_test.py" --image "$OUT/mxedge-$V.raw" "${TEST_ARGS[@]}"
fi
bash "$HERE/build.sh" --out "$OUT" --version "$V.1" --no-disk "${BUILD_ARGS[@]}"
exec /usr/bin/python3 "$HERE/boot_test.py" --image "$OUT/mxedge-$V.raw" --update "$OUT/mxedge-update-$V.1.tar" "${TEST_ARGS[@]}"
