package main_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/slipway-dev/slipway/internal/testkit"
)

// The agent's figures (idle cost, a forged-webhook flood, push to serving):
//   go test -run '^$' -bench Agent -benchtime 1x ./cmd/slipway/

// newBenchAgent starts an agent for the Python example and deploys it once.
func newBenchAgent(b *testing.B, poll string) *agentApp {
	b.Helper()
	apiPort, hookPort := testkit.FreePort(b), testkit.FreePort(b)
	a := newApp(b, "python-api", agentConfig(poll, apiPort, hookPort, "master"))
	testkit.Git(b, a.src, "branch", "-m", "master")
	g := &agentApp{app: a, apiPort: apiPort, hookPort: hookPort}
	g.start(b)
	if code, body := g.api("POST", "/deploys", `{}`, true); code != 202 {
		b.Fatalf("deploy: %d %s", code, body)
	}
	testkit.WaitFor(b, 60*time.Second, "first deploy", func() bool { return strings.HasSuffix(g.serving(), "+"+a.head()[:7]) })
	return g
}

// procStat reads a process's resident memory (bytes) and CPU time.
func procStat(b *testing.B, pid int) (rss int64, cpu time.Duration) {
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			rss = kb << 10
		}
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	s := string(stat)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return rss, time.Duration(ut+st) * time.Second / 100 // USER_HZ
}

// BenchmarkAgentIdle: RSS and CPU of an idle agent polling every 10 s
// (figures: RSS under 30 MB, CPU under 1%).
func BenchmarkAgentIdle(b *testing.B) {
	g := newBenchAgent(b, "10s")
	for b.Loop() {
		pid := g.cmd.Process.Pid
		_, cpu0 := procStat(b, pid)
		t0 := time.Now()
		time.Sleep(30 * time.Second)
		rss, cpu1 := procStat(b, pid)
		b.ReportMetric(float64(rss)/(1<<20), "rss-MB")
		b.ReportMetric(100*float64(cpu1-cpu0)/float64(time.Since(t0)), "cpu-%")
	}
}

func percentile(ds []time.Duration, p float64) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[min(len(s)-1, int(float64(len(s))*p))]
}

// BenchmarkAgentForgedFlood: forged webhooks from 8 connections for 5 s
// while /health is probed (figures: at least 5,000 rejected per second,
// /health p99 under 20 ms, no deploy started).
func BenchmarkAgentForgedFlood(b *testing.B) {
	g := newBenchAgent(b, "0")
	before := g.deploysCount(b)
	push := []byte(`{"ref":"refs/heads/master","after":"` + strings.Repeat("2", 40) + `"}`)
	for b.Loop() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		var rejected, other atomic.Int64
		var wg sync.WaitGroup
		url := fmt.Sprintf("http://127.0.0.1:%d/webhook/github", g.hookPort)
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
				for ctx.Err() == nil {
					req, _ := http.NewRequestWithContext(ctx, "POST", url, strings.NewReader(string(push)))
					req.Header.Set("X-GitHub-Event", "push")
					req.Header.Set("X-Hub-Signature-256", "sha256="+strings.Repeat("ab", 32))
					resp, err := c.Do(req)
					if err != nil {
						continue
					}
					_ = resp.Body.Close()
					if resp.StatusCode == 401 {
						rejected.Add(1)
					} else {
						other.Add(1)
					}
				}
			}()
		}
		// A probe that fails (an error, a status other than 200) counts
		// at the client's timeout: the slowest a probe can be.
		var health []time.Duration
		var failedProbes int
		const probeTimeout = 2 * time.Second
		hc := &http.Client{Timeout: probeTimeout}
		healthURL := fmt.Sprintf("http://127.0.0.1:%d/health", g.apiPort)
		t0 := time.Now()
		for ctx.Err() == nil {
			s := time.Now()
			resp, err := hc.Get(healthURL)
			took := time.Since(s)
			if err != nil || resp.StatusCode != http.StatusOK {
				failedProbes++
				took = probeTimeout
			}
			if err == nil {
				_ = resp.Body.Close()
			}
			health = append(health, took)
			time.Sleep(10 * time.Millisecond)
		}
		wg.Wait()
		cancel()
		elapsed := time.Since(t0)
		if other.Load() != 0 {
			b.Fatalf("%d forged requests were not refused with 401", other.Load())
		}
		b.ReportMetric(float64(rejected.Load())/elapsed.Seconds(), "rejected/s")
		b.ReportMetric(float64(percentile(health, 0.99))/float64(time.Millisecond), "health-p99-ms")
		b.ReportMetric(float64(failedProbes), "health-failed")
	}
	if n := g.deploysCount(b); n != before {
		b.Fatalf("the flood started %d deploys", n-before)
	}
}

// BenchmarkAgentPushToServing: from a signed push until the new version
// serves and is recorded safe. slipway's share is the total less the app's
// own time: build commands that ran, migrate, restart and the health wait
// (figure: under 500 ms). Copying reused dependencies counts as slipway's.
func BenchmarkAgentPushToServing(b *testing.B) {
	for _, name := range []string{"python-api", "node-web"} {
		b.Run(name, func(b *testing.B) {
			apiPort, hookPort := testkit.FreePort(b), testkit.FreePort(b)
			a := newApp(b, name, agentConfig("0", apiPort, hookPort, "master"))
			testkit.Git(b, a.src, "branch", "-m", "master")
			g := &agentApp{app: a, apiPort: apiPort, hookPort: hookPort}
			g.start(b)
			if code, body := g.api("POST", "/deploys", `{}`, true); code != 202 {
				b.Fatalf("deploy: %d %s", code, body)
			}
			g.waitServing(b, a.head())
			push := payload(b, "push-branch-master.json")
			var total, own, toStart []time.Duration
			i := 0
			for b.Loop() {
				i++
				sha := g.commit("push "+itoa(i), map[string]string{"README": itoa(i) + "\n"})
				t0 := time.Now()
				if code := g.hook("github", push, githubHeaders("push", push, hookSecret)); code != 202 {
					b.Fatalf("push: %d", code)
				}
				testkit.WaitFor(b, 60*time.Second, "serving and safe", func() bool {
					return g.safeCommit() == sha && strings.HasSuffix(g.serving(), "+"+sha[:7])
				})
				d := time.Since(t0)
				last := g.lastDeploy()
				steps := stepDurations(b, g.app, last.ID)
				total = append(total, d)
				own = append(own, d-appTime(steps))
				toStart = append(toStart, last.Started.Sub(t0))
			}
			b.ReportMetric(ms(median(total)), "total-ms")
			b.ReportMetric(ms(median(own)), "slipway-ms")
			b.ReportMetric(ms(median(toStart)), "push-to-start-ms")
		})
	}
}
