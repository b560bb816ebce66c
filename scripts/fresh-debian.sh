#!/usr/bin/env bash
# Runs the README's demo command where a new user would: in a fresh Debian
# bookworm (debootstrap, as the e2e VMs are built) that has nothing but Go,
# copied from this machine. The checkout is cloned in as it is committed.
#
#   scripts/fresh-debian.sh [COMMAND]   (default: ./scripts/demo.sh)
#
# Needs root, debootstrap, systemd-nspawn and the Debian mirror
# ($SLIPWAY_E2E_MIRROR, default deb.debian.org); the rootfs lives in a temp
# dir under /var/tmp and is removed at the end (KEEP=1 keeps it). The
# container shares this machine's network, for apt and the Go proxy. The
# e2e VMs (./scripts/test.sh's last step) cannot boot inside it: nested
# systemd-nspawn needs a real host, where `.ci/run` runs them.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
export PATH="$PATH:/usr/local/go/bin"
cmd=${1:-./scripts/demo.sh}
mirror=${SLIPWAY_E2E_MIRROR:-http://deb.debian.org/debian}
[ "$(id -u)" -eq 0 ] || { echo "fresh-debian: must run as root" >&2; exit 1; }
for tool in debootstrap systemd-nspawn git go; do
	command -v "$tool" >/dev/null || { echo "fresh-debian: needs $tool" >&2; exit 1; }
done

root="$(mktemp -d /var/tmp/slipway-fresh.XXXXXX)"
chmod 0755 "$root" # the container's /: mktemp makes it 0700, which locks out every user but root
cleanup() { [ -n "${KEEP:-}" ] || rm -rf --one-file-system "$root"; }
trap cleanup EXIT

start=$SECONDS
echo "fresh-debian: debootstrap bookworm into $root"
debootstrap --variant=minbase bookworm "$root" "$mirror" >/dev/null
cp -a "$(go env GOROOT)" "$root/usr/local/go"
# A network that inspects TLS has its CA in this machine's local store:
# the fresh one gets it too (ca-certificates adds it when setup installs it).
if compgen -G '/usr/local/share/ca-certificates/*.crt' >/dev/null; then
	mkdir -p "$root/usr/local/share/ca-certificates"
	cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/"
fi
git clone -q "$here" "$root/root/slipway"
echo "fresh-debian: rootfs ready in $((SECONDS - start)) s; running $cmd"

start=$SECONDS
# Every capability: a real machine's root has them all, and the e2e VMs
# need CAP_NET_ADMIN for their veth links.
systemd-nspawn --quiet --register=no --keep-unit --console=pipe --link-journal=no --capability=all \
	--resolv-conf=copy-host -D "$root" --chdir=/root/slipway \
	--setenv=PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/usr/local/go/bin \
	--setenv=HOME=/root /bin/bash -c "$cmd"
echo "fresh-debian: $cmd passed in $((SECONDS - start)) s"
