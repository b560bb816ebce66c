package cli

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/slipway-dev/slipway/internal/config"
	"github.com/slipway-dev/slipway/internal/deploy"
	"github.com/slipway-dev/slipway/internal/ledger"
)

// printer shows one line per step with its duration; on a terminal a
// spinner runs while a step is under way.
type printer struct {
	w    io.Writer
	tty  bool
	mu   sync.Mutex
	stop chan struct{}
	done chan struct{}
	// width is the step column's: the longest step name the config can
	// produce, so that every line's columns align.
	width int
}

func newPrinter(w io.Writer, cfg *config.Config) *printer {
	width := len("post-snapshot")
	for _, b := range cfg.Build {
		width = max(width, len("build:"+b.Name))
	}
	return &printer{w: w, tty: isTTY(w), width: width}
}

func isTTY(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

var spinFrames = []string{"⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"}

// Event is the engine's observer.
func (p *printer) Event(ev deploy.Event) {
	if ev.Phase == "start" {
		p.startSpinner(ev.Step)
		return
	}
	p.stopSpinner()
	mark := map[ledger.Outcome]string{ledger.Succeeded: "✓", ledger.Failed: "✗", ledger.Skipped: "-"}[ev.Outcome]
	detail := ev.Detail
	if ev.Outcome == ledger.Failed {
		detail = "" // the failure is explained in full at the end
	}
	line := fmt.Sprintf("  %s %-*s %7s", mark, p.width, ev.Step, fmtDuration(ev.Duration))
	if detail != "" {
		line += "  " + firstLine(detail)
	}
	p.mu.Lock()
	fmt.Fprintln(p.w, line)
	p.mu.Unlock()
}

func (p *printer) startSpinner(step string) {
	if !p.tty {
		return
	}
	p.stop, p.done = make(chan struct{}), make(chan struct{})
	go func(stop, done chan struct{}) {
		defer close(done)
		t0 := time.Now()
		for i := 0; ; i++ {
			p.mu.Lock()
			fmt.Fprintf(p.w, "\r\033[K  %s %-*s %7s", spinFrames[i%len(spinFrames)], p.width, step, fmtDuration(time.Since(t0)))
			p.mu.Unlock()
			select {
			case <-stop:
				p.mu.Lock()
				fmt.Fprint(p.w, "\r\033[K")
				p.mu.Unlock()
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}(p.stop, p.done)
}

func (p *printer) stopSpinner() {
	if p.stop == nil {
		return
	}
	close(p.stop)
	<-p.done
	p.stop = nil
}

func fmtDuration(d time.Duration) string {
	switch {
	case d < time.Second:
		return fmt.Sprintf("%dms", d.Milliseconds())
	case d < time.Minute:
		return fmt.Sprintf("%.1fs", d.Seconds())
	default:
		return d.Round(time.Second).String()
	}
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}

// explain prints a failed deploy for an operator: what failed, the command
// and its output, what is live now, and what to do next.
func explain(w io.Writer, s deploy.Summary) {
	if s.FailedStep == "" {
		fmt.Fprintf(w, "slipway: %s\n", s.Error)
		return
	}
	kind := s.Kind
	if kind == "" {
		kind = "deploy"
	}
	fmt.Fprintf(w, "\n%s %d failed at step %s:\n", kind, s.ID, s.FailedStep)
	for _, line := range strings.Split(strings.TrimRight(s.Detail, "\n"), "\n") {
		fmt.Fprintf(w, "    %s\n", line)
	}
	if i := strings.Index(s.Error, "; rollback failed too: "); i >= 0 {
		fmt.Fprintf(w, "and the rollback failed:\n    %s\n", s.Error[i+len("; rollback failed too: "):])
	}
	fmt.Fprintf(w, "%s\n", s.State)
	fmt.Fprintf(w, "next: %s\n", s.Next)
}
