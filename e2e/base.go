//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const (
	// defaultCache holds the base rootfs, the ssh key and the VMs' files
	// unless $SLIPWAY_E2E_CACHE names another directory.
	defaultCache = "/var/cache/slipway-e2e"
	// rootfsScript builds the base, relative to the module root.
	rootfsScript = "scripts/e2e-rootfs.sh"
	// buildTimeout bounds the rootfs build (about 3 minutes on CI).
	buildTimeout = 30 * time.Minute
	// hostPackages are the Debian packages the harness runs.
	hostPackages = "debootstrap systemd-container openssh-client iproute2"
)

// host is what all of a process's VMs share.
type host struct {
	cache string // the cache directory
	base  string // the base rootfs, the lower layer of every VM
	key   string // the private ssh key; key+".pub" is in the base
}

var (
	sharedMu sync.Mutex
	shared   *host // set by the first successful setup
)

// Base returns the base root filesystem, building it first if the cache has
// none for the current scripts/e2e-rootfs.sh. Tests must not write to it.
func Base(t testing.TB) string {
	t.Helper()
	return setup(t).base
}

// setup prepares the host once per process; a failure fails every caller.
func setup(t testing.TB) *host {
	t.Helper()
	sharedMu.Lock()
	defer sharedMu.Unlock()
	if shared == nil {
		h, err := prepare(t)
		if err != nil {
			t.Fatalf("e2e: %v", err)
		}
		shared = h
	}
	return shared
}

// prepare checks the host, then, under the cache's build lock, makes the
// ssh key and the base if they are missing, and reclaims the slots of VMs
// that crashed test processes left behind.
func prepare(t testing.TB) (*host, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("must run as root: it mounts overlays and runs systemd-nspawn")
	}
	for _, tool := range []string{"systemd-nspawn", "nsenter", "ip", "ssh", "scp", "ssh-keygen"} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, fmt.Errorf("%s not found; the harness needs the Debian packages %s", tool, hostPackages)
		}
	}
	script, err := findScript()
	if err != nil {
		return nil, err
	}
	h := &host{cache: os.Getenv("SLIPWAY_E2E_CACHE")}
	if h.cache == "" {
		h.cache = defaultCache
	}
	if err := os.MkdirAll(filepath.Join(h.cache, "vms"), 0o755); err != nil {
		return nil, err
	}
	lock, err := lockFile(filepath.Join(h.cache, "build.lock"), true)
	if err != nil {
		return nil, err
	}
	defer func() { _ = lock.Close() }()

	h.key = filepath.Join(h.cache, "id_ed25519")
	if _, err := os.Stat(h.key); errors.Is(err, fs.ErrNotExist) {
		out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "slipway-e2e", "-f", h.key).CombinedOutput()
		if err != nil {
			return nil, fmt.Errorf("ssh-keygen: %v: %s", err, out)
		}
	}
	pub, err := os.ReadFile(h.key + ".pub")
	if err != nil {
		return nil, err
	}

	content, err := os.ReadFile(script)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(content)
	h.base = filepath.Join(h.cache, "bookworm-"+hex.EncodeToString(sum[:])[:12])
	if _, err := os.Stat(h.base); errors.Is(err, fs.ErrNotExist) {
		if err := build(t, script, h.base, h.key+".pub"); err != nil {
			return nil, err
		}
	}
	keys, err := os.ReadFile(filepath.Join(h.base, "root/.ssh/authorized_keys"))
	if err != nil || !bytes.Contains(keys, bytes.TrimSpace(pub)) {
		return nil, fmt.Errorf("%s does not accept the key %s (was it built with another?); remove it to rebuild", h.base, h.key)
	}
	return h, reclaimAll(h.cache)
}

// build runs the rootfs script into dest, its output going to dest.log.
func build(t testing.TB, script, dest, pubkey string) error {
	logPath := dest + ".log"
	logf, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer func() { _ = logf.Close() }()
	t.Logf("e2e: building %s with %s, a few minutes (log: %s)", dest, rootfsScript, logPath)
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", script, dest, pubkey)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("building the rootfs: %v; end of %s:\n%s", err, logPath, tail(logPath, 30))
	}
	t.Logf("e2e: built %s in %.0fs", dest, time.Since(start).Seconds())
	return nil
}

// findScript looks for the rootfs script from the working directory up, as
// tests run in their package's directory inside the module.
func findScript() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		p := filepath.Join(dir, rootfsScript)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("%s not found above the working directory", rootfsScript)
		}
		dir = parent
	}
}

// lockFile takes an exclusive flock on path, waiting for it or not. Closing
// the file (or the process dying) releases it.
func lockFile(path string, wait bool) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	how := syscall.LOCK_EX
	if !wait {
		how |= syscall.LOCK_NB
	}
	if err := syscall.Flock(int(f.Fd()), how); err != nil {
		_ = f.Close()
		return nil, err
	}
	return f, nil
}

// ansi matches terminal colour codes, which systemd's console output has.
var ansi = regexp.MustCompile(`\x1b\[[0-9;]*m`)

// tail returns the last n lines of a log file, without colour codes.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(%v)", err)
	}
	lines := strings.Split(strings.TrimRight(ansi.ReplaceAllString(string(b), ""), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
