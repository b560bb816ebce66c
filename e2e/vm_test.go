//go:build e2e

package e2e_test

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/slipway-dev/slipway/e2e"
)

// TestVMs boots two VMs in parallel and checks what tests will rely on:
// systemd as PID 1, ssh, the network's reach, the VMs' separate disks, and
// a reboot that keeps the disk.
func TestVMs(t *testing.T) {
	vms := e2e.BootAll(t, "vm1", "vm2")
	a, b := vms[0], vms[1]

	t.Run("systemd is PID 1", func(t *testing.T) {
		for _, vm := range vms {
			if comm := strings.TrimSpace(vm.MustExec(t, "cat", "/proc/1/comm")); comm != "systemd" {
				t.Errorf("vm %s: PID 1 is %q, want systemd", vm.Name, comm)
			}
			if state := strings.TrimSpace(vm.MustExec(t, "systemctl", "is-system-running")); state != "running" {
				t.Errorf("vm %s: system is %s, want running", vm.Name, state)
			}
		}
	})

	t.Run("ssh", func(t *testing.T) {
		for _, vm := range vms {
			got := strings.Fields(vm.MustSSH(t, "hostname; id -un; systemctl is-active ssh systemd-networkd"))
			want := []string{vm.Name, "root", "active", "active"}
			if strings.Join(got, " ") != strings.Join(want, " ") {
				t.Errorf("vm %s: got %q, want %q", vm.Name, got, want)
			}
			// Root logs in by key only.
			config := vm.MustExec(t, "sshd", "-T")
			for _, want := range []string{"permitrootlogin without-password", "passwordauthentication no", "kbdinteractiveauthentication no"} {
				if !strings.Contains(config, "\n"+want+"\n") {
					t.Errorf("vm %s: sshd -T lacks %q", vm.Name, want)
				}
			}
		}
	})

	t.Run("network", func(t *testing.T) {
		ports := map[*e2e.VM]string{a: serveHost(t, a.HostAddr), b: serveHost(t, b.HostAddr)}
		for _, vm := range vms {
			got := vm.MustExec(t, "curl", "-fsS", "--max-time", "5", "http://"+net.JoinHostPort(vm.HostAddr, ports[vm])+"/")
			if got != "host "+vm.HostAddr {
				t.Errorf("vm %s: its host address answered %q", vm.Name, got)
			}
			if routes := vm.MustExec(t, "ip", "-4", "route", "show", "default"); routes != "" {
				t.Errorf("vm %s has a default route: %s", vm.Name, routes)
			}
		}
		// Each VM has a route to its own /30 link only: not to the other
		// VM, nor to the other VM's host address, nor anywhere else.
		for _, dst := range []string{b.Addr, b.HostAddr, "192.0.2.1", "1.1.1.1"} {
			if out, err := a.Exec(t.Context(), "ip", "route", "get", dst); err == nil {
				t.Errorf("vm %s has a route to %s: %s", a.Name, dst, out)
			}
		}
		if _, err := a.Exec(t.Context(), "curl", "-fsS", "--max-time", "3", "http://"+net.JoinHostPort(b.HostAddr, ports[b])+"/"); exitCode(err) != 7 {
			t.Errorf("vm %s reaching %s: %v, want curl's exit 7 (cannot connect)", a.Name, b.HostAddr, err)
		}
	})

	t.Run("separate disks", func(t *testing.T) {
		a.MustSSH(t, "echo only-a > /root/only-a")
		if out, err := b.SSH(t.Context(), "cat /root/only-a"); err == nil {
			t.Errorf("vm %s sees vm %s's file: %q", b.Name, a.Name, out)
		}
		if _, err := os.Stat(filepath.Join(e2e.Base(t), "root/only-a")); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("the base has vm %s's file (stat: %v)", a.Name, err)
		}
	})

	t.Run("copy", func(t *testing.T) {
		script := filepath.Join(t.TempDir(), "hello")
		if err := os.WriteFile(script, []byte("#!/bin/sh\necho hello from $(hostname)\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		b.CopyTo(t, script, "/usr/local/bin/hello", 0o755)
		if got := b.MustSSH(t, "stat -c %a /usr/local/bin/hello && hello"); got != "755\nhello from vm2\n" {
			t.Errorf("copied script: got %q", got)
		}
		// A replaced file keeps its owner; a binary can be replaced while it
		// runs (as a redeploy does).
		b.MustExec(t, "chown", "nobody:nogroup", "/usr/local/bin/hello")
		b.CopyTo(t, script, "/usr/local/bin/hello", 0o700)
		if got := b.MustExec(t, "stat", "-c", "%a %U:%G", "/usr/local/bin/hello"); got != "700 nobody:nogroup\n" {
			t.Errorf("replaced script: %q, want mode 700, owner nobody:nogroup", got)
		}
		b.CopyTo(t, "/usr/bin/sleep", "/usr/local/bin/e2e-sleep", 0o755)
		b.MustSSH(t, "e2e-sleep 60 >/dev/null 2>&1 &")
		b.CopyTo(t, "/usr/bin/sleep", "/usr/local/bin/e2e-sleep", 0o755)
	})

	t.Run("reboot keeps the disk", func(t *testing.T) {
		a.MustSSH(t, "echo kept > /var/lib/e2e-marker")
		bootID := a.MustExec(t, "cat", "/proc/sys/kernel/random/boot_id")
		machineID := a.MustExec(t, "cat", "/etc/machine-id")
		if other := b.MustExec(t, "cat", "/etc/machine-id"); len(strings.TrimSpace(machineID)) != 32 || machineID == other {
			t.Errorf("machine ids: %s has %q, %s has %q; want two different ones", a.Name, machineID, b.Name, other)
		}
		a.Reboot(t)
		if got := a.MustSSH(t, "cat /var/lib/e2e-marker"); got != "kept\n" {
			t.Errorf("after reboot the marker reads %q", got)
		}
		if a.MustExec(t, "cat", "/proc/sys/kernel/random/boot_id") == bootID {
			t.Error("the boot id did not change: did the VM reboot?")
		}
		if got := a.MustExec(t, "cat", "/etc/machine-id"); got != machineID {
			t.Errorf("the machine id changed across the reboot: %q, then %q", machineID, got)
		}
		if state := strings.TrimSpace(a.MustExec(t, "systemctl", "is-system-running")); state != "running" {
			t.Errorf("after reboot the system is %s", state)
		}
	})
}

// BenchmarkBoot measures how long VMs take to boot (to systemd and ssh
// ready) as s/boot: one VM alone, and two at once.
func BenchmarkBoot(b *testing.B) {
	e2e.Base(b) // build the rootfs, if need be, before timing
	for _, names := range [][]string{{"bench"}, {"bencha", "benchb"}} {
		b.Run(fmt.Sprintf("vms=%d", len(names)), func(b *testing.B) {
			var total time.Duration
			boots := 0
			for b.Loop() {
				for _, vm := range e2e.BootAll(b, names...) {
					total += vm.BootTime
					boots++
					vm.Close()
				}
			}
			b.ReportMetric(total.Seconds()/float64(boots), "s/boot")
		})
	}
}

// serveHost serves "host ADDR" over HTTP on addr, a host address of a VM's
// link, until the test ends, and returns the port.
func serveHost(t *testing.T, addr string) string {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(addr, "0"))
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{
		Handler:           http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, "host "+addr) }),
		ReadHeaderTimeout: 5 * time.Second,
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port
}

// exitCode returns the exit code in err, or -1 if it has none.
func exitCode(err error) int {
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return exit.ExitCode()
	}
	return -1
}
