#!/bin/bash
# firmware-image/build.sh: builds the mxedge appliance image in one command, as root on Debian 12.
#
#   bash firmware-image/build.sh [--out DIR] [--version V] [--var-size SIZE] [--slot-size SIZE]
#                                [--build-dir DIR]   (an existing CMake build to package; default: its own)
#                                [--no-disk]         (the update bundle and package only, no disk image)
#                                [--cmdline "mxedge.KEY=VALUE ..."]  (added to the kernel command line:
#                                                     configuration baked into the image, see README)
#
# Output (DIR, default firmware-image/out):
#   mxedge-<V>.raw, mxedge-<V>.qcow2   the bootable UEFI disk: GPT with an ESP (systemd-boot and the
#                                      unified kernel image), two root slots (A holds this version as a
#                                      read-only squashfs, B is empty) and the writable /var partition
#   mxedge-update-<V>.tar              the update bundle for `mxedge-update apply` on older images
#   mxedge_<V>.deb ...                 the Debian package (also installed in the image)
#   manifest-<V>.txt                   every package and version in the image, the inputs' hashes
#   SHA256SUMS
# Nothing is mounted: the root file system is made by mmdebstrap in a directory, the ESP with mtools,
# /var with mkfs.ext4 -d, and the disk with systemd-repart (CopyBlocks=), so this also runs where the
# kernel has no vfat and no loop devices. The inputs are Debian 12 packages from the configured mirror
# (MXEDGE_MIRROR, default deb.debian.org) and this checkout; SOURCE_DATE_EPOCH (default: the last
# commit's time) fixes every time stamp, file order and UUID that the tools let us fix.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
SRC=$(cd "$HERE/.." && pwd)
OUT=$HERE/out
VERSION=""
BUILD=""
NO_DISK=0
EXTRA_CMDLINE=""
VAR_SIZE=2G
SLOT_SIZE=1G
MIRROR=${MXEDGE_MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${MXEDGE_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
usage() { sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --out) OUT=$(realpath -m "${2:?}"); shift 2 ;;
    --version) VERSION=${2:?}; shift 2 ;;
    --var-size) VAR_SIZE=${2:?}; shift 2 ;;
    --slot-size) SLOT_SIZE=${2:?}; shift 2 ;;
    --build-dir) BUILD=$(realpath -m "${2:?}"); shift 2 ;;
    --no-disk) NO_DISK=1; shift ;;
    --cmdline) EXTRA_CMDLINE=${2?}; shift 2 ;;
    -h|--help) usage ;;
    *) echo "build.sh: unknown option $1" >&2; usage ;;
  esac
done
[ "$(id -u)" = 0 ] || { echo "build.sh: run as root (mmdebstrap's root mode, device nodes, file owners)" >&2; exit 1; }
[ -n "$VERSION" ] || VERSION=$(sed -n 's/^project(mxedge VERSION \([0-9.]*\).*/\1/p' "$SRC/CMakeLists.txt")
[[ "$VERSION" =~ ^[0-9A-Za-z.~-]+$ ]] || { echo "build.sh: bad version '$VERSION'" >&2; exit 2; }
for w in $EXTRA_CMDLINE; do
  [[ "$w" =~ ^mxedge\.[a-z_]+=[^[:space:]]*$ ]] || { echo "build.sh: --cmdline takes mxedge.KEY=VALUE words only, not '$w'" >&2; exit 2; }
done
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git -C "$SRC" log -1 --format=%ct 2>/dev/null || date +%s)}

T0=$(date +%s)
step() { printf '\n== [%4ss] %s\n' "$(( $(date +%s) - T0 ))" "$*"; }

step "host tools"
need=()
for p in mmdebstrap squashfs-tools mtools dosfstools systemd-boot-efi qemu-utils fdisk e2fsprogs binutils openssl cmake ninja-build; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}"
fi
STUB=/usr/lib/systemd/boot/efi/linuxx64.efi.stub
BOOTEFI=/usr/lib/systemd/boot/efi/systemd-bootx64.efi

mkdir -p "$OUT"
WORK=$OUT/work-$VERSION
rm -rf "$WORK"; mkdir -p "$WORK"
cleanup() { rm -rf "$WORK"; }
trap cleanup EXIT

[ -n "$BUILD" ] || BUILD=$OUT/build
step "the mxedge package (cmake + cpack in $BUILD)"
bash "$SRC/scripts/setup.sh" >/dev/null
[ -f "$BUILD/CMakeCache.txt" ] || cmake -S "$SRC" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMXEDGE_TESTS=OFF -DMXEDGE_WERROR=ON >/dev/null
if ! ninja -C "$BUILD" mxedge-dataplane mxedge-controlplane mxedgectl mxedge-trace mxedge-resolve > "$OUT/build.log" 2>&1; then
  grep -E -A5 '^FAILED|error' "$OUT/build.log" | head -n 40; echo "build.sh: the build failed ($OUT/build.log)" >&2; exit 1
fi
(cd "$BUILD" && cpack -G DEB -D CPACK_PACKAGE_VERSION="$VERSION" -D CPACK_INSTALL_CMAKE_PROJECTS="$BUILD;mxedge;ALL;/" >/dev/null)
DEB=$(ls -t "$BUILD"/mxedge_"$VERSION"_*.deb | head -n1)
cp "$DEB" "$OUT/"
echo "$(basename "$DEB"): $(du -h "$DEB" | cut -f1)"

step "signing key for updates ($OUT/keys; keep it: images built with it accept only bundles signed by it)"
install -d -m 0700 "$OUT/keys"
if [ ! -f "$OUT/keys/update-signing.key" ]; then
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$OUT/keys/update-signing.key" 2>/dev/null
  echo "generated a new signing key"
fi
openssl pkey -in "$OUT/keys/update-signing.key" -pubout -out "$WORK/update-signing.pem" 2>/dev/null

step "root file system (mmdebstrap, Debian 12 bookworm from $MIRROR)"
ROOT=$WORK/root
PKGS=systemd,systemd-sysv,udev,dbus,systemd-timesyncd,systemd-resolved,linux-image-amd64,initramfs-tools,kmod
PKGS+=,systemd-boot,openssh-server,irqbalance,logrotate,ca-certificates,dns-root-data,iproute2,procps,util-linux,fdisk,curl,openssl,less,nano-tiny,zstd
# Everything is downloaded by mmdebstrap outside the chroot (the local .deb too: its dependencies are
# resolved from the mirror like any other package's); nothing inside the chroot uses the network.
mmdebstrap --variant=minbase --include="$PKGS" --include="$DEB" \
  --hook-dir=/usr/share/mmdebstrap/hooks/file-mirror-automount \
  --customize-hook="bash '$HERE/customize.sh' \"\$1\" '$VERSION' '$WORK/update-signing.pem'" \
  bookworm "$ROOT" "deb $MIRROR bookworm main" "deb $MIRROR bookworm-updates main" "deb $SECURITY_MIRROR bookworm-security main" \
  > "$WORK/mmdebstrap.log" 2>&1 &
mm=$!
while kill -0 $mm 2>/dev/null; do   # progress: one line every 15 s
  sleep 15; echo "  ... $(( $(date +%s) - T0 ))s: $(grep '^I: ' "$WORK/mmdebstrap.log" | tail -n1 | cut -c4-100)"
done
if ! wait $mm || [ ! -x "$ROOT/usr/sbin/mxedge-dataplane" ]; then
  tail -n 30 "$WORK/mmdebstrap.log"; echo "build.sh: mmdebstrap failed ($WORK/mmdebstrap.log kept in $OUT/mmdebstrap.log)" >&2
  cp "$WORK/mmdebstrap.log" "$OUT/mmdebstrap.log"; exit 1
fi
cp "$WORK/mmdebstrap.log" "$OUT/mmdebstrap-$VERSION.log"
KVER=$(ls "$ROOT/lib/modules" | sort -V | tail -n1)
echo "kernel $KVER; $(chroot "$ROOT" dpkg-query -W | wc -l) packages"
chroot "$ROOT" dpkg-query -W -f='${Package} ${Version}\n' > "$OUT/manifest-$VERSION.txt"
{ echo "# inputs"; echo "source $(git -C "$SRC" rev-parse HEAD 2>/dev/null || echo unknown)"; echo "SOURCE_DATE_EPOCH $SOURCE_DATE_EPOCH"; echo "mirror $MIRROR"; sha256sum "$DEB" | sed 's|  .*/| |'; } >> "$OUT/manifest-$VERSION.txt"

step "unified kernel image (systemd-stub + kernel + initrd + command line)"
cp "$ROOT/boot/vmlinuz-$KVER" "$WORK/vmlinuz"; cp "$ROOT/boot/initrd.img-$KVER" "$WORK/initrd"
grep -v '^$' "$ROOT/usr/lib/os-release" > "$WORK/os-release"
printf 'root=PARTLABEL=mxedge_%s rootfstype=squashfs ro console=tty0 console=ttyS0,115200 panic=10 systemd.show_status=auto%s' \
  "$VERSION" "${EXTRA_CMDLINE:+ $EXTRA_CMDLINE}" > "$WORK/cmdline"
UKI=$WORK/mxedge_$VERSION.efi
align() { echo $(( ($1 + 4095) / 4096 * 4096 )); }
last=$(objdump -h "$STUB" | awk 'NF==7 && $1 ~ /^[0-9]+$/ {print $3, $4}' | tail -n1)
off=$(align $(( 0x${last% *} + 0x${last#* } )))
args=()
for s in osrel:os-release cmdline:cmdline linux:vmlinuz initrd:initrd; do
  sec=.${s%%:*}; f=$WORK/${s#*:}
  args+=(--add-section "$sec=$f" --change-section-vma "$sec=$(printf 0x%x "$off")")
  off=$(align $(( off + $(stat -c %s "$f") )))
done
objcopy "${args[@]}" "$STUB" "$UKI"
echo "$(basename "$UKI"): $(du -h "$UKI" | cut -f1), command line: $(cat "$WORK/cmdline")"

step "root slot (squashfs, xz)"
ROOTIMG=$WORK/mxedge_$VERSION.root.squashfs
mksquashfs "$ROOT" "$ROOTIMG" -comp xz -noappend -quiet -wildcards -e 'var/*' -e 'boot/*' -e 'tmp/*' -e 'proc/*' -e 'sys/*' -e 'dev/*' -e 'run/*' \
  -all-time "$SOURCE_DATE_EPOCH" -mkfs-time "$SOURCE_DATE_EPOCH" -processors 2 >/dev/null
echo "root: $(du -h "$ROOTIMG" | cut -f1) (slot $SLOT_SIZE)"
[ "$(stat -c %s "$ROOTIMG")" -le "$(numfmt --from=iec "$SLOT_SIZE")" ] || { echo "build.sh: the root image does not fit --slot-size $SLOT_SIZE" >&2; exit 1; }
if [ "$NO_DISK" = 0 ]; then
step "ESP (FAT, systemd-boot, written with mtools: nothing mounted) and /var (mkfs.ext4 -d)"
ESP=$WORK/esp.img
truncate -s 256M "$ESP"
mkfs.vfat -F 32 -n ESP -i 4d584547 "$ESP" >/dev/null
export MTOOLS_SKIP_CHECK=1
mmd -i "$ESP" ::/EFI ::/EFI/BOOT ::/EFI/systemd ::/EFI/Linux ::/loader
mcopy -i "$ESP" "$BOOTEFI" ::/EFI/BOOT/BOOTX64.EFI
mcopy -i "$ESP" "$BOOTEFI" ::/EFI/systemd/systemd-bootx64.efi
printf 'timeout 2\nconsole-mode keep\neditor no\n' > "$WORK/loader.conf"
mcopy -i "$ESP" "$WORK/loader.conf" ::/loader/loader.conf
mcopy -i "$ESP" "$UKI" "::/EFI/Linux/mxedge_$VERSION.efi"

VARIMG=$WORK/var.ext4
E2FSPROGS_FAKE_TIME=$SOURCE_DATE_EPOCH mkfs.ext4 -q -L mxedge-var -U 6d786564-6765-7661-7200-000000000001 \
  -E hash_seed=6d786564-6765-7661-7200-000000000002,root_owner=0:0 -d "$ROOT/var" "$VARIMG" "$VAR_SIZE"

step "disk (systemd-repart: GPT, CopyBlocks=)"
DEFS=$WORK/repart.d; mkdir -p "$DEFS"
printf '[Partition]\nType=esp\nLabel=esp\nCopyBlocks=%s\n' "$ESP" > "$DEFS/00-esp.conf"
printf '[Partition]\nType=root-x86-64\nLabel=mxedge_%s\nCopyBlocks=%s\nSizeMinBytes=%s\nSizeMaxBytes=%s\n' "$VERSION" "$ROOTIMG" "$SLOT_SIZE" "$SLOT_SIZE" > "$DEFS/10-root-a.conf"
printf '[Partition]\nType=root-x86-64\nLabel=_empty\nSizeMinBytes=%s\nSizeMaxBytes=%s\n' "$SLOT_SIZE" "$SLOT_SIZE" > "$DEFS/11-root-b.conf"
printf '[Partition]\nType=var\nLabel=mxedge-var\nCopyBlocks=%s\n' "$VARIMG" > "$DEFS/20-var.conf"
RAW=$OUT/mxedge-$VERSION.raw
rm -f "$RAW"
systemd-repart --empty=create --size=auto --dry-run=no --no-pager --definitions="$DEFS" \
  --seed=6d786564-6765-0000-0000-$(printf '%012x' "$SOURCE_DATE_EPOCH") "$RAW" >/dev/null
sfdisk -l "$RAW" | sed -n '/^Device/,$p'
qemu-img convert -f raw -O qcow2 "$RAW" "$OUT/mxedge-$VERSION.qcow2"

fi

step "update bundle"
B=$WORK/bundle; mkdir -p "$B"
cp "$ROOTIMG" "$UKI" "$B/"
(cd "$B" && sha256sum "mxedge_$VERSION.root.squashfs" "mxedge_$VERSION.efi" > SHA256SUMS)
openssl dgst -sha256 -sign "$OUT/keys/update-signing.key" -out "$B/SHA256SUMS.sig" "$B/SHA256SUMS"
tar -C "$B" --sort=name --mtime="@$SOURCE_DATE_EPOCH" --owner=0 --group=0 --numeric-owner -cf "$OUT/mxedge-update-$VERSION.tar" .

(cd "$OUT" && sha256sum $( [ "$NO_DISK" = 1 ] || echo "mxedge-$VERSION.raw mxedge-$VERSION.qcow2") "mxedge-update-$VERSION.tar" "$(basename "$DEB")" > "SHA256SUMS-$VERSION")
step "done"
ls -lh $( [ "$NO_DISK" = 1 ] || echo "$OUT/mxedge-$VERSION.raw $OUT/mxedge-$VERSION.qcow2") "$OUT/mxedge-update-$VERSION.tar" | awk '{print "  " $5 "  " $9}'
[ "$NO_DISK" = 1 ] || echo "boot it: python3 firmware-image/boot_test.py --image $OUT/mxedge-$VERSION.raw   (firmware-image/README.md)"
