package main_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/slipway-dev/slipway/internal/ledger"
)

// slipway's figures, measured on the real binary and real apps:
//   go test -run '^$' -bench . -benchtime 5x ./cmd/slipway/
// (or `make bench`). Each reports medians with b.ReportMetric.

func median(ds []time.Duration) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// timed runs slipway and returns its wall time; it fails unless exit 0.
func timed(b *testing.B, a *app, args ...string) (time.Duration, result) {
	b.Helper()
	t0 := time.Now()
	r := a.slipway(args...)
	d := time.Since(t0)
	if r.code != 0 {
		b.Fatalf("slipway %v: %s", args, r)
	}
	return d, r
}

// BenchmarkNoopDeploy: a deploy when the target is already the healthy safe
// commit (target: a median under 100 ms).
func BenchmarkNoopDeploy(b *testing.B) {
	a := newApp(b, "python-api", nil)
	a.mustDeploy()
	var ds []time.Duration
	for b.Loop() {
		d, r := timed(b, a, "deploy")
		if !strings.Contains(r.stdout, "nothing to do") {
			b.Fatalf("not a no-op: %s", r)
		}
		ds = append(ds, d)
	}
	b.ReportMetric(ms(median(ds)), "median-ms")
}

// stepDurations reads one deploy's steps from the ledger. A build step that
// reused the previous release's dependencies did slipway's own work (the
// copy), so it is filed under "reuse:NAME" rather than "build:NAME".
func stepDurations(b *testing.B, a *app, id int64) map[string]time.Duration {
	b.Helper()
	db, err := ledger.Open(filepath.Join(a.root, "state.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = db.Close() }()
	steps, err := db.Steps(context.Background(), id)
	if err != nil {
		b.Fatal(err)
	}
	m := map[string]time.Duration{}
	for _, s := range steps {
		name := s.Name
		if strings.HasPrefix(name, "build:") && strings.HasPrefix(s.Detail, "reused ") {
			name = "reuse:" + strings.TrimPrefix(name, "build:")
		}
		m[name] += s.Duration
	}
	return m
}

// appTime is the part of a deploy spent in the user's commands and in
// waiting for the app: build commands that ran, migrate, restart (stopping
// the old app, starting the new) and the health wait.
func appTime(steps map[string]time.Duration) time.Duration {
	var d time.Duration
	for name, dur := range steps {
		if strings.HasPrefix(name, "build:") || name == "migrate" || name == "restart" || name == "health" {
			d += dur
		}
	}
	return d
}

// BenchmarkDeployOverhead: slipway's own share of a full deploy (its time
// less the build commands that ran, migrate, restart, health and the
// settle window, which is waiting for the app by design; the harness sets
// health.settle: 200ms, the default is 5 s), of the Python example and of
// the Node example, each deploy a new commit that changes no dependency.
// With $SLIPWAY_BENCH_BASELINE naming another slipway binary, that binary
// deploys a second copy of the app (its own root and repository), the two
// taking turns, and both are reported.
func BenchmarkDeployOverhead(b *testing.B) {
	baseline := os.Getenv("SLIPWAY_BENCH_BASELINE")
	for _, name := range []string{"python-api", "node-web"} {
		b.Run(name, func(b *testing.B) {
			apps := map[string]*app{"slipway": newApp(b, name, nil)}
			if baseline != "" {
				// The example as it was before reuse.share, which an
				// older binary does not know.
				apps["baseline"] = newApp(b, name, func(cfg string) string {
					return strings.Replace(cfg, "share: true }", "link: true }", 1)
				})
				apps["baseline"].bin = baseline
			}
			for _, a := range apps {
				a.mustDeploy()
			}
			own := map[string][]time.Duration{}
			var total, settle []time.Duration
			i := 0
			for b.Loop() {
				i++
				for _, which := range []string{"slipway", "baseline"} {
					a := apps[which]
					if a == nil {
						continue
					}
					a.commit("change "+itoa(i), map[string]string{"README": "change " + itoa(i) + "\n"})
					d, _ := timed(b, a, "deploy")
					steps := stepDurations(b, a, a.lastDeploy().ID)
					if which == "slipway" {
						total = append(total, d)
						settle = append(settle, steps["settle"])
					}
					own[which] = append(own[which], d-appTime(steps)-steps["settle"])
					if os.Getenv("BENCH_STEPS") != "" {
						b.Logf("%s %v %v", which, d, steps)
					}
				}
			}
			b.ReportMetric(ms(median(total)), "total-ms")
			b.ReportMetric(ms(median(settle)), "settle-ms")
			b.ReportMetric(ms(median(own["slipway"])), "slipway-ms")
			if baseline != "" {
				b.ReportMetric(ms(median(own["baseline"])), "baseline-slipway-ms")
			}
		})
	}
}

// BenchmarkRollback: `slipway rollback` to a kept release (target: under
// 1 s plus the app's own start time and checks).
func BenchmarkRollback(b *testing.B) {
	a := newApp(b, "python-api", nil)
	c1 := a.head()
	a.mustDeploy()
	c2 := a.commit("two", map[string]string{"README": "two\n"})
	a.mustDeploy()
	var total, own []time.Duration
	to := []string{c1, c2}
	i := 0
	for b.Loop() {
		// Back and forth between two kept releases.
		d, _ := timed(b, a, "rollback", "--to", to[i%2])
		i++
		steps := stepDurations(b, a, a.lastDeploy().ID)
		total = append(total, d)
		// A rollback proves itself as a deploy does: the app's start, its
		// checks and the settle window are the app's time.
		own = append(own, d-steps["restart"]-steps["health"]-steps["smoke"]-steps["settle"])
	}
	b.ReportMetric(ms(median(total)), "total-ms")
	b.ReportMetric(ms(median(own)), "without-app-start-ms")
}

// BenchmarkFailingHealth: the deploy of a release whose /health answers
// 500 from its first request, until it is rolled back, with
// health.fail_after at its default (5) and off (0), health.timeout 8s
// (figure: found sooner than the timeout).
func BenchmarkFailingHealth(b *testing.B) {
	for _, failAfter := range []string{"5", "0"} {
		b.Run("fail_after="+failAfter, func(b *testing.B) {
			a := newApp(b, "python-api", func(cfg string) string {
				cfg = strings.Replace(cfg, "  timeout: 20s\n", "  timeout: 8s\n", 1)
				return strings.Replace(cfg, "\nhealth:\n", "\nhealth:\n  fail_after: "+failAfter+"\n", 1)
			})
			a.mustDeploy()
			a.edit("health says 500", "backend/app.py",
				`self.send_body(200, {"status": "ok", "version": APP_VERSION})`,
				`self.send_body(500, {"status": "broken", "version": APP_VERSION})`)
			var total, health []time.Duration
			i := 0
			for b.Loop() {
				if i > 0 { // a new bad commit each time: a bad one is not tried again
					a.commit(fmt.Sprintf("still broken %d", i), map[string]string{"BROKEN": strconv.Itoa(i)})
				}
				i++
				t0 := time.Now()
				r := a.slipway("deploy")
				total = append(total, time.Since(t0))
				if r.code != 1 || !strings.Contains(r.stderr, "rolled back") {
					b.Fatalf("a deploy of a broken health: %s", r)
				}
				health = append(health, stepDurations(b, a, a.lastDeploy().ID)["health"])
			}
			b.ReportMetric(ms(median(total)), "deploy-to-rolled-back-ms")
			b.ReportMetric(ms(median(health)), "health-step-ms")
		})
	}
}

// BenchmarkNodeReuse: deploys of the Node example with and without
// build.reuse (figure: an unchanged-deps deploy at least 5x faster with it).
// "docs" commits change only a README, so node_modules and dist/ are both
// reused; "source" commits change src/, so only node_modules is.
func BenchmarkNodeReuse(b *testing.B) {
	noReuse := func(cfg string) string { return replaceLine(cfg, "    reuse:", "") }
	for _, tc := range []struct {
		name   string
		edit   func(string) string
		change func(a *app, i int)
	}{
		{"docs/reuse", nil, commitDocs},
		{"docs/no-reuse", noReuse, commitDocs},
		{"source/reuse", nil, commitSource},
		{"source/no-reuse", noReuse, commitSource},
	} {
		b.Run(tc.name, func(b *testing.B) {
			a := newApp(b, "node-web", tc.edit)
			a.mustDeploy()
			var total, deps []time.Duration
			i := 0
			for b.Loop() {
				i++
				tc.change(a, i)
				d, _ := timed(b, a, "deploy")
				total = append(total, d)
				st := stepDurations(b, a, a.lastDeploy().ID)
				deps = append(deps, st["build:deps"]+st["reuse:deps"])
				if os.Getenv("BENCH_STEPS") != "" {
					b.Logf("%v %v", d, st)
				}
			}
			b.ReportMetric(ms(median(total)), "deploy-ms")
			b.ReportMetric(ms(median(deps)), "deps-step-ms")
		})
	}
}

func commitDocs(a *app, i int) {
	a.commit("docs "+itoa(i), map[string]string{"README": "change " + itoa(i) + "\n"})
}

func commitSource(a *app, i int) {
	a.commit("source "+itoa(i), map[string]string{"src/version.js": "module.exports = " + itoa(i) + ";\n"})
}

// BenchmarkReconfigureNode: on the Node example, an env file change
// applied as a reconfigure (a restart through the checks, no build)
// against a full deploy of a source change without build.reuse, in one
// run.
func BenchmarkReconfigureNode(b *testing.B) {
	noReuse := func(cfg string) string { return replaceLine(cfg, "    reuse:", "") }
	a := newApp(b, "node-web", noReuse)
	a.mustDeploy()
	var reconf, full []time.Duration
	i := 0
	for b.Loop() {
		i++
		a.writeEnv("web.env", map[string]string{"WEB_AUTH_TOKEN": testToken, "PORT": itoa(a.port), "FEATURE": itoa(i)})
		d, r := timed(b, a, "deploy")
		if !strings.Contains(r.stdout, "reconfigured") {
			b.Fatalf("not a reconfigure: %s", r)
		}
		reconf = append(reconf, d)
		commitSource(a, i)
		d, _ = timed(b, a, "deploy")
		full = append(full, d)
	}
	b.ReportMetric(ms(median(reconf)), "reconfigure-ms")
	b.ReportMetric(ms(median(full)), "full-deploy-ms")
}
