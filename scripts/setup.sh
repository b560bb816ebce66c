#!/usr/bin/env bash
# Installs what slipway's demo and tests need on a fresh Debian machine:
# git, make, a C compiler (for go test -race), Python with venv, Node.js
# with npm, and for the e2e VMs debootstrap, systemd-nspawn, the ssh client
# and iproute2; with --tests also Chromium, which the dashboard's tests
# drive headless. Go itself must be installed (on PATH or in /usr/local/go).
set -euo pipefail

need=()
command -v git >/dev/null || need+=(git)
command -v make >/dev/null || need+=(make) # for make bench, lint, fuzz
command -v gcc >/dev/null || need+=(gcc libc6-dev) # the race detector needs cgo
[ -s /etc/ssl/certs/ca-certificates.crt ] || need+=(ca-certificates) # the Go proxy is https
python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3 python3-venv)
command -v node >/dev/null || need+=(nodejs)
command -v npm >/dev/null || need+=(npm)
command -v curl >/dev/null || need+=(curl)
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v systemd-nspawn >/dev/null || need+=(systemd-container)
command -v ssh >/dev/null || need+=(openssh-client)
command -v ip >/dev/null || need+=(iproute2)
command -v nsenter >/dev/null || need+=(util-linux)
command -v systemd-analyze >/dev/null || need+=(systemd)
if [ "${1:-}" = --tests ]; then
	command -v chromium >/dev/null || need+=(chromium)
fi

if [ ${#need[@]} -gt 0 ]; then
	if [ "$(id -u)" -ne 0 ]; then
		echo "setup: need ${need[*]}; run as root or install them" >&2
		exit 1
	fi
	export DEBIAN_FRONTEND=noninteractive
	# An index that cannot be refreshed (a flaky mirror) still installs from
	# the old one; the install below is what must succeed.
	apt-get update -qq || echo "setup: apt-get update failed; trying the package indexes already here" >&2
	apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
export PATH="$PATH:/usr/local/go/bin"
if ! command -v go >/dev/null; then
	if [ -x /usr/local/go/bin/go ]; then
		echo "setup: add /usr/local/go/bin to PATH" >&2
	else
		echo "setup: Go is not installed (https://go.dev/doc/install)" >&2
	fi
	exit 1
fi
echo "setup: git $(git --version | cut -d' ' -f3), $(python3 --version), node $(node --version), $(go version | cut -d' ' -f3)"
