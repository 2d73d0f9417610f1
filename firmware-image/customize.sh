#!/bin/bash
# customize.sh ROOT VERSION SIGNING_PUBKEY: the appliance's own configuration of the root file system,
# run by build.sh as mmdebstrap's last customize hook (so /proc, /sys and /dev are mounted in ROOT).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=${1:?}; VERSION=${2:?}; PUBKEY=${3:?}

cp -a "$HERE/rootfs/." "$ROOT/"
install -D -m 0644 "$PUBKEY" "$ROOT/usr/share/mxedge/update-signing.pem"
install -D -m 0644 "$HERE/README.md" "$ROOT/usr/share/doc/mxedge/firmware-image.md"
# The boot menu and the login banner name the appliance and its version.
sed -i "s/^PRETTY_NAME=.*/PRETTY_NAME=\"mxedge $VERSION (Debian GNU\/Linux 12)\"/" "$ROOT/usr/lib/os-release"
printf 'IMAGE_ID=mxedge\nIMAGE_VERSION=%s\n' "$VERSION" >> "$ROOT/usr/lib/os-release"
# /etc/mxedge lives on /var (the root is read-only); the machine id is made at each boot (empty file).
rm -rf "$ROOT/etc/mxedge"; ln -s /var/lib/mxedge/etc "$ROOT/etc/mxedge"
: > "$ROOT/etc/machine-id"; rm -f "$ROOT/var/lib/dbus/machine-id"
rm -f "$ROOT"/etc/ssh/ssh_host_*   # never ship host keys: each appliance makes its own
echo mxedge > "$ROOT/etc/hostname"
ln -sf /run/systemd/resolve/stub-resolv.conf "$ROOT/etc/resolv.conf"
mkdir -p "$ROOT/efi"
chroot "$ROOT" install -d -m 0750 -o root -g mxedge /var/lib/mxedge/etc   # names resolve in the image
chroot "$ROOT" systemctl enable systemd-networkd systemd-networkd-wait-online systemd-resolved systemd-timesyncd \
  mxedge-firstboot mxedge-health mxedge-dataplane mxedge-controlplane mxedge-tune ssh serial-getty@ttyS0
chroot "$ROOT" systemctl disable ssh.socket 2>/dev/null || true
chroot "$ROOT" passwd -l root
chroot "$ROOT" update-initramfs -u -k all
