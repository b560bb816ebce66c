//go:build e2e

// Package e2e boots real Debian machines for slipway's end-to-end tests:
// systemd-nspawn containers with systemd as PID 1, sshd, systemd-networkd
// and the tools slipway deploys with (git, Python with venv, Node.js with
// npm, curl, sqlite3). Every file carries the e2e build tag, so only
//
//	go test -tags e2e ./e2e/
//
// (or another package's tests built with the tag) compiles it. It needs root
// on Linux and these host packages: debootstrap, systemd-container,
// openssh-client, iproute2 (and util-linux, which Debian always has).
//
// # Base image
//
// [Base] returns a Debian bookworm root filesystem built by
// scripts/e2e-rootfs.sh and cached in $SLIPWAY_E2E_CACHE (default
// /var/cache/slipway-e2e) as bookworm-<hash of the script>: editing the
// script builds a new one, and a file lock makes parallel test processes
// build it once. The cache also holds the ed25519 key pair whose public half
// is root's authorized_keys in every VM. The base is never written to.
//
// # VMs
//
// [Boot] (or [BootAll], for several at once) gives each VM an overlayfs over
// the base, so what a VM writes stays in its own upper directory, and boots
// it with systemd-nspawn. Each VM holds a slot N (1-254), taken with a file
// lock so parallel test processes never share one; it sets the VM's
// address, 169.254.N.2/30 on its host0, and the host's, 169.254.N.1/30 on
// the host end of the veth pair (ve-<name>-<N>). There is no route beyond
// that /30 link and no NAT: a VM reaches its host address and nothing else,
// not even other VMs, and the host reaches each VM. Boot waits until
// systemd reports the system running and ssh logs in, logs how long that
// took, and gives up after 90 seconds with the end of the VM's console log.
//
// Commands run in a VM through nsenter ([VM.Exec], [VM.Run]) or through the
// host's ssh client with the harness key ([VM.SSH], [VM.CopyTo], and
// [VM.SSHCommand] for git and the like). [VM.Reboot] stops the VM and boots
// it again on the same upper directory and address. Use it rather than a
// reboot from inside the VM, which makes nspawn exit: the VM stays down.
//
// Teardown is registered with t.Cleanup and runs even when the test fails:
// systemd in the VM is asked to shut down (SIGTERM to nspawn), killed after
// 30 seconds, and the overlay, the VM's files, its cgroups and its slot are
// released. A test process that dies without its cleanups (a go test
// timeout, say) leaves its VMs running; the next process to use the cache
// kills them and reclaims their slots.
//
// # This host's quirks
//
// CI machines boot without systemd as PID 1 and with a hybrid cgroup layout
// (v1 controllers, cgroup2 at /sys/fs/cgroup/unified). nspawn's
// --register=no and --keep-unit keep it from asking a host systemd for
// anything, but with --keep-unit it puts the container in "payload" and
// "supervisor" cgroups below its own, so each nspawn is started in a cgroup
// of its own VM (slipway-e2e/vm<N> in each hierarchy) lest two VMs share one.
// SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1 gives the VMs a pure cgroup2 tree, as a
// current Debian host has, rather than a copy of the host's hybrid one.
package e2e
