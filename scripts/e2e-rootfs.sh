#!/usr/bin/env bash
# Builds the Debian bookworm root filesystem that the e2e harness (e2e/)
# boots with systemd-nspawn: systemd as PID 1, systemd-networkd, sshd with
# key-only root login, and the tools slipway deploys with (git, Python with
# venv, Node.js with npm, curl, sqlite3).
#
#   scripts/e2e-rootfs.sh DEST [PUBKEY_FILE]
#
# The public key for root's authorized_keys comes from PUBKEY_FILE or, without
# it, from the key text in $SLIPWAY_E2E_PUBKEY. The tree is built in DEST.tmp
# and renamed to DEST only once complete, so an interrupted build never looks
# finished. A DEST that already exists is left alone. Needs root, debootstrap
# and the Debian mirror ($SLIPWAY_E2E_MIRROR, default deb.debian.org).
#
# The e2e harness names its cached copy after a hash of this file: any edit
# here makes the next e2e run build a fresh rootfs.
set -euo pipefail

usage="usage: $0 DEST [PUBKEY_FILE]"
dest=${1:?$usage}
dest=$(realpath -m "$dest")
if [ $# -ge 2 ]; then
	pubkey=$(cat "$2")
else
	pubkey=${SLIPWAY_E2E_PUBKEY:?$usage (or set SLIPWAY_E2E_PUBKEY to the key text)}
fi
mirror=${SLIPWAY_E2E_MIRROR:-http://deb.debian.org/debian}
suite=bookworm
# debootstrap's resolver installs these; it cannot resolve npm's web of
# virtual node-* packages, so the rest comes from apt-get in a second step.
base_pkgs=systemd,systemd-sysv,dbus,libpam-systemd,openssh-server,iproute2,ca-certificates,procps
extra_pkgs=(git python3-venv nodejs npm curl sqlite3)

if [ -e "$dest" ]; then
	echo "e2e-rootfs: $dest exists; nothing to do"
	exit 0
fi
[ "$(id -u)" -eq 0 ] || { echo "e2e-rootfs: must run as root" >&2; exit 1; }
command -v debootstrap >/dev/null || { echo "e2e-rootfs: needs debootstrap" >&2; exit 1; }

tmp=$dest.tmp
start=$SECONDS

# unmount_all lists mounts under $tmp (deepest first) and detaches them; an
# interrupted debootstrap or apt step can leave /proc or /sys mounted there,
# and rm -rf must never walk into those.
unmount_all() {
	awk -v root="$tmp" '$2 == root || index($2, root "/") == 1 { print $2 }' /proc/self/mounts |
		sort -r | while read -r m; do umount -l "$m"; done
}
trap unmount_all EXIT

unmount_all
rm -rf --one-file-system "$tmp"
mkdir -p "$(dirname "$tmp")"

echo "e2e-rootfs: debootstrap $suite into $tmp"
debootstrap --variant=minbase --include="$base_pkgs" "$suite" "$tmp" "$mirror"

# No documentation or translations: a smaller tree and quicker installs, in
# this build and in the VMs.
cat >"$tmp/etc/dpkg/dpkg.cfg.d/e2e-nodoc" <<'EOF'
path-exclude=/usr/share/doc/*
path-include=/usr/share/doc/*/copyright
path-exclude=/usr/share/man/*
path-exclude=/usr/share/info/*
path-exclude=/usr/share/locale/*
EOF
find "$tmp/usr/share/doc" ! -type d ! -name copyright -delete
rm -rf "$tmp"/usr/share/man/* "$tmp"/usr/share/info/* "$tmp"/usr/share/locale/*

# in_root runs a command in the new tree with /proc mounted and no service
# starts (policy-rc.d), as package scripts expect.
in_root() {
	chroot "$tmp" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8 "$@"
}
mount -t proc proc "$tmp/proc"
printf '#!/bin/sh\nexit 101\n' >"$tmp/usr/sbin/policy-rc.d"
chmod 755 "$tmp/usr/sbin/policy-rc.d"

echo "e2e-rootfs: apt-get install ${extra_pkgs[*]}"
in_root apt-get update -qq
in_root apt-get install -y -qq --no-install-recommends "${extra_pkgs[@]}" >/dev/null

# Network: networkd on; the harness adds a .network file for host0 per VM.
# No DNS: a VM talks only to its host's veth address.
in_root systemctl enable -q systemd-networkd.service
rm -f "$tmp/etc/resolv.conf"
echo '# e2e VMs have no DNS' >"$tmp/etc/resolv.conf"

# sshd: root by key only (the harness's key), no DNS look-ups. The host keys
# made at install are shared by every VM; the harness does not check them.
cat >"$tmp/etc/ssh/sshd_config.d/e2e.conf" <<'EOF'
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UseDNS no
EOF
install -d -m 700 "$tmp/root/.ssh"
printf '%s\n' "$pubkey" >"$tmp/root/.ssh/authorized_keys"
chmod 600 "$tmp/root/.ssh/authorized_keys"

# Identity: the harness sets each VM's hostname. An empty machine-id makes
# systemd make one at each VM's first boot (and keep it across reboots).
echo slipway-e2e >"$tmp/etc/hostname"
printf '127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' >"$tmp/etc/hosts"
: >"$tmp/etc/machine-id"
rm -f "$tmp/var/lib/dbus/machine-id"
echo LANG=C.UTF-8 >"$tmp/etc/default/locale"

# Units that only slow a container's boot or reach for the network: console
# logins (the console is a log file), the first-boot wizard, and the timers
# that update apt or trim disks. Masked, so boot reaches multi-user.target
# with nothing failed.
in_root systemctl mask -q \
	console-getty.service getty.target systemd-firstboot.service \
	apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer \
	e2scrub_all.timer fstrim.timer

umount "$tmp/proc"
rm -f "$tmp/usr/sbin/policy-rc.d"
in_root apt-get clean
rm -rf "$tmp"/var/lib/apt/lists/* "$tmp"/var/log/*.log "$tmp"/var/log/apt/*

mv "$tmp" "$dest"
echo "e2e-rootfs: $dest built in $((SECONDS - start))s ($(du -sh "$dest" | cut -f1))"
