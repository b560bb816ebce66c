//go:build e2e

package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Exec runs argv in the VM as root, in all its namespaces (through nsenter,
// so it needs neither ssh nor the network), with a clean environment (PATH,
// HOME, LANG), and returns its combined output. A command that fails
// returns an error that wraps *exec.ExitError, for its exit code, and
// quotes the output. A command that leaves a process holding its output
// open (a daemon started without redirecting its output) is cut off a
// second after it exits.
func (v *VM) Exec(ctx context.Context, argv ...string) (string, error) {
	ct := v.ct
	if ct == nil || ct.leader == 0 {
		return "", fmt.Errorf("vm %s is not running", v.Name)
	}
	select {
	case <-ct.done:
		return "", fmt.Errorf("vm %s has stopped: systemd-nspawn exited (%v)", v.Name, ct.err)
	default:
	}
	args := append([]string{"--target", strconv.Itoa(ct.leader), "--all", "--",
		"/usr/bin/env", "-i", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"HOME=/root", "LANG=C.UTF-8"}, argv...)
	cmd := exec.CommandContext(ctx, "nsenter", args...)
	// On cancellation, kill the command rather than nsenter: nsenter then
	// reaps it and exits. Killing nsenter would orphan the command to the
	// host's init, where the VM's systemd cannot reap it and would wait
	// for it when shutting down.
	cmd.Cancel = func() error {
		for _, pid := range childrenOf(cmd.Process.Pid) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		return nil
	}
	return v.run(cmd, fmt.Sprintf("%q", argv))
}

// MustExec is Exec bound to the test's context; it fails the test on error.
func (v *VM) MustExec(t testing.TB, argv ...string) string {
	t.Helper()
	out, err := v.Exec(t.Context(), argv...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// Run runs argv in the VM as Exec does and returns its combined output and
// exit code, failing the test only if the command could not be run.
func (v *VM) Run(t testing.TB, argv ...string) (string, int) {
	t.Helper()
	out, err := v.Exec(t.Context(), argv...)
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return out, exit.ExitCode()
	}
	if err != nil {
		t.Fatal(err)
	}
	return out, 0
}

// SSH runs a shell command in the VM through the host's ssh client, logged
// in as root with the harness key, and returns its combined output. Errors
// are as Exec's; ssh itself exits 255 when it cannot connect.
func (v *VM) SSH(ctx context.Context, command string) (string, error) {
	args := append(v.sshOptions(), "root@"+v.Addr, command)
	return v.run(exec.CommandContext(ctx, "ssh", args...), "ssh: "+command)
}

// MustSSH is SSH bound to the test's context; it fails the test on error.
func (v *VM) MustSSH(t testing.TB, command string) string {
	t.Helper()
	out, err := v.SSH(t.Context(), command)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// CopyTo copies a host file to remotePath in the VM with scp and gives it
// mode's permission bits. The file lands beside remotePath and is renamed
// over it, keeping the owner of a file it replaces: replacing a running
// binary works, where scp's writing in place fails ("Text file busy"). It
// fails the test on error.
func (v *VM) CopyTo(t testing.TB, localPath, remotePath string, mode os.FileMode) {
	t.Helper()
	tmp := remotePath + ".e2e-copy"
	args := append(v.sshOptions(), "-q", localPath, "root@"+v.Addr+":"+tmp)
	if _, err := v.run(exec.CommandContext(t.Context(), "scp", args...), "scp to "+tmp); err != nil {
		t.Fatal(err)
	}
	const install = `chmod "$1" "$2" && { [ ! -e "$3" ] || chown --reference="$3" "$2"; } && mv -f "$2" "$3"`
	v.MustExec(t, "sh", "-c", install, "sh", strconv.FormatUint(uint64(mode.Perm()), 8), tmp, remotePath)
}

// SSHCommand is the ssh command line, without destination, that reaches the
// VM as root@Addr, for GIT_SSH_COMMAND and the like.
func (v *VM) SSHCommand() string {
	words := []string{"ssh"}
	for _, o := range v.sshOptions() {
		words = append(words, shellQuote(o))
	}
	return strings.Join(words, " ")
}

// shellQuote quotes s for sh when it has more than letters, digits and -_=./.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_=./") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// sshOptions are the ssh and scp options for the VMs: the harness key only,
// no host's ssh configuration or agent, no prompts, and no host key checks
// (every VM has the base's host keys and addresses are reused).
func (v *VM) sshOptions() []string {
	return []string{"-F", "/dev/null", "-i", v.host.key,
		"-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none", "-o", "BatchMode=yes",
		"-o", "ConnectTimeout=5", "-o", "StrictHostKeyChecking=no",
		"-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR"}
}

// run runs cmd and returns its combined output; on failure, an error that
// names the VM and what ran (what), and quotes the output.
func (v *VM) run(cmd *exec.Cmd, what string) (string, error) {
	cmd.WaitDelay = time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("vm %s: %s: %w\n%s", v.Name, what, err, out)
	}
	return string(out), nil
}
