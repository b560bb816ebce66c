package webhook

import (
	"fmt"
	"strings"
	"sync"
	"testing"
)

func TestReplay(t *testing.T) {
	r := NewReplay(3)
	steps := []struct {
		id   string
		want bool
	}{
		{"a", false},
		{"a", true},
		{"", false},
		{"", false}, // the empty id is never remembered
		{"b", false},
		{"c", false},
		{"a", true},  // a is now the most recent; b the least
		{"d", false}, // evicts b
		{"b", false}, // forgotten, remembered again; evicts c
		{"a", true},
		{"d", true},
		{"c", false},
	}
	for i, s := range steps {
		if got := r.Seen(s.id); got != s.want {
			t.Fatalf("step %d: Seen(%q) = %v, want %v", i, s.id, got, s.want)
		}
	}
}

func TestReplayDefaults(t *testing.T) {
	var nilReplay *Replay
	for range 2 {
		if nilReplay.Seen("a") {
			t.Error("a nil Replay saw an id")
		}
	}
	for name, r := range map[string]*Replay{"NewReplay(0)": NewReplay(0), "zero value": {}} {
		for i := range DefaultReplaySize + 1 {
			r.Seen(fmt.Sprint(i))
		}
		if r.Seen("0") {
			t.Errorf("%s: remembers more than %d ids", name, DefaultReplaySize)
		}
		if !r.Seen("2") {
			t.Errorf("%s: forgot id 2 among the last %d", name, DefaultReplaySize)
		}
	}
}

// Long ids cost the same as short ones: only their digests are kept.
func TestReplayLongIDs(t *testing.T) {
	r := NewReplay(2)
	long := strings.Repeat("x", 1<<20)
	if r.Seen(long) || !r.Seen(long) || r.Seen(long+"y") {
		t.Error("long ids are not told apart")
	}
}

func TestReplayConcurrent(t *testing.T) {
	r := NewReplay(64)
	var wg sync.WaitGroup
	var mu sync.Mutex
	firsts := map[string]int{}
	for range 8 {
		wg.Go(func() {
			for i := range 1000 {
				id := fmt.Sprint(i % 32)
				if !r.Seen(id) {
					mu.Lock()
					firsts[id]++
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	for id, n := range firsts {
		if n != 1 {
			t.Errorf("id %s was new %d times, want once", id, n)
		}
	}
	if len(firsts) != 32 {
		t.Errorf("%d ids seen first, want 32", len(firsts))
	}
}
