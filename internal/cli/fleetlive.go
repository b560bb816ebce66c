package cli

import (
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"

	"golang.org/x/term"

	"github.com/slipway-dev/slipway/internal/fleet"
)

// liveView prints a rollout on a terminal: batch headers and each host's
// end stay, as a log; below them, one line per host in flight, redrawn in
// place as its state and step change.
type liveView struct {
	mu     sync.Mutex
	w      io.Writer
	width  func() int // the terminal's columns; a live line longer would wrap
	flying []string   // hosts in flight, in the order they started
	line   map[string]string
	drawn  int // live lines now on the screen, below the log
}

func newLiveView(w io.Writer, width func() int) *liveView {
	return &liveView{w: w, width: width, line: map[string]string{}}
}

// terminalWidth is f's columns when f is a terminal.
func terminalWidth(w io.Writer) (func() int, bool) {
	f, ok := w.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return nil, false
	}
	return func() int {
		if cols, _, err := term.GetSize(int(f.Fd())); err == nil && cols > 0 {
			return cols
		}
		return 80
	}, true
}

// ended says whether a host state is one a host rests in.
func ended(state string) bool {
	switch state {
	case fleet.HostDone, fleet.HostUnchanged, fleet.HostFailed, fleet.HostUnhealthy, fleet.HostNotStarted, fleet.HostReverted:
		return true
	}
	return false
}

func (v *liveView) event(ev fleet.Event) {
	v.mu.Lock()
	defer v.mu.Unlock()
	var b strings.Builder
	if v.drawn > 0 {
		// Back to the top of the live lines, and clear them.
		fmt.Fprintf(&b, "\x1b[%dA\r\x1b[J", v.drawn)
	}
	switch {
	case ev.State == "batch":
		fmt.Fprintf(&b, "batch %d/%d: %s\n", ev.Batch, ev.Of, ev.Detail)
	case ev.Host == "":
		fmt.Fprintf(&b, "rollout %d: %s %s\n", ev.Rollout, ev.State, ev.Detail)
	case ended(ev.State):
		fmt.Fprintf(&b, "%s\n", hostLine(ev))
		v.flying = slices.DeleteFunc(v.flying, func(h string) bool { return h == ev.Host })
		delete(v.line, ev.Host)
	default:
		if _, ok := v.line[ev.Host]; !ok {
			v.flying = append(v.flying, ev.Host)
		}
		v.line[ev.Host] = strings.ReplaceAll(hostLine(ev), "\n", " | ")
	}
	cols := v.width()
	for _, h := range v.flying {
		line := v.line[h]
		if r := []rune(line); len(r) >= cols {
			line = string(r[:max(cols-1, 0)])
		}
		b.WriteString(line + "\n")
	}
	v.drawn = len(v.flying)
	_, _ = io.WriteString(v.w, b.String())
}

// hostLine is a host's state, with its step or detail.
func hostLine(ev fleet.Event) string {
	switch {
	case ev.Step != "":
		return fmt.Sprintf("  %-12s %s: %s", ev.Host, ev.State, ev.Step)
	case ev.Detail != "":
		return fmt.Sprintf("  %-12s %s: %s", ev.Host, ev.State, ev.Detail)
	}
	return fmt.Sprintf("  %-12s %s", ev.Host, ev.State)
}
