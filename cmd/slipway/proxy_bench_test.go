package main_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/slipway-dev/slipway/internal/testkit"
)

// The zero-downtime issue's figures:
//
//	go test -run '^$' -bench 'Proxy' -benchtime 1x ./cmd/slipway/
//
// BenchmarkProxyDeploysUnderLoad: failed requests during 20 deploys at a
// paced 200 requests/s, proxy mode against restart mode.
// BenchmarkProxyLatency: p50/p99 at a paced 1,000 requests/s, through the
// proxy against the instance directly.
// BenchmarkProxyThroughput: requests/s from 16 clients for 5 s, through
// the proxy against the instance directly.

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

// directAndProxied runs bench against the deployed instance directly, then
// through the proxy.
func directAndProxied(b *testing.B, bench func(b *testing.B, url string)) {
	a := newApp(b, "node-web", proxyConfig("2s"))
	a.mustDeploy()
	for _, target := range []string{"direct", "proxy"} {
		url := fmt.Sprintf("http://127.0.0.1:%d/version", a.port)
		if target == "direct" {
			url = directURL(b, a)
		}
		b.Run(target, func(b *testing.B) { bench(b, url) })
	}
}

func BenchmarkProxyLatency(b *testing.B) {
	directAndProxied(b, func(b *testing.B, url string) {
		var lat []time.Duration
		var failed int64
		for b.Loop() {
			paced(url, 1000, time.Second) // warm up
			_, failed, lat = paced(url, 1000, 5*time.Second)
		}
		b.ReportMetric(float64(pct(lat, 0.5).Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(pct(lat, 0.99).Microseconds())/1000, "p99-ms")
		b.ReportMetric(float64(failed), "failed")
	})
}

func BenchmarkProxyThroughput(b *testing.B) {
	directAndProxied(b, func(b *testing.B, url string) {
		var rps float64
		for b.Loop() {
			testkit.ClosedLoop(url, 16, time.Second) // warm up
			rps = testkit.ClosedLoop(url, 16, 5*time.Second)
		}
		b.ReportMetric(rps, "req/s")
	})
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
