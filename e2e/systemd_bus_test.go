//go:build e2e

package e2e

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestSystemdBusInVM runs the systemd package's own test of reading units
// through systemd's bus (against systemctl) on a VM, where systemd is PID 1.
func TestSystemdBusInVM(t *testing.T) {
	t.Parallel()
	vm := Boot(t, "sdbus")
	bin := filepath.Join(t.TempDir(), "systemd.test")
	cmd := exec.Command("go", "test", "-c", "-o", bin, "../internal/service/systemd")
	cmd.Env = append(cmd.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go test -c: %v\n%s", err, out)
	}
	vm.CopyTo(t, bin, "/usr/local/bin/systemd.test", 0o755)
	out, code := vm.Run(t, "env", "SLIPWAY_SYSTEMD_TEST=1", "/usr/local/bin/systemd.test", "-test.run", "TestShowAgreesWithSystemctl", "-test.v")
	if code != 0 || !strings.Contains(out, "--- PASS: TestShowAgreesWithSystemctl") {
		t.Fatalf("in the VM: exit %d\n%s", code, out)
	}
	t.Log(out)
}
