#!/bin/bash
# Build a Raspberry-Pi-OS-Lite-shaped Debian bookworm root for one CPU
# architecture and import it into Docker as a pik3s lab host image.
#
# Usage: build-rootfs.sh ARCH MIRROR TAG WORKDIR
#   ARCH     Debian architecture: amd64, arm64 or armhf
#   MIRROR   Debian mirror URL (the one apt is configured with on this machine)
#   TAG      Docker image tag to import the root as
#   WORKDIR  scratch directory on a real disk (the root is built there, then removed)
#
# Foreign architectures need qemu-user-static registered in binfmt_misc with
# the F (fix binary) flag; pik3s registers it before calling this script.
set -euo pipefail

arch=$1 mirror=$2 tag=$3 workdir=$4
here=$(cd "$(dirname "$0")" && pwd)
root="$workdir/rootfs-$arch"

# What Raspberry Pi OS Lite ships that a deployer may rely on.
packages=$(grep -v '^#' "$here/packages.txt" | tr '\n' ',' | sed 's/,,*/,/g; s/,$//')

# debootstrap's second stage leaves /proc and /sys mounted in the root (and an
# interrupted build may leave more): unmount everything under it, deepest
# first, before removing it, or the next build of this arch cannot start.
unmount_all() {
    awk -v r="$root" '$2 == r || index($2, r "/") == 1 { print $2 }' /proc/mounts | sort -r |
        while read -r mnt; do umount -l "$mnt"; done
}
cleanup() { unmount_all; rm -rf --one-file-system "$root"; }
trap cleanup EXIT
cleanup
mkdir -p "$root"

native=$(dpkg --print-architecture)
if [ "$arch" = "$native" ]; then
    debootstrap --variant=minbase --include="$packages" bookworm "$root" "$mirror"
else
    debootstrap --arch="$arch" --foreign --variant=minbase --include="$packages" bookworm "$root" "$mirror"
    chroot "$root" /debootstrap/debootstrap --second-stage
fi

# Files that make the root look like Raspberry Pi OS Lite (the lab's init is not
# in the image: `pik3s lab up` mounts src/pik3s/lab/boot and starts it).
cp -a "$here/overlay/." "$root/"
chmod 0440 "$root/etc/sudoers.d/010_pi-nopasswd"
chroot "$root" /bin/sh -eu <<'CHROOT'
# The login user of Raspberry Pi OS, in the groups Pi OS gives it.
useradd --create-home --shell /bin/bash --user-group pi
for g in adm dialout cdrom sudo audio video plugdev games users input netdev; do
    getent group "$g" >/dev/null || groupadd --system "$g"
    usermod -aG "$g" pi
done
passwd --lock pi >/dev/null
# Keys and identity are made per host at first boot, never baked in.
rm -f /etc/ssh/ssh_host_*
: > /etc/machine-id
rm -f /var/lib/dbus/machine-id
# Units that cannot work (or make no sense) in a container.
systemctl mask getty@tty1.service serial-getty@.service console-getty.service \
    systemd-udevd.service systemd-udevd-control.socket systemd-udevd-kernel.socket \
    systemd-remount-fs.service e2scrub_reap.service apt-daily.timer apt-daily-upgrade.timer \
    systemd-timesyncd.service >/dev/null 2>&1
systemctl enable ssh.service dphys-swapfile.service >/dev/null 2>&1
apt-get clean
rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /debootstrap
CHROOT

tar -C "$root" --numeric-owner -c . | docker import \
    -c 'ENV container=docker' \
    -c 'CMD ["/sbin/init"]' \
    -c "LABEL pik3s.lab.image=$arch" \
    - "$tag" >/dev/null
echo "imported $tag"
