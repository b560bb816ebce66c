package systemd

import (
	"os"
	"os/exec"
	"testing"
)

// show reads a unit through the bus as systemctl prints it: for a running
// service, and for a unit that does not exist. It needs a real systemd
// (the e2e VMs run it there: TestSystemdBusInVM), so it runs only when
// SLIPWAY_SYSTEMD_TEST=1 says that is where it is.
func TestShowAgreesWithSystemctl(t *testing.T) {
	if os.Getenv("SLIPWAY_SYSTEMD_TEST") != "1" {
		t.Skip("needs systemd as PID 1: run by the e2e VMs (SLIPWAY_SYSTEMD_TEST=1)")
	}
	const unit = "slipway-bus-test.service"
	if out, err := exec.Command("systemd-run", "--unit", unit, "--quiet", "sleep", "60").CombinedOutput(); err != nil {
		t.Fatalf("systemd-run: %v\n%s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("systemctl", "stop", unit).Run() })
	for _, name := range []string{unit, "slipway-no-such-unit.service"} {
		viaBus, err := showBus(t.Context(), name)
		if err != nil {
			t.Fatalf("%s: through the bus: %v", name, err)
		}
		viaCtl, err := showSystemctl(t.Context(), name)
		if err != nil {
			t.Fatalf("%s: systemctl: %v", name, err)
		}
		for _, keys := range showKeys {
			for _, k := range keys {
				if viaBus[k] != viaCtl[k] {
					t.Errorf("%s: %s = %q through the bus, %q from systemctl", name, k, viaBus[k], viaCtl[k])
				}
			}
		}
		t.Logf("%s: %v", name, viaBus)
	}
	if p, _ := showBus(t.Context(), unit); !p.running() || p["MainPID"] == "0" || parseTime(p["ActiveEnterTimestamp"]).IsZero() {
		t.Errorf("%s: want it running with a pid and a start time: %v", unit, p)
	}
}
