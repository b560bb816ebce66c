//go:build e2e

package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const (
	bootTimeout = 90 * time.Second
	stopTimeout = 30 * time.Second
	// maxSlot is the last slot: slot N uses the link 169.254.N.0/30.
	maxSlot = 254
	// maxNameLen keeps the host's interface name, "ve-" + name + "-" + slot,
	// within the kernel's 15 characters, which nspawn would otherwise shorten.
	maxNameLen = 8
)

// validName is what a VM name may be: a hostname and part of an interface name.
var validName = regexp.MustCompile(`^[a-z][a-z0-9]*$`)

// hostNetwork is the VM's systemd-networkd configuration of host0: one
// address, no DHCP, no IPv6, no gateway. networkd would otherwise probe
// for duplicates of a 169.254/16 address, which holds it back ~5 seconds.
const hostNetwork = `[Match]
Name=host0

[Network]
LinkLocalAddressing=no
IPv6AcceptRA=no

[Address]
Address=%s/30
DuplicateAddressDetection=none
`

// VM is a booted Debian machine. Exec and SSH may be called from several
// goroutines at once, but not while Reboot or Close run.
type VM struct {
	Name     string        // the hostname
	Addr     string        // the VM's address, 169.254.N.2
	HostAddr string        // the host's address on the VM's link, 169.254.N.1
	BootTime time.Duration // last boot, from starting nspawn to systemd and ssh ready
	Console  string        // the file that gets the VM's console output

	t            testing.TB // the test that booted the VM: Close reports to it
	host         *host
	slot         int
	lock         *os.File // the slot's lock, held until Close
	machine      string   // nspawn's machine name, unique on the host: name-slot
	dir          string   // the slot's directory: upper, work, root, console log
	root         string   // the overlay mount the VM boots from
	ct           *container
	consoleShown bool // the console log's tail is already in the test log
	closed       sync.Once
}

// container is one run of systemd-nspawn.
type container struct {
	cmd    *exec.Cmd
	done   chan struct{} // closed when nspawn has exited
	err    error         // nspawn's exit status, once done is closed
	leader int           // the VM's PID 1 (systemd) as the host sees it; 0 until found
}

// Boot boots a VM called name (1-8 lower-case letters and digits) and
// registers its teardown with t.Cleanup. It fails the test if the VM is not
// up within 90 seconds.
func Boot(t testing.TB, name string) *VM {
	t.Helper()
	return BootAll(t, name)[0]
}

// BootAll boots VMs with the given names in parallel, as Boot does.
func BootAll(t testing.TB, names ...string) []*VM {
	t.Helper()
	h := setup(t)
	vms := make([]*VM, len(names))
	errs := make([]error, len(names))
	var wg sync.WaitGroup
	for i, name := range names {
		wg.Go(func() { vms[i], errs[i] = boot(t, h, name) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	return vms
}

// BootFrom boots a VM as Boot does, its upper directory first filled with
// a copy of seed (another VM's upper directory, as a snapshot of it): the
// new VM has the old one's files, with its own name and address. It
// returns an error rather than failing the test, so that it can run
// outside the test's goroutine.
func BootFrom(t testing.TB, name, seed string) (*VM, error) {
	h := setup(t)
	return boot(t, h, name, seed)
}

// SnapshotTo copies the VM's upper directory (what it has written over the
// base) to dir, as BootFrom takes it. The VM keeps running.
func (v *VM) SnapshotTo(dir string) error {
	if out, err := exec.Command("cp", "-a", filepath.Join(v.dir, "upper"), dir).CombinedOutput(); err != nil {
		return fmt.Errorf("vm %s: snapshot: %v: %s", v.Name, err, out)
	}
	return nil
}

// boot takes a slot, makes the VM's overlay (from seed's files, if set)
// and boots it. The VM's Close is registered as soon as it holds anything.
func boot(t testing.TB, h *host, name string, seed ...string) (*VM, error) {
	if len(name) > maxNameLen || !validName.MatchString(name) {
		return nil, fmt.Errorf("vm name %q: want 1-%d lower-case letters and digits, starting with a letter", name, maxNameLen)
	}
	n, lock, err := takeSlot(h.cache)
	if err != nil {
		return nil, fmt.Errorf("vm %s: %w", name, err)
	}
	v := &VM{
		Name:     name,
		Addr:     fmt.Sprintf("169.254.%d.2", n),
		HostAddr: fmt.Sprintf("169.254.%d.1", n),
		t:        t,
		host:     h,
		slot:     n,
		lock:     lock,
		machine:  fmt.Sprintf("%s-%d", name, n),
		dir:      slotDir(h.cache, n),
	}
	v.root = filepath.Join(v.dir, "root")
	v.Console = filepath.Join(v.dir, "console.log")
	t.Cleanup(v.Close)
	if len(seed) == 1 && seed[0] != "" {
		if err := os.MkdirAll(v.dir, 0o755); err != nil {
			return nil, err
		}
		if out, err := exec.Command("cp", "-a", seed[0], filepath.Join(v.dir, "upper")).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("vm %s: seed from %s: %v: %s", name, seed[0], err, out)
		}
	}
	if err := v.create(); err != nil {
		return nil, fmt.Errorf("vm %s: %w", name, err)
	}
	if err := v.start(t); err != nil {
		return nil, err
	}
	t.Logf("vm %s: booted in %.1fs (address %s, host %s)", name, v.BootTime.Seconds(), v.Addr, v.HostAddr)
	return v, nil
}

// create mounts the VM's overlay on the base and writes the VM's hostname
// and network configuration into its upper layer.
func (v *VM) create() error {
	upper, work := filepath.Join(v.dir, "upper"), filepath.Join(v.dir, "work")
	for _, d := range []string{upper, work, v.root} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", v.host.base, upper, work)
	if err := syscall.Mount("overlay", v.root, "overlay", 0, opts); err != nil {
		return fmt.Errorf("mount overlay on %s: %w", v.root, err)
	}
	files := []struct{ path, content string }{
		{"etc/hostname", v.Name + "\n"},
		{"etc/hosts", fmt.Sprintf("127.0.0.1\tlocalhost\n127.0.1.1\t%s\n::1\t\tlocalhost ip6-localhost ip6-loopback\n", v.Name)},
		{"etc/systemd/network/10-e2e-host0.network", fmt.Sprintf(hostNetwork, v.Addr)},
	}
	for _, f := range files {
		p := filepath.Join(v.root, f.path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, []byte(f.content), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// start boots the VM from its overlay and waits, at most bootTimeout, until
// systemd has finished booting and ssh logs in. It logs to t.
func (v *VM) start(t testing.TB) error {
	ctx, cancel := context.WithTimeout(context.Background(), bootTimeout)
	defer cancel()
	began := time.Now()
	ct, err := v.spawn()
	if err != nil {
		return fmt.Errorf("vm %s: %w", v.Name, err)
	}
	v.ct = ct
	if err := v.await(ctx, t); err != nil {
		v.consoleShown = true
		return fmt.Errorf("vm %s: %w; end of its console log %s:\n%s", v.Name, err, v.Console, tail(v.Console, 25))
	}
	v.BootTime = time.Since(began)
	return nil
}

// intoCgroups is a shell script that moves itself into the cgroups listed
// in its arguments up to "--", then execs the rest of its arguments.
const intoCgroups = `while [ "$1" != -- ]; do echo $$ >"$1/cgroup.procs" || exit 1; shift; done; shift; exec "$@"`

// spawn starts systemd-nspawn in the slot's own cgroups, its console output
// appended to v.Console.
func (v *VM) spawn() (*container, error) {
	cgroups := cgroupDirs(v.slot)
	for _, d := range cgroups {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	logf, err := os.OpenFile(v.Console, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer func() { _ = logf.Close() }()
	fmt.Fprintf(logf, "--- e2e: booting %s at %s\n", v.machine, time.Now().Format(time.RFC3339))

	args := append([]string{"-c", intoCgroups, "sh"}, cgroups...)
	args = append(args, "--", "systemd-nspawn", "--boot", "--directory="+v.root, "--machine="+v.machine,
		"--network-veth", "--register=no", "--keep-unit", "--quiet",
		"--console=read-only", "--resolv-conf=off", "--link-journal=no")
	cmd := exec.Command("sh", args...)
	cmd.Env = append(os.Environ(), "SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start systemd-nspawn: %w", err)
	}
	ct := &container{cmd: cmd, done: make(chan struct{})}
	go func() {
		ct.err = cmd.Wait()
		close(ct.done)
	}()
	return ct, nil
}

// await follows a boot: it addresses the host end of the veth once nspawn
// has made it, finds the VM's PID 1, waits for systemd to finish booting
// (logging the failed units of a degraded system), then for ssh.
func (v *VM) await(ctx context.Context, t testing.TB) error {
	ifname := "ve-" + v.machine
	if err := v.poll(ctx, "the veth "+ifname, func() bool {
		_, err := net.InterfaceByName(ifname)
		return err == nil
	}); err != nil {
		return err
	}
	if err := linkUp(ctx, ifname, v.HostAddr); err != nil {
		return err
	}
	if err := v.poll(ctx, "systemd to start", func() bool {
		v.ct.leader = leaderOf(v.ct.cmd.Process.Pid)
		return v.ct.leader != 0
	}); err != nil {
		return err
	}
	var state string
	if err := v.poll(ctx, "systemd to finish booting", func() bool {
		out, _ := v.Exec(ctx, "systemctl", "is-system-running", "--wait")
		state = strings.TrimSpace(out)
		return state == "running" || state == "degraded"
	}); err != nil {
		return fmt.Errorf("%w (systemctl is-system-running said %q)", err, state)
	}
	if state == "degraded" {
		failed, _ := v.Exec(ctx, "systemctl", "--failed", "--no-pager")
		t.Logf("vm %s: system is degraded; %s should fix or mask these units:\n%s", v.Name, rootfsScript, failed)
	}
	return v.poll(ctx, "ssh", func() bool {
		_, err := v.SSH(ctx, "true")
		return err == nil
	})
}

// poll calls ready every 50ms until it returns true, and fails if ctx ends
// or nspawn exits first.
func (v *VM) poll(ctx context.Context, what string, ready func() bool) error {
	for !ready() {
		select {
		case <-ctx.Done():
			return fmt.Errorf("not up within %s: gave up waiting for %s", bootTimeout, what)
		case <-v.ct.done:
			return fmt.Errorf("systemd-nspawn exited (%v) while waiting for %s", v.ct.err, what)
		case <-time.After(50 * time.Millisecond):
		}
	}
	return nil
}

// linkUp gives the host end of a VM's veth its address and brings it up,
// with IPv6 off so that the link carries nothing but the VM's traffic with
// the host's address.
func linkUp(ctx context.Context, ifname, addr string) error {
	err := os.WriteFile("/proc/sys/net/ipv6/conf/"+ifname+"/disable_ipv6", []byte("1"), 0o644)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	for _, args := range [][]string{{"addr", "add", addr + "/30", "dev", ifname}, {"link", "set", ifname, "up"}} {
		if out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput(); err != nil {
			return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	return nil
}

// leaderOf returns the child of nspawn that runs systemd, which is the VM's
// PID 1, or 0 while there is none.
func leaderOf(nspawn int) int {
	for _, pid := range childrenOf(nspawn) {
		comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		if strings.TrimSpace(string(comm)) == "systemd" {
			return pid
		}
	}
	return 0
}

// childrenOf lists the children of process pid.
func childrenOf(pid int) []int {
	var kids []int
	lists, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	for _, list := range lists {
		b, _ := os.ReadFile(list)
		for _, field := range strings.Fields(string(b)) {
			if kid, err := strconv.Atoi(field); err == nil {
				kids = append(kids, kid)
			}
		}
	}
	return kids
}

// Reboot shuts the VM down and boots it again on the same upper directory
// and address, waiting as Boot does. It fails the test on error.
func (v *VM) Reboot(t testing.TB) {
	t.Helper()
	if err := v.stop(); err != nil {
		t.Fatalf("vm %s: reboot: %v", v.Name, err)
	}
	if err := v.start(t); err != nil {
		t.Fatal(err)
	}
	t.Logf("vm %s: rebooted in %.1fs", v.Name, v.BootTime.Seconds())
}

// stop shuts the VM down, if it runs, and removes its cgroups. SIGTERM
// makes nspawn ask systemd in the VM to halt; a VM that has not stopped
// after stopTimeout is killed.
func (v *VM) stop() error {
	var err error
	if ct := v.ct; ct != nil {
		v.ct = nil
		_ = ct.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-ct.done:
		case <-time.After(stopTimeout):
			err = killCgroup(v.slot)
			<-ct.done
			err = errors.Join(fmt.Errorf("did not shut down within %s; killed it", stopTimeout), err)
		}
	}
	return errors.Join(err, removeCgroups(v.slot))
}

// Close shuts the VM down and removes it: its overlay, files, cgroups and
// slot. Boot registers it with t.Cleanup, so it runs even when the test
// fails; a test may call it earlier. Only the first call does anything.
func (v *VM) Close() {
	v.closed.Do(func() {
		if v.t.Failed() && !v.consoleShown {
			// Short, so that the test's own failure above it stays in
			// view in a CI summary.
			v.t.Logf("vm %s: end of its console log:\n%s", v.Name, tail(v.Console, 8))
		}
		errs := []error{v.stop()}
		if err := unmount(v.root); err != nil {
			errs = append(errs, err) // keep the files: the mount may still use them
		} else {
			errs = append(errs, os.RemoveAll(v.dir))
		}
		errs = append(errs, v.lock.Close())
		if err := errors.Join(errs...); err != nil {
			v.t.Errorf("vm %s: teardown: %v", v.Name, err)
		}
	})
}

func slotDir(cache string, n int) string  { return filepath.Join(cache, "vms", strconv.Itoa(n)) }
func slotLock(cache string, n int) string { return slotDir(cache, n) + ".lock" }

// takeSlot locks the lowest free slot, first reclaiming what a crashed test
// process may have left in it.
func takeSlot(cache string) (int, *os.File, error) {
	for n := 1; n <= maxSlot; n++ {
		f, err := lockFile(slotLock(cache, n), false)
		if errors.Is(err, syscall.EWOULDBLOCK) {
			continue
		}
		if err != nil {
			return 0, nil, err
		}
		if err := reclaim(cache, n); err != nil {
			_ = f.Close()
			return 0, nil, err
		}
		return n, f, nil
	}
	return 0, nil, fmt.Errorf("all %d VM slots in %s are taken", maxSlot, cache)
}

// reclaimAll reclaims every slot that no process holds.
func reclaimAll(cache string) error {
	locks, err := filepath.Glob(filepath.Join(cache, "vms", "*.lock"))
	if err != nil {
		return err
	}
	for _, l := range locks {
		n, err := strconv.Atoi(strings.TrimSuffix(filepath.Base(l), ".lock"))
		if err != nil {
			continue
		}
		f, err := lockFile(l, false)
		if errors.Is(err, syscall.EWOULDBLOCK) {
			continue
		}
		if err != nil {
			return err
		}
		err = reclaim(cache, n)
		_ = f.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

// reclaim removes what a VM in slot n left when its test process died
// without Close: it kills the VM and its nspawn if they still run, then
// removes their cgroups, the overlay and the VM's files. The caller holds
// the slot.
func reclaim(cache string, n int) error {
	if err := killCgroup(n); err != nil {
		return err
	}
	if err := removeCgroups(n); err != nil {
		return err
	}
	dir := slotDir(cache, n)
	if err := unmount(filepath.Join(dir, "root")); err != nil {
		return err
	}
	return os.RemoveAll(dir)
}

// unmount unmounts the overlay on dir, if there is one. A mount still busy
// after two seconds is detached lazily.
func unmount(dir string) error {
	for i := 0; ; i++ {
		err := syscall.Unmount(dir, 0)
		switch {
		case err == nil, errors.Is(err, syscall.EINVAL), errors.Is(err, fs.ErrNotExist):
			return nil // unmounted, or nothing was mounted
		case errors.Is(err, syscall.EBUSY) && i < 20:
			time.Sleep(100 * time.Millisecond)
		case errors.Is(err, syscall.EBUSY):
			return syscall.Unmount(dir, syscall.MNT_DETACH)
		default:
			return fmt.Errorf("unmount %s: %w", dir, err)
		}
	}
}

// cgroupDirs returns slot n's cgroup in each hierarchy nspawn uses: the
// unified one first and, on a hybrid host, the named systemd one.
func cgroupDirs(n int) []string {
	var roots []string
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		roots = []string{"/sys/fs/cgroup"}
	} else {
		for _, r := range []string{"/sys/fs/cgroup/unified", "/sys/fs/cgroup/systemd"} {
			if _, err := os.Stat(filepath.Join(r, "cgroup.procs")); err == nil {
				roots = append(roots, r)
			}
		}
	}
	dirs := make([]string, len(roots))
	for i, r := range roots {
		dirs[i] = filepath.Join(r, "slipway-e2e", fmt.Sprintf("vm%d", n))
	}
	return dirs
}

// killCgroup kills every process in slot n's cgroups, nspawn and the VM
// alike (killing nspawn alone would leave the VM running).
func killCgroup(n int) error {
	dirs := cgroupDirs(n)
	if len(dirs) == 0 {
		return nil
	}
	err := os.WriteFile(filepath.Join(dirs[0], "cgroup.kill"), []byte("1"), 0o644)
	if errors.Is(err, fs.ErrNotExist) {
		return nil // no such cgroup: nothing runs there
	}
	return err
}

// removeCgroups removes slot n's cgroups, deepest first: nspawn leaves its
// payload and supervisor groups, and the VM's systemd its own, behind.
func removeCgroups(n int) error {
	var errs []error
	for _, top := range cgroupDirs(n) {
		var dirs []string
		err := filepath.WalkDir(top, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return err
		})
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			errs = append(errs, err)
		}
		for i := len(dirs) - 1; i >= 0; i-- {
			if err := rmdirCgroup(dirs[i]); err != nil {
				errs = append(errs, fmt.Errorf("remove cgroup %s: %w", dirs[i], err))
			}
		}
	}
	return errors.Join(errs...)
}

// rmdirCgroup removes a cgroup, waiting up to five seconds for it to empty:
// a killed VM's processes take a moment to go.
func rmdirCgroup(dir string) error {
	for i := 0; ; i++ {
		err := syscall.Rmdir(dir)
		if !errors.Is(err, syscall.EBUSY) || i == 50 {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Relay makes to's sshd reachable from the VM from, and from nothing
// else: the host listens on its own address on from's link and relays
// each connection to to's port 22, as a bastion's network would route it.
// It returns the port, and the remote addresses of the connections so
// far. The test's cleanup stops it.
func Relay(t testing.TB, from, to *VM) (int, func() []string) {
	t.Helper()
	ln, err := net.Listen("tcp", from.HostAddr+":0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var seen []string
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			seen = append(seen, c.RemoteAddr().(*net.TCPAddr).IP.String())
			mu.Unlock()
			go func() {
				defer func() { _ = c.Close() }()
				up, err := net.DialTimeout("tcp", to.Addr+":22", 5*time.Second)
				if err != nil {
					return
				}
				defer func() { _ = up.Close() }()
				done := make(chan struct{}, 2)
				go func() { _, _ = io.Copy(up, c); done <- struct{}{} }()
				go func() { _, _ = io.Copy(c, up); done <- struct{}{} }()
				<-done
			}()
		}
	}()
	t.Cleanup(func() { _ = ln.Close() })
	return ln.Addr().(*net.TCPAddr).Port, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(seen)
	}
}
