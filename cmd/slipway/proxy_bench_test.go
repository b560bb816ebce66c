package main_test

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/slipway-dev/slipway/internal/testkit"
)

// The proxy's figures (zero-downtime deploys, overhead against direct):
//
//	go test -run '^$' -bench 'Proxy' -benchtime 1x ./cmd/slipway/
//
// BenchmarkProxyDeploysUnderLoad: failed requests during 20 deploys at a
// paced 200 requests/s, proxy mode against restart mode.
// BenchmarkProxyOverhead: throughput and latency through the proxy against
// the instance directly.

// paced sends rate requests per second to url for d, each in its own
// goroutine (open loop: a slow answer does not slow the schedule).
func paced(url string, rate int, d time.Duration) (ok, failed int64, lat []time.Duration) {
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 256}}
	var mu sync.Mutex
	var wg sync.WaitGroup
	var nOK, nFailed atomic.Int64
	every := time.Second / time.Duration(rate)
	start := time.Now()
	for i := 0; time.Since(start) < d; i++ {
		if wait := time.Until(start.Add(time.Duration(i) * every)); wait > 0 {
			time.Sleep(wait)
		}
		wg.Go(func() {
			t0 := time.Now()
			resp, err := client.Get(url)
			if err != nil {
				nFailed.Add(1)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode != 200 {
				nFailed.Add(1)
				return
			}
			nOK.Add(1)
			mu.Lock()
			lat = append(lat, time.Since(t0))
			mu.Unlock()
		})
	}
	wg.Wait()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	return nOK.Load(), nFailed.Load(), lat
}

func pct(lat []time.Duration, p float64) time.Duration {
	if len(lat) == 0 {
		return 0
	}
	return lat[int(float64(len(lat)-1)*p)]
}

// directURL is the active instance's own address, from `proxy status`.
func directURL(b *testing.B, a *app) string {
	b.Helper()
	r := a.slipway("proxy", "status", "--json")
	var routes []struct{ Backend string }
	if err := json.Unmarshal([]byte(r.stdout), &routes); err != nil || len(routes) != 1 {
		b.Fatalf("proxy status: %v %s", err, r)
	}
	return "http://" + routes[0].Backend + "/version"
}

func BenchmarkProxyDeploysUnderLoad(b *testing.B) {
	for _, mode := range []string{"proxy", "restart"} {
		b.Run(mode, func(b *testing.B) {
			edit := proxyConfig("2s")
			if mode == "restart" {
				edit = nil
			}
			a := newApp(b, "node-web", edit)
			a.mustDeploy()
			var ok, failed int64
			const window = 60 * time.Second
			for b.Loop() {
				done := make(chan struct{})
				loadStart := time.Now()
				go func() {
					ok, failed, _ = paced(fmt.Sprintf("http://127.0.0.1:%d/version", a.port), 200, window)
					close(done)
				}()
				// paced runs for a fixed time; the 20 deploys must end
				// inside it, or the figure would count requests that no
				// deploy disturbed.
				start := time.Now()
				for i := range 20 {
					a.touch(i)
					a.mustDeploy()
				}
				took := time.Since(start)
				b.Logf("%s mode: 20 deploys in %s", mode, took.Round(time.Second))
				if end := time.Since(loadStart); end > window {
					b.Fatalf("the 20 deploys ended %s after the load began, past its %s window", end.Round(time.Second), window)
				}
				<-done
			}
			b.ReportMetric(float64(failed), "failed")
			b.ReportMetric(float64(ok+failed), "requests")
		})
	}
}

// BenchmarkProxyOverhead: the proxy against the instance it serves, a Go
// server that answers "ok" (testdata/apps/go-ok), over 3 rounds. In each
// round every target gets 16 closed-loop clients for 5 s, then a paced
// 1,000 requests/s for 5 s, in 1 s turns that take the targets in turn, so
// that the machine's drift falls on all of them alike. The load generator,
// the proxy and the backend share the machine's cores.
//
// With SLIPWAY_BENCH_KAMAL_PROXY naming a kamal-proxy binary, the same
// instance is also measured through it, as the peer to beat.
func BenchmarkProxyOverhead(b *testing.B) {
	a := newApp(b, "go-ok", nil)
	a.mustDeploy()
	backend := strings.TrimPrefix(strings.TrimSuffix(directURL(b, a), "/version"), "http://")
	targets := []struct{ name, url string }{
		{"direct", "http://" + backend + "/"},
		{"proxy", fmt.Sprintf("http://127.0.0.1:%d/", a.port)},
	}
	if bin := os.Getenv("SLIPWAY_BENCH_KAMAL_PROXY"); bin != "" {
		targets = append(targets, struct{ name, url string }{"kamal-proxy", startKamalProxy(b, bin, backend)})
	}
	const rounds, turns = 3, 5
	rps := map[string][]float64{}
	p50, p99 := map[string][]float64{}, map[string][]float64{}
	var failed int64
	for b.Loop() {
		for _, t := range targets { // warm up
			testkit.ClosedLoop(t.url, 16, time.Second)
			paced(t.url, 1000, time.Second)
		}
		for round := range rounds {
			served := map[string]float64{}
			lat := map[string][]time.Duration{}
			for range turns {
				for _, t := range targets {
					served[t.name] += testkit.ClosedLoop(t.url, 16, time.Second)
				}
			}
			for range turns {
				for _, t := range targets {
					_, f, l := paced(t.url, 1000, time.Second)
					failed += f
					lat[t.name] = append(lat[t.name], l...)
				}
			}
			for _, t := range targets {
				l := lat[t.name]
				sort.Slice(l, func(i, j int) bool { return l[i] < l[j] })
				ms := func(p float64) float64 { return float64(pct(l, p).Microseconds()) / 1000 }
				r := served[t.name] / turns
				rps[t.name] = append(rps[t.name], r)
				p50[t.name] = append(p50[t.name], ms(0.5))
				p99[t.name] = append(p99[t.name], ms(0.99))
				b.Logf("round %d %-11s %7.0f req/s (%.2fx direct)  p50 %.2f ms  p99 %.2f ms", round+1, t.name, r, r/rps["direct"][round], ms(0.5), ms(0.99))
			}
		}
	}
	for _, t := range targets {
		b.ReportMetric(mean(rps[t.name]), t.name+"-req/s")
		b.ReportMetric(mean(p50[t.name]), t.name+"-p50-ms")
		b.ReportMetric(mean(p99[t.name]), t.name+"-p99-ms")
		if t.name == "direct" {
			continue
		}
		// The worst round: the lowest ratio, the largest added p99.
		ratio, added := math.Inf(1), math.Inf(-1)
		for i := range rps[t.name] {
			ratio = min(ratio, rps[t.name][i]/rps["direct"][i])
			added = max(added, p99[t.name][i]-p99["direct"][i])
		}
		b.ReportMetric(ratio, t.name+"/direct")
		b.ReportMetric(added, t.name+"-p99-added-ms")
	}
	b.ReportMetric(float64(failed), "failed")
}

func mean(xs []float64) float64 {
	var sum float64
	for _, x := range xs {
		sum += x
	}
	return sum / float64(len(xs))
}

// startKamalProxy runs the kamal-proxy binary bin on a free port, in a
// directory of its own, with one service that sends everything to
// backend, and returns its URL.
func startKamalProxy(b *testing.B, bin, backend string) string {
	dir := b.TempDir()
	port := testkit.FreePort(b)
	env := append(os.Environ(), "HOME="+dir, "XDG_RUNTIME_DIR="+dir, "KAMAL_PROXY_SOCKET="+filepath.Join(dir, "kamal-proxy.sock"))
	run := exec.Command(bin, "run", "--http-port", strconv.Itoa(port), "--https-port", strconv.Itoa(testkit.FreePort(b)))
	run.Env = env
	if err := run.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		_ = run.Process.Kill()
		_ = run.Wait()
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		deploy := exec.Command(bin, "deploy", "ok", "--target", backend, "--health-check-path", "/health")
		deploy.Env = env
		out, err := deploy.CombinedOutput()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("kamal-proxy deploy: %v\n%s", err, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Sprintf("http://127.0.0.1:%d/", port)
}

// BenchmarkProxySmokeFailure: behind the proxy, under users paced at 200
// requests/s to /board/tasks, deploys of a release whose /board/tasks
// answers 500 while /health is fine (figure: 0 users get an error from
// it; each deploy fails at smoke and the old instance keeps serving).
func BenchmarkProxySmokeFailure(b *testing.B) {
	a := newApp(b, "python-api", proxyConfig("2s"))
	a.mustDeploy()
	users := startUsers(fmt.Sprintf("http://127.0.0.1:%d/board/tasks", a.port), a.token, 5*time.Millisecond)
	good, broken := `            self.send_body(200, {"tasks": tasks})`, `            self.send_body(500, {"error": "broken on purpose"})`
	i := 0
	for b.Loop() {
		i++
		a.edit("tasks answer 500, "+itoa(i), "backend/app.py", good, broken)
		if r := a.slipway("deploy"); r.code != 1 {
			b.Fatalf("deploy of a smoke-failing release: %s", r)
		}
		a.edit("tasks fine, "+itoa(i), "backend/app.py", broken, good)
		a.mustDeploy()
	}
	summary := users.end()
	b.Logf("users: %s", summary)
	b.ReportMetric(float64(users.failed.Load()), "user-errors")
	b.ReportMetric(float64(users.ok.Load()+users.failed.Load()), "requests")
}
