//go:build e2e

package e2e

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/slipway-dev/slipway/internal/fleet"
)

// TestFleetFigures rolls a commit out over as many VMs as this machine
// holds ($SLIPWAY_FLEET_VMS, default 50) and reports the fleet's figures:
// the rollout's wall time against the ideal (the slowest host of each
// batch, summed), the fleet's own overhead per batch and per rollout, one
// remote command over the master connection, `fleet status` over every VM,
// and how many hosts start after a halt's threshold trips. It is a
// measurement, run by `make bench` (SLIPWAY_FLEET_BENCH=1), not by the
// tests.
func TestFleetFigures(t *testing.T) {
	if os.Getenv("SLIPWAY_FLEET_BENCH") == "" {
		t.Skip("a measurement: make bench runs it (SLIPWAY_FLEET_BENCH=1)")
	}
	n := 50
	if v, err := strconv.Atoi(os.Getenv("SLIPWAY_FLEET_VMS")); err == nil && v > 0 {
		n = v
	}
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("b%d", i+1)
	}
	// Each VM's systemd takes inotify instances: more VMs than the
	// kernel's default of 128 instances per user allows. Raised for the
	// measurement, put back after.
	const limit = "/proc/sys/fs/inotify/max_user_instances"
	if was, err := os.ReadFile(limit); err == nil {
		if err := os.WriteFile(limit, []byte(strconv.Itoa(max(8192, 40*n))), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = os.WriteFile(limit, was, 0o644) })
	}
	start := time.Now()
	vms := BootAll(t, names...)
	t.Logf("figure: %d VMs booted in %.1fs", n, time.Since(start).Seconds())
	o := newOperator(t, vms)
	o.commit("first", nil)
	start = time.Now()
	o.mustSlipway("fleet", "env", "push", "-i", o.inv, "--from", filepath.Join(o.dir, "secrets"))
	o.mustSlipway("fleet", "install", "-i", o.inv)
	t.Logf("figure: fleet env push + install over %d VMs: %.1fs", n, time.Since(start).Seconds())

	// Two rollouts: the first with no master connection up (each host's
	// ssh login is part of it), the second on the connections the first
	// left (fleet.ssh_persist), as when a command follows another.
	for round, conns := range []string{"cold", "warm"} {
		if conns == "cold" {
			o.disconnect()
		}
		o.commit(fmt.Sprintf("round %d", round), map[string]string{"index.html": fmt.Sprintf("v%d\n", round)})
		start = time.Now()
		res, code, out := o.rollout("--batches", "1,25%,100%")
		wall := time.Since(start)
		if code != 0 {
			t.Fatalf("rollout: exit %d\n%s", code, out)
		}
		// The ideal: each batch as long as its slowest host's own work
		// (the push of the commit, and its deploy).
		work := map[string]time.Duration{}
		for _, h := range res.Hosts {
			work[h.Host] = h.Push + h.Deploy
		}
		var ideal time.Duration
		var perBatch []string
		next := 0
		for bi, size := range []int{1, n / 4, n - 1 - n/4} {
			var slowest time.Duration
			for _, vm := range vms[next : next+size] {
				slowest = max(slowest, work[vm.Name])
			}
			next += size
			ideal += slowest
			perBatch = append(perBatch, fmt.Sprintf("batch %d: %.2fs", bi+1, (res.batchWall(bi)-slowest).Seconds()))
		}
		t.Logf("figure: rollout %d (%s connections) over %d VMs in batches 1,25%%,100%%: %.2fs wall, %.2fs ideal (each batch's slowest push + deploy, summed): overhead %.2fs per rollout; per batch (its wall to the next batch, less its slowest host) %s",
			round+1, conns, n, wall.Seconds(), ideal.Seconds(), (wall - ideal).Seconds(), strings.Join(perBatch, ", "))
		t.Logf("figure: rollout %d, where the time went: %s", round+1, res.phases())
	}

	// One remote command over the master connection.
	inv, err := fleet.LoadInventory(o.inv)
	if err != nil {
		t.Fatal(err)
	}
	ssh, err := fleet.NewSSH(filepath.Join(o.home, "bench-ssh"), 10, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	defer ssh.Disconnect(inv.Hosts)
	ctx := context.Background()
	// What a cold rollout or status pays before slipway does anything: the
	// ssh login into every VM (sshd's work, on these same 2 cores), at
	// fleet.connections' 10 at a time.
	start = time.Now()
	var wg sync.WaitGroup
	for _, h := range inv.Hosts {
		wg.Go(func() {
			if _, err := ssh.Run(ctx, h, nil, nil, "true"); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	t.Logf("figure: ssh login into %d VMs, 10 at a time, running only `true`: %.2fs", n, time.Since(start).Seconds())
	if _, err := ssh.Run(ctx, inv.Hosts[0], nil, nil, "true"); err != nil {
		t.Fatal(err)
	}
	var lat []time.Duration
	for range 20 {
		t0 := time.Now()
		if _, err := ssh.Run(ctx, inv.Hosts[0], nil, nil, "true"); err != nil {
			t.Fatal(err)
		}
		lat = append(lat, time.Since(t0))
	}
	slices.Sort(lat)
	t.Logf("figure: one remote command over the master connection: median %.1f ms, max %.1f ms (20 runs)",
		float64(lat[len(lat)/2].Microseconds())/1000, float64(lat[len(lat)-1].Microseconds())/1000)

	for _, conns := range []string{"warm", "cold"} {
		if conns == "cold" {
			o.disconnect()
		}
		start = time.Now()
		st := o.status()
		t.Logf("figure: fleet status over %d VMs (%s connections): %.2fs (%d answered)", n, conns, time.Since(start).Seconds(), len(st))
	}

	// Halt: the canary fails; no other host starts.
	vms[0].MustExec(t, "touch", "/etc/e2e-breaks-build")
	o.commit("breaks on the canary", map[string]string{"slipway.yml": breakingApp})
	o.mustSlipway("fleet", "install", "-i", o.inv)
	res, code, _ := o.rollout("--batches", "1,25%,100%", "--on-fail", "halt")
	started := 0
	for _, h := range res.Hosts[1:] {
		if h.State != "not-started" {
			started++
		}
	}
	t.Logf("figure: halt: the canary %s, exit %d; %d of %d other hosts started after the threshold tripped", res.state(vms[0].Name), code, started, n-1)
	if started != 0 {
		t.Errorf("%d hosts started after the halt", started)
	}
}

// phases says where a rollout's wall time went, from its events: before
// the first batch, each batch, between batches and after the last, and
// the mean of each host's phases (up to its host's first deploy step, the
// host's deploy, the checks from outside).
func (r rolloutResult) phases() string {
	final := func(st string) bool {
		return st == fleet.HostDone || st == fleet.HostUnchanged || st == fleet.HostFailed || st == fleet.HostUnhealthy
	}
	var parts []string
	var batchAt []time.Time
	var lastEnd time.Time
	began, firstStep, checking := map[string]time.Time{}, map[string]time.Time{}, map[string]time.Time{}
	var pre, remote, check []time.Duration
	for _, ev := range r.events {
		switch {
		case ev.State == "batch":
			if len(batchAt) == 0 {
				parts = append(parts, fmt.Sprintf("before batch 1 %.2fs", ev.Time.Sub(r.started).Seconds()))
			} else {
				parts = append(parts, fmt.Sprintf("batch %d %.2fs, then %.2fs", len(batchAt), lastEnd.Sub(batchAt[len(batchAt)-1]).Seconds(), ev.Time.Sub(lastEnd).Seconds()))
			}
			batchAt = append(batchAt, ev.Time)
		case ev.Host != "" && ev.State == fleet.HostDeploying && ev.Step == "" && ev.Detail == "":
			began[ev.Host] = ev.Time
		case ev.Host != "" && ev.Step != "":
			if _, ok := firstStep[ev.Host]; !ok {
				firstStep[ev.Host] = ev.Time
				pre = append(pre, ev.Time.Sub(began[ev.Host]))
			}
		case ev.Host != "" && ev.State == fleet.HostChecking:
			checking[ev.Host] = ev.Time
			remote = append(remote, ev.Time.Sub(firstStep[ev.Host]))
		case ev.Host != "" && final(ev.State):
			lastEnd = ev.Time
			if c, ok := checking[ev.Host]; ok {
				check = append(check, ev.Time.Sub(c))
			}
		}
	}
	if len(batchAt) > 0 {
		parts = append(parts, fmt.Sprintf("batch %d %.2fs, then %.2fs to the exit", len(batchAt), lastEnd.Sub(batchAt[len(batchAt)-1]).Seconds(), r.ended.Sub(lastEnd).Seconds()))
	}
	mean := func(ds []time.Duration) float64 {
		if len(ds) == 0 {
			return 0
		}
		var sum time.Duration
		for _, d := range ds {
			sum += d
		}
		return sum.Seconds() / float64(len(ds))
	}
	var push, own, fleetSide []time.Duration
	for _, h := range r.Hosts {
		push, own = append(push, h.Push), append(own, h.Deploy)
		fleetSide = append(fleetSide, h.Duration-h.Push-h.Deploy)
	}
	worst := slices.MaxFunc(r.Hosts, func(a, b hostResult) int {
		return cmp.Compare(a.Duration-a.Push-a.Deploy, b.Duration-b.Push-b.Deploy)
	})
	parts = append(parts, fmt.Sprintf("the host with the most of the rest, %s: push %.2fs, deploy %.2fs, checking at +%.2fs, done at +%.2fs",
		worst.Host, worst.Push.Seconds(), worst.Deploy.Seconds(), checking[worst.Host].Sub(began[worst.Host]).Seconds(), (worst.Duration).Seconds()))
	both := func(ds []time.Duration) string {
		if len(ds) == 0 {
			return "-"
		}
		return fmt.Sprintf("%.2fs (max %.2fs)", mean(ds), slices.Max(ds).Seconds())
	}
	parts = append(parts, fmt.Sprintf("per host, mean (max): %s to its first step, %s from it to its checks, %s the checks from outside; %s its push, %s its deploy, %s the rest",
		both(pre), both(remote), both(check), both(push), both(own), both(fleetSide)))
	return strings.Join(parts, "; ")
}

// batchWall is how long batch i (from 0) took: from its start to the next
// batch's, or for the last, to its last host's end.
func (r rolloutResult) batchWall(i int) time.Duration {
	var starts []time.Time
	var lastEnd time.Time
	for _, ev := range r.events {
		if ev.State == "batch" {
			starts = append(starts, ev.Time)
		} else if ev.Host != "" && (ev.State == fleet.HostDone || ev.State == fleet.HostUnchanged || ev.State == fleet.HostFailed || ev.State == fleet.HostUnhealthy) {
			lastEnd = ev.Time
		}
	}
	if i >= len(starts) {
		return 0
	}
	if i+1 < len(starts) {
		return starts[i+1].Sub(starts[i])
	}
	return lastEnd.Sub(starts[i])
}
