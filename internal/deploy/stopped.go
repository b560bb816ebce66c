package deploy

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/slipway-dev/slipway/internal/fsutil"
	"github.com/slipway-dev/slipway/internal/lock"
)

// A service stopped by `slipway stop` is marked in run/stopped/<service>:
// neither recovery, the agent's repair nor a deploy brings it back until
// `slipway start`.

// stopMark is the content of a stopped service's mark.
type stopMark struct {
	At       time.Time `json:"at"`
	Actor    string    `json:"actor,omitempty"`
	LedgerID int64     `json:"ledger_id"`
}

// StoppedError refuses a deploy or rollback of an app that an operator
// stopped: like a freeze, it exits 3.
type StoppedError struct{ Services []string }

func (s *StoppedError) Error() string {
	return fmt.Sprintf("stopped by `slipway stop` (%s): run `slipway start` first", strings.Join(s.Services, ", "))
}

// Is makes a stopped app count as locked (exit 3).
func (s *StoppedError) Is(target error) bool { return target == lock.ErrLocked }

// Stopped returns the services an operator stopped, sorted.
func (e *Engine) Stopped() []string {
	var out []string
	for _, name := range e.Cfg.ServiceNames() {
		if _, err := os.Stat(filepath.Join(e.Layout.StoppedDir(), name)); err == nil {
			out = append(out, name)
		}
	}
	return out
}

func (e *Engine) isStopped(name string) bool {
	_, err := os.Stat(filepath.Join(e.Layout.StoppedDir(), name))
	return err == nil
}

// refuseStopped is the error of a deploy or rollback while a service is
// stopped.
func (e *Engine) refuseStopped() error {
	if s := e.Stopped(); len(s) > 0 {
		return &StoppedError{Services: s}
	}
	return nil
}

// markStopped marks names stopped, durably, before they are stopped: a
// crash in between must not let recovery start them again.
func (e *Engine) markStopped(names []string, m stopMark) error {
	if err := os.MkdirAll(e.Layout.StoppedDir(), 0o755); err != nil {
		return err
	}
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	for _, name := range names {
		if err := fsutil.WriteFile(filepath.Join(e.Layout.StoppedDir(), name), b, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// unmarkStopped clears the marks of names.
func (e *Engine) unmarkStopped(names []string) error {
	var errs []error
	for _, name := range names {
		if err := os.Remove(filepath.Join(e.Layout.StoppedDir(), name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if _, err := os.Stat(e.Layout.StoppedDir()); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return fsutil.SyncDir(e.Layout.StoppedDir())
}

// checksSkipped says why the health and smoke checks are skipped: while a
// service is stopped, it may be the one that serves them.
func (e *Engine) checksSkipped() string {
	if s := e.Stopped(); len(s) > 0 {
		return "skipped while " + strings.Join(s, ", ") + " is stopped"
	}
	return ""
}

// baseName is the service of an instance's name ("web.41234" -> "web").
func baseName(name string) string {
	i := strings.LastIndexByte(name, '.')
	if i < 0 {
		return name
	}
	for _, r := range name[i+1:] {
		if r < '0' || r > '9' {
			return name
		}
	}
	return name[:i]
}
