package cli

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/slipway-dev/slipway/internal/fleet"
)

// screen is a terminal as far as the live view drives one: text, newlines,
// carriage return, cursor up (ESC [ n A) and erase to the end of the
// screen (ESC [ J). Any other escape fails the test.
type screen struct {
	t     *testing.T
	lines []string
	row   int
}

var escape = regexp.MustCompile(`^\x1b\[(\d*)([AJ])`)

func (s *screen) Write(p []byte) (int, error) {
	for in := string(p); in != ""; {
		switch in[0] {
		case '\n':
			s.row++
			in = in[1:]
		case '\r':
			in = in[1:]
		case 0x1b:
			m := escape.FindStringSubmatch(in)
			if m == nil {
				s.t.Fatalf("an escape the view should not send: %q", in)
			}
			if m[2] == "A" {
				n, _ := strconv.Atoi(m[1])
				s.row -= n
			} else {
				s.lines = s.lines[:min(s.row, len(s.lines))]
			}
			in = in[len(m[0]):]
		default:
			end := strings.IndexAny(in, "\n\r\x1b")
			if end < 0 {
				end = len(in)
			}
			for len(s.lines) <= s.row {
				s.lines = append(s.lines, "")
			}
			s.lines[s.row] += in[:end]
			in = in[end:]
		}
	}
	return len(p), nil
}

// On a terminal, a rollout shows its batch headers and each host's end
// as a log, and below it one line per host in flight that changes in
// place: at every moment the screen is the log, then the hosts in flight.
func TestLiveViewRedrawsHostsInFlight(t *testing.T) {
	s := &screen{t: t}
	v := newLiveView(s, func() int { return 40 })
	want := func(lines ...string) {
		t.Helper()
		if !slices.Equal(s.lines, lines) {
			t.Fatalf("screen:\n%s\nwant:\n%s", strings.Join(s.lines, "\n"), strings.Join(lines, "\n"))
		}
		if s.row != len(s.lines) {
			t.Fatalf("the cursor is on row %d, not below the %d lines", s.row, len(s.lines))
		}
	}
	v.event(fleet.Event{State: "batch", Batch: 1, Of: 2, Detail: "a"})
	v.event(fleet.Event{Host: "a", State: fleet.HostDeploying})
	want("batch 1/2: a", "  a            deploying")
	v.event(fleet.Event{Host: "a", State: fleet.HostDeploying, Step: "build"})
	want("batch 1/2: a", "  a            deploying: build")
	v.event(fleet.Event{Host: "a", State: fleet.HostDone})
	want("batch 1/2: a", "  a            done")

	v.event(fleet.Event{State: "batch", Batch: 2, Of: 2, Detail: "b c"})
	v.event(fleet.Event{Host: "b", State: fleet.HostDeploying})
	v.event(fleet.Event{Host: "c", State: fleet.HostDeploying, Step: "fetch"})
	v.event(fleet.Event{Host: "b", State: fleet.HostChecking})
	want("batch 1/2: a", "  a            done", "batch 2/2: b c",
		"  b            checking", "  c            deploying: fetch")
	// A long step is cut to the terminal's width, so the line never wraps.
	v.event(fleet.Event{Host: "c", State: fleet.HostDeploying, Step: strings.Repeat("x", 60)})
	want("batch 1/2: a", "  a            done", "batch 2/2: b c",
		"  b            checking", "  c            deploying: "+strings.Repeat("x", 13))
	v.event(fleet.Event{Host: "c", State: fleet.HostFailed, Detail: "c: failed\nthe end of its log"})
	v.event(fleet.Event{Host: "b", State: fleet.HostDone})
	v.event(fleet.Event{Rollout: 3, State: fleet.Halted, Detail: "1 host(s) failed"})
	want("batch 1/2: a", "  a            done", "batch 2/2: b c",
		"  c            failed: c: failed", "the end of its log", "  b            done",
		fmt.Sprintf("rollout 3: %s 1 host(s) failed", fleet.Halted))
}
