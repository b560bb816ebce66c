package process

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"github.com/slipway-dev/slipway/internal/fsutil"
)

// record is the content of <runDir>/<name>.pid: who the service's process
// is, so that a later slipway invocation can find, verify and stop it.
type record struct {
	PID  int `json:"pid"`
	PGID int `json:"pgid"`
	// StartTicks is field 22 of /proc/PID/stat at start: a pid that was
	// reused by another process has a different one.
	StartTicks uint64    `json:"start_ticks"`
	Started    time.Time `json:"started"`
	Command    string    `json:"command"`
	// LogStart is the size of the service's log when it was started: its
	// own output is what follows.
	LogStart int64 `json:"log_start,omitempty"`
}

func writeRecord(path string, r record) error {
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("write pid file %s: %w", path, err)
	}
	return fsutil.WriteFile(path, append(b, '\n'), 0o640)
}

// readRecord returns nil, nil when there is no pid file.
func readRecord(path string) (*record, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read pid file: %w", err)
	}
	var r record
	if err := json.Unmarshal(b, &r); err != nil || r.PID <= 0 || r.PGID <= 0 {
		if err == nil {
			err = errors.New("no pid")
		}
		return nil, fmt.Errorf("pid file %s is corrupt (%v); make sure the service is stopped, then remove it", path, err)
	}
	return &r, nil
}

func removeRecord(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove pid file: %w", err)
	}
	return nil
}
