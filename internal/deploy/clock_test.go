package deploy

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeClock is a clock the test moves: After(d) moves it d on at once,
// then tells onTick how long since the first After (the settle window's
// start).
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	start  time.Time
	onTick func(elapsed time.Duration)
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	if c.start.IsZero() {
		c.start = c.now
	}
	c.now = c.now.Add(d)
	now, elapsed, f := c.now, c.now.Sub(c.start), c.onTick
	c.mu.Unlock()
	if f != nil {
		f(elapsed)
	}
	ch := make(chan time.Time, 1)
	ch <- now
	return ch
}

// TestSettleWindowOnTheEnginesClock: the settle window is waited out on
// the engine's clock, so 30 s of it pass in a moment; and a health check
// that starts failing 12 s into it fails the deploy there, which rolls
// back to the safe commit.
func TestSettleWindowOnTheEnginesClock(t *testing.T) {
	r := newRig(t, "")
	text, err := os.ReadFile(r.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(r.cfgPath, []byte(strings.Replace(string(text), "settle: 100ms", "settle: 30s", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	r.reload()
	clk := &fakeClock{now: time.Now()}
	r.e.Clock = clk
	t0 := time.Now()
	a := r.mustDeploy().Commit
	if took := time.Since(t0); took > 20*time.Second {
		t.Fatalf("a 30 s settle window on the engine's clock took %s of the system's", took)
	}
	if d := settleDetail(t, r); d != "every service up and healthy for 30s" {
		t.Fatalf("settle: %q", d)
	}

	b := r.commit("dies 12 s into the window", map[string]string{"README": "b\n"})
	clk.mu.Lock()
	clk.start = time.Time{}
	clk.onTick = func(elapsed time.Duration) {
		if elapsed >= 12*time.Second {
			_ = os.Remove(filepath.Join(r.root, "current", "health"))
		}
	}
	clk.mu.Unlock()
	res, err := r.deploy(Options{})
	if err == nil || res.Commit != b {
		t.Fatalf("deploy of %s: %v", b[:7], err)
	}
	into, _, ok := strings.Cut(err.Error(), " into the settle window: health check")
	into = into[strings.LastIndexByte(into, ' ')+1:]
	d, perr := time.ParseDuration(into)
	if !ok || perr != nil || d < 12*time.Second || d > 13*time.Second {
		t.Fatalf("want a health failure 12 s into the settle window: %v", err)
	}
	if r.current() != a {
		t.Fatalf("current = %s, want the safe commit %s", r.current(), a[:7])
	}
}

// settleDetail is the settle step's detail of the last deploy.
func settleDetail(t *testing.T, r *rig) string {
	t.Helper()
	last, err := r.db.Last(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	steps, err := r.db.Steps(t.Context(), last.ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range steps {
		if s.Name == "settle" {
			return s.Detail
		}
	}
	t.Fatalf("deploy %d has no settle step", last.ID)
	return ""
}
